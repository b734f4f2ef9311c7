/*
 * lockagent-guard: the fencing guard (docs/fencing.md). A small process that does not share the
 * agent's fate: the agent tells it, per lockspace, which owner pids hold leases there and the
 * deadline by which they must be gone (host_dead after the start of the last successful renewal,
 * minus a margin). Each renewal moves the deadline. If a deadline passes — the agent is stopped,
 * killed, hung, or cannot renew — the guard SIGKILLs every owner pid of that lockspace before
 * another host may take the leases, logs each kill, and reports it to the agent when it is back.
 *
 *   lockagent-guard --socket PATH [--mode enforce|log] [--idle-exit SECONDS]
 *
 * Plain C, libc only. Memory is locked (mlockall, current and future), the OOM score is -1000,
 * and the kill path does no storage I/O and no allocation: it reads /proc/<pid>/stat into a
 * static buffer (to never kill a reused pid), calls kill(2) and writes a preformatted line to
 * stderr and to /dev/log. A lockspace's pid table and a client's line buffer grow when a
 * request needs it (never on the kill path), up to MAX_PIDS pids per lockspace and the line
 * length that implies; an idle guard holds a few kilobytes.
 *
 * Deadlines are kept on CLOCK_BOOTTIME: other hosts' clocks run on while this host is
 * suspended, so a suspend must count against the deadline (CLOCK_MONOTONIC stops). The agent
 * sends deadlines on CLOCK_MONOTONIC (the clock its delta-lease timestamps use); they are
 * converted on receipt, which follows a renewal by milliseconds.
 *
 * Protocol: one line per message each way, on a unix stream socket (mode 0600; the peer must
 * be root or our own uid, checked with SO_PEERCRED):
 *   HELLO <agent-pid> <enforce|log>           -> HELLO <guard-pid> <mode> pidfile, then ARMED <ls>
 *                                                <ms-left> <npids> per armed lockspace, KILLED
 *                                                lines not yet reported, END
 *   SET <ls> <deadline-ms-monotonic> <pid>:<starttime>... @<pidfile-hex>/<uuid>...
 *                                             (no owners = disarm). An @ token is an owner
 *                                                whose process does not exist yet (a domain
 *                                                between libvirt's `prepare` and QEMU's start):
 *                                                at the deadline the guard reads the pid from
 *                                                <pidfile> (hex-encoded path) and kills it only
 *                                                if its command line carries `-uuid <uuid>`, as
 *                                                libvirt starts QEMU. Sent only to a guard whose
 *                                                HELLO names the "pidfile" feature
 *                                             -> OK <ls> <smallest-margin-ms or -1>; ERR (more
 *                                                than MAX_PIDS pids, a line longer than
 *                                                LINE_CAP, a bad pid, no memory) disarms <ls>:
 *                                                the guard never keeps pids older than the
 *                                                agent's, and the connection stays open
 *   DEADLINE <ls> <deadline-ms-monotonic>     -> as SET with the pids the last SET gave: moves
 *                                                the deadline only (a renewal with the same
 *                                                owners, without resending thousands of pids);
 *                                                ERR when <ls> has no pids here (never SET,
 *                                                cleared, or a guard started since): send SET.
 *                                                A guard older than DEADLINE answers
 *                                                "ERR unknown request"; the agent then uses SET.
 *   CLEAR <ls>                                -> OK <ls> -1
 * and, pushed to every connected agent when a deadline passes:
 *   KILLED <ls> <pid> <0 killed | 1 would-kill (log mode) | 2 skipped> <ms-ago>
 * If the agent disconnects, the last deadlines stay armed: that is the point.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LS 64
/* owner pids per lockspace (each lockagent client owner with a pid counts) */
#define MAX_PIDS 65536
#define NAME_MAX_LEN 48
#define MAX_CLIENTS 4
/* "<pid>:<starttime> " is at most 7 + 1 + 20 + 1 = 29 bytes (pid_max is at most 2^22) */
#define PID_TOKEN_MAX 32
#define LINE_CAP ((size_t)MAX_PIDS * PID_TOKEN_MAX + 256)
#define LINE_INITIAL 4096
#define MAX_RECORDS 256
/* owners known by a pid file (no process yet) per lockspace: domains being started at once */
#define MAX_PENDING 1024
#define PIDFILE_MAX 256
#define UUID_LEN 36

struct owner_pid {
  pid_t pid;
  unsigned long long start;
};

/* An owner whose process does not exist yet: libvirt's QEMU pid file and the domain's uuid. */
struct pending_owner {
  char pidfile[PIDFILE_MAX];
  char uuid[UUID_LEN + 1];
  int done;  /* killed (or, in log mode, reported as would-kill) since the deadline passed */
  /* why the last look killed nothing (1 no process, 2 not the domain's QEMU: why_pid), so that
   * a reason is logged and reported once, not at every look */
  int why;
  pid_t why_pid;
};

