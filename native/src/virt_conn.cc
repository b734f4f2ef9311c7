#include "virt_conn.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <time.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <utility>

#include "virt_loop.h"

namespace lockagent {
namespace virt {
namespace {

double nowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Copies libvirt's thread-local last error (this thread's) and clears it.
LvError takeError(const char* fallback) {
  LvError out;
  virErrorPtr e = virGetLastError();
  if (e && e->code != VIR_ERR_OK) {
    out.code = e->code;
    out.domain = e->domain;
    out.level = e->level;
    out.message = e->message ? e->message : fallback;
  } else {
    out.code = VIR_ERR_INTERNAL_ERROR;
    out.domain = VIR_FROM_NONE;
    out.level = VIR_ERR_ERROR;
    out.message = fallback;
  }
  virResetLastError();
  return out;
}

LvError closedError(Op op) {
  LvError e;
  e.code = VIR_ERR_INVALID_CONN;
  e.domain = VIR_FROM_NONE;
  e.level = VIR_ERR_ERROR;
  e.message = std::string("invalid connection pointer in ") + opName(op) +
              ": the connection is closed";
  return e;
}

// Opaque data for every callback registration: keeps the sink alive until
// libvirt calls the free function, which may happen on the event thread some
// time after the deregistration.
struct CallbackCtx {
  std::shared_ptr<Sink> sink;
};

void freeCtx(void* opaque) { delete static_cast<CallbackCtx*>(opaque); }

void fillDomain(Event& ev, virDomainPtr dom) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {0};
  if (virDomainGetUUIDString(dom, uuid) == 0) ev.uuid = uuid;
  const char* name = virDomainGetName(dom);
  if (name) ev.name = name;
  unsigned int id = virDomainGetID(dom);
  ev.id = id == static_cast<unsigned int>(-1) ? -1 : static_cast<int>(id);
  virResetLastError();
}

int onLifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
  auto* ctx = static_cast<CallbackCtx*>(opaque);
  std::unique_ptr<Event> ev(new Event());
  ev->ts = nowMs();
  ev->kind = Event::Kind::Lifecycle;
  fillDomain(*ev, dom);
  ev->event = event;
  ev->detail = detail;
  ctx->sink->event(std::move(ev));
  return 0;
}

void onDevice(virDomainPtr dom, const char* alias, void* opaque, Event::Kind kind) {
  auto* ctx = static_cast<CallbackCtx*>(opaque);
  std::unique_ptr<Event> ev(new Event());
  ev->ts = nowMs();
  ev->kind = kind;
  fillDomain(*ev, dom);
  if (alias) ev->alias = alias;
  ctx->sink->event(std::move(ev));
}

void onDeviceAdded(virConnectPtr, virDomainPtr dom, const char* alias, void* opaque) {
  onDevice(dom, alias, opaque, Event::Kind::DeviceAdded);
}

void onDeviceRemoved(virConnectPtr, virDomainPtr dom, const char* alias, void* opaque) {
  onDevice(dom, alias, opaque, Event::Kind::DeviceRemoved);
}

void postClosed(Sink& sink, int reason) {
  std::unique_ptr<Event> ev(new Event());
  ev->ts = nowMs();
  ev->kind = Event::Kind::Closed;
  ev->reason = reason;
  sink.event(std::move(ev));
}

void onClose(virConnectPtr, int reason, void* opaque) {
  postClosed(*static_cast<CallbackCtx*>(opaque)->sink, reason);
}

bool describe(virDomainPtr dom, DomainInfo& out) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {0};
  if (virDomainGetUUIDString(dom, uuid) < 0) return false;
  out.uuid = uuid;
  const char* name = virDomainGetName(dom);
  out.name = name ? name : "";
  unsigned int id = virDomainGetID(dom);
  out.id = id == static_cast<unsigned int>(-1) ? -1 : static_cast<int>(id);
  return true;
}

bool describeWithState(virDomainPtr dom, DomainInfo& out) {
  if (!describe(dom, out)) return false;
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) < 0) return false;
  out.state = state;
  out.reason = reason;
  return true;
}

// Domain handle that is freed on scope exit.
struct DomainRef {
  virDomainPtr p = nullptr;
  ~DomainRef() {
    if (p) virDomainFree(p);
  }
};

}  // namespace

