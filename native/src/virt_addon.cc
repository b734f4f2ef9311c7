// Node-API bindings for lockagent_virt: libvirt connections whose blocking
// calls run on a per-connection worker thread (virt_conn.h) and whose events
// come from the process-wide libvirt event thread (virt_loop.h).
//
// Each connection has one ThreadSafeFunction. It carries, in order, the
// results of calls (resolving their promises) and the events (passed to the
// onEvent callback given to open()). It is ref'd while the connection is open
// (unless unref() was called) or a call is pending, so an idle process with
// no open connection can exit. The worker thread owns the TSFN's only thread
// reference and releases it when it exits after close().
#include <dlfcn.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "virt_conn.h"
#include "virt_loop.h"
#include "virt_names.h"
#include "tsfn_bridge.h"

namespace lockagent {
namespace virt {
namespace {

struct Msg {
  std::unique_ptr<Result> result;
  std::unique_ptr<Event> event;
};

// Thread-safe front of the TSFN. detach() (TSFN finalizer, JS thread) makes
// later posts from libvirt or worker threads no-ops instead of touching a
// freed TSFN.
class ConnSink : public Sink, public TsfnBridge {
 public:
  void result(std::unique_ptr<Result> r) override {
    post(new Msg{std::move(r), nullptr});
  }
  void event(std::unique_ptr<Event> e) override {
    post(new Msg{nullptr, std::move(e)});
  }
  // the worker's thread reference is gone
  void workerDone() override { release(); }
};

struct Addon {
  Napi::FunctionReference ctor;
};

// JS-thread state of one connection; shared by the TSFN context and the JS
// wrapper object, so whichever goes last frees it.
struct JsConn {
  Addon* addon = nullptr;
  napi_threadsafe_function tsfn = nullptr;  // null once finalized
  std::shared_ptr<ConnSink> bridge;
  std::shared_ptr<Connection> core;
  size_t pending = 0;
  bool open = false;      // open() resolved and close() not finished
  bool closing = false;   // close() called (or GC/teardown)
  bool wantRef = true;
  bool refd = true;       // TSFNs start ref'd