/* How often a passed deadline looks again for pending owners not killed yet: libvirt writes the
 * pid file for its forked child before that child becomes QEMU (cgroups and disk labels come
 * first), so "no process yet" or "not QEMU yet" can turn into a QEMU holding the disks later. */
#define PENDING_RECHECK_MS 250

struct lockspace {
  char name[NAME_MAX_LEN + 1];
  int used;
  int armed;  /* has pids and a deadline */
  int fired;  /* the deadline passed (log mode keeps the entry to measure the margin) */
  int64_t deadline; /* CLOCK_BOOTTIME ms */
  int64_t min_margin; /* smallest (previous deadline - time of update) seen, ms; INT64_MAX = none */
  int npids;
  int cap; /* entries allocated in pids */
  struct owner_pid *pids;
  int npending;
  int pcap; /* entries allocated in pending */
  struct pending_owner *pending;
  int watching; /* the deadline passed and pending owners are not all killed: look again */
};

/* owners the lockspace's deadline fences: pids, and owners known by a pid file */
static int owners_of(const struct lockspace *ls) { return ls->npids + ls->npending; }

struct record {
  char name[NAME_MAX_LEN + 1];
  pid_t pid;
  int what; /* 0 killed, 1 would kill, 2 skipped (gone or reused) */
  int64_t at;
  int reported;
};

struct client {
  int fd;
  size_t n;   /* bytes in `in` */
  size_t cap; /* bytes allocated for `in` (grows to LINE_CAP + 1) */
  char *in;
  /* a line longer than LINE_CAP: its start (the request and lockspace), the rest is discarded
   * up to its newline, then answered with ERR */
  int discarding;
  char head[NAME_MAX_LEN + 64];
};

static struct lockspace spaces[MAX_LS];
static struct record records[MAX_RECORDS];
static unsigned records_next;
static struct client clients[MAX_CLIENTS];
static char statbuf[1024];
/* a QEMU command line is read through this window (the kill path allocates nothing) */
static char cmdbuf[16384];
static char logline[512];
static char outline[512];
static const char *sock_path;
static int listen_fd = -1;
static ino_t listen_ino;
static int log_fd = -1;
static int log_mode; /* 1: log the kills, do not make them */
static int idle_exit_s;

static int64_t now_ms(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- logging: stderr (journal under systemd) and /dev/log, no allocation -------------------- */

static void connect_syslog(void) {
  if (log_fd >= 0) return;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, "/dev/log");
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    close(fd);
    return;
  }
  log_fd = fd;
}

/* prio: syslog severity (2 crit, 3 err, 4 warning, 6 info) */
static void logf_(int prio, const char *fmt, ...) {
  char *msg = logline + 64;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof logline - 64, fmt, ap);
  va_end(ap);
  static const char *names[] = {"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"};
  char line[600];
  int n = snprintf(line, sizeof line, "lockagent-guard[%d] %s: %s\n", (int)getpid(), names[prio & 7], msg);
  if (n > 0) (void)!write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
  connect_syslog();
  if (log_fd >= 0) {
    n = snprintf(line, sizeof line, "<%d>lockagent-guard[%d]: %s", 3 * 8 + (prio & 7), (int)getpid(), msg);
    if (n > 0 && send(log_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN) {
      close(log_fd);
      log_fd = -1;
    }
  }
}

/* ---- clients ----------------------------------------------------------------------------------- */

static void drop_client(struct client *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->n = 0;
  c->discarding = 0;
  free(c->in);
  c->in = NULL;
  c->cap = 0;
}

static void send_line(struct client *c, const char *s) {
  size_t len = strlen(s);
  /* never block on an agent that is stopped: drop it instead, it reconnects and says HELLO */
  if (send(c->fd, s, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) drop_client(c);
}

static int any_client(void) {
  for (int i = 0; i < MAX_CLIENTS; i++)
    if (clients[i].fd >= 0) return 1;
  return 0;
}

/* ---- the kill path -------------------------------------------------------------------------- */

/* Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); 0 when unreadable. */
static unsigned long long proc_start(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, statbuf, sizeof statbuf - 1);
  close(fd);
  if (n <= 0) return 0;
  statbuf[n] = 0;
  char *p = strrchr(statbuf, ')');
  if (!p) return 0;
  p++;
  /* after ")" come fields 3..; the start time is field 22 */
  for (int field = 3; field < 22; field++) {
    p = strchr(p + 1, ' ');
    if (!p) return 0;
  }
  return strtoull(p + 1, NULL, 10);
}

