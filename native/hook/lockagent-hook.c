/*
 * lockagent-hook: the libvirt qemu hook's client, in plain C (no dependencies), so that a hook
 * call costs a fork+exec of a small binary instead of a node start (~60 ms). It does exactly
 * what src/libvirt/hook.ts (runHook, hookMain) does; that node implementation stays the
 * reference (`lockagent hook`, dist/libvirt/hook.js) and test/unit/hook-client.test.ts runs
 * both against the same server.
 *
 *   lockagent-hook <domain> <operation> <sub-operation> <extra>     (domain XML on stdin)
 *
 * `lockagent install-hook` installs this binary itself as /etc/libvirt/hooks/qemu.d/50-lockagent
 * (a copy), so a hook call is one exec: libvirt runs it for every operation of every start.
 *
 * Forwarded operations (FORWARDED_OPS of hook.ts; anything else: exit 0 at once, before reading
 * stdin or any file -- libvirt ignores the EPIPE of an unread hook stdin):
 *   prepare begin   -> domain_prepare {xml, timeoutMs: 80000}   refusal: exit 1 (the start gate)
 *   migrate begin   -> domain_migrate {xml}                     refusal: exit 1
 *   stopped end     -> domain_release {xml}                     never fails (exit 0)
 *   reconnect begin -> domain_reconnect {xml}                   never fails (libvirt would kill
 *                                                               the domain)
 * (`release end` follows `stopped end` in every stop and would only repeat its release.)
 * The gate fails closed: an unreachable agent, no answer within 90 s, or an unreadable config
 * refuses prepare/migrate. A refusal is one line on stderr, "lockagent: <agent's message>".
 *
 * Control protocol v1 (src/control/protocol.ts): one JSON object per line each way.
 * Socket: $LOCKAGENT_SOCKET, else socket_path of $LOCKAGENT_CONFIG, else of the settings file
 * install-hook writes beside the installed copy (".<name>.conf" in its directory, for --socket or
 * --config: hidden and not executable, so libvirt does not run it), else of /etc/lockagent.conf
 * (when that exists), else /run/lockagent/lockagent.sock. The config is read with the syntax of
 * src/config/confsyntax.ts (# comments, "..." or '...' strings, numbers, [lists]); only
 * socket_path is used (the agent validates the rest).
 *
 * $LOCKAGENT_HOOK_TIMEOUT_MS (tests only) replaces the 90 s total; libvirt runs hooks with an
 * environment of its own, so it never reaches an installed hook.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_client.h"

/* install-hook's mark (hook.ts MARK): the package's removal step recognises the installed copy by it. */
__attribute__((used)) static const char install_mark[] = "lockagent start gate, installed by \"lockagent install-hook\"";

#define HOOK_TIMEOUT_MS 90000L

void lac_oom_exit(void) { _exit(1); }

/* ---- outcome ------------------------------------------------------------------------------- */

static const char *g_name = "", *g_op = "", *g_sub = "";
static int g_gate; /* prepare/migrate: refusals and failures exit 1 */

/*
 * One line on stderr (a refusal or a failure to reach the agent), then the exit code runHook
 * gives. A config error is "lockagent: <message>" for every operation, as in hookMain.
 */
static int g_plain;