  void updateRef(napi_env env) {
    if (!tsfn) return;
    bool want = pending > 0 || (open && wantRef);
    if (want == refd) return;
    if (want)
      napi_ref_threadsafe_function(env, tsfn);
    else
      napi_unref_threadsafe_function(env, tsfn);
    refd = want;
  }
};

Napi::Object makeError(Napi::Env env, const LvError& e, Op op, const std::string& arg) {
  std::string msg = e.message.empty() ? errorName(e.code) : e.message;
  Napi::Error err = Napi::Error::New(env, msg);
  Napi::Object o = err.Value();
  o.Set("name", "LibvirtError");
  o.Set("code", Napi::Number::New(env, e.code));
  o.Set("codeName", errorName(e.code));
  o.Set("domain", Napi::Number::New(env, e.domain));
  o.Set("domainName", errorDomainName(e.domain));
  o.Set("level", Napi::Number::New(env, e.level));
  o.Set("op", opName(op));
  if (!arg.empty()) o.Set("target", arg);
  return o;
}

Napi::Object domainObject(Napi::Env env, const DomainInfo& d, bool withState) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", d.uuid);
  o.Set("name", d.name);
  o.Set("id", Napi::Number::New(env, d.id));
  if (withState) {
    o.Set("state", Napi::Number::New(env, d.state));
    o.Set("stateName", stateName(d.state));
    o.Set("stateReason", Napi::Number::New(env, d.reason));
    o.Set("stateReasonName", stateReasonName(d.state, d.reason));
  }
  return o;
}

Napi::Object eventObject(Napi::Env env, const Event& e) {
  Napi::Object o = Napi::Object::New(env);
  switch (e.kind) {
    case Event::Kind::Lifecycle:
      o.Set("type", "lifecycle");
      o.Set("uuid", e.uuid);
      o.Set("name", e.name);
      o.Set("id", Napi::Number::New(env, e.id));
      o.Set("event", Napi::Number::New(env, e.event));
      o.Set("eventName", eventName(e.event));
      o.Set("detail", Napi::Number::New(env, e.detail));
      o.Set("detailName", eventDetailName(e.event, e.detail));
      break;
    case Event::Kind::DeviceAdded:
    case Event::Kind::DeviceRemoved:
      o.Set("type", "device");
      o.Set("action", e.kind == Event::Kind::DeviceAdded ? "added" : "removed");
      o.Set("uuid", e.uuid);
      o.Set("name", e.name);
      o.Set("id", Napi::Number::New(env, e.id));
      o.Set("alias", e.alias);
      break;
    case Event::Kind::Closed:
      o.Set("type", "close");
      o.Set("reason", Napi::Number::New(env, e.reason));
      o.Set("reasonName", closeReasonName(e.reason));
      break;
  }
  o.Set("ts", Napi::Number::New(env, e.ts));
  return o;
}

Napi::Value resultValue(Napi::Env env, JsConn* js, const std::shared_ptr<JsConn>& self, Result& r) {
  switch (r.op) {
    case Op::Open: {
      auto ext = Napi::External<std::shared_ptr<JsConn>>::New(
          env, new std::shared_ptr<JsConn>(self),
          [](Napi::Env, std::shared_ptr<JsConn>* p) { delete p; });
      Napi::Object conn = js->addon->ctor.New({ext});
      conn.Set("keepAlive", Napi::Boolean::New(env, r.flag));
      return conn;
    }
    case Op::List: {
      Napi::Array a = Napi::Array::New(env, r.domains.size());
      for (size_t i = 0; i < r.domains.size(); i++)
        a.Set(static_cast<uint32_t>(i), domainObject(env, r.domains[i], true));
      return a;
    }
    case Op::Lookup:
    case Op::LookupByName:
      return domainObject(env, r.dom, true);
    case Op::State: {
      Napi::Object o = Napi::Object::New(env);
      o.Set("state", Napi::Number::New(env, r.dom.state));
      o.Set("stateName", stateName(r.dom.state));
      o.Set("reason", Napi::Number::New(env, r.dom.reason));
      o.Set("reasonName", stateReasonName(r.dom.state, r.dom.reason));
      return o;
    }
    case Op::Define:
    case Op::CreateXML:
      return domainObject(env, r.dom, false);
    case Op::GetXML:
      return Napi::String::New(env, r.str);
    case Op::IsAlive:
      return Napi::Boolean::New(env, r.flag);
    default:
      return env.Undefined();
  }
}

// TSFN callback, JS thread. env is null when the TSFN is torn down with items
// still queued: then only free them.
void deliver(napi_env rawEnv, napi_value jsCallback, void* context, std::unique_ptr<Msg> msg) {
  Napi::Env env(rawEnv);
  auto& self = *static_cast<std::shared_ptr<JsConn>*>(context);
  JsConn* js = self.get();
  Napi::HandleScope scope(env);

  if (msg->event) {
    // Nothing is delivered once close() was requested or the open failed;
    // events that arrive while open() is still pending are delivered (the
    // registrations precede the open's result).
    if (js->closing) return;
    napi_value arg = eventObject(env, *msg->event);
    // An exception thrown by the callback becomes an uncaught exception, as
    // for any event listener.
    napi_call_function(env, env.Undefined(), jsCallback, 1, &arg, nullptr);
    return;
  }

  Result& r = *msg->result;
  if (r.op == Op::Open) {
    js->open = r.ok;
    if (!r.ok) js->closing = true;
  }
  if (r.op == Op::Close) {
    js->open = false;
    js->closing = true;
  }
  auto deferred = static_cast<napi_deferred>(r.token);
  if (deferred) {
    if (js->pending > 0) js->pending--;
    napi_value value = nullptr;
    bool ok = r.ok;
    try {
      value = ok ? resultValue(env, js, self, r) : Napi::Value(makeError(env, r.err, r.op, r.target));
    } catch (const Napi::Error& e) {
      ok = false;
      value = e.Value();
    } catch (const std::exception& e) {
      ok = false;
      value = Napi::Error::New(env, e.what()).Value();
    }
    if (ok)
      napi_resolve_deferred(env, deferred, value);
    else
      napi_reject_deferred(env, deferred, value);
  }
  js->updateRef(env);
}

void callJs(napi_env rawEnv, napi_value jsCallback, void* context, void* data) {
  std::unique_ptr<Msg> msg(static_cast<Msg*>(data));
  if (rawEnv == nullptr) return;
  // Nothing may unwind into Node from here: while a worker_thread is being
  // terminated every napi call fails and node-addon-api throws.
  try {
    deliver(rawEnv, jsCallback, context, std::move(msg));
  } catch (...) {
  }
}

void finalizeTsfn(napi_env, void* finalizeData, void*) {
  auto* holder = static_cast<std::shared_ptr<JsConn>*>(finalizeData);
  JsConn* js = holder->get();
  js->tsfn = nullptr;
  js->open = false;
  js->closing = true;
  js->bridge->detach();
  // Env teardown with the connection still open: close it in the background.
  js->core->shutdown();
  delete holder;
}

[[noreturn]] void throwType(Napi::Env env, const std::string& msg) {
  throw Napi::TypeError::New(env, msg);
}

std::string argString(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) throwType(info.Env(), std::string(what) + " must be a string");
  std::string s = info[i].As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos) throwType(info.Env(), std::string(what) + " must not contain NUL bytes");
  return s;
}

