// Giving back resident pages of read-only file mappings (filepages.cc). No Node types.
#ifndef LOCKAGENT_FILEPAGES_H_
#define LOCKAGENT_FILEPAGES_H_

#include <cstddef>
#include <cstdio>
#include <vector>

namespace lockagent {

struct FilePagesDropped {
  size_t mappings = 0;  // mappings given back
  size_t bytes = 0;     // their resident bytes before (from /proc/self/smaps)
  int err = 0;          // errno of opening /proc/self/smaps, 0 if it was read
};

// Drops this process's resident pages of private, read-only, file-backed mappings that hold no
// anonymous (copy-on-write) page, resident or swapped out: the code and read-only data of node, libc and the addons that
// start-up and a burst of requests touched and idling does not use. madvise(MADV_DONTNEED) on
// such a mapping loses nothing (every page equals the file's; the next touch maps it again from
// the page cache, a minor fault), and the pages stay in the page cache, clean and reclaimable.
// Writable mappings, shared ones, anonymous ones and any mapping with a copied page (RELRO after
// relocation, text relocations, node's --use-largepages copy) are left alone. Call it from the
// thread that loads shared objects (the JavaScript thread): a dlopen relocating a library while
// smaps is read would show its pages writable, so it is skipped, never half-dropped.
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