static void finish_error(const char *msg) {
  struct buf b = {0};
  if (g_gate || g_plain) buf_printf(&b, "lockagent: %s\n", msg);
  else buf_printf(&b, "lockagent: %s %s of %s: %s\n", g_op, g_sub, g_name, msg);
  size_t off = 0;
  while (off < b.n) {
    ssize_t w = write(2, b.p + off, b.n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  exit(g_gate ? 1 : 0);
}

/* ---- config: socket_path ------------------------------------------------------------------- */

/* The settings file beside the installed copy: <dir>/.<name>.conf for argv[0] = <dir>/<name>. */
static char *settings_path(const char *argv0) {
  const char *slash = strrchr(argv0, '/');
  if (!slash || !slash[1]) return NULL;
  struct buf b = {0};
  buf_add(&b, argv0, (size_t)(slash - argv0) + 1);
  buf_printf(&b, ".%s.conf", slash + 1);
  return b.p;
}

/*
 * $LOCKAGENT_SOCKET, else socket_path of $LOCKAGENT_CONFIG, of the settings file beside the
 * installed hook, or of /etc/lockagent.conf, else the default.
 */
static char *hook_socket_inner(const char *argv0) {
  const char *env = getenv("LOCKAGENT_SOCKET");
  if (env && *env) return strdup(env);
  const char *cfgenv = getenv("LOCKAGENT_CONFIG");
  const char *path = cfgenv && *cfgenv ? cfgenv : LAC_DEFAULT_CONFIG_PATH;
  int required = cfgenv && *cfgenv;
  char *settings = required ? NULL : settings_path(argv0);
  struct stat st;
  if (settings && lstat(settings, &st) == 0) {
    path = settings; /* install-hook wrote it (a link to a config that is gone too): it must be readable */
    required = 1;
  }
  char *sock = NULL;
  char err[1024];
  int r = lac_config_socket(path, required, &sock, err, sizeof err);
  if (r < 0 && path == settings && access(path, R_OK) != 0) {
    char m[1200];
    snprintf(m, sizeof m, "cannot read %s, the settings of this hook (a link to the config file it was installed with): %s; install it again with lockagent install-hook", path, strerror(errno));
    finish_error(m);
  }
  if (r < 0) finish_error(err);
  return r == 0 ? sock : strdup(LAC_DEFAULT_SOCKET_PATH);
}

static char *hook_socket(const char *argv0) {
  g_plain = 1; /* errors here are config errors */
  char *s = hook_socket_inner(argv0);
  g_plain = 0;
  return s;
}

static void read_all_stdin(struct buf *b) {
  for (;;) {
    buf_reserve(b, 65536);
    ssize_t r = read(0, b->p + b->n, b->cap - b->n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EOF, or no stdin at all: the XML is what was read */
    b->n += (size_t)r;
    b->p[b->n] = 0;
  }
}

int main(int argc, char **argv) {
  g_name = argc > 1 ? argv[1] : "";
  g_op = argc > 2 ? argv[2] : "";
  g_sub = argc > 3 ? argv[3] : "";
  const char *req = NULL;
  if (!strcmp(g_op, "prepare") && !strcmp(g_sub, "begin")) req = "domain_prepare";
  else if (!strcmp(g_op, "migrate") && !strcmp(g_sub, "begin")) req = "domain_migrate";
  else if (!strcmp(g_op, "stopped") && !strcmp(g_sub, "end")) req = "domain_release";
  else if (!strcmp(g_op, "reconnect") && !strcmp(g_sub, "begin")) req = "domain_reconnect";
  /* start, started, release, restore, attach...: nothing to do, and nothing read */
  if (!req) return 0;
  g_gate = !strcmp(req, "domain_prepare") || !strcmp(req, "domain_migrate");
  signal(SIGPIPE, SIG_IGN);

  struct buf xml = {0};
  read_all_stdin(&xml);

  /* Socket first (a config error fails closed at the gate), as hookMain does. */
  char *sock = hook_socket(argc > 0 ? argv[0] : "");
  if (!sock) lac_oom();

  long timeout_ms = HOOK_TIMEOUT_MS;
  const char *t = getenv("LOCKAGENT_HOOK_TIMEOUT_MS");
  if (t && *t) {
    long v = strtol(t, NULL, 10);
    if (v > 0) timeout_ms = v;
  }

  /* The request line: {"v":1,"id":1,"op":...,"xml":...[,"timeoutMs":80000]} */
  struct buf line = {0};
  buf_printf(&line, "{\"v\":1,\"id\":1,\"op\":\"%s\",\"xml\":", req);
  json_string(&line, xml.p ? xml.p : "", xml.n);
  /* The agent's budget leaves room for the wait for a restarting agent and for the reply. */
  long restart_ms = g_gate ? LAC_RESTART_MS : 0;
  if (!strcmp(req, "domain_prepare")) buf_printf(&line, ",\"timeoutMs\":%ld", timeout_ms - 5000 - restart_ms > 0 ? timeout_ms - 5000 - restart_ms : 0);
  buf_add(&line, "}\n", 2);
  free(xml.p);

  struct reply r = {.ok = -1};
  char err[1024];
  if (lac_call(sock, &line, timeout_ms, restart_ms, &r, err, sizeof err) < 0) finish_error(err);
  if (r.ok == 1) return 0;
  /* callAgent: new LeaseError(rv, error.message) -- an absent message reads "undefined" there */
  finish_error(r.have_message ? (r.message.p ? r.message.p : "") : "undefined");
  return 1;
}