const char* opName(Op op) {
  switch (op) {
    case Op::Open: return "open";
    case Op::Close: return "close";
    case Op::List: return "listDomains";
    case Op::Lookup: return "lookup";
    case Op::LookupByName: return "lookupByName";
    case Op::GetXML: return "getXML";
    case Op::State: return "state";
    case Op::Suspend: return "suspend";
    case Op::Resume: return "resume";
    case Op::Destroy: return "destroy";
    case Op::Create: return "create";
    case Op::Define: return "defineXML";
    case Op::CreateXML: return "createXML";
    case Op::Undefine: return "undefine";
    case Op::IsAlive: return "isAlive";
    case Op::Sleep: return "_sleep";
  }
  return "?";
}

Connection::Connection(std::string uri, OpenOptions opts, std::shared_ptr<Sink> sink)
    : uri_(std::move(uri)), opts_(opts), sink_(std::move(sink)) {}

Connection::~Connection() = default;

void Connection::start(void* openToken) {
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(Job{Op::Open, uri_, 0, openToken});
  }
  auto self = shared_from_this();
  // Detached: a thread stuck in a libvirt call must not block teardown. The
  // thread keeps the Connection alive through `self`.
  std::thread([self] { self->run(); }).detach();
}

void Connection::submit(Op op, std::string arg, unsigned flags, void* token) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!closeQueued_) {
      if (op == Op::Close) closeQueued_ = true;
      jobs_.push_back(Job{op, std::move(arg), flags, token});
      cv_.notify_one();
      return;
    }
  }
  // Already closing: answer without touching libvirt.
  std::unique_ptr<Result> r(new Result());
  r->op = op;
  r->token = token;
  if (!argIsXml(op)) r->target = arg;
  if (op == Op::Close) {
    r->ok = true;
  } else {
    r->ok = false;
    r->err = closedError(op);
  }
  sink_->result(std::move(r));
}

void Connection::shutdown() {
  std::lock_guard<std::mutex> g(mu_);
  if (closeQueued_) return;
  closeQueued_ = true;
  jobs_.push_back(Job{Op::Close, std::string(), 0, nullptr});
  cv_.notify_one();
}

void Connection::simulateClose(int reason) { postClosed(*sink_, reason); }

void Connection::run() {
  pthread_setname_np(pthread_self(), "lv-conn");
  bool opened = false;
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [this] { return !jobs_.empty(); });
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    std::unique_ptr<Result> r(new Result());
    r->op = job.op;
    r->token = job.token;
    if (!argIsXml(job.op)) r->target = job.arg;
    bool last = false;
    if (job.op == Op::Open) {
      opened = doOpen(*r);
      if (!opened) {
        // Nothing to close; refuse whatever was queued behind the open.
        std::lock_guard<std::mutex> g(mu_);
        closeQueued_ = true;
        last = true;
      }
    } else if (job.op == Op::Close) {
      doClose();
      r->ok = true;
      last = true;
    } else {
      execute(job, *r);
    }
    sink_->result(std::move(r));
    if (last) break;
  }
  // Jobs that slipped in before closeQueued_ was set (only possible after a
  // failed open): answer them.
  std::deque<Job> rest;
  {
    std::lock_guard<std::mutex> g(mu_);
    rest.swap(jobs_);
  }
  for (Job& job : rest) {
    std::unique_ptr<Result> r(new Result());
    r->op = job.op;
    r->token = job.token;
    if (!argIsXml(job.op)) r->target = job.arg;
    r->ok = job.op == Op::Close;
    if (!r->ok) r->err = closedError(job.op);
    sink_->result(std::move(r));
  }
  sink_->workerDone();
}

bool Connection::doOpen(Result& r) {
  const LoopStatus& loop = ensureEventLoop();
  if (!loop.ok) {
    r.ok = false;
    r.err.code = loop.code;
    r.err.domain = loop.domain;
    r.err.level = VIR_ERR_ERROR;
    r.err.message = "libvirt event loop unavailable: " + loop.message;
    return false;
  }
  unsigned int flags = opts_.readOnly ? VIR_CONNECT_RO : 0;
  // No auth callbacks: never prompt on a terminal from a daemon thread.
  conn_ = virConnectOpenAuth(uri_.empty() ? nullptr : uri_.c_str(), nullptr, flags);
  if (!conn_) {
    r.ok = false;
    r.err = takeError("virConnectOpenAuth failed");
    return false;
  }
  // Keepalive: 0 = enabled, 1 = the server does not support it, -1 = the
  // driver does not (local drivers such as test:///). Only 0 counts.
  if (opts_.keepAliveInterval > 0) {
    r.flag = virConnectSetKeepAlive(conn_, opts_.keepAliveInterval, opts_.keepAliveCount) == 0;
    virResetLastError();
  }
  auto fail = [&](const char* what) {
    r.ok = false;
    r.err = takeError(what);
    doClose();
    return false;
  };
  auto* closeCtx = new CallbackCtx{sink_};
  if (virConnectRegisterCloseCallback(conn_, onClose, closeCtx, freeCtx) < 0) {
    delete closeCtx;  // not registered, so libvirt will not free it
    return fail("virConnectRegisterCloseCallback failed");
  }
  closeCallbackRegistered_ = true;

  struct Reg {
    int id;
    virConnectDomainEventGenericCallback cb;
  };
  const Reg regs[3] = {
      {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(onLifecycle)},
      {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, VIR_DOMAIN_EVENT_CALLBACK(onDeviceAdded)},
      {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, VIR_DOMAIN_EVENT_CALLBACK(onDeviceRemoved)},
  };
  for (int i = 0; i < 3; i++) {
    auto* ctx = new CallbackCtx{sink_};
    int cbId = virConnectDomainEventRegisterAny(conn_, nullptr, regs[i].id, regs[i].cb, ctx, freeCtx);
    if (cbId < 0) {
      delete ctx;
      return fail("virConnectDomainEventRegisterAny failed");
    }
    callbackIds_[i] = cbId;
  }
  r.ok = true;
  return true;
}

