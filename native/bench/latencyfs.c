/*
 * latencyfs: a FUSE passthrough of one directory that makes its storage behave like a slow
 * network filer, for the benchmarks in scripts/bench (nfs.js). Not part of lockagent.
 *
 *   latencyfs BACKING_DIR MOUNTPOINT [-o delay_us=N,bw=BYTES_PER_S] [-f] [other FUSE options]
 *
 * - Every open is direct_io: no page cache, so each read/write of the tools (sanlock and
 *   lockagent both open their lease files O_DIRECT) reaches this process as one request, as
 *   each would be one RPC on NFS with `noac`/O_DIRECT.
 * - Each read and write request sleeps delay_us plus size/bw seconds (bw 0: no cap) before it
 *   is answered. The delay is per request and the daemon is multithreaded, so concurrent
 *   requests wait side by side, as on a filer with a fixed round-trip time; the cap is per
 *   request too (it models the time a request's bytes take on the wire, not a shared link).
 * - Counters: the file /.latencyfs in the mount root (not in the backing directory) reads as
 *   "delay_us N\nbw N\nreads N\nread_bytes N\nwrites N\nwrite_bytes N\nfsyncs N\n
 *   writes_together_max N\n" (the most write requests served at once) and then
 *   one line per file opened since the start, "file NAME reads N read_bytes N writes N
 *   write_bytes N" (NAME relative to the mount, the first 64 files), so a benchmark can tell a
 *   lease file's I/O from the lockspace's renewals. Writing "reset" zeroes every counter,
 *   "delay_us=N" or "bw=N" changes a parameter for the requests that start afterwards. Access to
 *   it is neither delayed nor counted.
 *
 * Build: cc -O2 -Wall -o latencyfs latencyfs.c $(pkg-config --cflags --libs fuse3)
 * Unmount: fusermount3 -u MOUNTPOINT.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CTL_NAME "/.latencyfs"

struct opts {
  unsigned long delay_us;
  unsigned long bw;
};

static struct opts cfg;
static int backing = -1; /* O_PATH fd of the backing directory */
static uint64_t n_reads, n_read_bytes, n_writes, n_write_bytes, n_fsyncs;
/* Write requests being served now, and the most at once since the last reset. */
static uint64_t n_writes_now, n_writes_together_max;

/* Per-file counters, one slot per backing inode (first MAX_FILES files opened). */
#define MAX_FILES 64
struct slot {
  ino_t ino;
  dev_t dev;
  char name[128];
  uint64_t reads, read_bytes, writes, write_bytes;
};
static struct slot slots[MAX_FILES];
static int n_slots;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

/* What fi->fh points to: the backing fd and the file's counters (NULL past MAX_FILES). */
struct handle {
  int fd;
  struct slot *slot;
};
#define H(fi) ((struct handle *)(uintptr_t)(fi)->fh)

#define ADD(v, x) __atomic_add_fetch(&(v), (x), __ATOMIC_RELAXED)
#define GET(v) __atomic_load_n(&(v), __ATOMIC_RELAXED)
#define SET(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELAXED)

static const struct fuse_opt opt_spec[] = {
    {"delay_us=%lu", offsetof(struct opts, delay_us), 0},
    {"bw=%lu", offsetof(struct opts, bw), 0},
    FUSE_OPT_END,
};

/* The backing path of a FUSE path, relative to `backing` ("." for the root). */
static const char *rel(const char *path) {
  while (*path == '/') path++;
  return *path ? path : ".";
}

static int is_ctl(const char *path) { return strcmp(path, CTL_NAME) == 0; }

