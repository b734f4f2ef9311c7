// Host watchdog plumbing for the agent: systemd's notify protocol and a wdmd
// client (the watchdog multiplexer shipped with sanlock).
//
// sd_notify: one datagram to $NOTIFY_SOCKET (a path, or "@name" for the
// abstract namespace). Node has no AF_UNIX datagram sockets, so it is done
// here; no libsystemd dependency.
//
// wdmd: libwdmd.so.1 is opened with dlopen() at the first connect, not linked,
// so the addon still loads on hosts without the sanlock packages; there
// wdmdConnect() reports why wdmd cannot be used instead of the addon failing
// to load. Each call is a send() (status also a recv()) on a local socket;
// SO_SNDTIMEO/SO_RCVTIMEO bound them so a stopped wdmd cannot hang the
// event loop.
#include <napi.h>

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "hostwatch.h"

namespace lockagent {
namespace {

std::string errText(int err) {
  char buf[256];
  return std::string(strerror_r(err, buf, sizeof buf));
}

Napi::Error errnoError(Napi::Env env, const std::string& what, int err) {
  Napi::Error e = Napi::Error::New(env, what + ": " + errText(err));
  const char* name = strerrorname_np(err);
  e.Set("code", name ? name : ("E" + std::to_string(err)).c_str());
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

// sdNotify(socketPath, text, fd?) -> true when sent. fd (optional) is passed
// with SCM_RIGHTS (FDSTORE=1). Throws with errno on failure.
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    throw Napi::TypeError::New(env, "sdNotify(socketPath, text[, fd])");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string text = info[1].As<Napi::String>().Utf8Value();
  int passFd = info.Length() > 2 && info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : -1;

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || (path[0] != '/' && path[0] != '@') || path.size() >= sizeof addr.sun_path)
    throw Napi::Error::New(env, "NOTIFY_SOCKET must be an absolute path or @abstract name shorter than 108 bytes: " + path);
  memcpy(addr.sun_path, path.data(), path.size());
  // Abstract namespace: a leading NUL instead of '@', length without a terminator.
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = offsetof(struct sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1);

  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) throw errnoError(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
  struct iovec iov = {const_cast<char*>(text.data()), text.size()};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_name = &addr;
  msg.msg_namelen = alen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  if (passFd >= 0) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &passFd, sizeof(int));
  }
  ssize_t n = sendmsg(s, &msg, MSG_NOSIGNAL);
  int err = errno;
  close(s);
  if (n < 0) throw errnoError(env, "sendmsg to NOTIFY_SOCKET " + path, err);
  return Napi::Boolean::New(env, true);
}

// ---- wdmd --------------------------------------------------------------------

struct Wdmd {
  void* lib = nullptr;
  int (*connect)(void) = nullptr;
  int (*reg)(int, char*) = nullptr;
  int (*refcountSet)(int) = nullptr;
  int (*refcountClear)(int) = nullptr;
  int (*testLive)(int, uint64_t, uint64_t) = nullptr;
  int (*status)(int, int*, int*, uint64_t*) = nullptr;
};

Wdmd wdmd;
std::string wdmdLoadError;

// Loads libwdmd.so.1 once; returns "" or why it cannot be used.
const std::string& loadWdmd() {
  static bool tried = false;
  if (tried) return wdmdLoadError;
  tried = true;
  const char* name = getenv("LOCKAGENT_LIBWDMD");
  void* h = dlopen(name && *name ? name : "libwdmd.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    wdmdLoadError = std::string("cannot load libwdmd.so.1 (install the sanlock packages: libwdmd / libsanlock): ") + (e ? e : "dlopen failed");
    return wdmdLoadError;
  }
  wdmd.lib = h;
  wdmd.connect = reinterpret_cast<int (*)(void)>(dlsym(h, "wdmd_connect"));
  wdmd.reg = reinterpret_cast<int (*)(int, char*)>(dlsym(h, "wdmd_register"));
  wdmd.refcountSet = reinterpret_cast<int (*)(int)>(dlsym(h, "wdmd_refcount_set"));
  wdmd.refcountClear = reinterpret_cast<int (*)(int)>(dlsym(h, "wdmd_refcount_clear"));
  wdmd.testLive = reinterpret_cast<int (*)(int, uint64_t, uint64_t)>(dlsym(h, "wdmd_test_live"));
  wdmd.status = reinterpret_cast<int (*)(int, int*, int*, uint64_t*)>(dlsym(h, "wdmd_status"));
  if (!wdmd.connect || !wdmd.reg || !wdmd.refcountSet || !wdmd.refcountClear || !wdmd.testLive || !wdmd.status)
    wdmdLoadError = "libwdmd.so.1 lacks one of wdmd_connect/register/refcount_set/refcount_clear/test_live/status";
  return wdmdLoadError;
}