static void record(const struct lockspace *ls, pid_t pid, int what, int64_t at) {
  struct record *r = &records[records_next++ % MAX_RECORDS];
  memcpy(r->name, ls->name, sizeof r->name);
  r->pid = pid;
  r->what = what;
  r->at = at;
  r->reported = 0;
  if (any_client()) {
    snprintf(outline, sizeof outline, "KILLED %.48s %d %d 0\n", r->name, (int)pid, what);
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i].fd >= 0) send_line(&clients[i], outline);
    r->reported = 1;
  }
}

/* The pid a pid file names (libvirt writes "<pid>\n"); 0 when absent or unreadable. */
static pid_t pidfile_pid(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return 0;
  ssize_t n = read(fd, statbuf, 32);
  close(fd);
  if (n <= 0) return 0;
  statbuf[n] = 0;
  char *end = NULL;
  long pid = strtol(statbuf, &end, 10);
  return end != statbuf && pid > 1 && pid < (1L << 22) ? (pid_t)pid : 0;
}

/* Whether /proc/<pid>/cmdline holds the arguments "-uuid" "<uuid>" (NUL-separated), read through
 * cmdbuf with an overlap so a match across two reads is found. */
static int cmdline_has_uuid(pid_t pid, const char *uuid) {
  /* NUL, "-uuid", NUL, the uuid, NUL: whole arguments only (argv[0] is never "-uuid") */
  char needle[8 + UUID_LEN + 2];
  size_t nlen = (size_t)snprintf(needle, sizeof needle, "%c-uuid%c%s", 0, 0, uuid) + 1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  size_t have = 0;
  int found = 0;
  for (;;) {
    ssize_t n = read(fd, cmdbuf + have, sizeof cmdbuf - have);
    if (n <= 0) break;
    have += (size_t)n;
    if (have >= nlen && memmem(cmdbuf, have, needle, nlen)) {
      found = 1;
      break;
    }
    if (have > nlen) {
      memmove(cmdbuf, cmdbuf + have - (nlen - 1), nlen - 1);
      have = nlen - 1;
    }
  }
  close(fd);
  return found;
}

/* An owner known by its pid file: kill the process the file names if it is the owner's; 1 once
 * done. Why nothing was killed (yet) is logged and reported when it changes. */
static int fire_pending(struct lockspace *ls, struct pending_owner *o, int64_t now, int64_t late) {
  pid_t pid = pidfile_pid(o->pidfile);
  if (!pid) {
    if (o->why != 1) {
      o->why = 1;
      logf_(6, "lockspace %s: deadline passed; no process in %s yet (domain %s not started): nothing to kill, looking again every %d ms",
            ls->name, o->pidfile, o->uuid, PENDING_RECHECK_MS);
      record(ls, 0, 2, now);
    }
    return 0;
  }
  /* pidfd first, then the command line: the signal can only reach the process that was checked */
  int pfd = -1;
#ifdef SYS_pidfd_open
  pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
  if (!cmdline_has_uuid(pid, o->uuid)) {
    if (pfd >= 0) close(pfd);
    if (o->why != 2 || o->why_pid != pid) {
      o->why = 2;
      o->why_pid = pid;
      logf_(6, "lockspace %s: deadline passed; pid %d in %s is not domain %s's QEMU (no -uuid %s on its command line): nothing to kill, looking again every %d ms",
            ls->name, (int)pid, o->pidfile, o->uuid, o->uuid, PENDING_RECHECK_MS);
      record(ls, pid, 2, now);
    }
    return 0;
  }
  if (log_mode) {
    if (pfd >= 0) close(pfd);
    logf_(4, "lockspace %s: would SIGKILL pid %d (QEMU of domain %s, from %s; fencing_mode = log): no lease renewal reached the guard; the deadline passed %lld ms ago, "
          "other hosts may take its leases at host_dead", ls->name, (int)pid, o->uuid, o->pidfile, (long long)late);
    record(ls, pid, 1, now);
    return 1;
  }
  int rc = -1;
#ifdef SYS_pidfd_send_signal
  if (pfd >= 0) rc = (int)syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
  else
#endif
    rc = kill(pid, SIGKILL);
  if (pfd >= 0) close(pfd);
  logf_(2, "lockspace %s: SIGKILL pid %d (QEMU of domain %s, from %s)%s: no lease renewal reached the guard; the deadline passed %lld ms ago (host_dead minus the margin), "
        "other hosts may take its leases at host_dead", ls->name, (int)pid, o->uuid, o->pidfile, rc == 0 ? "" : " failed", (long long)late);
  record(ls, pid, rc == 0 ? 0 : 2, now);
  return rc == 0;
}

