// One libvirt connection and the thread that owns it.
//
// Every blocking libvirt call for a connection (open, list, lookup, XML,
// state, suspend, resume, destroy, define, create, create from XML, undefine, close) runs on
// that connection's own worker thread, one at a time in submission order, so
// that a slow or hung libvirtd never blocks Node's event loop or libuv's
// thread pool. Results and events leave through a Sink (the N-API bridge in
// virt_addon.cc); this file has no N-API code.
//
// Event callbacks (lifecycle, device added/removed, connection closed) run on
// the process-wide libvirt event thread (virt_loop.h). They only copy the
// domain's uuid/name/id and hand the event to the sink: no waiting, no
// libvirt calls that could block.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

typedef struct _virConnect* virConnectPtr;

namespace lockagent {
namespace virt {

struct LvError {
  int code = 0;    // virErrorNumber
  int domain = 0;  // virErrorDomain
  int level = 0;   // virErrorLevel
  std::string message;
};

struct DomainInfo {
  std::string uuid;
  std::string name;
  int id = -1;  // -1 when inactive
  int state = 0;
  int reason = 0;
};

enum class Op {
  Open,
  Close,
  List,
  Lookup,        // by uuid: DomainInfo with state
  LookupByName,  // by name
  GetXML,
  State,
  Suspend,
  Resume,
  Destroy,
  Create,
  Define,
  CreateXML,     // virDomainCreateXML: start a (transient) domain from its XML
  Undefine,
  IsAlive,
  Sleep,  // test hook: blocks the worker thread for `flags` ms
};

const char* opName(Op op);
// Ops whose argument is a domain's XML, not the uuid or name they are about.
inline bool argIsXml(Op op) { return op == Op::Define || op == Op::CreateXML; }

struct Result {
  Op op = Op::Open;
  void* token = nullptr;  // the JS side's deferred; null for internal jobs
  std::string target;     // the uuid or name the call was about, if any
  bool ok = false;
  LvError err;
  std::string str;                   // GetXML
  std::vector<DomainInfo> domains;   // List
  DomainInfo dom;                    // Lookup, LookupByName, State, Define, CreateXML
  bool flag = false;                 // IsAlive; Open: keepalive enabled
};

struct Event {
  enum class Kind { Lifecycle, DeviceAdded, DeviceRemoved, Closed };
  Kind kind = Kind::Lifecycle;
  std::string uuid;
  std::string name;
  int id = -1;
  int event = 0;    // lifecycle
  int detail = 0;   // lifecycle
  std::string alias;  // device events
  int reason = 0;   // closed
  double ts = 0;    // wall-clock ms when libvirt handed us the event
};

// Receives results (from the worker thread) and events (from the libvirt
// event thread, or the JS thread for the test-only simulated close). Must be
// thread-safe.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void result(std::unique_ptr<Result> r) = 0;
  virtual void event(std::unique_ptr<Event> e) = 0;
  // Called once, as the last thing the worker thread does.
  virtual void workerDone() = 0;
};

struct OpenOptions {
  bool readOnly = false;
  int keepAliveInterval = 5;  // <= 0: do not enable keepalive
  unsigned keepAliveCount = 3;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::string uri, OpenOptions opts, std::shared_ptr<Sink> sink);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts the worker thread and queues the Open job. Throws std::system_error
  // if the thread cannot be created.
  void start(void* openToken);

  // Queues a job. Jobs after a Close are answered with "connection closed".
  void submit(Op op, std::string arg, unsigned flags, void* token);

  // Queues a Close without a token unless one is already queued (GC, env
  // teardown). Safe to call repeatedly.
  void shutdown();

  // Test hook: delivers a Closed event exactly as libvirt's close callback
  // would.
  void simulateClose(int reason);

  const std::string& uri() const { return uri_; }

 private:
  struct Job {
    Op op;
    std::string arg;
    unsigned flags;
    void* token;
  };

  void run();
  void execute(Job& job, Result& r);
  bool doOpen(Result& r);
  void doClose();

  const std::string uri_;
  const OpenOptions opts_;
  const std::shared_ptr<Sink> sink_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool closeQueued_ = false;

  // Worker thread only.
  virConnectPtr conn_ = nullptr;
  int callbackIds_[3] = {-1, -1, -1};
  bool closeCallbackRegistered_ = false;
};

}  // namespace virt
}  // namespace lockagent
