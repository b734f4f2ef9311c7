// Node-API bindings for the sector I/O engine (io_engine.h).
//
// Every request settles exactly once, on some engine thread, and is handed to
// the JS thread through one ThreadSafeFunction per addon instance. That TSFN
// is ref'd only while promises are pending so an idle addon (or a thread
// stuck forever in open() on a FIFO) never keeps the process alive.
#include <napi.h>

#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "deltascan.h"
#include "filepages.h"
#include "hostwatch.h"
#include "io_engine.h"
#include "tsfn_bridge.h"

namespace lockagent {
namespace {

constexpr int kSanlockAioTimeout = -202;  // SANLK_AIO_TIMEOUT
constexpr double kMaxSafeInteger = 9007199254740991.0;

// Forwards settled requests from engine threads to the TSFN. Once the Node
// environment is torn down the TSFN is gone; detach() makes late deliveries
// from still-running threads a no-op instead of a use-after-free.
class EngineSink : public Sink, public TsfnBridge {
 public:
  void deliver(std::shared_ptr<Request> req) override {
    post(new std::shared_ptr<Request>(std::move(req)));
  }
};

// Per-environment state (instance data); only touched on the JS thread.
struct Addon {
  std::shared_ptr<EngineSink> bridge = std::make_shared<EngineSink>();
  napi_threadsafe_function tsfn = nullptr;
  Napi::FunctionReference fileCtor;
  Napi::FunctionReference gateCtor;
  size_t pending = 0;