unsigned argFlags(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  if (!info[i].IsNumber()) throwType(info.Env(), "flags must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 4294967295.0 || v != static_cast<double>(static_cast<uint64_t>(v)))
    throw Napi::RangeError::New(info.Env(), "flags must be a 32-bit unsigned integer");
  return static_cast<unsigned>(v);
}

class VirtConnection : public Napi::ObjectWrap<VirtConnection> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "VirtConnection",
        {InstanceMethod<&VirtConnection::ListDomains>("listDomains"),
         InstanceMethod<&VirtConnection::Lookup>("lookup"),
         InstanceMethod<&VirtConnection::LookupByName>("lookupByName"),
         InstanceMethod<&VirtConnection::GetXML>("getXML"),
         InstanceMethod<&VirtConnection::State>("state"),
         InstanceMethod<&VirtConnection::Suspend>("suspend"),
         InstanceMethod<&VirtConnection::Resume>("resume"),
         InstanceMethod<&VirtConnection::Destroy>("destroy"),
         InstanceMethod<&VirtConnection::Create>("create"),
         InstanceMethod<&VirtConnection::DefineXML>("defineXML"),
         InstanceMethod<&VirtConnection::CreateXML>("createXML"),
         InstanceMethod<&VirtConnection::Undefine>("undefine"),
         InstanceMethod<&VirtConnection::IsAlive>("isAlive"),
         InstanceMethod<&VirtConnection::Close>("close"),
         InstanceMethod<&VirtConnection::Ref>("ref"),
         InstanceMethod<&VirtConnection::Unref>("unref"),
         InstanceMethod<&VirtConnection::SimulateClose>("_simulateClose"),
         InstanceMethod<&VirtConnection::Sleep>("_sleep"),
         InstanceAccessor<&VirtConnection::Uri>("uri"),
         InstanceAccessor<&VirtConnection::Closed>("closed")});
  }

  explicit VirtConnection(const Napi::CallbackInfo& info) : Napi::ObjectWrap<VirtConnection>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "VirtConnection is created by open()");
    js_ = *info[0].As<Napi::External<std::shared_ptr<JsConn>>>().Data();
  }

  // Garbage-collected without close(): close the libvirt connection anyway.
  ~VirtConnection() override {
    if (js_ && !js_->closing) {
      js_->closing = true;
      js_->core->shutdown();
    }
  }

 private:
  Napi::Value submit(const Napi::CallbackInfo& info, Op op, std::string arg, unsigned flags) {
    Napi::Env env = info.Env();
    napi_deferred deferred;
    napi_value promise;
    NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Value());
    if (js_->closing || !js_->tsfn) {
      LvError e;
      e.code = VIR_ERR_INVALID_CONN;
      e.domain = VIR_FROM_NONE;
      e.level = VIR_ERR_ERROR;
      e.message = std::string("invalid connection pointer in ") + opName(op) + ": the connection is closed";
      if (op == Op::Close)
        napi_resolve_deferred(env, deferred, env.Undefined());
      else
        napi_reject_deferred(env, deferred, makeError(env, e, op, argIsXml(op) ? "" : arg));
      return Napi::Value(env, promise);
    }
    if (op == Op::Close) js_->closing = true;
    js_->pending++;
    js_->updateRef(env);
    js_->core->submit(op, std::move(arg), flags, deferred);
    return Napi::Value(env, promise);
  }

  Napi::Value ListDomains(const Napi::CallbackInfo& info) { return submit(info, Op::List, "", 0); }
  Napi::Value Lookup(const Napi::CallbackInfo& info) {
    return submit(info, Op::Lookup, argString(info, 0, "uuid"), 0);
  }
  Napi::Value LookupByName(const Napi::CallbackInfo& info) {
    return submit(info, Op::LookupByName, argString(info, 0, "name"), 0);
  }
  Napi::Value GetXML(const Napi::CallbackInfo& info) {
    return submit(info, Op::GetXML, argString(info, 0, "uuid"), argFlags(info, 1));
  }
  Napi::Value State(const Napi::CallbackInfo& info) {
    return submit(info, Op::State, argString(info, 0, "uuid"), 0);
  }
  Napi::Value Suspend(const Napi::CallbackInfo& info) {
    return submit(info, Op::Suspend, argString(info, 0, "uuid"), 0);
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    return submit(info, Op::Resume, argString(info, 0, "uuid"), 0);
  }
  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    return submit(info, Op::Destroy, argString(info, 0, "uuid"), 0);
  }
  Napi::Value Create(const Napi::CallbackInfo& info) {
    return submit(info, Op::Create, argString(info, 0, "uuid"), 0);
  }
  Napi::Value DefineXML(const Napi::CallbackInfo& info) {
    return submit(info, Op::Define, argString(info, 0, "xml"), 0);
  }
  Napi::Value CreateXML(const Napi::CallbackInfo& info) {
    return submit(info, Op::CreateXML, argString(info, 0, "xml"), argFlags(info, 1));
  }
  Napi::Value Undefine(const Napi::CallbackInfo& info) {
    return submit(info, Op::Undefine, argString(info, 0, "uuid"), argFlags(info, 1));
  }
  Napi::Value IsAlive(const Napi::CallbackInfo& info) { return submit(info, Op::IsAlive, "", 0); }
  Napi::Value Close(const Napi::CallbackInfo& info) { return submit(info, Op::Close, "", 0); }
  Napi::Value Sleep(const Napi::CallbackInfo& info) { return submit(info, Op::Sleep, "", argFlags(info, 0)); }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    js_->wantRef = true;
    js_->updateRef(info.Env());
    return info.This();
  }
  Napi::Value Unref(const Napi::CallbackInfo& info) {
    js_->wantRef = false;
    js_->updateRef(info.Env());
    return info.This();
  }

  // Test hook: the same path as libvirt's close callback (the event arrives
  // asynchronously through the TSFN). The libvirt connection stays open.
  Napi::Value SimulateClose(const Napi::CallbackInfo& info) {
    int reason = VIR_CONNECT_CLOSE_REASON_EOF;
    if (info.Length() > 0 && info[0].IsNumber()) reason = info[0].As<Napi::Number>().Int32Value();
    if (js_->open) js_->core->simulateClose(reason);
    return info.Env().Undefined();
  }

  Napi::Value Uri(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), js_->core->uri()); }
  Napi::Value Closed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), js_->closing); }

  std::shared_ptr<JsConn> js_;
};

