// Giving back resident pages of read-only file mappings (filepages.cc). No Node types.
#ifndef LOCKAGENT_FILEPAGES_H_
#define LOCKAGENT_FILEPAGES_H_

#include <cstddef>
#include <cstdio>
#include <vector>

namespace lockagent {

struct FilePagesDropped {
  size_t mappings = 0;  // mappings given back (all or part)
  size_t bytes = 0;     // their resident bytes before (from /proc/self/smaps): an upper bound
  int err = 0;          // errno of opening /proc/self/smaps, 0 if it was read
};

// Drops this process's resident pages of private, read-only, file-backed mappings that hold no
// anonymous (copy-on-write) page, resident or swapped out: the code and read-only data of node, libc and the addons that
// start-up and a burst of requests touched and idling does not use. madvise(MADV_DONTNEED) on
// such a mapping loses nothing (every page equals the file's; the next touch maps it again from
// the page cache, a minor fault), and the pages stay in the page cache, clean and reclaimable.
// Writable mappings, shared ones, anonymous ones and any mapping with a copied page (RELRO after
// relocation, text relocations, node's --use-largepages copy) are left alone. Only the read-only
// segments of objects the loader has loaded are dropped, under the loader's lock (see
// dropObjectSegments), so a mapping another thread replaced after smaps was read is never
// touched. A drop costs its caller the next touches: they fault the pages back in.
FilePagesDropped dropCleanFilePages();

// What dropCleanFilePages would drop, given smaps text in the kernel's format: [start, end) and
// the resident bytes of each mapping. Reads f to its end.
struct FileMapping {
  unsigned long start = 0, end = 0;
  size_t rssBytes = 0;
};
std::vector<FileMapping> droppableMappings(FILE* smaps);

}  // namespace lockagent

#endif  // LOCKAGENT_FILEPAGES_H_