/* Pending owners of a lockspace whose deadline passed: look again until each is killed. */
static void watch_pending(struct lockspace *ls, int64_t now) {
  int left = 0;
  for (int i = 0; i < ls->npending; i++) {
    struct pending_owner *o = &ls->pending[i];
    if (!o->done) o->done = fire_pending(ls, o, now, now - ls->deadline);
    left += !o->done;
  }
  ls->watching = left > 0;
}

static void fire(struct lockspace *ls, int64_t now) {
  int64_t late = now - ls->deadline;
  for (int i = 0; i < ls->npids; i++) {
    pid_t pid = ls->pids[i].pid;
    unsigned long long st = proc_start(pid);
    if (st == 0 || st != ls->pids[i].start) {
      logf_(6, "lockspace %s: deadline passed; pid %d is gone (or its pid was reused), nothing to kill", ls->name, (int)pid);
      record(ls, pid, 2, now);
      continue;
    }
    if (log_mode) {
      logf_(4, "lockspace %s: would SIGKILL pid %d (fencing_mode = log): no lease renewal reached the guard; the deadline passed %lld ms ago, "
            "other hosts may take its leases at host_dead", ls->name, (int)pid, (long long)late);
      record(ls, pid, 1, now);
      continue;
    }
    int rc = kill(pid, SIGKILL);
    logf_(2, "lockspace %s: SIGKILL pid %d%s: no lease renewal reached the guard; the deadline passed %lld ms ago (host_dead minus the margin), "
          "other hosts may take its leases at host_dead", ls->name, (int)pid, rc == 0 ? "" : " failed", (long long)late);
    record(ls, pid, rc == 0 ? 0 : 2, now);
  }
  ls->watching = ls->npending > 0; /* looked at by check_deadlines, after every lockspace's pids */
  ls->fired = 1;
  /* enforce: the pids are dead; log mode keeps the deadline so the next SET measures the margin */
  if (!log_mode) ls->armed = 0;
}

static void check_deadlines(void) {
  int64_t now = now_ms(CLOCK_BOOTTIME);
  for (int i = 0; i < MAX_LS; i++) {
    struct lockspace *ls = &spaces[i];
    if (ls->used && ls->armed && !ls->fired && now >= ls->deadline) fire(ls, now);
  }
  /* Then owners known by a pid file: reading it and /proc/<pid>/cmdline must not hold up the
   * pid owners of any lockspace. */
  for (int i = 0; i < MAX_LS; i++) {
    struct lockspace *ls = &spaces[i];
    if (ls->used && ls->watching) watch_pending(ls, now);
  }
}

static int next_timeout_ms(void) {
  int64_t now = now_ms(CLOCK_BOOTTIME), t = 1000;
  for (int i = 0; i < MAX_LS; i++) {
    struct lockspace *ls = &spaces[i];
    if (ls->used && ls->armed && !ls->fired && ls->deadline - now < t) t = ls->deadline - now;
    if (ls->used && ls->watching && t > PENDING_RECHECK_MS) t = PENDING_RECHECK_MS;
  }
  return t < 0 ? 0 : (int)t;
}

/* ---- requests --------------------------------------------------------------------------------- */

static struct lockspace *find_ls(const char *name, int create) {
  struct lockspace *free_ls = NULL;
  for (int i = 0; i < MAX_LS; i++) {
    if (spaces[i].used && strcmp(spaces[i].name, name) == 0) return &spaces[i];
    if (!spaces[i].used && !free_ls) free_ls = &spaces[i];
  }
  if (!create || !free_ls) return NULL;
  memset(free_ls->name, 0, sizeof free_ls->name);
  strncpy(free_ls->name, name, NAME_MAX_LEN);
  free_ls->used = 1;
  free_ls->armed = 0;
  free_ls->fired = 0;
  free_ls->npids = 0;
  free_ls->cap = 0;
  free_ls->pids = NULL;
  free_ls->npending = 0;
  free_ls->pcap = 0;
  free_ls->pending = NULL;
  free_ls->watching = 0;
  free_ls->min_margin = INT64_MAX;
  return free_ls;
}

/* Forget a lockspace (CLEAR, or a refused SET): disarmed, its pid table freed. */
static void forget_ls(struct lockspace *ls) {
  free(ls->pids);
  ls->pids = NULL;
  ls->cap = 0;
  ls->npids = 0;
  free(ls->pending);
  ls->pending = NULL;
  ls->pcap = 0;
  ls->npending = 0;
  ls->watching = 0;
  ls->armed = 0;
  ls->used = 0;
}

