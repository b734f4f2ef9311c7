// See filepages.h.
#include "filepages.h"

#include <errno.h>
#include <sys/mman.h>

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
  while (fgets(line, sizeof line, f)) {
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
    // a line longer than the buffer (a very long path) leaves the rest for the next fgets, which
    // parses as nothing
  }
  finish();
  return out;
}

FilePagesDropped dropCleanFilePages() {
  FilePagesDropped out;
  FILE* f = fopen("/proc/self/smaps", "re");
  if (!f) {
    out.err = errno;
    return out;
  }
  // Chosen first, dropped after the file is closed: smaps describes the mappings as they are
  // while it is read, and the drop must not change what is being read.
  std::vector<FileMapping> drop = droppableMappings(f);
  fclose(f);
  for (const FileMapping& m : drop) {
    if (madvise(reinterpret_cast<void*>(m.start), m.end - m.start, MADV_DONTNEED) == 0) {
      out.mappings++;
      out.bytes += m.rssBytes;
    }
  }
  return out;
}

}  // namespace lockagent
