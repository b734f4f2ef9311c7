/*
 * lockagent.so: a libvirt lock-driver plugin (qemu.conf: lock_manager = "lockagent"). libvirtd
 * loads it from its lock-driver directory and calls it where it calls its own sanlock driver;
 * each call becomes one request to the agent on its control socket (agent_client.c), so a
 * `virsh start` costs libvirtd no hook process at all (docs/libvirt-integration.md, "The
 * lock-driver plugin").
 *
 *   libvirt's call (src/locking/domain_lock.c)              request          when
 *   acquire, REGISTER_ONLY (libvirtd's child, before exec)  lock_register    every start
 *   acquire (libvirtd, before the CPUs start; an attach)     lock_acquire     start, resume, hot-plug
 *   release with a state out (libvirtd, after a pause)       lock_release     pause=true
 *   release without (a detach)                               lock_release     pause=false
 *   inquire (a migration's source)                           lock_inquire
 *
 * libvirt's plugin interface is internal (no header is installed), so its definitions are
 * restated below from libvirt 9.0's src/locking/lock_driver.h; its version (1.0.0) has not
 * changed since libvirt 0.9.
 *
 * Rules of this file: drvInit never fails (a failing drvInit stops libvirtd's QEMU driver and
 * libvirtd with it): a config error is kept and refuses every call. Errors are reported with
 * libvirt's own virReportErrorHelper (looked up at init: unversioned, so any libvirt), else on
 * stderr. The register call runs in libvirtd's forked child (one thread, locks of the parent
 * unusable): it only mallocs, uses a socket and returns. Only virLockDriverImpl is exported.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hook/agent_client.h"

/* The package's upgrade step recognises the copies install-lockdriver made by this mark. */
__attribute__((used)) static const char install_mark[] = "lockagent lock-driver plugin, installed by \"lockagent install-lockdriver\"";

/* ---- libvirt's lock-driver interface (lock_driver.h, version 1.0.0) ----------------------- */

enum { LM_USES_STATE = 1 << 0 };
enum { LM_OBJECT_TYPE_DOMAIN = 0 };
enum { LM_RESOURCE_TYPE_DISK = 0, LM_RESOURCE_TYPE_LEASE = 1 };
enum { LM_RESOURCE_READONLY = 1 << 0, LM_RESOURCE_SHARED = 1 << 1 };
enum { LM_ACQUIRE_REGISTER_ONLY = 1 << 0, LM_ACQUIRE_RESTRICT = 1 << 1 };
enum { LM_PARAM_STRING, LM_PARAM_CSTRING, LM_PARAM_INT, LM_PARAM_LONG, LM_PARAM_UINT, LM_PARAM_ULONG, LM_PARAM_DOUBLE, LM_PARAM_UUID };
#define LM_VERSION 1000000 /* 1.0.0 */

typedef struct {
  int type;
  const char *key;
  union {
    int iv;
    long long l;
    unsigned int ui;
    unsigned long long ul;
    double d;
    char *str;
    const char *cstr;
    unsigned char uuid[16];
  } value;
} lm_param;

struct lm_driver;
typedef struct {
  struct lm_driver *driver;
  void *privateData;
} lm_manager;

struct lm_driver {
  unsigned int version;
  unsigned int flags;
  int (*drvInit)(unsigned int version, const char *configFile, unsigned int flags);
  int (*drvDeinit)(void);
  int (*drvNew)(lm_manager *man, unsigned int type, size_t nparams, lm_param *params, unsigned int flags);
  void (*drvFree)(lm_manager *man);
  int (*drvAddResource)(lm_manager *man, unsigned int type, const char *name, size_t nparams, lm_param *params, unsigned int flags);
  int (*drvAcquire)(lm_manager *man, const char *state, unsigned int flags, int action, int *fd);
  int (*drvRelease)(lm_manager *man, char **state, unsigned int flags);
  int (*drvInquire)(lm_manager *man, char **state, unsigned int flags);
};

/* <on_lockfailure> as libvirt passes it (virDomainLockFailureAction; 0 is "default") */
static const char *const k_actions[] = {NULL, "poweroff", "restart", "pause", "ignore"};

/* From libvirt's public virterror.h: VIR_FROM_LOCKING, VIR_ERR_OPERATION_FAILED, VIR_ERR_RESOURCE_BUSY. */
enum { FROM_LOCKING = 42, ERR_OPERATION_FAILED = 9, ERR_RESOURCE_BUSY = 87 };

/* The agent's answer to a start may wait for a lockspace join: as long as the hook's gate. */
#define CALL_TIMEOUT_MS 90000L

/* ---- state of the plugin ------------------------------------------------------------------- */

void lac_oom_exit(void) { abort(); }

typedef void (*report_fn)(int domain, int code, const char *file, const char *func, size_t line, const char *fmt, ...);
static report_fn g_report;
static char *g_socket;
static char g_config_error[1024];