/* Room for n pids (n <= MAX_PIDS): grows by doubling, gives back most of a table 4x too big.
 * Under mlockall(MCL_FUTURE) the new pages are locked too (or the allocation fails). */
static int reserve_pids(struct lockspace *ls, int n) {
  int want = ls->cap;
  if (n > ls->cap) {
    want = ls->cap ? ls->cap : 16;
    while (want < n) want *= 2;
    if (want > MAX_PIDS) want = MAX_PIDS;
  } else if (ls->cap > 64 && n < ls->cap / 4) {
    want = n < 16 ? 16 : n;
  }
  if (want == ls->cap) return 0;
  struct owner_pid *p = realloc(ls->pids, (size_t)want * sizeof *p);
  if (!p) return n > ls->cap ? -1 : 0; /* a failed shrink keeps the larger table */
  ls->pids = p;
  ls->cap = want;
  return 0;
}

/* Room for n pending owners (n <= MAX_PENDING), as reserve_pids. */
static int reserve_pending(struct lockspace *ls, int n) {
  if (n <= ls->pcap && !(ls->pcap > 16 && n < ls->pcap / 4)) return 0;
  int want = n < 4 ? 4 : n;
  struct pending_owner *p = realloc(ls->pending, (size_t)want * sizeof *p);
  if (!p) return n > ls->pcap ? -1 : 0;
  ls->pending = p;
  ls->pcap = want;
  return 0;
}

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "@<hex of an absolute path>/<uuid>" into o (o may be NULL: check only); 0 when well formed. */
static int parse_pending(const char *tok, size_t len, struct pending_owner *o) {
  const char *slash = memchr(tok, '/', len);
  if (tok[0] != '@' || !slash) return -1;
  size_t hex = (size_t)(slash - tok - 1), ulen = len - (size_t)(slash - tok) - 1;
  if (hex < 4 || hex % 2 || hex / 2 >= PIDFILE_MAX || ulen != UUID_LEN) return -1;
  char path[PIDFILE_MAX];
  for (size_t i = 0; i < hex / 2; i++) {
    int hi = hexval(tok[1 + 2 * i]), lo = hexval(tok[2 + 2 * i]);
    if (hi < 0 || lo < 0 || (hi | lo) == 0) return -1; /* no NUL inside a path */
    path[i] = (char)(hi * 16 + lo);
  }
  path[hex / 2] = 0;
  if (path[0] != '/') return -1;
  for (size_t i = 0; i < ulen; i++) {
    char c = slash[1 + i];
    if (!(hexval(c) >= 0 || c == '-')) return -1;
  }
  if (o) {
    memcpy(o->pidfile, path, hex / 2 + 1);
    memcpy(o->uuid, slash + 1, UUID_LEN);
    o->uuid[UUID_LEN] = 0;
    o->done = o->why = 0;
  }
  return 0;
}

static void reply_ok(struct client *c, const struct lockspace *ls) {
  snprintf(outline, sizeof outline, "OK %.48s %lld\n", ls ? ls->name : "-",
           ls && ls->min_margin != INT64_MAX ? (long long)ls->min_margin : -1LL);
  send_line(c, outline);
}

static void reply_err(struct client *c, const char *msg) {
  snprintf(outline, sizeof outline, "ERR %.400s\n", msg);
  send_line(c, outline);
}

/* The end of SET and DEADLINE: arm <ls> (when it has pids) at the new deadline. */
static void move_deadline(struct client *c, struct lockspace *ls, int64_t deadline, int64_t now_b) {
  /* how close the previous deadline came to passing before this update moved it */
  if (ls->armed && owners_of(ls) > 0) {
    int64_t margin = ls->deadline - now_b;
    if (margin < ls->min_margin) ls->min_margin = margin;
    if (margin < 0 && log_mode) logf_(4, "lockspace %s: renewal reached the guard %lld ms after its deadline", ls->name, (long long)-margin);
  }
  ls->armed = owners_of(ls) > 0;
  ls->fired = 0;
  /* the agent is back: pending owners wait for the new deadline (DEADLINE keeps them) */
  ls->watching = 0;
  for (int i = 0; i < ls->npending; i++) ls->pending[i].done = ls->pending[i].why = 0;
  ls->deadline = deadline;
  reply_ok(c, ls);
}

/* A SET the guard cannot take: its lockspace is disarmed (the agent knows from the ERR that those
 * owners are not fenced), and the error is logged once per refusal. */
static void refuse_set(struct client *c, const char *name, const char *why) {
  struct lockspace *ls = strlen(name) > NAME_MAX_LEN ? NULL : find_ls(name, 0);
  int had = ls && ls->armed && owners_of(ls) > 0;
  if (ls) forget_ls(ls);
  logf_(3, "lockspace %.48s: refused SET: %s; its owners are not fenced by the guard%s", name, why,
        had ? " (its previous pids are disarmed)" : "");
  snprintf(outline, sizeof outline, "ERR lockspace %.48s: %.300s\n", name, why);
  send_line(c, outline);
}