/* Sleep what one request of `bytes` costs: the round trip plus its bytes at the capped rate. */
static void delay(size_t bytes) {
  unsigned long d = GET(cfg.delay_us);
  unsigned long bw = GET(cfg.bw);
  uint64_t ns = (uint64_t)d * 1000;
  if (bw) ns += (uint64_t)bytes * 1000000000ull / bw;
  if (!ns) return;
  struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

#define CTL_SIZE (512 + MAX_FILES * 256)

static int ctl_text(char *buf, size_t size) {
  int n = snprintf(buf, size,
                   "delay_us %lu\nbw %lu\nreads %" PRIu64 "\nread_bytes %" PRIu64 "\nwrites %" PRIu64
                   "\nwrite_bytes %" PRIu64 "\nfsyncs %" PRIu64 "\nwrites_together_max %" PRIu64 "\n",
                   GET(cfg.delay_us), GET(cfg.bw), GET(n_reads), GET(n_read_bytes), GET(n_writes),
                   GET(n_write_bytes), GET(n_fsyncs), GET(n_writes_together_max));
  pthread_mutex_lock(&slots_lock);
  for (int i = 0; i < n_slots && n > 0 && (size_t)n < size; i++) {
    struct slot *s = &slots[i];
    n += snprintf(buf + n, size - (size_t)n,
                  "file %s reads %" PRIu64 " read_bytes %" PRIu64 " writes %" PRIu64 " write_bytes %" PRIu64 "\n",
                  s->name, GET(s->reads), GET(s->read_bytes), GET(s->writes), GET(s->write_bytes));
  }
  pthread_mutex_unlock(&slots_lock);
  return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

static struct slot *slot_of(int fd, const char *path) {
  struct stat st;
  if (fstat(fd, &st) == -1) return NULL;
  struct slot *found = NULL;
  pthread_mutex_lock(&slots_lock);
  for (int i = 0; i < n_slots; i++) {
    if (slots[i].ino == st.st_ino && slots[i].dev == st.st_dev) found = &slots[i];
  }
  if (!found && n_slots < MAX_FILES) {
    found = &slots[n_slots++];
    found->ino = st.st_ino;
    found->dev = st.st_dev;
    snprintf(found->name, sizeof(found->name), "%s", rel(path));
  }
  pthread_mutex_unlock(&slots_lock);
  return found;
}

static int new_handle(int fd, const char *path, struct fuse_file_info *fi) {
  struct handle *h = malloc(sizeof(*h));
  if (!h) {
    close(fd);
    return -ENOMEM;
  }
  h->fd = fd;
  h->slot = slot_of(fd, path);
  fi->fh = (uint64_t)(uintptr_t)h;
  return 0;
}

static void *lfs_init(struct fuse_conn_info *conn, struct fuse_config *c) {
  (void)conn;
  c->direct_io = 1;      /* every open: no page cache, every I/O a request */
  c->use_ino = 1;
  c->nullpath_ok = 1;
  c->entry_timeout = 1;  /* metadata may be cached briefly (NFS caches attributes too) */
  c->attr_timeout = 0;   /* sizes change under O_DIRECT writes */
  c->negative_timeout = 0;
  return NULL;
}

static int lfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (path && is_ctl(path)) {
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = 4096;
    return 0;
  }
  int r = fi && fi->fh != (uint64_t)-1 ? fstat(H(fi)->fd, st) : fstatat(backing, rel(path), st, AT_SYMLINK_NOFOLLOW);
  return r == -1 ? -errno : 0;
}

static int lfs_access(const char *path, int mask) {
  if (is_ctl(path)) return 0;
  return faccessat(backing, rel(path), mask, 0) == -1 ? -errno : 0;
}

static int lfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                       enum fuse_readdir_flags flags) {
  (void)off;
  (void)fi;
  (void)flags;
  int fd = openat(backing, rel(path), O_RDONLY | O_DIRECTORY);
  if (fd == -1) return -errno;
  DIR *d = fdopendir(fd);
  if (!d) {
    int e = errno;
    close(fd);
    return -e;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)de->d_type << 12};
    if (fill(buf, de->d_name, &st, 0, 0)) break;
  }
  closedir(d);
  return 0;
}

static int lfs_mkdir(const char *path, mode_t mode) { return mkdirat(backing, rel(path), mode) == -1 ? -errno : 0; }
static int lfs_unlink(const char *path) { return unlinkat(backing, rel(path), 0) == -1 ? -errno : 0; }
static int lfs_rmdir(const char *path) { return unlinkat(backing, rel(path), AT_REMOVEDIR) == -1 ? -errno : 0; }

static int lfs_rename(const char *from, const char *to, unsigned int flags) {
  return renameat2(backing, rel(from), backing, rel(to), flags) == -1 ? -errno : 0;
}

static int lfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  int r = fi ? fchmod(H(fi)->fd, mode) : fchmodat(backing, rel(path), mode, 0);
  return r == -1 ? -errno : 0;
}

static int lfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  int r = fi ? fchown(H(fi)->fd, uid, gid) : fchownat(backing, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW);
  return r == -1 ? -errno : 0;
}

static int lfs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  if (path && is_ctl(path)) return 0;
  int r;
  if (fi) {
    r = ftruncate(H(fi)->fd, size);
  } else {
    int fd = openat(backing, rel(path), O_WRONLY);
    if (fd == -1) return -errno;
    r = ftruncate(fd, size);
    if (r == -1) r = -errno;
    close(fd);
    return r;
  }
  return r == -1 ? -errno : 0;
}

static int lfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi) {
  int r = fi ? futimens(H(fi)->fd, tv) : utimensat(backing, rel(path), tv, AT_SYMLINK_NOFOLLOW);
  return r == -1 ? -errno : 0;
}

/* O_DIRECT is dropped on the backing open: the backing file system may not support it (tmpfs),
 * and direct_io already keeps this layer uncached; the delay stands for the filer's latency. */
static int lfs_open(const char *path, struct fuse_file_info *fi) {
  fi->direct_io = 1;
  if (is_ctl(path)) {
    fi->fh = (uint64_t)-1;
    return 0;
  }
  int fd = openat(backing, rel(path), fi->flags & ~(O_DIRECT | O_NOFOLLOW));
  if (fd == -1) return -errno;
  return new_handle(fd, path, fi);
}

static int lfs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  fi->direct_io = 1;
  int fd = openat(backing, rel(path), (fi->flags & ~O_DIRECT) | O_CREAT, mode);
  if (fd == -1) return -errno;
  return new_handle(fd, path, fi);
}