  void retain(napi_env env) {
    if (pending++ == 0) napi_ref_threadsafe_function(env, tsfn);
  }
  void release(napi_env env) {
    if (pending > 0 && --pending == 0) napi_unref_threadsafe_function(env, tsfn);
  }
};

std::string errnoName(int err) {
  const char* name = strerrorname_np(err);
  return name ? std::string(name) : "E" + std::to_string(err);
}

std::string errnoText(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer that may or may not be buf.
  return std::string(strerror_r(err, buf, sizeof buf));
}

std::string fmtMs(double ms) {
  if (std::floor(ms) == ms) return std::to_string(static_cast<int64_t>(ms));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", ms);
  return buf;
}

// "read of 512 bytes at offset 1048576 on /path"
std::string describe(const Request& r) {
  switch (r.op) {
    case Op::Open:
      return "open of " + r.path;
    case Op::Close:
      return "close of " + r.path;
    case Op::Probe:
      return "read of the first " + std::to_string(r.length) + " bytes of " +
             r.path;
    case Op::Read:
    case Op::Write:
      return std::string(r.op == Op::Read ? "read" : "write") + " of " +
             std::to_string(r.length) + " bytes at offset " +
             std::to_string(r.offset) + " on " + r.path;
    case Op::CompareWrite:
      return "read of " + std::to_string(r.length) + " bytes at offset " +
             std::to_string(r.offset) + " and " + std::to_string(r.writes.size()) +
             " write(s) if unchanged on " + r.path;
  }
  return r.path;
}

// "cannot read 512 bytes at offset 0 from /path"
std::string cannot(const Request& r) {
  switch (r.op) {
    case Op::Open:
      return "cannot open " + r.path;
    case Op::Close:
      return "cannot close " + r.path;
    case Op::Probe:
      return "cannot read the first " + std::to_string(r.length) +
             " bytes of " + r.path;
    case Op::Read:
      return "cannot read " + std::to_string(r.length) + " bytes at offset " +
             std::to_string(r.offset) + " from " + r.path;
    case Op::Write:
      return "cannot write " + std::to_string(r.length) +
             " bytes at offset " + std::to_string(r.offset) + " to " + r.path;
    case Op::CompareWrite:
      return "cannot " + std::string(r.syscall) + " " + r.path +
             " (read of " + std::to_string(r.length) + " bytes at offset " +
             std::to_string(r.offset) + ", then writes if unchanged)";
  }
  return r.path;
}

// Short pointers at the usual cause, appended to the strerror text.
std::string hint(const Request& r) {
  const bool io = r.op == Op::Read || r.op == Op::Write || r.op == Op::CompareWrite;
  switch (r.err) {
    case EACCES:
    case EPERM:
      return " (check the owner, mode and SELinux label of the path)";
    case EINVAL:
      return io ? " (offset or length not aligned to the device's logical "
                  "sector size?)"
                : "";
    case EIO:
      return " (storage I/O error: check dmesg and the path to the storage)";
    case ENXIO:
      return io && r.op == Op::Read ? " (read beyond the end of the device)"
                                    : "";
    default:
      return "";
  }
}

Napi::Value makeError(Napi::Env env, const Request& r) {
  std::string msg;
  std::string code;
  int err = r.err;
  bool timeout = false;
  // A CompareWrite names the phase it failed in: its read until its first write started.
  const bool cwWrite = r.op == Op::CompareWrite && (r.writing.load() || r.outcome == Outcome::ReadOnly);
  const char* verb = r.op == Op::Read || r.op == Op::Probe ? "read"
                     : r.op == Op::Write || cwWrite         ? "write"
                     : r.op == Op::CompareWrite             ? "read"
                     : r.op == Op::Open                     ? "open"
                                                            : "close";
  std::string syscall = verb;
  switch (r.outcome) {
    case Outcome::Timeout:
      timeout = true;
      err = ETIMEDOUT;
      msg = r.gateWaiting.load()
                ? "timeout: " + describe(r) + " read and compared, but its writes waited for the "
                  "caller (its write gate) past " + fmtMs(r.timeoutMs) + " ms: nothing written; "
                  "the storage answered, the agent's event loop or state database was too slow"
                : "I/O timeout: " + describe(r) + " did not complete within " + fmtMs(r.timeoutMs) + " ms";
      break;
    case Outcome::Stuck:
      timeout = true;
      err = ETIMEDOUT;
      msg = "I/O timeout: " + describe(r) + " was not started: all " +
            std::to_string(r.threadsStuck) +
            " I/O threads for this path are stuck in requests past their "
            "deadline";
      break;
    case Outcome::Cancelled:
      err = ECANCELED;
      msg = describe(r) + (r.scheduled ? " cancelled before its start time" : " cancelled: the file was closed before it started");
      break;
    case Outcome::Late:
      err = ETIME;
      msg = describe(r) + " not started: its I/O thread reached it after its latest start time; nothing read or written";
      break;
    case Outcome::Closed:
      err = EBADF;
      msg = cannot(r) + ": the file is closed";
      break;
    case Outcome::ReadOnly:
      err = EBADF;
      msg = cannot(r) + ": the file was opened read-only";
      break;
    case Outcome::SysError:
    default:
      syscall = r.syscall[0] ? r.syscall : verb;
      if (syscall == "pthread_create") {
        msg = "cannot start an I/O thread for " + r.path + ": " +
              errnoText(err);
      } else if (r.op == Op::Probe) {
        msg = cannot(r) + ": " + syscall + ": " + errnoText(err) + hint(r);
      } else if (r.op == Op::Open && syscall != "open") {
        msg = cannot(r) + ": " + syscall + " failed: " + errnoText(err);
      } else {
        msg = cannot(r) + ": " + errnoText(err) + hint(r);
      }
      break;
  }
  code = errnoName(err);
  Napi::Error e = Napi::Error::New(env, msg);
  Napi::Object o = e.Value();
  o.Set("code", code);
  o.Set("errno", Napi::Number::New(env, err));
  o.Set("syscall", syscall);
  o.Set("path", r.path);
  if (timeout) o.Set("sanlockRv", Napi::Number::New(env, kSanlockAioTimeout));
  return o;
}

Napi::Value makeOpenResult(Napi::Env env, Addon* addon, Request& r) {
  Napi::Object res = Napi::Object::New(env);
  auto ext = Napi::External<std::shared_ptr<Handle>>::New(env, &r.owner);
  res.Set("file", addon->fileCtor.New({ext}));
  res.Set("direct", r.direct);
  res.Set("isBlockDevice", r.info.isBlockDevice);
  res.Set("size", static_cast<double>(r.info.size));
  res.Set("logicalSectorSize", r.info.logicalSectorSize);
  res.Set("dev", Napi::BigInt::New(env, r.info.dev));
  res.Set("ino", Napi::BigInt::New(env, r.info.ino));
  res.Set("nlink", static_cast<double>(r.info.nlink));
  return res;
}

// readHead's result: what fstat said, and the bytes when it is a regular file.
Napi::Value makeProbeResult(Napi::Env env, Request& r) {
  Napi::Object res = Napi::Object::New(env);
  const bool regular = S_ISREG(r.info.mode);
  res.Set("data", regular ? Napi::Value(Napi::Buffer<char>::Copy(
                                env, static_cast<char*>(r.buf), r.length))
                          : env.Undefined());
  res.Set("direct", r.direct);
  res.Set("mode", static_cast<double>(r.info.mode));
  res.Set("size", static_cast<double>(r.info.size));
  res.Set("dev", Napi::BigInt::New(env, r.info.dev));
  res.Set("ino", Napi::BigInt::New(env, r.info.ino));
  res.Set("nlink", static_cast<double>(r.info.nlink));
  res.Set("mtimeSec", static_cast<double>(r.info.mtimeSec));
  res.Set("mtimeNsec", static_cast<double>(r.info.mtimeNsec));
  return res;
}

// TSFN callback, on the JS thread. env is null when the TSFN is being torn
// down with items still queued; then we only free the box.
// readInto / readCompareWrite: the bytes read (at `from`) go to the caller's buffer, which is
// only ever written here, after a successful read (a timed-out read never touches it) --
// unless it came from allocAligned: then the read filled it in place.
void fillTarget(Napi::Env env, napi_ref target, const Request& r, const char* from, const char* what) {
  napi_value tv;
  void* data = nullptr;
  size_t len = 0;
  if (napi_get_reference_value(env, target, &tv) != napi_ok || tv == nullptr ||
      napi_get_typedarray_info(env, tv, nullptr, &len, &data, nullptr, nullptr) != napi_ok ||
      len != r.length)
    throw Napi::Error::New(env, std::string(what) + ": the target buffer is gone or changed size");
  if (!r.block) std::memcpy(data, from, r.length);
}

void callJs(napi_env rawEnv, napi_value, void* context, void* data) {
  std::unique_ptr<std::shared_ptr<Request>> boxed(
      static_cast<std::shared_ptr<Request>*>(data));
  if (rawEnv == nullptr) return;
  Napi::Env env(rawEnv);
  Addon* addon = static_cast<Addon*>(context);
  Request& r = **boxed;
  auto deferred = static_cast<napi_deferred>(r.jsDeferred);
  r.jsDeferred = nullptr;
  auto target = static_cast<napi_ref>(r.jsTarget);
  r.jsTarget = nullptr;
  if (deferred) {
    Napi::HandleScope scope(env);
    napi_value value = nullptr;
    bool ok = r.outcome == Outcome::Ok;
    try {
      if (!ok) {
        value = makeError(env, r);
      } else if (r.op == Op::Open) {
        value = makeOpenResult(env, addon, r);
      } else if (r.op == Op::Probe) {
        value = makeProbeResult(env, r);
      } else if (r.op == Op::Read && target) {
        fillTarget(env, target, r, static_cast<char*>(r.buf), "readInto");
        value = env.Undefined();
      } else if (r.op == Op::Read) {
        value = Napi::Buffer<char>::Copy(env, static_cast<char*>(r.buf),
                                         r.length);
      } else if (r.op == Op::CompareWrite && target) {
        // readCompareWrite: true when written, false when the compare failed; scheduled, with
        // how long it ran (ms): { written, ms }.
        fillTarget(env, target, r, static_cast<char*>(r.buf) + r.compareLength, "readCompareWrite");
        if (r.scheduled) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("written", r.matched);
          o.Set("ms", std::chrono::duration<double, std::milli>(r.ranFor).count());
          if (r.stamp.on) {
            o.Set("timestamp", static_cast<double>(r.stampedSeconds));
            o.Set("checksum", static_cast<double>(r.stampedChecksum));
          }
          value = o;
        } else {
          value = Napi::Boolean::New(env, r.matched);
        }
      } else if (r.op == Op::CompareWrite) {
        // true: written; else the bytes found instead of the expected ones
        value = r.matched ? Napi::Value(Napi::Boolean::New(env, true))
                          : Napi::Value(Napi::Buffer<char>::Copy(
                                env, static_cast<char*>(r.buf) + r.compareLength, r.length));
      } else {
        value = env.Undefined();
      }
    } catch (const Napi::Error& e) {
      ok = false;
      value = e.Value();
    } catch (const std::exception& e) {  // e.g. bad_alloc: never unwind into Node
      ok = false;
      napi_value msg;
      napi_create_string_utf8(env, e.what(), NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, nullptr, msg, &value);
    }
    if (ok)
      napi_resolve_deferred(env, deferred, value);
    else
      napi_reject_deferred(env, deferred, value);
  }
  if (target) napi_delete_reference(env, target);
  // Drop the handle reference held for the open before JS could wrap it.
  r.owner.reset();
  addon->release(env);
}

[[noreturn]] void throwEinval(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::RangeError::New(env, msg);
  e.Set("code", "EINVAL");
  e.Set("errno", Napi::Number::New(env, EINVAL));
  throw e;
}

std::string argPath(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throwEinval(info.Env(), "path must be a string");
  std::string path = info[i].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos)
    throwEinval(info.Env(), "path must be a non-empty string without NUL bytes");
  return path;
}