void Connection::doClose() {
  if (!conn_) return;
  for (int& cbId : callbackIds_) {
    if (cbId >= 0) virConnectDomainEventDeregisterAny(conn_, cbId);
    cbId = -1;
  }
  if (closeCallbackRegistered_) virConnectUnregisterCloseCallback(conn_, onClose);
  closeCallbackRegistered_ = false;
  virConnectClose(conn_);  // > 0 only if someone still holds a reference
  conn_ = nullptr;
  virResetLastError();
}

void Connection::execute(Job& job, Result& r) {
  r.ok = false;
  const char* what = opName(job.op);
  if (!conn_) {
    r.err = closedError(job.op);
    return;
  }
  if (job.op == Op::Sleep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(job.flags));
    r.ok = true;
    return;
  }
  if (job.op == Op::IsAlive) {
    int alive = virConnectIsAlive(conn_);
    if (alive < 0) {
      r.err = takeError(what);
      return;
    }
    r.flag = alive == 1;
    r.ok = true;
    return;
  }
  if (job.op == Op::List) {
    virDomainPtr* doms = nullptr;
    int n = virConnectListAllDomains(conn_, &doms, 0);
    if (n < 0) {
      r.err = takeError(what);
      return;
    }
    bool failed = false;
    for (int i = 0; i < n; i++) {
      DomainInfo info;
      if (!failed && !describeWithState(doms[i], info)) {
        LvError e = takeError(what);
        // A domain that vanished between the listing and the state query is
        // simply no longer there; anything else fails the whole listing.
        if (e.code != VIR_ERR_NO_DOMAIN) {
          r.err = e;
          failed = true;
        }
      } else if (!failed) {
        r.domains.push_back(std::move(info));
      }
      virDomainFree(doms[i]);
    }
    free(doms);
    r.ok = !failed;
    return;
  }
  if (argIsXml(job.op)) {
    DomainRef dom;
    dom.p = job.op == Op::Define ? virDomainDefineXML(conn_, job.arg.c_str())
                                 : virDomainCreateXML(conn_, job.arg.c_str(), job.flags);
    if (!dom.p || !describe(dom.p, r.dom)) {
      r.err = takeError(what);
      return;
    }
    r.ok = true;
    return;
  }

  DomainRef dom;
  dom.p = job.op == Op::LookupByName ? virDomainLookupByName(conn_, job.arg.c_str())
                                     : virDomainLookupByUUIDString(conn_, job.arg.c_str());
  if (!dom.p) {
    r.err = takeError(what);
    return;
  }
  int rc = 0;
  switch (job.op) {
    case Op::Lookup:
    case Op::LookupByName:
    case Op::State:
      rc = describeWithState(dom.p, r.dom) ? 0 : -1;
      break;
    case Op::GetXML: {
      char* xml = virDomainGetXMLDesc(dom.p, job.flags);
      if (xml) {
        r.str = xml;
        free(xml);
      } else {
        rc = -1;
      }
      break;
    }
    case Op::Suspend: rc = virDomainSuspend(dom.p); break;
    case Op::Resume: rc = virDomainResume(dom.p); break;
    case Op::Destroy: rc = virDomainDestroy(dom.p); break;
    case Op::Create: rc = virDomainCreate(dom.p); break;
    case Op::Undefine: rc = virDomainUndefineFlags(dom.p, job.flags); break;
    default: rc = -1; break;
  }
  if (rc < 0) {
    r.err = takeError(what);
    return;
  }
  r.ok = true;
}

}  // namespace virt
}  // namespace lockagent