static int lfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  if (fi->fh == (uint64_t)-1) {
    (void)path;
    static char text[CTL_SIZE]; /* the control file is read by one benchmark at a time */
    int n = ctl_text(text, sizeof(text));
    if (off >= n) return 0;
    size_t len = (size_t)(n - off) < size ? (size_t)(n - off) : size;
    memcpy(buf, text + off, len);
    return (int)len;
  }
  delay(size);
  struct handle *h = H(fi);
  ssize_t r = pread(h->fd, buf, size, off);
  if (r == -1) return -errno;
  ADD(n_reads, 1);
  ADD(n_read_bytes, (uint64_t)r);
  if (h->slot) {
    ADD(h->slot->reads, 1);
    ADD(h->slot->read_bytes, (uint64_t)r);
  }
  return (int)r;
}

static int lfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  if (fi->fh == (uint64_t)-1) {
    char cmd[64];
    size_t n = size < sizeof(cmd) - 1 ? size : sizeof(cmd) - 1;
    memcpy(cmd, buf, n);
    cmd[n] = 0;
    unsigned long v;
    if (strncmp(cmd, "reset", 5) == 0) {
      SET(n_reads, 0);
      SET(n_read_bytes, 0);
      SET(n_writes, 0);
      SET(n_write_bytes, 0);
      SET(n_fsyncs, 0);
      SET(n_writes_together_max, 0);
      pthread_mutex_lock(&slots_lock);
      for (int i = 0; i < n_slots; i++) {
        SET(slots[i].reads, 0);
        SET(slots[i].read_bytes, 0);
        SET(slots[i].writes, 0);
        SET(slots[i].write_bytes, 0);
      }
      pthread_mutex_unlock(&slots_lock);
    } else if (sscanf(cmd, "delay_us=%lu", &v) == 1) {
      SET(cfg.delay_us, v);
    } else if (sscanf(cmd, "bw=%lu", &v) == 1) {
      SET(cfg.bw, v);
    } else {
      return -EINVAL;
    }
    return (int)size;
  }
  uint64_t now = ADD(n_writes_now, 1);
  uint64_t max = GET(n_writes_together_max);
  while (now > max && !__atomic_compare_exchange_n(&n_writes_together_max, &max, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  delay(size);
  __atomic_sub_fetch(&n_writes_now, 1, __ATOMIC_RELAXED);
  struct handle *h = H(fi);
  ssize_t r = pwrite(h->fd, buf, size, off);
  if (r == -1) return -errno;
  ADD(n_writes, 1);
  ADD(n_write_bytes, (uint64_t)r);
  if (h->slot) {
    ADD(h->slot->writes, 1);
    ADD(h->slot->write_bytes, (uint64_t)r);
  }
  return (int)r;
}

static int lfs_statfs(const char *path, struct statvfs *st) {
  (void)path;
  return fstatvfs(backing, st) == -1 ? -errno : 0;
}

static int lfs_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  if (fi->fh != (uint64_t)-1) {
    close(H(fi)->fd);
    free(H(fi));
  }
  return 0;
}

static int lfs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  if (fi->fh == (uint64_t)-1) return 0;
  ADD(n_fsyncs, 1);
  int r = datasync ? fdatasync(H(fi)->fd) : fsync(H(fi)->fd);
  return r == -1 ? -errno : 0;
}

static int lfs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  (void)path;
  if (fi->fh == (uint64_t)-1) return -EOPNOTSUPP;
  return fallocate(H(fi)->fd, mode, off, len) == -1 ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = lfs_init,
    .getattr = lfs_getattr,
    .access = lfs_access,
    .readdir = lfs_readdir,
    .mkdir = lfs_mkdir,
    .unlink = lfs_unlink,
    .rmdir = lfs_rmdir,
    .rename = lfs_rename,
    .chmod = lfs_chmod,
    .chown = lfs_chown,
    .truncate = lfs_truncate,
    .utimens = lfs_utimens,
    .open = lfs_open,
    .create = lfs_create,
    .read = lfs_read,
    .write = lfs_write,
    .statfs = lfs_statfs,
    .release = lfs_release,
    .fsync = lfs_fsync,
    .fallocate = lfs_fallocate,
};

int main(int argc, char *argv[]) {
  if (argc < 3 || argv[1][0] == '-') {
    fprintf(stderr, "usage: %s BACKING_DIR MOUNTPOINT [-o delay_us=N,bw=BYTES_PER_S] [-f] [FUSE options]\n", argv[0]);
    return 2;
  }
  backing = open(argv[1], O_PATH | O_DIRECTORY);
  if (backing == -1) {
    perror(argv[1]);
    return 1;
  }
  /* drop BACKING_DIR from the arguments FUSE parses */
  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  fuse_opt_add_arg(&args, argv[0]);
  for (int i = 2; i < argc; i++) fuse_opt_add_arg(&args, argv[i]);
  if (fuse_opt_parse(&args, &cfg, opt_spec, NULL) == -1) return 2;
  int r = fuse_main(args.argc, args.argv, &ops, NULL);
  fuse_opt_free_args(&args);
  return r;
}