double argTimeout(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throwEinval(info.Env(), "timeoutMs must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v > 0) || !std::isfinite(v) || v > 1e9)
    throwEinval(info.Env(), "timeoutMs must be a positive number of ms");
  return v;
}

// Defensive re-validation; the TypeScript wrapper reports these more nicely.
// A whole number of 512-byte units (an offset or a length).
uint64_t alignedValue(Napi::Env env, Napi::Value value, const std::string& what,
                      bool allowZero) {
  if (!value.IsNumber()) throwEinval(env, what + " must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > kMaxSafeInteger || std::floor(v) != v ||
      (!allowZero && v == 0))
    throwEinval(env, what + " is invalid");
  auto u = static_cast<uint64_t>(v);
  if (u % kSectorAlign)
    throwEinval(env, what + " " + std::to_string(u) + " is not a multiple of 512");
  return u;
}

uint64_t argAligned(const Napi::CallbackInfo& info, size_t i, const char* what,
                    bool allowZero) {
  return alignedValue(info.Env(), info[i], what, allowZero);
}

// The bytes of a Buffer/Uint8Array a request reads into or writes from: whole
// sectors, at most kMaxIoLength.
struct Sectors {
  Napi::TypedArray array;
  uint8_t* data;
  uint64_t length;
};
Sectors sectorsOf(Napi::Env env, Napi::Value value, const std::string& what) {
  if (!value.IsTypedArray()) throwEinval(env, what + " must be a Buffer or Uint8Array");
  auto a = value.As<Napi::TypedArray>();
  uint64_t length = a.ByteLength();
  if (length == 0 || length % kSectorAlign || length > kMaxIoLength)
    throwEinval(env, what + " length " + std::to_string(length) +
                         " is not a positive multiple of 512");
  return {a, static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset(), length};
}

// The promise req settles through the addon's sink; keeps the addon alive until then.
napi_value pending(Napi::Env env, Addon* addon, Request& req) {
  napi_deferred deferred;
  napi_value promise;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise),
                       nullptr);
  req.jsDeferred = deferred;
  req.sink = addon->bridge;
  addon->retain(env);
  return promise;
}

// Creates the promise, registers it as pending and hands req to the handle.
Napi::Value start(Napi::Env env, Addon* addon,
                  const std::shared_ptr<Handle>& handle,
                  std::shared_ptr<Request> req, bool isClose = false) {
  req->handle = handle;
  napi_value promise = pending(env, addon, *req);
  if (isClose)
    handle->close(std::move(req));
  else if (req->scheduled)
    handle->submitAt(std::move(req));
  else
    handle->submit(std::move(req));
  return Napi::Value(env, promise);
}

// new WriteGate(): passed to writeIfUnchanged, holds its writes until open() (io_engine.h).
class NativeWriteGate : public Napi::ObjectWrap<NativeWriteGate> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "WriteGate", {InstanceMethod<&NativeWriteGate::Open>("open")});
  }
  explicit NativeWriteGate(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<NativeWriteGate>(info), gate(std::make_shared<WriteGate>()) {}
  Napi::Value Open(const Napi::CallbackInfo& info) {
    gate->open();
    return info.Env().Undefined();
  }
  const std::shared_ptr<WriteGate> gate;
};

