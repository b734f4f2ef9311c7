/*
 * The control-socket client shared by the qemu hook (lockagent-hook.c) and the lock-driver
 * plugin (lockdriver/lockagent-lockdriver.c): lockagent.conf's socket_path, the request line's
 * JSON strings, the reply line's reader, and one request/reply exchange with a deadline.
 * Control protocol v1 (src/control/protocol.ts): one JSON object per line each way.
 * Nothing here exits or uses signals: the plugin runs inside libvirtd.
 */
#define _GNU_SOURCE
#include "agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- small growable buffer ------------------------------------------------------------------ */

void lac_oom(void) {
  static const char m[] = "lockagent: out of memory\n";
  ssize_t w = write(2, m, sizeof m - 1);
  (void)w;
  lac_oom_exit();
}

void buf_reserve(struct buf *b, size_t more) {
  if (b->n + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->n + more + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) lac_oom();
  b->p = p;
  b->cap = cap;
}

void buf_add(struct buf *b, const char *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

void buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  buf_reserve(b, (size_t)n);
  vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->n += (size_t)n;
}

/* ---- config: socket_path ------------------------------------------------------------------- */

/* parseConfText (src/config/confsyntax.ts), keeping the last string value of socket_path. */
struct conf {
  const char *t;
  size_t i, n;
  int line;
  const char *file;
  char err[512];
};

static int read_file(const char *path, struct buf *out, int *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  for (;;) {
    buf_reserve(out, 65536);
    ssize_t r = read(fd, out->p + out->n, out->cap - out->n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      *err = errno;
      close(fd);
      return -1;
    }
    if (r == 0) break;
    out->n += (size_t)r;
    out->p[out->n] = 0;
  }
  close(fd);
  return 0;
}

static void conf_skip(struct conf *c, int newlines) {
  while (c->i < c->n) {
    char ch = c->t[c->i];
    if (ch == '#') {
      while (c->i < c->n && c->t[c->i] != '\n') c->i++;
      continue;
    }
    if (ch == '\n') {
      if (!newlines) return;
      c->line++;
      c->i++;
      continue;
    }
    if (ch == ' ' || ch == '\t' || ch == '\r') {
      c->i++;
      continue;
    }
    return;
  }
}

static int conf_fail(struct conf *c, const char *what) {
  snprintf(c->err, sizeof c->err, "%s:%d: %s", c->file, c->line, what);
  return -1;
}

/* Parses one value; a string value is returned in s and slen (else s is NULL). */
static int conf_value(struct conf *c, const char **s, size_t *slen, int depth) {
  *s = NULL;
  conf_skip(c, 0);
  if (c->i >= c->n) return conf_fail(c, "expected a value (a \"quoted string\", a number or a [list])");
  char ch = c->t[c->i];
  if (ch == '"' || ch == '\'') {
    char q = ch;
    size_t start = ++c->i;
    while (c->i < c->n && c->t[c->i] != q) {
      if (c->t[c->i] == '\n') return conf_fail(c, "unterminated string (a quoted value must end on the same line)");
      c->i++;
    }
    if (c->i >= c->n) return conf_fail(c, "unterminated string");
    *s = c->t + start;
    *slen = c->i - start;
    c->i++;
    return 0;
  }
  if (ch == '[') {
    if (depth > 64) return conf_fail(c, "lists nested too deeply");
    c->i++;
    for (;;) {
      conf_skip(c, 1);
      if (c->i < c->n && c->t[c->i] == ']') {
        c->i++;
        return 0;
      }
      if (c->i >= c->n) return conf_fail(c, "unterminated list: missing \"]\"");
      const char *x;
      size_t xl;
      if (conf_value(c, &x, &xl, depth + 1) < 0) return -1;
      conf_skip(c, 1);
      if (c->i < c->n && c->t[c->i] == ',') {
        c->i++;
        continue;
      }
      if (c->i < c->n && c->t[c->i] == ']') {
        c->i++;
        return 0;
      }
      return conf_fail(c, "expected \",\" or \"]\" in list");
    }
  }
  size_t j = c->i;
  if (j < c->n && (c->t[j] == '+' || c->t[j] == '-')) j++;
  size_t d = j;
  while (j < c->n && c->t[j] >= '0' && c->t[j] <= '9') j++;
  if (j == d) return conf_fail(c, "expected a value (a \"quoted string\", a number or a [list])");
  c->i = j;
  return 0;
}

