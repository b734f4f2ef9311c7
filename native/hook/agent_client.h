/*
 * lockagent's control-socket client in C (agent_client.c): shared by the qemu hook and the
 * lock-driver plugin. Symbols are hidden in the plugin (-fvisibility=hidden): inside libvirtd
 * they must not resolve to, or against, anything of libvirtd's.
 */
#ifndef LOCKAGENT_AGENT_CLIENT_H
#define LOCKAGENT_AGENT_CLIENT_H

#include <stddef.h>

#define LAC_DEFAULT_CONFIG_PATH "/etc/lockagent.conf"
#define LAC_DEFAULT_SOCKET_PATH "/run/lockagent/lockagent.sock"
#define LAC_MAX_REPLY (16L * 1024 * 1024)

/*
 * A growable NUL-terminated buffer. Out of memory: lac_oom writes "lockagent: out of memory" and
 * calls lac_oom_exit, which each program defines (the hook exits 1; the plugin aborts, as glib
 * does in libvirtd).
 */
void lac_oom_exit(void) __attribute__((noreturn));
struct buf {
  char *p;
  size_t n, cap;
};
void lac_oom(void);
void buf_reserve(struct buf *b, size_t more);
void buf_add(struct buf *b, const char *s, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A JSON string as JSON.stringify writes it; other bytes (UTF-8 included) pass through. */
void json_string(struct buf *b, const char *s, size_t n);

/* The reply line: top-level "ok", "error"."message", "result"."state". */
struct reply {
  int ok; /* -1 unknown, 0 false, 1 true */
  int have_message;
  struct buf message;
  int have_state;
  struct buf state;
};
/* 0: parsed (r filled); -1: not a JSON object. */
int parse_reply(const char *line, size_t n, struct reply *r);

/*
 * socket_path of a lockagent.conf-syntax file: 0 and *out (malloc'd) when given; 1 when the
 * file has no socket_path, or (not required) does not exist; -1 with the reason in err.
 */
int lac_config_socket(const char *path, int required, char **out, char *err, size_t errlen);

long long lac_now_ms(void);

/*
 * Send one request line to the agent on `sock` and read its reply line, all within timeout_ms.
 * No listener (the socket missing or refusing: an agent restarting) is tried again every 100 ms
 * for up to restart_ms of that time. 0: *r holds the reply (ok or a refusal); -1: no reply, the
 * reason in err (the agent is not running, the socket is not allowed, no answer in time, an
 * unreadable reply).
 */
int lac_call(const char *sock, const struct buf *line, long timeout_ms, long restart_ms, struct reply *r, char *err, size_t errlen);

/*
 * How long a call that gates a domain (a start, a resume, an incoming migration, an attach)
 * waits for a missing listener: an agent restarted by a package upgrade listens again within a
 * second or two, and a start in that window should not fail. Other calls do not wait (the
 * agent's resync with libvirt catches up on what they would have said).
 */
#define LAC_RESTART_MS 5000L

#endif