class NativeFile : public Napi::ObjectWrap<NativeFile> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeFile",
                       {InstanceMethod<&NativeFile::Read>("read"),
                        InstanceMethod<&NativeFile::ReadInto>("readInto"),
                        InstanceMethod<&NativeFile::Write>("write"),
                        InstanceMethod<&NativeFile::WriteIfUnchanged>("writeIfUnchanged"),
                        InstanceMethod<&NativeFile::ReadCompareWrite>("readCompareWrite"),
                        InstanceMethod<&NativeFile::CancelScheduled>("cancelScheduled"),
                        InstanceMethod<&NativeFile::Close>("close"),
                        InstanceMethod<&NativeFile::Threads>("threadCount")});
  }

  explicit NativeFile(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<NativeFile>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeFile is created by open()");
    handle_ = *info[0].As<Napi::External<std::shared_ptr<Handle>>>().Data();
  }

  // Garbage-collected without close(): release the fd and threads anyway.
  ~NativeFile() override {
    if (handle_) handle_->shutdown();
  }

 private:
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = argAligned(info, 0, "offset", true);
    uint64_t length = argAligned(info, 1, "length", false);
    double timeoutMs = argTimeout(info, 2);
    if (length > kMaxIoLength) throwEinval(env, "length is too large");
    auto req = std::shared_ptr<Request>(new Request(
        Op::Read, handle_->path(), static_cast<int64_t>(offset), length,
        timeoutMs));
    if (!req->allocate()) throw Napi::Error::New(env, "out of memory");
    req->stats = handle_->stats();
    return start(env, addon(env), handle_, std::move(req));
  }

  // readInto(offset, target, timeoutMs): reads target.length bytes and copies
  // them into target (a Buffer/Uint8Array) on completion; resolves undefined.
  // Saves the JS-side allocation of read(): a lease read is up to 8 MiB, and
  // fresh external buffers of that size per read make V8 collect garbage often.
  Napi::Value ReadInto(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = argAligned(info, 0, "offset", true);
    Sectors target = sectorsOf(env, info[1], "target");
    uint64_t length = target.length;
    double timeoutMs = argTimeout(info, 2);
    auto req = std::shared_ptr<Request>(new Request(
        Op::Read, handle_->path(), static_cast<int64_t>(offset), length,
        timeoutMs));
    // A Buffer from allocAligned (the whole of it, or its start) is read into directly.
    void* at = target.data;
    std::shared_ptr<AlignedBlock> block = findBlock(at);
    if (block && block->size >= length) {
      req->block = std::move(block);
      req->buf = at;
    } else if (!req->allocate()) {
      throw Napi::Error::New(env, "out of memory");
    }
    napi_ref ref;
    NAPI_THROW_IF_FAILED(env, napi_create_reference(env, target.array, 1, &ref),
                         Napi::Value());
    req->jsTarget = ref;
    req->stats = handle_->stats();
    return start(env, addon(env), handle_, std::move(req));
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = argAligned(info, 0, "offset", true);
    Sectors data = sectorsOf(env, info[1], "data");
    uint64_t length = data.length;
    const uint8_t* bytes = data.data;
    double timeoutMs = argTimeout(info, 2);
    auto req = std::shared_ptr<Request>(new Request(
        Op::Write, handle_->path(), static_cast<int64_t>(offset), length,
        timeoutMs));
    if (!req->allocate()) throw Napi::Error::New(env, "out of memory");
    // Copy into the aligned buffer now: O_DIRECT needs the alignment, and the
    // caller may reuse its Buffer as soon as write() returns.
    std::memcpy(req->buf, bytes, length);
    req->stats = handle_->stats();
    return start(env, addon(env), handle_, std::move(req));
  }

  // writeIfUnchanged(offset, expected, writes: [offset, data][], timeoutMs, gate?):
  // resolves true when the bytes at offset equalled `expected` and every write
  // was done (together, in any order; they must not overlap); else resolves the
  // bytes found (nothing written). With a WriteGate, the writes wait until it is opened.
  Napi::Value WriteIfUnchanged(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = argAligned(info, 0, "offset", true);
    Sectors expected = sectorsOf(env, info[1], "expected");
    double timeoutMs = argTimeout(info, 3);
    std::shared_ptr<WriteGate> gate;
    if (info.Length() > 4 && !info[4].IsUndefined()) {
      if (!info[4].IsObject() || !info[4].As<Napi::Object>().InstanceOf(addon(env)->gateCtor.Value()))
        throwEinval(env, "gate must be a WriteGate");
      gate = NativeWriteGate::Unwrap(info[4].As<Napi::Object>())->gate;
    }
    auto req = compareWrite(env, offset, expected.length, 0, expected, info[2], nullptr, timeoutMs);
    req->gate = std::move(gate);
    return start(env, addon(env), handle_, std::move(req));
  }

  // readCompareWrite(offset, target, compareAt, expected, writes: [offset, data][], timeoutMs,
  // schedule?: { startAtMs, latestStartAtMs?, nextInMs? }):
  // reads target.length bytes at offset into target (as readInto); when `expected` is found at
  // target[compareAt], does every write (as writeIfUnchanged) and resolves true, else resolves false
  // (nothing written). One hand-off for a renewal's read and write. With `schedule` (times in ms
  // of CLOCK_MONOTONIC, process.hrtime's clock), it starts at startAtMs (Handle::submitAt; its
  // deadline counts from then) and is rejected ETIME, unstarted, when its thread gets to it after
  // latestStartAtMs; cancelScheduled() rejects it ECANCELED until it starts. nextInMs announces the
  // next request of its series (Request::nextIn).
  Napi::Value ReadCompareWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint64_t offset = argAligned(info, 0, "offset", true);
    Sectors target = sectorsOf(env, info[1], "target");
    if (!info[2].IsNumber()) throwEinval(env, "compareAt must be a number");
    double at = info[2].As<Napi::Number>().DoubleValue();
    Sectors expected = sectorsOf(env, info[3], "expected");
    // Compared as doubles before any cast: a huge compareAt must not wrap around.
    if (!(at >= 0) || std::floor(at) != at || expected.length > target.length ||
        at > static_cast<double>(target.length - expected.length))
      throwEinval(env, "compareAt must be an integer with the expected bytes inside the target");
    double timeoutMs = argTimeout(info, 5);
    const bool scheduled = info.Length() > 6 && !info[6].IsUndefined();
    Clock::time_point startAt = Clock::now(), latestStart = Clock::time_point::max();
    Clock::duration nextIn{0};
    SectorStamp stamp;
    if (scheduled) {
      if (!info[6].IsObject()) throwEinval(env, "schedule must be { startAtMs, latestStartAtMs?, nextInMs? }");
      auto o = info[6].As<Napi::Object>();
      // ms of CLOCK_MONOTONIC (libstdc++'s steady_clock); checked as doubles before any cast
      auto ms = [&](const char* key, bool required, double min) -> double {
        Napi::Value v = o.Get(key);
        if (v.IsUndefined() && !required) return -1;
        double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= min) || !(d < 9.0e15)) throwEinval(env, std::string("schedule.") + key + " must be a number of milliseconds");
        return d;
      };
      auto point = [](double d) { return Clock::time_point(msDuration(d)); };
      const double s = ms("startAtMs", true, 0);
      startAt = point(s);
      const double l = ms("latestStartAtMs", false, s);
      if (l >= 0) latestStart = point(l);
      const double n = ms("nextInMs", false, 0);
      if (n > 0) nextIn = msDuration(n);
      Napi::Value st = o.Get("stamp");
      if (!st.IsUndefined()) {
        if (!st.IsObject()) throwEinval(env, "schedule.stamp must be { timestampAt, checksumAt, checksumLength }");
        auto so = st.As<Napi::Object>();
        auto field = [&](const char* key) -> uint32_t {
          Napi::Value v = so.Get(key);
          double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
          if (!(d >= 0) || d > 1048576 || std::floor(d) != d) throwEinval(env, std::string("schedule.stamp.") + key + " must be a byte offset");
          return static_cast<uint32_t>(d);
        };
        stamp.on = true;
        stamp.timestampAt = field("timestampAt");
        stamp.checksumAt = field("checksumAt");
        stamp.checksumLength = field("checksumLength");
      }
    }
    std::shared_ptr<AlignedBlock> block = findBlock(target.data);
    if (block && block->size < target.length) block.reset();
    auto req = compareWrite(env, offset, target.length, static_cast<uint64_t>(at), expected, info[4],
                            std::move(block), timeoutMs, startAt);
    if (scheduled) {
      req->scheduled = true;
      req->latestStart = latestStart;
      req->nextIn = nextIn;
      if (stamp.on) {
        const uint64_t first = req->writes.empty() ? 0 : req->writes[0].second;
        if (static_cast<uint64_t>(stamp.timestampAt) + 8 > first || static_cast<uint64_t>(stamp.checksumAt) + 4 > first ||
            stamp.checksumLength > stamp.checksumAt)
          throwEinval(env, "schedule.stamp must lie inside the first write, its checksum after the bytes it covers");
        req->stamp = stamp;
      }
    }
    napi_ref ref;
    NAPI_THROW_IF_FAILED(env, napi_create_reference(env, target.array, 1, &ref), Napi::Value());
    req->jsTarget = ref;
    return start(env, addon(env), handle_, std::move(req));
  }

  // A CompareWrite request: read `length` at offset (into `block` when given), compare
  // `expected` at compareAt, then `writes` ([offset, data] pairs, validated here).
  std::shared_ptr<Request> compareWrite(Napi::Env env, uint64_t offset, uint64_t length, uint64_t compareAt,
                                        const Sectors& expected, Napi::Value writesArg,
                                        std::shared_ptr<AlignedBlock> block, double timeoutMs,
                                        Clock::time_point startAt = Clock::now()) {
    if (!writesArg.IsArray()) throwEinval(env, "writes must be an array");
    auto list = writesArg.As<Napi::Array>();
    std::vector<std::pair<int64_t, uint64_t>> writes;
    std::vector<const uint8_t*> sources;
    // What the request allocates: the expected bytes, the read unless it lands in a block, the writes.
    uint64_t total = expected.length + (block ? 0 : length);
    if (total > kMaxIoLength) throwEinval(env, "the read and the expected bytes are too large");
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value e = list.Get(i);
      if (!e.IsArray() || e.As<Napi::Array>().Length() != 2)
        throwEinval(env, "each write must be [offset, data]");
      auto pair = e.As<Napi::Array>();
      const std::string what = "write " + std::to_string(i);
      uint64_t o = alignedValue(env, pair.Get(0u), what + " offset", true);
      Sectors d = sectorsOf(env, pair.Get(1u), what + " data");
      // The writes land in any order (io_engine.h, CompareWrite): overlapping ones would leave
      // either's bytes.
      for (auto& w : writes) {
        if (o < static_cast<uint64_t>(w.first) + w.second && static_cast<uint64_t>(w.first) < o + d.length)
          throwEinval(env, "writes must not overlap (" + what + " overlaps an earlier one)");
      }
      writes.emplace_back(static_cast<int64_t>(o), d.length);
      sources.push_back(d.data);
      total += d.length;
      if (total > kMaxIoLength) throwEinval(env, "writes are too large");
    }
    auto req = std::shared_ptr<Request>(new Request(
        Op::CompareWrite, handle_->path(), static_cast<int64_t>(offset), length,
        timeoutMs, startAt));
    req->bufSize = total;
    if (!req->allocate()) throw Napi::Error::New(env, "out of memory");
    req->block = std::move(block);
    req->compareAt = compareAt;
    req->compareLength = expected.length;
    char* buf = static_cast<char*>(req->buf);
    std::memcpy(buf, expected.data, expected.length);
    char* at = buf + expected.length + (req->block ? 0 : length);
    for (size_t i = 0; i < writes.size(); i++) {
      std::memcpy(at, sources[i], writes[i].second);
      at += writes[i].second;
    }
    req->writes = std::move(writes);
    req->stats = handle_->stats();
    return req;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    double timeoutMs = argTimeout(info, 0);
    auto req = std::shared_ptr<Request>(
        new Request(Op::Close, handle_->path(), 0, 0, timeoutMs));
    req->stats = handle_->stats();
    return start(env, addon(env), handle_, std::move(req), true);
  }

  // cancelScheduled(): true when a scheduled readCompareWrite was waiting for its start time (its
  // promise rejects ECANCELED, nothing read or written); false when none was or it has started.
  Napi::Value CancelScheduled(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), handle_->cancelScheduled());
  }

  Napi::Value Threads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(),
                             static_cast<double>(handle_->threadCount()));
  }

  static Addon* addon(Napi::Env env) { return env.GetInstanceData<Addon>(); }

  std::shared_ptr<Handle> handle_;
};