/* 0 and *out set (malloc'd) when socket_path is given; 1 when it is not; -1 on a syntax error. */
static int conf_socket_path(struct conf *c, char **out) {
  int found = 0;
  for (;;) {
    conf_skip(c, 1);
    if (c->i >= c->n) break;
    size_t k = c->i;
    char ch = c->t[k];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_')) return conf_fail(c, "expected \"key = value\"");
    while (c->i < c->n) {
      ch = c->t[c->i];
      if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.') c->i++;
      else break;
    }
    size_t klen = c->i - k;
    conf_skip(c, 0);
    if (c->i >= c->n || c->t[c->i] != '=') return conf_fail(c, "expected \"=\" after a key");
    c->i++;
    const char *s;
    size_t sl;
    if (conf_value(c, &s, &sl, 0) < 0) return -1;
    conf_skip(c, 0);
    if (c->i < c->n && c->t[c->i] != '\n' && c->t[c->i] != ';') return conf_fail(c, "unexpected text after a value");
    if (c->i < c->n && c->t[c->i] == ';') c->i++;
    if (klen == 11 && memcmp(c->t + k, "socket_path", 11) == 0) {
      if (!s) return conf_fail(c, "socket_path must be a string");
      free(*out);
      *out = strndup(s, sl);
      if (!*out) lac_oom();
      found = 1;
    }
  }
  return found ? 0 : 1;
}


/* ---- JSON ---------------------------------------------------------------------------------- */

void json_string(struct buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  buf_reserve(b, n + 2);
  buf_add(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    const char *esc = NULL;
    char u[7];
    if (ch == '"') esc = "\\\"";
    else if (ch == '\\') esc = "\\\\";
    else if (ch == '\n') esc = "\\n";
    else if (ch == '\r') esc = "\\r";
    else if (ch == '\t') esc = "\\t";
    else if (ch == '\b') esc = "\\b";
    else if (ch == '\f') esc = "\\f";
    else if (ch < 0x20) {
      u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0'; u[4] = hex[ch >> 4]; u[5] = hex[ch & 15]; u[6] = 0;
      esc = u;
    }
    if (!esc) {
      run++;
      continue;
    }
    if (run) buf_add(b, s + i - run, run);
    run = 0;
    buf_adds(b, esc);
  }
  if (run) buf_add(b, s + n - run, run);
  buf_add(b, "\"", 1);
}

/* A minimal reader for the reply: finds top-level "ok" and "error"."message". */
struct jr {
  const char *p, *end;
};

static void j_ws(struct jr *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static void put_utf8(struct buf *b, uint32_t cp) {
  char o[4];
  size_t n;
  if (cp < 0x80) { o[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); n = 2; }
  else if (cp < 0x10000) { o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[2] = (char)(0x80 | (cp & 0x3f)); n = 3; }
  else { o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)); o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); n = 4; }
  buf_add(b, o, n);
}

static int hex4(const char *p, const char *end, uint32_t *v) {
  if (end - p < 4) return -1;
  *v = 0;
  for (int k = 0; k < 4; k++) {
    char c = p[k];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    *v = *v * 16 + (uint32_t)d;
  }
  return 0;
}

/* Reads a string at j->p ('"'); decoded into out when out is not NULL. */
static int j_string(struct jr *j, struct buf *out) {
  if (j->p >= j->end || *j->p != '"') return -1;
  j->p++;
  while (j->p < j->end) {
    char c = *j->p++;
    if (c == '"') return 0;
    if ((unsigned char)c < 0x20) return -1;
    if (c != '\\') {
      if (out) buf_add(out, &c, 1);
      continue;
    }
    if (j->p >= j->end) return -1;
    char e = *j->p++;
    char lit;
    switch (e) {
      case '"': lit = '"'; break;
      case '\\': lit = '\\'; break;
      case '/': lit = '/'; break;
      case 'b': lit = '\b'; break;
      case 'f': lit = '\f'; break;
      case 'n': lit = '\n'; break;
      case 'r': lit = '\r'; break;
      case 't': lit = '\t'; break;
      case 'u': {
        uint32_t cp, lo;
        if (hex4(j->p, j->end, &cp) < 0) return -1;
        j->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
            hex4(j->p + 2, j->end, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          j->p += 6;
        } else if (cp >= 0xd800 && cp < 0xe000) {
          cp = 0xfffd; /* a lone surrogate: what node's utf8 encoding writes for it */
        }
        if (out) put_utf8(out, cp);
        continue;
      }
      default: return -1;
    }
    if (out) buf_add(out, &lit, 1);
  }
  return -1;
}

