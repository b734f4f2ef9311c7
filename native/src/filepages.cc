// See filepages.h.
#include "filepages.h"

#include <errno.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace lockagent {

namespace {

// A mapping while its smaps lines are read.
struct Candidate {
  unsigned long start = 0, end = 0;
  size_t rssKiB = 0, anonKiB = 0, swapKiB = 0;
  bool eligible = false;
};

// "start-end perms offset dev inode path": a mapping's first line in smaps.
bool parseHeader(const char* line, Candidate* c) {
  unsigned long start, end, offset, inode;
  char perms[8], dev[16];
  int pathAt = 0;
  if (sscanf(line, "%lx-%lx %7s %lx %15s %lu %n", &start, &end, perms, &offset, dev, &inode, &pathAt) < 6) return false;
  *c = Candidate{};
  c->start = start;
  c->end = end;
  // read-only, private, backed by a file that has a path (not [vdso], not anonymous memory)
  c->eligible = strlen(perms) == 4 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p' && inode != 0 && pathAt > 0 &&
                line[pathAt] == '/';
  return true;
}

}  // namespace

std::vector<FileMapping> droppableMappings(FILE* f) {
  std::vector<FileMapping> out;
  Candidate cur;
  bool have = false;
  auto finish = [&]() {
    // a copied page swapped out shows as Swap, not Anonymous: dropping it would lose it too
    if (have && cur.eligible && cur.anonKiB == 0 && cur.swapKiB == 0 && cur.rssKiB > 0) out.push_back({cur.start, cur.end, cur.rssKiB * 1024});
  };
  char line[4608];
  bool continuation = false;  // the rest of a line longer than the buffer (a very long path)
  while (fgets(line, sizeof line, f)) {
    size_t len = strlen(line);
    bool rest = continuation;
    continuation = len > 0 && line[len - 1] != '\n' && !feof(f);
    if (rest) continue;  // never parsed as a line of its own: it could look like a header
    size_t kib;
    if (sscanf(line, "Rss: %zu kB", &kib) == 1) {
      cur.rssKiB = kib;
    } else if (sscanf(line, "Anonymous: %zu kB", &kib) == 1) {
      cur.anonKiB = kib;
    } else if (sscanf(line, "Swap: %zu kB", &kib) == 1) {
      cur.swapKiB = kib;
    } else if (line[0] >= 'A' && line[0] <= 'Z') {
      continue;  // another field (fields start with a capital, headers with a hex digit or a-f)
    } else {
      Candidate next;
      if (parseHeader(line, &next)) {
        finish();
        cur = next;
        have = true;
      }
    }
  }
  finish();
  return out;
}

namespace {

struct DropContext {
  const std::vector<FileMapping>* candidates;
  std::vector<bool> dropped;  // per candidate: some of it was given back
  uintptr_t page;
};

// For each loaded object (dl_iterate_phdr holds the loader's lock while it calls this, so no
// dlopen or dlclose on another thread can map or unmap objects meanwhile): its read-only PT_LOAD
// segments, as far as they lie in mappings smaps showed droppable. Only memory the loader
// mapped for an object still loaded is ever dropped, never a range that another thread unmapped
// and mapped again as something else after smaps was read.
int dropObjectSegments(struct dl_phdr_info* info, size_t, void* data) {
  DropContext* c = static_cast<DropContext*>(data);
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) || ph.p_memsz == 0) continue;
    // whole pages inside the segment only: a page it shares with a neighbour is left alone
    uintptr_t s = static_cast<uintptr_t>(info->dlpi_addr + ph.p_vaddr);
    uintptr_t e = s + ph.p_memsz;
    s = (s + c->page - 1) & ~(c->page - 1);
    e &= ~(c->page - 1);
    for (size_t k = 0; k < c->candidates->size(); k++) {
      const FileMapping& m = (*c->candidates)[k];
      uintptr_t a = s > m.start ? s : m.start, b = e < m.end ? e : m.end;
      if (a >= b) continue;
      if (madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED) == 0) c->dropped[k] = true;
    }
  }
  return 0;
}

}  // namespace

FilePagesDropped dropCleanFilePages() {
  FilePagesDropped out;
  FILE* f = fopen("/proc/self/smaps", "re");
  if (!f) {
    out.err = errno;
    return out;
  }
  // Chosen first, dropped after the file is closed: smaps describes the mappings as they are
  // while it is read, and the drop must not change what is being read.
  std::vector<FileMapping> candidates = droppableMappings(f);
  fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  DropContext c{&candidates, std::vector<bool>(candidates.size(), false), static_cast<uintptr_t>(page > 0 ? page : 4096)};
  dl_iterate_phdr(dropObjectSegments, &c);
  for (size_t k = 0; k < candidates.size(); k++) {
    if (!c.dropped[k]) continue;
    out.mappings++;
    out.bytes += candidates[k].rssBytes;
  }
  return out;
}

}  // namespace lockagent