// allocAligned(length) -> Buffer of `length` bytes (a multiple of 512) in
// page-aligned memory that readInto fills in place (io_engine.h, AlignedBlock).
Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t length = argAligned(info, 0, "length", false);
  if (length > kMaxIoLength) throwEinval(env, "length is too large");
  std::shared_ptr<AlignedBlock> block = allocBlock(length);
  if (!block) throw Napi::Error::New(env, "out of memory");
  auto* hold = new std::shared_ptr<AlignedBlock>(block);
  return Napi::Buffer<char>::New(
      env, static_cast<char*>(block->data), static_cast<size_t>(length),
      [](Napi::Env, char*, std::shared_ptr<AlignedBlock>* h) { delete h; }, hold);
}

// open(path, readOnly, timeoutMs[, keepThreadMs]) -> Promise<{file, direct,
// isBlockDevice, size, logicalSectorSize}>; keepThreadMs: how long the file's
// idle I/O thread waits for its next request (default kDefaultHandleIdleMs)
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = argPath(info, 0);
  bool readOnly = info[1].ToBoolean().Value();
  double timeoutMs = argTimeout(info, 2);
  int idleMs = kDefaultHandleIdleMs;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    double v = info[3].IsNumber() ? info[3].As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v > 600000 || std::floor(v) != v)
      throwEinval(env, "keepThreadMs must be a whole number of ms from 0 to 600000");
    idleMs = static_cast<int>(v);
  }
  auto stats = statsFor(path);
  auto handle = std::make_shared<Handle>(path, readOnly, stats, idleMs);
  auto req = std::shared_ptr<Request>(
      new Request(Op::Open, path, 0, 0, timeoutMs));
  req->stats = stats;
  req->owner = handle;
  return start(env, env.GetInstanceData<Addon>(), handle, std::move(req));
}