static void handle_set(struct client *c, char *args) {
  char *save = NULL;
  char *name = strtok_r(args, " ", &save);
  char *dl = name ? strtok_r(NULL, " ", &save) : NULL;
  if (!name || !dl || strlen(name) > NAME_MAX_LEN) return reply_err(c, "SET needs <lockspace> <deadline-ms> [pid:start...]");
  char *rest = save; /* the pids (strtok_r leaves it just past the deadline) */
  /* check every pid before the table changes: a refused SET never leaves half a table */
  int n = 0, npending = 0;
  for (char *p = rest; p && *p;) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end = strchr(p, ' ');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (*p == '@') {
      if (parse_pending(p, len, NULL) < 0) return refuse_set(c, name, "an owner without a pid must be @<pid-file-path-hex>/<uuid>");
      if (++npending > MAX_PENDING) {
        char why[160];
        snprintf(why, sizeof why, "too many owners known by a pid file in one lockspace (more than %d)", MAX_PENDING);
        return refuse_set(c, name, why);
      }
      p += len;
      continue;
    }
    char *colon = memchr(p, ':', len);
    if (!colon || colon == p || colon + 1 == p + len) return refuse_set(c, name, "pid must be <pid>:<starttime>");
    if (++n > MAX_PIDS) {
      char why[160];
      snprintf(why, sizeof why, "too many pids in one lockspace (more than %d)", MAX_PIDS);
      return refuse_set(c, name, why);
    }
    p += len;
  }
  struct lockspace *ls = find_ls(name, 1);
  if (!ls) return reply_err(c, "too many lockspaces (64)");
  if (reserve_pids(ls, n) < 0 || reserve_pending(ls, npending) < 0) return refuse_set(c, name, "out of memory for its pid table (locked memory: check LimitMEMLOCK / ulimit -l)");
  int64_t now_b = now_ms(CLOCK_BOOTTIME);
  int64_t deadline = strtoll(dl, NULL, 10) + (now_b - now_ms(CLOCK_MONOTONIC));
  int i = 0, k = 0;
  char *tok;
  while ((i < n || k < npending) && (tok = strtok_r(NULL, " ", &save)) != NULL) {
    if (*tok == '@') {
      parse_pending(tok, strlen(tok), &ls->pending[k++]);
      continue;
    }
    ls->pids[i].pid = (pid_t)atoi(tok);
    ls->pids[i].start = strtoull(strchr(tok, ':') + 1, NULL, 10);
    i++;
  }
  ls->npids = i;
  ls->npending = k;
  move_deadline(c, ls, deadline, now_b);
}

/* Only the deadline moves: the pid table is the last SET's, untouched. */
static void handle_deadline(struct client *c, char *args) {
  char *save = NULL;
  char *name = strtok_r(args, " ", &save);
  char *dl = name ? strtok_r(NULL, " ", &save) : NULL;
  if (!name || !dl || strtok_r(NULL, " ", &save)) return reply_err(c, "DEADLINE needs <lockspace> <deadline-ms>");
  struct lockspace *ls = strlen(name) > NAME_MAX_LEN ? NULL : find_ls(name, 0);
  if (!ls || owners_of(ls) == 0) {
    snprintf(outline, sizeof outline, "ERR lockspace %.48s has no pids here: send SET\n", name);
    return send_line(c, outline);
  }
  int64_t now_b = now_ms(CLOCK_BOOTTIME);
  move_deadline(c, ls, strtoll(dl, NULL, 10) + (now_b - now_ms(CLOCK_MONOTONIC)), now_b);
}