OpenOptions parseOptions(const Napi::CallbackInfo& info, size_t i) {
  OpenOptions o;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return o;
  if (!info[i].IsObject()) throwType(info.Env(), "options must be an object");
  Napi::Object opts = info[i].As<Napi::Object>();
  o.readOnly = opts.Get("readOnly").ToBoolean().Value();
  Napi::Value iv = opts.Get("keepAliveInterval");
  if (iv.IsNumber()) o.keepAliveInterval = iv.As<Napi::Number>().Int32Value();
  Napi::Value cv = opts.Get("keepAliveCount");
  if (cv.IsNumber()) o.keepAliveCount = cv.As<Napi::Number>().Uint32Value();
  return o;
}

// open(uri, options, onEvent) -> Promise<VirtConnection>
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string uri = argString(info, 0, "uri");
  OpenOptions opts = parseOptions(info, 1);
  if (info.Length() < 3 || !info[2].IsFunction()) throwType(env, "onEvent must be a function");

  auto js = std::make_shared<JsConn>();
  js->addon = env.GetInstanceData<Addon>();
  js->bridge = std::make_shared<ConnSink>();
  js->core = std::make_shared<Connection>(uri, opts, js->bridge);

  auto* context = new std::shared_ptr<JsConn>(js);
  auto* finalizeData = new std::shared_ptr<JsConn>(js);
  Napi::Object resource = Napi::Object::New(env);
  // Answers hasRef() like timers and sockets, for jest --detectOpenHandles.
  std::weak_ptr<JsConn> weak = js;
  resource.Set("hasRef", Napi::Function::New(env, [weak](const Napi::CallbackInfo& ci) -> Napi::Value {
                 auto p = weak.lock();
                 return Napi::Boolean::New(ci.Env(), p && p->tsfn && p->refd);
               }));
  napi_threadsafe_function tsfn;
  napi_status st = napi_create_threadsafe_function(
      env, info[2], resource, Napi::String::New(env, "lockagent:libvirt"), 0 /* unbounded */, 1, finalizeData,
      finalizeTsfn, context, callJs, &tsfn);
  if (st != napi_ok) {
    delete context;
    delete finalizeData;
    NAPI_THROW_IF_FAILED(env, st, Napi::Value());
  }
  js->tsfn = tsfn;
  js->bridge->attach(tsfn);

  napi_deferred deferred;
  napi_value promise;
  NAPI_THROW_IF_FAILED(env, napi_create_promise(env, &deferred, &promise), Napi::Value());
  js->pending = 1;
  try {
    js->core->start(deferred);
  } catch (const std::exception& e) {
    js->pending = 0;
    js->bridge->detach();
    napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
    napi_reject_deferred(env, deferred,
                         Napi::Error::New(env, std::string("cannot start a libvirt connection thread: ") + e.what()).Value());
  }
  return Napi::Value(env, promise);
}