// readHead(path, length, timeoutMs) -> Promise<{data?, direct, mode, size,
// dev, ino, nlink, mtimeSec, mtimeNsec}>: open read-only without following a
// symlink, fstat, read the first `length` bytes (regular files only), close;
// one request on the shared probe pool (io_engine.h, submitProbe).
Napi::Value ReadHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = argPath(info, 0);
  uint64_t length = argAligned(info, 1, "length", false);
  if (length > kMaxIoLength) throwEinval(env, "length is too large");
  double timeoutMs = argTimeout(info, 2);
  auto req = std::shared_ptr<Request>(
      new Request(Op::Probe, path, 0, length, timeoutMs));
  if (!req->allocate()) throw Napi::Error::New(env, "out of memory");
  req->stats = statsFor(path);
  napi_value promise = pending(env, env.GetInstanceData<Addon>(), *req);
  submitProbe(std::move(req));
  return Napi::Value(env, promise);
}

Napi::Object statsObject(Napi::Env env, const StatsSnapshot& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("reads", static_cast<double>(s.reads));
  o.Set("writes", static_cast<double>(s.writes));
  o.Set("bytesRead", static_cast<double>(s.bytesRead));
  o.Set("bytesWritten", static_cast<double>(s.bytesWritten));
  o.Set("errors", static_cast<double>(s.errors));
  o.Set("timeouts", static_cast<double>(s.timeouts));
  o.Set("lateCompletions", static_cast<double>(s.lateCompletions));
  o.Set("writesTogether", static_cast<double>(s.writesTogether));
  return o;
}

Napi::Value IoStats(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) {
    std::string path = info[0].As<Napi::String>().Utf8Value();
    return statsObject(info.Env(), snapshotStats(&path));
  }
  return statsObject(info.Env(), snapshotStats(nullptr));
}

Napi::Value ResetIoStats(const Napi::CallbackInfo& info) {
  resetStats();
  return info.Env().Undefined();
}

Napi::Value TestForceDirectEinval(const Napi::CallbackInfo& info) {
  testForceDirectEinval(info[0].ToBoolean().Value());
  return info.Env().Undefined();
}

// _testInjectStall(path, offset, ms, count): the next `count` reads/writes
// at `offset` on `path` sleep `ms` before their syscall (simulated hang).
Napi::Value TestInjectStall(const Napi::CallbackInfo& info) {
  testInjectStall(info[0].ToString().Utf8Value(),
                  info[1].ToNumber().Int64Value(),
                  info[2].ToNumber().Uint32Value(),
                  info[3].ToNumber().Uint32Value());
  return info.Env().Undefined();
}

Napi::Value TestWatchdogWakeups(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(testWatchdogWakeups()));
}