static void handle_line(struct client *c, char *line) {
  if (strncmp(line, "SET ", 4) == 0) return handle_set(c, line + 4);
  if (strncmp(line, "DEADLINE ", 9) == 0) return handle_deadline(c, line + 9);
  if (strncmp(line, "CLEAR ", 6) == 0) {
    struct lockspace *ls = find_ls(line + 6, 0);
    if (ls) forget_ls(ls);
    snprintf(outline, sizeof outline, "OK %.48s -1\n", line + 6);
    return send_line(c, outline);
  }
  if (strncmp(line, "HELLO ", 6) == 0) {
    int agent = atoi(line + 6);
    const char *mode = strchr(line + 6, ' ');
    int want_log = mode && strcmp(mode + 1, "log") == 0;
    if (want_log != log_mode) logf_(5, "fencing mode is now %s (set by the agent)", want_log ? "log" : "enforce");
    log_mode = want_log;
    logf_(6, "agent pid %d registered", agent);
    snprintf(outline, sizeof outline, "HELLO %d %s pidfile\n", (int)getpid(), log_mode ? "log" : "enforce");
    send_line(c, outline);
    int64_t now = now_ms(CLOCK_BOOTTIME);
    for (int i = 0; i < MAX_LS && c->fd >= 0; i++) {
      struct lockspace *ls = &spaces[i];
      if (!ls->used || !ls->armed) continue;
      snprintf(outline, sizeof outline, "ARMED %.48s %lld %d\n", ls->name, (long long)(ls->deadline - now), owners_of(ls));
      send_line(c, outline);
    }
    for (unsigned i = 0; i < MAX_RECORDS && c->fd >= 0; i++) {
      struct record *r = &records[i];
      if (!r->name[0] || r->reported) continue;
      snprintf(outline, sizeof outline, "KILLED %.48s %d %d %lld\n", r->name, (int)r->pid, r->what, (long long)(now - r->at));
      send_line(c, outline);
      r->reported = 1;
    }
    if (c->fd >= 0) send_line(c, "END\n");
    return;
  }
  reply_err(c, "unknown request");
}

/* The end of a line longer than LINE_CAP came: answer it (a SET disarms its lockspace). */
static void refuse_long_line(struct client *c) {
  char *save = NULL;
  char *kind = strtok_r(c->head, " ", &save);
  char *name = kind ? strtok_r(NULL, " ", &save) : NULL;
  char why[160];
  snprintf(why, sizeof why, "request line of %zu bytes or more (more than %d pids in one lockspace), discarded", LINE_CAP, MAX_PIDS);
  if (kind && name && strcmp(kind, "SET") == 0) return refuse_set(c, name, why);
  logf_(3, "%s", why);
  reply_err(c, why);
}

static void read_client(struct client *c) {
  if (c->n + 1 >= c->cap) {
    /* full: grow (a request up to LINE_CAP must fit; longer ones are discarded below) */
    size_t want = c->cap ? c->cap * 2 : LINE_INITIAL;
    if (want > LINE_CAP + 1) want = LINE_CAP + 1;
    char *p = realloc(c->in, want);
    if (!p) {
      logf_(3, "out of memory for a request line (locked memory: check LimitMEMLOCK / ulimit -l); dropping the connection");
      return drop_client(c);
    }
    c->in = p;
    c->cap = want;
  }
  ssize_t n = read(c->fd, c->in + c->n, c->cap - 1 - c->n);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    logf_(6, "agent disconnected; the armed deadlines stay armed");
    return drop_client(c);
  }
  c->n += (size_t)n;
  c->in[c->n] = 0;
  char *start = c->in, *end = c->in + c->n, *nl;
  if (c->discarding) {
    if ((nl = memchr(start, '\n', c->n)) == NULL) {
      c->n = 0;
      return;
    }
    c->discarding = 0;
    start = nl + 1;
    refuse_long_line(c);
  }
  while (c->fd >= 0 && (nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
    *nl = 0;
    handle_line(c, start);
    start = nl + 1;
  }
  if (c->fd < 0) return;
  size_t rest = (size_t)(end - start);
  if (rest >= LINE_CAP) {
    /* no request is this long: keep its start to name it, discard the rest up to its newline */
    size_t h = rest < sizeof c->head - 1 ? rest : sizeof c->head - 1;
    memcpy(c->head, start, h);
    c->head[h] = 0;
    c->discarding = 1;
    rest = 0;
  }
  memmove(c->in, start, rest);
  c->n = rest;
  if (c->cap > LINE_INITIAL * 16 && rest < LINE_INITIAL / 2) {
    /* the long line is handled: give its memory back */
    char *p = realloc(c->in, LINE_INITIAL);
    if (p) {
      c->in = p;
      c->cap = LINE_INITIAL;
    }
  }
}

static void accept_client(void) {
  int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (fd < 0) return;
  struct ucred cr;
  socklen_t len = sizeof cr;
  /* whoever may talk to us may have pids killed: root or our own uid only */
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || (cr.uid != 0 && cr.uid != geteuid())) {
    logf_(4, "refused a connection from uid %d", (int)cr.uid);
    close(fd);
    return;
  }
  for (int i = 0; i < MAX_CLIENTS; i++) {
    if (clients[i].fd < 0) {
      clients[i].fd = fd;
      clients[i].n = 0;
      clients[i].discarding = 0;
      return;
    }
  }
  close(fd);
}

/* ---- the socket ------------------------------------------------------------------------------ */

static int quiet_listen_errors; /* while the socket cannot be re-created: say so once */