Napi::Error wdmdError(Napi::Env env, const std::string& call, int rv) {
  // libwdmd returns -errno.
  Napi::Error e = errnoError(env, call, rv < 0 ? -rv : rv);
  e.Set("syscall", call);
  return e;
}

int fdArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber())
    throw Napi::TypeError::New(info.Env(), "first argument must be the wdmd connection fd");
  return info[0].As<Napi::Number>().Int32Value();
}

// wdmdConnect(name) -> fd: connect, register `name`, set the refcount (wdmd
// must not exit cleanly while we rely on it), bound the socket's send/recv time.
Napi::Value WdmdConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "lockagent";
  const std::string& why = loadWdmd();
  if (!why.empty()) {
    Napi::Error e = Napi::Error::New(env, why);
    e.Set("code", "ENOLIB");
    throw e;
  }
  int con = wdmd.connect();
  if (con < 0) throw wdmdError(env, "wdmd_connect (/run/wdmd/wdmd.sock)", con);
  struct timeval tv = {1, 0};
  setsockopt(con, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(con, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[WDMD_NAME_SIZE_];
  memset(buf, 0, sizeof buf);
  snprintf(buf, sizeof buf - 1, "%s", name.c_str());
  int rv = wdmd.reg(con, buf);
  if (rv < 0) {
    close(con);
    throw wdmdError(env, "wdmd_register", rv);
  }
  rv = wdmd.refcountSet(con);
  if (rv < 0) {
    close(con);
    throw wdmdError(env, "wdmd_refcount_set", rv);
  }
  return Napi::Number::New(env, con);
}

// wdmdStatus(fd) -> {testInterval, fireTimeout, lastKeepalive}
Napi::Value WdmdStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int con = fdArg(info);
  int testInterval = 0, fireTimeout = 0;
  uint64_t last = 0;
  if (!loadWdmd().empty()) throw Napi::Error::New(env, wdmdLoadError);
  int rv = wdmd.status(con, &testInterval, &fireTimeout, &last);
  if (rv < 0) throw wdmdError(env, "wdmd_status", rv);
  Napi::Object o = Napi::Object::New(env);
  o.Set("testInterval", testInterval);
  o.Set("fireTimeout", fireTimeout);
  o.Set("lastKeepalive", static_cast<double>(last));
  return o;
}

// wdmdTestLive(fd, renewal, expire): monotonic seconds; (0, 0) disarms.
Napi::Value WdmdTestLive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int con = fdArg(info);
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "wdmdTestLive(fd, renewal, expire)");
  if (!loadWdmd().empty()) throw Napi::Error::New(env, wdmdLoadError);
  int rv = wdmd.testLive(con, static_cast<uint64_t>(info[1].As<Napi::Number>().Int64Value()),
                         static_cast<uint64_t>(info[2].As<Napi::Number>().Int64Value()));
  if (rv < 0) throw wdmdError(env, "wdmd_test_live", rv);
  return env.Undefined();
}

// wdmdClose(fd, clearRefcount): drop the refcount (after disarming) and close.
Napi::Value WdmdClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int con = fdArg(info);
  bool clear = info.Length() > 1 && info[1].ToBoolean().Value();
  if (clear && loadWdmd().empty()) wdmd.refcountClear(con);
  close(con);
  return env.Undefined();
}

}  // namespace

void registerHostWatch(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("wdmdConnect", Napi::Function::New(env, WdmdConnect, "wdmdConnect"));
  exports.Set("wdmdStatus", Napi::Function::New(env, WdmdStatus, "wdmdStatus"));
  exports.Set("wdmdTestLive", Napi::Function::New(env, WdmdTestLive, "wdmdTestLive"));
  exports.Set("wdmdClose", Napi::Function::New(env, WdmdClose, "wdmdClose"));
}

}  // namespace lockagent