static void report(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int code, const char *fmt, ...) {
  char m[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  if (g_report) g_report(FROM_LOCKING, code, __FILE__, __func__, __LINE__, "%s", m);
  else fprintf(stderr, "lockagent: %s\n", m);
}

/*
 * The socket, as the hook finds it: the plugin's settings (/etc/libvirt/qemu-lockagent.conf,
 * written by `lockagent install-lockdriver --socket` or a link to a config for --config) when
 * they exist, else /etc/lockagent.conf; socket_path of that file, else the default.
 */
static int init(unsigned int version, const char *configFile, unsigned int flags) {
  (void)version;
  (void)flags;
  g_report = (report_fn)dlsym(RTLD_DEFAULT, "virReportErrorHelper");
  free(g_socket);
  g_socket = NULL;
  g_config_error[0] = 0;
  char err[1024];
  struct stat st;
  int settings = configFile && lstat(configFile, &st) == 0;
  int r = lac_config_socket(settings ? configFile : LAC_DEFAULT_CONFIG_PATH, settings, &g_socket, err, sizeof err);
  if (r < 0) snprintf(g_config_error, sizeof g_config_error, "%s", err);
  if (r != 0 && !g_socket) g_socket = strdup(LAC_DEFAULT_SOCKET_PATH);
  if (!g_socket) lac_oom();
  return 0;
}

static int deinit(void) {
  free(g_socket);
  g_socket = NULL;
  return 0;
}

/* ---- one domain, for one call -------------------------------------------------------------- */

struct dom {
  char uuid[37];
  struct buf name;  /* a JSON string */
  long long pid;    /* -1: not given */
  struct buf disks; /* JSON objects, comma-separated */
  struct buf leases;
};

static int new_manager(lm_manager *man, unsigned int type, size_t nparams, lm_param *params, unsigned int flags) {
  (void)flags;
  if (type != LM_OBJECT_TYPE_DOMAIN) {
    report(ERR_OPERATION_FAILED, "lockagent locks only domains (object type %u)", type);
    return -1;
  }
  struct dom *d = calloc(1, sizeof *d);
  if (!d) lac_oom();
  d->pid = -1;
  for (size_t i = 0; i < nparams; i++) {
    const lm_param *p = &params[i];
    if (!p->key) continue;
    if (!strcmp(p->key, "uuid") && p->type == LM_PARAM_UUID) {
      const unsigned char *u = p->value.uuid;
      snprintf(d->uuid, sizeof d->uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
               u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    } else if (!strcmp(p->key, "name") && (p->type == LM_PARAM_STRING || p->type == LM_PARAM_CSTRING) && p->value.cstr) {
      d->name.n = 0;
      json_string(&d->name, p->value.cstr, strlen(p->value.cstr));
    } else if (!strcmp(p->key, "pid")) {
      /* declared UINT, filled through the int member */
      if (p->value.iv > 0) d->pid = p->value.iv;
    }
  }
  if (!d->uuid[0] || !d->name.n) {
    free(d->name.p);
    free(d);
    report(ERR_OPERATION_FAILED, "libvirt named no domain uuid or name");
    return -1;
  }
  man->privateData = d;
  return 0;
}

static void free_manager(lm_manager *man) {
  struct dom *d = man->privateData;
  if (!d) return;
  free(d->name.p);
  free(d->disks.p);
  free(d->leases.p);
  free(d);
  man->privateData = NULL;
}

static int add_resource(lm_manager *man, unsigned int type, const char *name, size_t nparams, lm_param *params, unsigned int flags) {
  struct dom *d = man->privateData;
  if (!name) return 0;
  if (type == LM_RESOURCE_TYPE_DISK) {
    if (d->disks.n) buf_add(&d->disks, ",", 1);
    buf_adds(&d->disks, "{\"path\":");
    json_string(&d->disks, name, strlen(name));
    buf_printf(&d->disks, ",\"readonly\":%s,\"shared\":%s}", flags & LM_RESOURCE_READONLY ? "true" : "false",
               flags & LM_RESOURCE_SHARED ? "true" : "false");
    return 0;
  }
  if (type != LM_RESOURCE_TYPE_LEASE) {
    report(ERR_OPERATION_FAILED, "unknown lock resource type %u for %s", type, name);
    return -1;
  }
  const char *path = NULL, *lockspace = NULL;
  unsigned long long offset = 0;
  for (size_t i = 0; i < nparams; i++) {
    const lm_param *p = &params[i];
    if (!p->key) continue;
    if (!strcmp(p->key, "path") && (p->type == LM_PARAM_STRING || p->type == LM_PARAM_CSTRING)) path = p->value.cstr;
    else if (!strcmp(p->key, "lockspace") && (p->type == LM_PARAM_STRING || p->type == LM_PARAM_CSTRING)) lockspace = p->value.cstr;
    else if (!strcmp(p->key, "offset") && p->type == LM_PARAM_ULONG) offset = p->value.ul;
  }
  if (!path) {
    report(ERR_OPERATION_FAILED, "lease %s has no path", name);
    return -1;
  }
  if (d->leases.n) buf_add(&d->leases, ",", 1);
  buf_adds(&d->leases, "{\"key\":");
  json_string(&d->leases, name, strlen(name));
  buf_adds(&d->leases, ",\"path\":");
  json_string(&d->leases, path, strlen(path));
  buf_printf(&d->leases, ",\"offset\":%llu", offset);
  if (lockspace) {
    buf_adds(&d->leases, ",\"lockspace\":");
    json_string(&d->leases, lockspace, strlen(lockspace));
  }
  buf_add(&d->leases, "}", 1);
  return 0;
}

/*
 * One request for the domain: {"v":1,"id":1,"op":OP,"domain":{...}[,EXTRA]}. 0 and, when
 * state_out is given, *state_out (malloc'd, NULL for none); -1 with the error reported.
 */
static int call(struct dom *d, const char *op, const char *extra, char **state_out) {
  if (g_config_error[0]) {
    report(ERR_OPERATION_FAILED, "%s", g_config_error);
    return -1;
  }
  struct buf line = {0};
  buf_printf(&line, "{\"v\":1,\"id\":1,\"op\":\"%s\",\"domain\":{\"uuid\":\"%s\",\"name\":%s", op, d->uuid, d->name.p);
  if (d->pid > 0) buf_printf(&line, ",\"pid\":%lld", d->pid);
  buf_printf(&line, ",\"disks\":[%s],\"leases\":[%s]}", d->disks.p ? d->disks.p : "", d->leases.p ? d->leases.p : "");
  if (extra) buf_adds(&line, extra);
  buf_adds(&line, "}\n");
  struct reply r = {.ok = -1};
  char err[1024];
  /* Every call here gates the domain (or, a release, keeps its leases held if it fails). */
  int rc = lac_call(g_socket, &line, CALL_TIMEOUT_MS, LAC_RESTART_MS, &r, err, sizeof err);
  free(line.p);
  if (rc < 0) {
    report(ERR_OPERATION_FAILED, "lockagent: %s", err);
  } else if (r.ok != 1) {
    report(ERR_RESOURCE_BUSY, "lockagent: %s", r.have_message && r.message.p ? r.message.p : "refused");
    rc = -1;
  } else if (state_out) {
    *state_out = r.have_state && r.state.n ? strdup(r.state.p) : NULL;
  }
  free(r.message.p);
  free(r.state.p);
  return rc;
}

static int acquire(lm_manager *man, const char *state, unsigned int flags, int action, int *fd) {
  struct dom *d = man->privateData;
  (void)fd; /* nothing is handed to QEMU: the agent follows QEMU by its pid */
  struct buf extra = {0};
  if (action > 0 && action < (int)(sizeof k_actions / sizeof k_actions[0])) buf_printf(&extra, ",\"action\":\"%s\"", k_actions[action]);
  const char *op = "lock_register";
  if (!(flags & LM_ACQUIRE_REGISTER_ONLY)) {
    op = "lock_acquire";
    if (state && *state) {
      buf_adds(&extra, ",\"state\":");
      json_string(&extra, state, strlen(state));
    }
    buf_printf(&extra, ",\"timeoutMs\":%ld", CALL_TIMEOUT_MS - 5000 - LAC_RESTART_MS);
  }
  int rc = call(d, op, extra.p, NULL);
  free(extra.p);
  return rc;
}

static int release(lm_manager *man, char **state, unsigned int flags) {
  (void)flags;
  /* a pause may come twice (libvirt's stop, then QEMU's STOP event): the first state is replaced */
  if (state) {
    free(*state);
    *state = NULL;
  }
  return call(man->privateData, "lock_release", state ? ",\"pause\":true" : ",\"pause\":false", state);
}

static int inquire(lm_manager *man, char **state, unsigned int flags) {
  (void)flags;
  if (!state) {
    report(ERR_OPERATION_FAILED, "inquire without a place for the state");
    return -1;
  }
  *state = NULL;
  return call(man->privateData, "lock_inquire", NULL, state);
}

__attribute__((visibility("default"))) struct lm_driver virLockDriverImpl = {
    .version = LM_VERSION,
    /* a migration carries the lock state to the destination, whose acquire then knows it is one */
    .flags = LM_USES_STATE,
    .drvInit = init,
    .drvDeinit = deinit,
    .drvNew = new_manager,
    .drvFree = free_manager,
    .drvAddResource = add_resource,
    .drvAcquire = acquire,
    .drvRelease = release,
    .drvInquire = inquire,
};