static int open_socket(void) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof a.sun_path) {
    logf_(3, "socket path %s is too long", sock_path);
    return -1;
  }
  strcpy(a.sun_path, sock_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  /* a live guard answers on it: do not steal its socket */
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 || errno == EAGAIN) {
    close(fd);
    logf_(3, "another guard already listens on %s", sock_path);
    exit(3);
  }
  close(fd);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  unlink(sock_path);
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  umask(old);
  if (rc < 0 || listen(fd, 8) < 0) {
    if (!quiet_listen_errors) logf_(3, "cannot listen on %s: %s", sock_path, strerror(errno));
    close(fd);
    return -1;
  }
  struct stat st;
  listen_ino = stat(sock_path, &st) == 0 ? st.st_ino : 0;
  return fd;
}

/* The socket's directory may be removed under us (systemd's RuntimeDirectory of the agent's
 * unit on a restart): make a new one, so a restarted agent finds us. */
static void check_socket(void) {
  struct stat st;
  if (stat(sock_path, &st) == 0 && st.st_ino == listen_ino) return;
  char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
  snprintf(dir, sizeof dir, "%s", sock_path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    mkdir(dir, 0755);
  }
  int fd = open_socket();
  if (fd < 0) {
    if (!quiet_listen_errors) logf_(4, "socket %s was removed and cannot be re-created; retrying every second (the armed deadlines stay armed)", sock_path);
    quiet_listen_errors = 1;
    return;
  }
  quiet_listen_errors = 0;
  if (listen_fd >= 0) close(listen_fd);
  listen_fd = fd;
  logf_(4, "socket %s was removed; listening on a new one", sock_path);
}

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static void usage(void) {
  fprintf(stderr, "usage: lockagent-guard --socket PATH [--mode enforce|log] [--idle-exit SECONDS]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) sock_path = argv[++i];
    else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "log") == 0) log_mode = 1;
      else if (strcmp(m, "enforce") != 0) usage();
    } else if (strcmp(argv[i], "--idle-exit") == 0 && i + 1 < argc) idle_exit_s = atoi(argv[++i]);
    else usage();
  }
  if (!sock_path) usage();
  for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  connect_syslog();

  /* the OOM killer must not pick us, and no page of ours may need I/O to come back */
  int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "-1000", 5) != 5) logf_(4, "cannot set oom_score_adj to -1000: %s", strerror(errno));
  if (fd >= 0) close(fd);
  memset(spaces, 0, sizeof spaces);
  memset(records, 0, sizeof records);
  if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0) logf_(4, "cannot lock memory (mlockall): %s", strerror(errno));

  listen_fd = open_socket();
  if (listen_fd < 0) return 1;
  logf_(6, "listening on %s, mode %s", sock_path, log_mode ? "log" : "enforce");

  int64_t idle_since = now_ms(CLOCK_BOOTTIME), last_check = 0;
  struct pollfd pfd[1 + MAX_CLIENTS];
  while (!stop_signal) {
    int n = 0;
    pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < MAX_CLIENTS; i++) pfd[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
    int rc = poll(pfd, (nfds_t)n, next_timeout_ms());
    /* deadlines first: a flood of requests must not delay a kill */
    check_deadlines();
    if (rc > 0) {
      if (pfd[0].revents & POLLIN) accept_client();
      for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd >= 0 && pfd[1 + i].fd == clients[i].fd && (pfd[1 + i].revents & (POLLIN | POLLHUP | POLLERR))) read_client(&clients[i]);
    }
    int64_t now = now_ms(CLOCK_BOOTTIME);
    if (now - last_check >= 1000) {
      last_check = now;
      check_socket();
    }
    int armed = 0;
    for (int i = 0; i < MAX_LS; i++) armed |= spaces[i].used && ((spaces[i].armed && !spaces[i].fired) || spaces[i].watching);
    if (armed || any_client()) idle_since = now;
    else if (idle_exit_s > 0 && now - idle_since >= (int64_t)idle_exit_s * 1000) {
      logf_(6, "no agent and nothing armed for %d s; exiting", idle_exit_s);
      break;
    }
  }
  if (stop_signal) {
    int armed = 0;
    for (int i = 0; i < MAX_LS; i++) armed += spaces[i].used && ((spaces[i].armed && !spaces[i].fired) || spaces[i].watching);
    logf_(armed ? 3 : 6, "stopping on signal %d%s", (int)stop_signal, armed ? " while deadlines are armed: those owners are no longer fenced by the guard" : "");
  }
  struct stat st;
  if (stat(sock_path, &st) == 0 && st.st_ino == listen_ino) unlink(sock_path);
  return 0;
}