static int j_value(struct jr *j, int depth);

static int j_literal(struct jr *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return -1;
  j->p += n;
  return 0;
}

/*
 * Walks an object; for each key calls on_key (which may consume the value and return 1) or
 * skips the value.
 */
typedef int (*key_fn)(struct jr *j, const struct buf *key, void *ctx, int depth);

static int j_object(struct jr *j, int depth, key_fn on_key, void *ctx) {
  if (depth > 64 || j->p >= j->end || *j->p != '{') return -1;
  j->p++;
  j_ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return 0;
  }
  for (;;) {
    j_ws(j);
    struct buf key = {0};
    if (j_string(j, &key) < 0) { free(key.p); return -1; }
    j_ws(j);
    if (j->p >= j->end || *j->p != ':') { free(key.p); return -1; }
    j->p++;
    j_ws(j);
    int r = on_key ? on_key(j, &key, ctx, depth) : 0;
    free(key.p);
    if (r < 0) return -1;
    if (r == 0 && j_value(j, depth + 1) < 0) return -1;
    j_ws(j);
    if (j->p < j->end && *j->p == ',') { j->p++; continue; }
    if (j->p < j->end && *j->p == '}') { j->p++; return 0; }
    return -1;
  }
}

static int j_value(struct jr *j, int depth) {
  j_ws(j);
  if (j->p >= j->end || depth > 64) return -1;
  char c = *j->p;
  if (c == '{') return j_object(j, depth, NULL, NULL);
  if (c == '[') {
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
    for (;;) {
      if (j_value(j, depth + 1) < 0) return -1;
      j_ws(j);
      if (j->p < j->end && *j->p == ',') { j->p++; continue; }
      if (j->p < j->end && *j->p == ']') { j->p++; return 0; }
      return -1;
    }
  }
  if (c == '"') return j_string(j, NULL);
  if (c == 't') return j_literal(j, "true");
  if (c == 'f') return j_literal(j, "false");
  if (c == 'n') return j_literal(j, "null");
  if (c == '-' || (c >= '0' && c <= '9')) {
    const char *s = j->p;
    if (*j->p == '-') j->p++;
    while (j->p < j->end && ((*j->p >= '0' && *j->p <= '9') || *j->p == '.' || *j->p == 'e' || *j->p == 'E' || *j->p == '+' || *j->p == '-')) j->p++;
    return j->p > s + (*s == '-') ? 0 : -1;
  }
  return -1;
}

/* One string member of a nested object (error.message, result.state) into `out`. */
struct str_member {
  const char *key;
  struct buf *out;
  int *have;
};

static int on_str_member(struct jr *j, const struct buf *key, void *ctx, int depth) {
  (void)depth;
  const struct str_member *m = ctx;
  if (key->n == strlen(m->key) && memcmp(key->p, m->key, key->n) == 0 && j->p < j->end && *j->p == '"') {
    m->out->n = 0;
    if (j_string(j, m->out) < 0) return -1;
    *m->have = 1;
    return 1;
  }
  return 0;
}

static int on_top_key(struct jr *j, const struct buf *key, void *ctx, int depth) {
  struct reply *r = ctx;
  if (key->n == 2 && memcmp(key->p, "ok", 2) == 0) {
    if (j_literal(j, "true") == 0) r->ok = 1;
    else if (j_literal(j, "false") == 0) r->ok = 0;
    else return -1;
    return 1;
  }
  struct str_member m = {NULL, NULL, NULL};
  if (key->n == 6 && memcmp(key->p, "result", 6) == 0) m = (struct str_member){"state", &r->state, &r->have_state};
  else if (key->n == 5 && memcmp(key->p, "error", 5) == 0) m = (struct str_member){"message", &r->message, &r->have_message};
  if (m.key && j->p < j->end && *j->p == '{') {
    if (j_object(j, depth + 1, on_str_member, &m) < 0) return -1;
    return 1;
  }
  return 0;
}

/* 0: parsed (r filled); -1: not a JSON object. */
int parse_reply(const char *line, size_t n, struct reply *r) {
  struct jr j = {line, line + n};
  j_ws(&j);
  if (j_object(&j, 0, on_top_key, r) < 0) return -1;
  j_ws(&j);
  return j.p == j.end ? 0 : -1;
}

/* ---- config -------------------------------------------------------------------------------- */