// {created, parked}: handle threads created so far, and those parked now.
Napi::Value TestIoThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IoThreadCounts c = testIoThreads();
  Napi::Object o = Napi::Object::New(env);
  o.Set("created", Napi::Number::New(env, static_cast<double>(c.created)));
  o.Set("parked", Napi::Number::New(env, static_cast<double>(c.parked)));
  o.Set("aioContexts", Napi::Number::New(env, c.aioContexts));
  return o;
}

// _testFailAioSetup(count, errno, retryMs) -> the failures the last call asked for still to come:
// the AIO context pool's next `count` io_setup calls fail with `errno`; a failure then waits
// retryMs (0: the production minute) before the pool tries again.
Napi::Value TestFailAioSetup(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), testFailAioSetup(info[0].ToNumber().Uint32Value(),
                                                        info[1].ToNumber().Int32Value(),
                                                        info[2].ToNumber().Uint32Value()));
}

// _testDropFreeAioContexts() -> how many: destroys the pool's free AIO contexts.
Napi::Value TestDropFreeAioContexts(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), testDropFreeAioContexts());
}

// deltaQuickScan({ words, hosts, step, prev, quick, names, spaceWords, ioTimeouts, lastLive,
// ourIndex, ourBitWord, ourBitMask, now, slow }) -> how many sector indexes it wrote to slow
// (deltascan.h; the rule: quickScanJs in src/lease/hostmonitor.ts). Every array's type and
// length is checked against hosts and step: a mismatch is EINVAL, nothing touched.
Napi::Value DeltaQuickScan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throwEinval(env, "deltaQuickScan takes one object");
  Napi::Object a = info[0].As<Napi::Object>();
  auto num = [&](const char* k) -> double {
    Napi::Value v = a.Get(k);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d > 4294967295.0 || std::floor(d) != d) throwEinval(env, std::string(k) + " must be an integer >= 0");
    return d;
  };
  auto arr = [&](const char* k, napi_typedarray_type type, size_t atLeast) -> void* {
    Napi::Value v = a.Get(k);
    if (!v.IsTypedArray()) throwEinval(env, std::string(k) + " must be a typed array");
    Napi::TypedArray t = v.As<Napi::TypedArray>();
    if (t.TypedArrayType() != type) throwEinval(env, std::string(k) + " has the wrong element type");
    if (t.ElementLength() < atLeast) throwEinval(env, std::string(k) + " is too short");
    return static_cast<uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
  };
  const size_t hosts = static_cast<size_t>(num("hosts"));
  const size_t step = static_cast<size_t>(num("step"));
  const size_t ourBitWord = static_cast<size_t>(num("ourBitWord"));
  if (step <= kScanIoTimeoutWord || ourBitWord >= step) throwEinval(env, "step must hold a delta record and ourBitWord lie inside it");
  DeltaScan s{};
  s.hosts = hosts;
  s.step = step;
  s.words = static_cast<const uint32_t*>(arr("words", napi_uint32_array, hosts * step));
  s.prev = static_cast<uint32_t*>(arr("prev", napi_uint32_array, hosts * kScanWatchedWords));
  s.quick = static_cast<const uint8_t*>(arr("quick", napi_uint8_array, hosts + 1));
  s.names = static_cast<const uint32_t*>(arr("names", napi_uint32_array, (hosts + 1) * kScanNameWords));
  s.spaceWords = static_cast<const uint32_t*>(arr("spaceWords", napi_uint32_array, kScanNameWords));
  s.ioTimeouts = static_cast<const uint16_t*>(arr("ioTimeouts", napi_uint16_array, hosts + 1));
  s.lastLive = static_cast<double*>(arr("lastLive", napi_float64_array, hosts + 1));
  s.slow = static_cast<int32_t*>(arr("slow", napi_int32_array, hosts));
  s.ourIndex = static_cast<int64_t>(num("ourIndex"));
  s.ourBitWord = ourBitWord;
  s.ourBitMask = static_cast<uint32_t>(num("ourBitMask"));
  Napi::Value now = a.Get("now");
  if (!now.IsNumber()) throwEinval(env, "now must be a number");
  s.now = now.As<Napi::Number>().DoubleValue();
  return Napi::Number::New(env, static_cast<double>(deltaQuickScan(s)));
}

// peerCred(fd) -> {pid, uid, gid} of the process at the other end of a
// connected unix socket (SO_PEERCRED: the credentials at connect() time).
// Throws an Error with code/errno/syscall like Node's own errors.
Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwEinval(env, "fd must be a number");
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    int err = fd < 0 ? EBADF : errno;
    Napi::Error e = Napi::Error::New(env, "getsockopt(SO_PEERCRED) failed: " + errnoText(err));
    e.Set("code", errnoName(err));
    e.Set("errno", Napi::Number::New(env, err));
    e.Set("syscall", "getsockopt");
    throw e;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

// trimMemory() -> whether memory was released: drops the cached aligned I/O
// buffers, then malloc_trim(0) hands freed pages inside glibc's arenas back to
// the kernel. Lease reads use 1-8 MiB buffers; after a burst of acquires the
// freed ones would otherwise stay resident.
Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
  dropBufferCache();
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
}

// dropCleanFilePages() -> { mappings, bytes }: see filepages.h. Throws when /proc/self/smaps
// cannot be read.
Napi::Value DropCleanFilePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  FilePagesDropped d = dropCleanFilePages();
  if (d.err) {
    Napi::Error e = Napi::Error::New(env, "reading /proc/self/smaps failed: " + errnoText(d.err));
    e.Set("code", errnoName(d.err));
    throw e;
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("mappings", Napi::Number::New(env, static_cast<double>(d.mappings)));
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(d.bytes)));
  return o;
}