Napi::Value EventLoopInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const LoopStatus& s = ensureEventLoop();
  Napi::Object o = Napi::Object::New(env);
  o.Set("registered", Napi::Boolean::New(env, s.ok));
  o.Set("running", Napi::Boolean::New(env, loopRunning()));
  o.Set("iterations", Napi::Number::New(env, static_cast<double>(loopIterations())));
  if (!s.ok) o.Set("error", s.message);
  return o;
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  unsigned long lib = 0;
  virGetVersion(&lib, nullptr, nullptr);
  return Napi::Number::New(info.Env(), static_cast<double>(lib));
}

// Worker and event threads run code from this library after a worker_thread
// that loaded it has exited: keep it mapped for the life of the process.
void pinLibrary() {
  Dl_info dl;
  if (dladdr(reinterpret_cast<void*>(&pinLibrary), &dl) && dl.dli_fname)
    dlopen(dl.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);  // never closed
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  pinLibrary();
  // Before any connection in the process (see virt_loop.h).
  ensureEventLoop();
  // Loading the module twice in one environment (jest module registries)
  // reuses the first instance.
  Addon* addon = env.GetInstanceData<Addon>();
  if (!addon) {
    addon = new Addon();
    addon->ctor = Napi::Persistent(VirtConnection::Define(env));
    env.SetInstanceData<Addon>(addon);
  }
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("eventLoopInfo", Napi::Function::New(env, EventLoopInfo, "eventLoopInfo"));
  exports.Set("libvirtVersion", Napi::Function::New(env, Version, "libvirtVersion"));
  return exports;
}

}  // namespace
}  // namespace virt
}  // namespace lockagent

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return lockagent::virt::Init(env, exports);
}

NODE_API_MODULE(lockagent_virt, InitModule)