int lac_config_socket(const char *path, int required, char **out, char *err, size_t errlen) {
  struct buf text = {0};
  int e = 0;
  *out = NULL;
  if (read_file(path, &text, &e) < 0) {
    free(text.p);
    if (e == ENOENT && !required) return 1;
    if (e == ENOENT) snprintf(err, errlen, "config file %s does not exist: copy conf/lockagent.conf there or pass -c PATH", path);
    else if (e == EACCES) snprintf(err, errlen, "cannot read config file %s: permission denied (run as root or fix its mode)", path);
    else snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(e));
    return -1;
  }
  struct conf c = {.t = text.p ? text.p : "", .i = 0, .n = text.n, .line = 1, .file = path};
  int r = conf_socket_path(&c, out);
  free(text.p);
  if (r < 0) snprintf(err, errlen, "%s", c.err);
  return r;
}

/* ---- one exchange ---------------------------------------------------------------------------- */

long long lac_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static int connect_fail(const char *sock, int e, char *err, size_t errlen) {
  if (e == ENOENT || e == ECONNREFUSED)
    return fail(err, errlen, "lockagent is not running (no listener on %s); start it with: lockagent daemon", sock);
  if (e == EACCES) return fail(err, errlen, "permission denied on %s: run as root or as a member of socket_group", sock);
  return fail(err, errlen, "cannot reach lockagent on %s: %s", sock, strerror(e));
}

int lac_call(const char *sock, const struct buf *line, long timeout_ms, long restart_ms, struct reply *r, char *err, size_t errlen) {
  long long start = lac_now_ms();
  long long deadline = start + timeout_ms;
  /* An agent restarting (a package upgrade) has no listener for a moment: retried until then. */
  long long restart_until = start + (restart_ms < timeout_ms ? restart_ms : timeout_ms);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(sock) >= sizeof sa.sun_path) return connect_fail(sock, ENAMETOOLONG, err, errlen);
  memcpy(sa.sun_path, sock, strlen(sock) + 1);
  int fd;
  for (;;) {
    /* Non-blocking from the start: a full accept queue (EAGAIN) is waited out to the deadline. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return connect_fail(sock, errno, err, errlen);
    int e = 0;
    while (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && lac_now_ms() < deadline) {
        poll(NULL, 0, 10);
        continue;
      }
      e = errno;
      break;
    }
    if (!e) break;
    close(fd);
    if ((e == ENOENT || e == ECONNREFUSED) && lac_now_ms() + 100 < restart_until) {
      poll(NULL, 0, 100);
      continue;
    }
    if (e == EAGAIN) return fail(err, errlen, "lockagent did not answer within %ld s (socket %s)", (timeout_ms + 500) / 1000, sock);
    return connect_fail(sock, e, err, errlen);
  }
  struct buf in = {0};
  size_t off = 0;
  int rc = 0;
  for (;;) {
    long long left = deadline - lac_now_ms();
    if (left <= 0) {
      rc = fail(err, errlen, "lockagent did not answer within %ld s (socket %s)", (timeout_ms + 500) / 1000, sock);
      break;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN | (off < line->n ? POLLOUT : 0)};
    int pr = poll(&p, 1, (int)(left > 0x7fffffff ? 0x7fffffff : left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr < 0) {
      rc = fail(err, errlen, "cannot reach lockagent on %s: %s", sock, strerror(errno));
      break;
    }
    if (pr == 0) continue;
    if (off < line->n && (p.revents & POLLOUT)) {
      ssize_t w = send(fd, line->p + off, line->n - off, MSG_NOSIGNAL);
      if (w > 0) off += (size_t)w;
      else if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) off = line->n; /* its answer (if any) is still to be read */
      else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        rc = fail(err, errlen, "cannot reach lockagent on %s: %s", sock, strerror(errno));
        break;
      }
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      buf_reserve(&in, 65536);
      ssize_t n = recv(fd, in.p + in.n, in.cap - in.n - 1, 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) break;
      in.n += (size_t)n;
      in.p[in.n] = 0;
      if (memchr(in.p, '\n', in.n) || (long)in.n > LAC_MAX_REPLY) break;
    }
  }
  close(fd);
  if (rc == 0) {
    char *nl = in.p ? memchr(in.p, '\n', in.n) : NULL;
    if (!nl) rc = fail(err, errlen, "lockagent closed the connection without answering (socket %s)", sock);
    else if (parse_reply(in.p, (size_t)(nl - in.p), r) < 0 || r->ok < 0) rc = fail(err, errlen, "lockagent sent an unreadable reply");
  }
  free(in.p);
  return rc;
}