// _testDroppableMappings(smapsText) -> [[start, end, rssBytes], ...]: the mappings
// dropCleanFilePages would give back, for smaps text of a test's making.
Napi::Value TestDroppableMappings(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string text = info[0].As<Napi::String>().Utf8Value();
  FILE* f = fmemopen(text.data(), text.size(), "r");
  if (!f) throw Napi::Error::New(env, "fmemopen failed: " + errnoText(errno));
  std::vector<FileMapping> ms = droppableMappings(f);
  fclose(f);
  Napi::Array out = Napi::Array::New(env, ms.size());
  for (size_t i = 0; i < ms.size(); i++) {
    Napi::Array m = Napi::Array::New(env, 3);
    m.Set(0u, Napi::Number::New(env, static_cast<double>(ms[i].start)));
    m.Set(1u, Napi::Number::New(env, static_cast<double>(ms[i].end)));
    m.Set(2u, Napi::Number::New(env, static_cast<double>(ms[i].rssBytes)));
    out.Set(static_cast<uint32_t>(i), m);
  }
  return out;
}

// limitMallocArenas(n) -> whether glibc took it: at most n malloc arenas
// (mallopt M_ARENA_MAX). glibc gives each thread that meets contention an arena
// of its own, up to 8 per core, and keeps freed memory in each: a burst of
// acquires (one I/O thread per open lease file) left several arenas' worth
// resident. Called by the daemon at start, before the I/O threads exist.
Napi::Value LimitMallocArenas(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), "limitMallocArenas(n) needs a number");
  }
  const int n = info[0].As<Napi::Number>().Int32Value();
  return Napi::Boolean::New(info.Env(), n > 0 && mallopt(M_ARENA_MAX, n) == 1);
}

// Node dlclose()s an addon when the worker_thread that loaded it exits, but
// our detached threads (the watchdog, workers stuck in a syscall) keep
// running code from this library. Take an extra RTLD_NODELETE reference so
// the code and the process-wide state stay mapped for the process lifetime.
void pinLibrary() {
  static bool pinned = false;  // JS-thread calls only; a race merely re-pins
  if (pinned) return;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&pinLibrary), &info) && info.dli_fname) {
    if (dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE))
      pinned = true;  // the handle is intentionally never closed
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pinLibrary();
  auto* addon = new Addon();
  env.SetInstanceData<Addon>(addon);  // deleted by Node at env teardown
  addon->fileCtor = Napi::Persistent(NativeFile::Define(env));
  Napi::Function gateCtor = NativeWriteGate::Define(env);
  addon->gateCtor = Napi::Persistent(gateCtor);
  exports.Set("WriteGate", gateCtor);

  // The async resource answers hasRef() like timers and sockets do, so
  // leak detectors (jest --detectOpenHandles) see that an idle TSFN does not
  // hold the process open.
  Napi::Object resource = Napi::Object::New(env);
  resource.Set("hasRef",
               Napi::Function::New(
                   env,
                   [](const Napi::CallbackInfo& info) -> Napi::Value {
                     Addon* a = info.Env().GetInstanceData<Addon>();
                     return Napi::Boolean::New(info.Env(), a && a->pending > 0);
                   },
                   "hasRef"));
  napi_threadsafe_function tsfn;
  NAPI_THROW_IF_FAILED(
      env,
      napi_create_threadsafe_function(
          env, nullptr, resource,
          Napi::String::New(env, "lockagent:directio"), 0 /* unbounded */,
          1, nullptr, nullptr, addon, callJs, &tsfn),
      exports);
  addon->tsfn = tsfn;
  addon->bridge->attach(tsfn);
  // Idle until a request is pending.
  napi_unref_threadsafe_function(env, tsfn);
  // Registered after the TSFN, so it runs before the TSFN's own teardown.
  auto* hookBridge = new std::shared_ptr<EngineSink>(addon->bridge);
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        auto* b = static_cast<std::shared_ptr<EngineSink>*>(arg);
        (*b)->detach();
        delete b;
      },
      hookBridge);

  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("readHead", Napi::Function::New(env, ReadHead, "readHead"));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned, "allocAligned"));
  exports.Set("ioStats", Napi::Function::New(env, IoStats, "ioStats"));
  exports.Set("resetIoStats",
              Napi::Function::New(env, ResetIoStats, "resetIoStats"));
  exports.Set("_testForceDirectEinval",
              Napi::Function::New(env, TestForceDirectEinval));
  exports.Set("_testInjectStall", Napi::Function::New(env, TestInjectStall));
  exports.Set("_testWatchdogWakeups", Napi::Function::New(env, TestWatchdogWakeups));
  exports.Set("_testIoThreads", Napi::Function::New(env, TestIoThreads));
  exports.Set("_testFailAioSetup", Napi::Function::New(env, TestFailAioSetup));
  exports.Set("_testDropFreeAioContexts", Napi::Function::New(env, TestDropFreeAioContexts));
  exports.Set("deltaQuickScan", Napi::Function::New(env, DeltaQuickScan));
  // How early a scheduled request may start (kStartSlack): the storage contract's
  // SCHEDULE_SLACK_MS restates it, and a test holds the two equal.
  exports.Set("scheduleSlackMs",
              Napi::Number::New(env, static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(kStartSlack).count())));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory, "trimMemory"));
  exports.Set("dropCleanFilePages", Napi::Function::New(env, DropCleanFilePages, "dropCleanFilePages"));
  exports.Set("_testDroppableMappings", Napi::Function::New(env, TestDroppableMappings));
  exports.Set("limitMallocArenas", Napi::Function::New(env, LimitMallocArenas, "limitMallocArenas"));
  registerHostWatch(env, exports);
  return exports;
}

}  // namespace
}  // namespace lockagent

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return lockagent::Init(env, exports);
}

NODE_API_MODULE(lockagent_native, InitModule)
