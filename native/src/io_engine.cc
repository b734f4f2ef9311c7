#include "io_engine.h"

#include <unordered_map>

#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <queue>
#include <system_error>
#include <thread>

namespace lockagent {

namespace {

// Process-wide state is heap-allocated and never freed: detached worker
// threads may still be blocked in a syscall at process exit, and must not
// touch statics that exit() has already destroyed.
struct StatsRegistry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<PathStats>> byPath;
};
StatsRegistry& registry() {
  static StatsRegistry* r = new StatsRegistry();
  return *r;
}

struct StallHook {
  std::string path;
  int64_t offset;
  uint32_t ms;
  uint32_t remaining;
};
struct TestHooks {
  std::atomic<bool> forceDirectEinval{false};
  std::mutex mu;
  std::vector<StallHook> stalls;
  // testFailAioSetup: the next aioSetupFailures io_setup calls fail with aioSetupErrno, and a
  // failure waits aioRetryMs (0: kAioRetryMs) before the pool tries again.
  std::atomic<uint32_t> aioSetupFailures{0};
  std::atomic<int> aioSetupErrno{0};
  std::atomic<uint32_t> aioRetryMs{0};
};
TestHooks& hooks() {
  static TestHooks* h = new TestHooks();
  return *h;
}

void maybeStall(const std::string& path, int64_t offset) {
  uint32_t ms = 0;
  {
    TestHooks& h = hooks();
    std::lock_guard<std::mutex> g(h.mu);
    for (auto it = h.stalls.begin(); it != h.stalls.end(); ++it) {
      if (it->path == path && it->offset == offset) {
        ms = it->ms;
        if (--it->remaining == 0) h.stalls.erase(it);
        break;
      }
    }
  }
  if (ms) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

void snapshotInto(const PathStats& s, StatsSnapshot& out) {
  out.reads += s.reads.load();
  out.writes += s.writes.load();
  out.bytesRead += s.bytesRead.load();
  out.bytesWritten += s.bytesWritten.load();
  out.errors += s.errors.load();
  out.timeouts += s.timeouts.load();
  out.lateCompletions += s.lateCompletions.load();
  out.writesTogether += s.writesTogether.load();
}

// Settles req if nobody has yet; the outcome fields are written after
// winning the claim and published to the JS thread by Sink::deliver.
bool settle(const std::shared_ptr<Request>& req, Outcome outcome, int err = 0,
            const char* syscall = "") {
  if (!req->claim()) return false;
  req->claimedBy(outcome, err, syscall);
  switch (outcome) {
    case Outcome::SysError:
      req->stats->errors++;
      break;
    case Outcome::Timeout:
    case Outcome::Stuck:
      req->stats->timeouts++;
      break;
    default:
      break;
  }
  req->sink->deliver(req);
  return true;
}

// The probe pool's onDeadline (defined with the pool, below).
void probeDeadline();

// ---------------------------------------------------------------------------
// Deadline watchdog: a single thread blocked on a timerfd armed for the
// earliest deadline of a request still running. It only flips atomics and
// posts to the JS queue, so it cannot be delayed by any hung syscall. Entries
// hold weak_ptrs so completed requests (and their buffers) are freed
// immediately rather than at their deadline.
//
// Why a timerfd and not a condition variable: other threads move the timer
// without waking this one. A request added with the earliest deadline re-arms
// it, and one that completes drops its entry (reap) and re-arms it for the
// next; so the thread wakes only when a deadline really passes, not twice per
// request (once when added, once at the deadline of a request long done). An
// idle agent's renewal is a request every 2·io_timeout, and those two wake-ups
// were a third of its thread switches.
struct WatchEntry {
  Clock::time_point when;
  std::weak_ptr<Request> req;
  // Not the deadline: only look at the probe pool again (see ProbePool).
  bool recheck = false;
  bool operator>(const WatchEntry& o) const { return when > o.when; }
  // Nothing left to do at `when`: the request is gone or settled (a settled
  // request's thread is back from its syscall, or the watchdog settled it).
  // The request is kept in `hold`, so that if this was its last reference it is
  // destroyed after the watchdog's lock is released, not under it.
  bool done(std::vector<std::shared_ptr<Request>>& hold) const {
    std::shared_ptr<Request> r = req.lock();
    if (!r) return true;
    const bool settled = r->settled();
    hold.push_back(std::move(r));
    return settled;
  }
};

class Watchdog {
 public:
  Watchdog() {
    tfd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    std::thread([this] { run(); }).detach();
  }

  void add(const std::shared_ptr<Request>& req) { add(req, req->deadline, false); }

  void add(const std::shared_ptr<Request>& req, Clock::time_point when, bool recheck) {
    std::lock_guard<std::mutex> g(mu_);
    bool earliest = heap_.empty() || when < heap_.top().when;
    heap_.push(WatchEntry{when, req, recheck});
    if (earliest) armLocked();
  }

  // A request completed: drop the entries at the front that need nothing
  // more, so the timer is set for the next one that does (or disarmed).
  void reap() {
    std::vector<std::shared_ptr<Request>> hold;
    std::lock_guard<std::mutex> g(mu_);
    if (popDoneLocked(hold)) armLocked();
  }

 private:
  // Drops the front entries that need nothing more; true if any was dropped.
  bool popDoneLocked(std::vector<std::shared_ptr<Request>>& hold) {
    bool popped = false;
    while (!heap_.empty() && heap_.top().done(hold)) {
      heap_.pop();
      popped = true;
    }
    return popped;
  }

  // Sets the timer for the front entry (or disarms it), as an absolute time:
  // a thread preempted here must not make the deadline fire late. libstdc++'s
  // steady_clock is CLOCK_MONOTONIC. A front already due fires at once.
  void armLocked() {
    if (tfd_ < 0) {
      cv_.notify_one();  // no timerfd: the condvar fallback below
      return;
    }
    struct itimerspec its {};
    if (!heap_.empty()) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(heap_.top().when.time_since_epoch()).count();
      if (ns < 1) ns = 1;  // 0 would disarm
      its.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
      its.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
    }
    ::timerfd_settime(tfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  }

  // Blocks until the front entry may be due.
  void waitLocked(std::unique_lock<std::mutex>& lk) {
    if (tfd_ < 0) {
      if (heap_.empty()) {
        cv_.wait(lk);
      } else {
        // By value: wait_until keeps reading its argument while the lock is
        // released, and add() may reallocate the heap meanwhile.
        const Clock::time_point next = heap_.top().when;
        cv_.wait_until(lk, next);
      }
      return;
    }
    const int fd = tfd_;
    lk.unlock();
    uint64_t expirations;
    ssize_t n;
    while ((n = ::read(fd, &expirations, sizeof expirations)) < 0 && errno == EINTR) {
    }
    lk.lock();
    if (n < 0 && tfd_ == fd) tfd_ = -1;  // the timerfd failed (never seen): the condvar from now on
  }

  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    std::vector<std::pair<std::weak_ptr<Request>, bool>> due;
    std::vector<std::shared_ptr<Request>> hold;
    for (;;) {
      waitLocked(lk);
      wakeups_++;
      Clock::time_point now = Clock::now();
      while (!heap_.empty() && heap_.top().when <= now) {
        due.emplace_back(heap_.top().req, heap_.top().recheck);
        heap_.pop();
      }
      // Early wake-ups (the timer moved meanwhile) land here too: re-arm for
      // the front entry that still needs a wake-up (requests that were failed
      // fast or cancelled are never reaped by a worker).
      popDoneLocked(hold);
      armLocked();
      lk.unlock();
      hold.clear();
      for (auto& w : due) {
        std::shared_ptr<Request> req = w.first.lock();
        if (!req) continue;
        if (w.second) {
          if (!req->settled()) probeDeadline();
          continue;
        }
        settle(req, Outcome::Timeout, ETIMEDOUT);
        // Even if it completed meanwhile, let the handle re-evaluate: a
        // thread busy past this deadline may need a replacement.
        if (auto h = req->handle.lock())
          h->onDeadline();
        else if (req->op == Op::Probe)
          probeDeadline();
      }
      due.clear();
      lk.lock();
    }
  }

  int tfd_ = -1;

 public:
  std::atomic<uint64_t> wakeups_{0};  // test hook: times the thread woke

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<WatchEntry, std::vector<WatchEntry>,
                      std::greater<WatchEntry>>
      heap_;
};

Watchdog& watchdog() {
  static Watchdog* w = new Watchdog();
  return *w;
}

int retryOpen(const char* path, int flags) {
  int fd;
  do {
    fd = ::open(path, flags);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

}  // namespace

// ---------------------------------------------------------------------------
std::shared_ptr<PathStats> statsFor(const std::string& path) {
  StatsRegistry& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  auto& slot = r.byPath[path];
  if (!slot) slot = std::make_shared<PathStats>();
  return slot;
}

StatsSnapshot snapshotStats(const std::string* path) {
  StatsRegistry& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  StatsSnapshot out;
  if (path) {
    auto it = r.byPath.find(*path);
    if (it != r.byPath.end()) snapshotInto(*it->second, out);
  } else {
    for (auto& kv : r.byPath) snapshotInto(*kv.second, out);
  }
  return out;
}

void resetStats() {
  StatsRegistry& r = registry();
  std::lock_guard<std::mutex> g(r.mu);
  for (auto it = r.byPath.begin(); it != r.byPath.end();) {
    if (it->second.use_count() == 1) {
      it = r.byPath.erase(it);  // no handle or request refers to it
      continue;
    }
    PathStats& s = *it->second;
    s.reads = 0;
    s.writes = 0;
    s.bytesRead = 0;
    s.bytesWritten = 0;
    s.errors = 0;
    s.timeouts = 0;
    s.lateCompletions = 0;
    s.writesTogether = 0;
    ++it;
  }
}

void watchDeadline(const std::shared_ptr<Request>& req) { watchdog().add(req); }

void reapDeadlines() { watchdog().reap(); }

uint64_t testWatchdogWakeups() { return watchdog().wakeups_.load(); }

void testForceDirectEinval(bool on) { hooks().forceDirectEinval = on; }

void testInjectStall(const std::string& path, int64_t offset, uint32_t ms,
                     uint32_t count) {
  TestHooks& h = hooks();
  std::lock_guard<std::mutex> g(h.mu);
  if (count) h.stalls.push_back(StallHook{path, offset, ms, count});
}

// ---------------------------------------------------------------------------
Request::Request(Op op, std::string path, int64_t offset, uint64_t length,
                 double timeoutMs)
    : Request(op, std::move(path), offset, length, timeoutMs, Clock::now()) {}

Request::Request(Op op, std::string path, int64_t offset, uint64_t length,
                 double timeoutMs, Clock::time_point startAt)
    : op(op),
      path(std::move(path)),
      offset(offset),
      length(length),
      timeoutMs(timeoutMs),
      startAt(startAt),
      deadline(startAt + msDuration(timeoutMs)),
      bufSize(length) {}

// A few aligned buffers are kept for reuse: a lease read is 1-8 MiB, and
// glibc serves such sizes with a fresh mmap (zeroed pages, one fault per page)
// and a munmap per request, as sanlock avoids by keeping its iobufs. A buffer
// is only cached from ~Request, i.e. after its syscall really returned.
namespace {
constexpr size_t kBufCacheMaxEntries = 16;
constexpr size_t kBufCachePerLength = 4;
constexpr uint64_t kBufCacheMaxLength = 8ull << 20;
struct BufCache {
  std::mutex mu;
  std::vector<std::pair<uint64_t, void*>> free;
};
BufCache& bufCache() {
  static BufCache* c = new BufCache();  // never freed, like the registry
  return *c;
}
}  // namespace

Request::~Request() {
  // A read into a block's memory (buf is the block's): freed with its last owner.
  if (!buf || (block && buf == block->data)) return;
  if (bufSize <= kBufCacheMaxLength) {
    BufCache& c = bufCache();
    std::lock_guard<std::mutex> g(c.mu);
    size_t same = 0;
    for (auto& e : c.free) same += e.first == bufSize;
    if (c.free.size() < kBufCacheMaxEntries && same < kBufCachePerLength) {
      c.free.emplace_back(bufSize, buf);
      return;
    }
  }
  std::free(buf);
}

void dropBufferCache() {
  std::vector<std::pair<uint64_t, void*>> drop;
  {
    BufCache& c = bufCache();
    std::lock_guard<std::mutex> g(c.mu);
    drop.swap(c.free);
  }
  for (auto& e : drop) std::free(e.second);
}

namespace {
struct BlockRegistry {
  std::mutex mu;
  std::unordered_map<const void*, std::weak_ptr<AlignedBlock>> blocks;
};
BlockRegistry& blockRegistry() {
  static BlockRegistry* r = new BlockRegistry();  // never freed, like the buffer cache
  return *r;
}
}  // namespace

AlignedBlock::~AlignedBlock() {
  {
    BlockRegistry& r = blockRegistry();
    std::lock_guard<std::mutex> g(r.mu);
    auto it = r.blocks.find(data);
    if (it != r.blocks.end() && it->second.expired()) r.blocks.erase(it);
  }
  std::free(data);
}

std::shared_ptr<AlignedBlock> allocBlock(uint64_t size) {
  void* p = nullptr;
  if (size == 0 || posix_memalign(&p, kBufferAlignment, size) != 0) return nullptr;
  auto b = std::make_shared<AlignedBlock>(p, size);
  BlockRegistry& r = blockRegistry();
  std::lock_guard<std::mutex> g(r.mu);
  r.blocks[p] = b;
  return b;
}

std::shared_ptr<AlignedBlock> findBlock(const void* data) {
  BlockRegistry& r = blockRegistry();
  std::lock_guard<std::mutex> g(r.mu);
  auto it = r.blocks.find(data);
  return it == r.blocks.end() ? nullptr : it->second.lock();
}

bool Request::allocate() {
  if (bufSize == 0) return true;
  {
    BufCache& c = bufCache();
    std::lock_guard<std::mutex> g(c.mu);
    for (size_t i = c.free.size(); i-- > 0;) {
      if (c.free[i].first == bufSize) {
        buf = c.free[i].second;
        c.free.erase(c.free.begin() + static_cast<std::ptrdiff_t>(i));
        return true;
      }
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, kBufferAlignment, bufSize) != 0) return false;
  buf = p;
  return true;
}

// ---------------------------------------------------------------------------
// Spare handle threads. A handle's thread leaves when its handle has had no
// request for idleMs_ or is closed: a held lease's file sees no I/O from its
// acquire to its release. Creating the next thread is a clone() on the JS
// thread, on the path of that release (and of every acquire, whose open runs on
// the new handle's first thread): measured 0.1-0.2 ms of a release after a hold
// on this VM. So a leaving thread waits here, up to kParkMs and at most
// kMaxParkedThreads of them, and the next handle that needs a thread takes it.
// Only threads back from their syscalls park: one stuck on a hung NFS server
// stays with its handle, so a parked thread never waits behind one.
//
// Threads: start() runs on the JS thread (under the handle's lock: the order is
// handle lock, then ours); a parked thread holds only our lock while waiting and
// drops it before it takes the handle's (workerMain).
class ThreadPark {
 public:
  struct Job {
    std::shared_ptr<Handle> handle;
    std::shared_ptr<Handle::WorkerSlot> slot;
  };

  // Runs job.handle->workerMain(job.slot) on a parked thread, or a new one
  // (std::system_error from std::thread when none can be created).
  void start(Job job) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      if (waiting() > 0) {
        jobs_.push_back(std::move(job));
        // Woken under the lock, the thread would block on it at once: a second wake-up.
        lk.unlock();
        cv_.notify_one();
        return;
      }
    }
    std::thread(&ThreadPark::threadMain, this, std::move(job)).detach();
    created_++;
  }

  IoThreadCounts counts() {
    std::lock_guard<std::mutex> g(mu_);
    return {created_.load(), waiting(), 0};
  }

 private:
  // Parked threads not yet given a job (call with mu_ held).
  size_t waiting() const { return parked_ - jobs_.size(); }

  void threadMain(Job job) {
    for (;;) {
      job.handle->workerMain(std::move(job.slot));
      job.handle.reset();  // not kept alive while parked
      if (!park(job)) return;
    }
  }

  // Waits for a job; false when none comes within kParkMs or enough threads wait already.
  bool park(Job& job) {
    std::unique_lock<std::mutex> lk(mu_);
    if (waiting() >= kMaxParkedThreads) return false;
    ++parked_;
    const bool got = cv_.wait_for(lk, std::chrono::milliseconds(kParkMs), [&] { return !jobs_.empty(); });
    --parked_;
    if (!got) return false;
    job = std::move(jobs_.front());
    jobs_.pop_front();
    return true;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  size_t parked_ = 0;  // threads in park(), including those a job was queued for
  std::atomic<uint64_t> created_{0};
};

ThreadPark& threadPark() {
  static ThreadPark* p = new ThreadPark();  // never destroyed: detached threads use it
  return *p;
}

// ---------------------------------------------------------------------------
Handle::Handle(std::string path, bool readOnly, std::shared_ptr<PathStats> s, int idleMs)
    : path_(std::move(path)), readOnly_(readOnly), idleMs_(idleMs), stats_(std::move(s)) {}

Handle::~Handle() {
  // Every worker holds a shared_ptr to us, so by now none is running; the fd
  // is normally closed already, this only covers odd paths (spawn failure).
  if (fd_ >= 0) ::close(fd_);
}

bool Handle::refusedLocked(const std::shared_ptr<Request>& req) {
  if (closing_) {
    settle(req, Outcome::Closed, EBADF);
    return true;
  }
  if ((req->op == Op::Write || req->op == Op::CompareWrite) && readOnly_) {
    settle(req, Outcome::ReadOnly, EBADF);
    return true;
  }
  return false;
}

int Handle::startWorkerLocked() {
  auto slot = std::make_shared<WorkerSlot>();
  try {
    threadPark().start({shared_from_this(), slot});
  } catch (const std::system_error& e) {
    return e.code().value() ? e.code().value() : EAGAIN;
  }
  workers_.push_back(slot);
  return 0;
}

void Handle::submit(std::shared_ptr<Request> req) {
  std::unique_lock<std::mutex> lk(mu_);
  if (refusedLocked(req)) return;
  queue_.push_back(req);
  watchDeadline(req);
  // The idle thread is woken after the lock is released: woken under it, it
  // would block on the mutex at once and need a second wake-up.
  if (dispatchLocked(false)) {
    lk.unlock();
    cv_.notify_one();
  }
}

void Handle::submitAt(std::shared_ptr<Request> req) {
  std::unique_lock<std::mutex> lk(mu_);
  if (refusedLocked(req)) return;
  if (scheduled_) {
    settle(req, Outcome::SysError, EBUSY, "schedule");
    return;
  }
  scheduled_ = req;
  watchDeadline(req);
  if (workers_.empty()) {
    if (int err = startWorkerLocked()) {
      scheduled_.reset();
      settle(req, Outcome::SysError, err, "pthread_create");
    }
    return;
  }
  // A thread idle until about the start time (it waits for the series' next request: see
  // Request::nextIn) starts it when it wakes: no wake-up now, which on an idle host costs about
  // what the renewal does. Any other idle thread is woken to wait for the start time instead of
  // its idle timeout; a busy one looks when it is done.
  for (auto& w : workers_) {
    if (!w->busy && w->idleUntil != Clock::time_point::max() && w->idleUntil <= req->startAt + kStartSlack) return;
  }
  lk.unlock();
  cv_.notify_all();
}

bool Handle::cancelScheduled() {
  std::unique_lock<std::mutex> lk(mu_);
  if (!scheduled_) return false;
  std::shared_ptr<Request> r = std::move(scheduled_);
  scheduled_.reset();
  settle(r, Outcome::Cancelled, ECANCELED);
  lk.unlock();
  cv_.notify_all();  // a thread waiting for its start time goes back to idle
  return true;
}

void Handle::close(std::shared_ptr<Request> closeReq) {
  std::lock_guard<std::mutex> g(mu_);
  if (closing_) {  // idempotent
    settle(closeReq, Outcome::Ok);
    return;
  }
  closing_ = true;
  cancelQueuedLocked(Outcome::Cancelled);
  cv_.notify_all();  // spare idle threads exit
  if (inflight_ > 0) {
    // A syscall is still running (possibly stuck for good): the thread that
    // returns from it last closes the fd. Don't make close() wait for that.
    settle(closeReq, Outcome::Ok);
    return;
  }
  queue_.push_back(closeReq);
  watchDeadline(closeReq);
  dispatchLocked();
}

void Handle::shutdown() {
  int fd = -1;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (closing_) return;
    closing_ = true;
    cancelQueuedLocked(Outcome::Cancelled);
    cv_.notify_all();  // idle workers exit and close the fd on their way out
    if (workers_.empty() && inflight_ == 0) {
      fd = fd_;
      fd_ = -1;
    }
  }
  if (fd >= 0) ::close(fd);
}

void Handle::onDeadline() {
  std::lock_guard<std::mutex> g(mu_);
  dispatchLocked();
}

size_t Handle::threadCount() {
  std::lock_guard<std::mutex> g(mu_);
  return workers_.size();
}

void Handle::cancelQueuedLocked(Outcome why) {
  for (auto& r : queue_) settle(r, why, ECANCELED);
  queue_.clear();
  if (scheduled_) settle(scheduled_, why, ECANCELED);
  scheduled_.reset();
}

// Makes sure someone will pick up the queue. A busy thread whose request is
// still within its deadline is trusted to come back; once every thread has
// overrun, a replacement is spawned, up to kMaxThreadsPerHandle.
bool Handle::dispatchLocked(bool notify) {
  if (queue_.empty()) return false;
  Clock::time_point now = Clock::now();
  size_t idle = 0, healthy = 0;
  for (auto& w : workers_) {
    if (!w->busy)
      idle++;
    else if (w->deadline > now)
      healthy++;
  }
  if (idle > 0) {
    if (notify) cv_.notify_one();
    return !notify;
  }
  if (healthy > 0) return false;  // the watchdog calls us again at its deadline
  if (workers_.size() < kMaxThreadsPerHandle) {
    if (int err = startWorkerLocked()) {
      // Could not create a thread (EAGAIN): fail what is queued.
      for (auto& r : queue_) {
        r->threadsStuck = workers_.size();
        settle(r, Outcome::SysError, err, "pthread_create");
      }
      queue_.clear();
    }
    return false;
  }
  // Every thread is stuck in a request past its deadline: fail fast rather
  // than queue behind them; the caller's own timeout logic takes over.
  for (auto& r : queue_) {
    r->threadsStuck = workers_.size();
    settle(r, Outcome::Stuck, ETIMEDOUT);
  }
  queue_.clear();
  return false;
}

void Handle::workerMain(std::shared_ptr<WorkerSlot> me) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    // The scheduled request, once due, goes first.
    if (scheduled_ && Clock::now() + kStartSlack >= scheduled_->startAt) {
      queue_.push_front(std::move(scheduled_));
      scheduled_.reset();
    }
    if (queue_.empty()) {
      if (closing_) break;  // nothing left to do
      if (scheduled_) {
        // Waits for its start time, past idleMs_ (nobody else would start it); a request, a
        // cancel or close wakes it earlier. By value: submitAt may replace scheduled_.
        const Clock::time_point at = scheduled_->startAt;
        cv_.wait_until(lk, at);
        continue;
      }
      // An idle thread leaves after idleMs_: a lease file stays open from acquire to
      // release (hours), and a thread per held lease would cost memory for nothing. The next
      // request on the handle starts a new one (dispatchLocked). After a request that announced
      // the next of its series, it waits until that one's start instead (then idles as usual).
      const Clock::time_point now = Clock::now();
      const bool expecting = me->expectNext > now;
      me->idleUntil = expecting ? me->expectNext : now + std::chrono::milliseconds(idleMs_);
      me->expectNext = Clock::time_point{};
      const bool woken = cv_.wait_until(lk, me->idleUntil, [&] { return !queue_.empty() || closing_ || scheduled_ != nullptr; });
      me->idleUntil = Clock::time_point::max();
      if (!woken && !expecting) break;
      continue;
    }
    std::shared_ptr<Request> req = std::move(queue_.front());
    queue_.pop_front();
    if (req->settled()) continue;  // timed out while queued: never start it
    if (req->scheduled && Clock::now() > req->latestStart) {
      // This thread was busy (or the machine stopped) past the caller's latest start: what the
      // request would write is no longer what the caller wants written.
      settle(req, Outcome::Late, ETIME);
      continue;
    }

    me->busy = true;
    me->deadline = req->deadline;
    if (req->op == Op::Close) {
      // Take the fd now, under the lock, unless another thread is still in
      // a syscall on it; then that thread closes it when it returns.
      int fd = -1;
      if (inflight_ == 0) {
        fd = fd_;
        fd_ = -1;
      }
      lk.unlock();
      int err = 0;
      if (fd >= 0 && ::close(fd) != 0) err = errno;
      if (err)
        settle(req, Outcome::SysError, err, "close");
      else
        settle(req, Outcome::Ok);
      lk.lock();
      me->busy = false;
      continue;
    }

    ++inflight_;
    int fd = fd_;
    lk.unlock();
    if (req->op == Op::Open)
      executeOpen(req);
    else if (req->op == Op::CompareWrite)
      executeCompareWrite(req, fd);
    else
      execute(req, fd);
    reapDeadlines();  // its deadline needs no wake-up now
    lk.lock();
    --inflight_;
    me->busy = false;
    if (req->scheduled && req->nextIn.count() > 0) me->expectNext = req->startAt + req->nextIn;

    // Keep at most one idle thread per handle: a replacement spawned while
    // this one was stuck makes this one redundant once it returns.
    if (!closing_ && queue_.empty()) {
      size_t idle = 0;
      for (auto& w : workers_) idle += w->busy ? 0 : 1;
      if (idle > 1) break;
    }
  }
  if (closing_ && inflight_ == 0 && fd_ >= 0) {
    int fd = fd_;
    fd_ = -1;
    lk.unlock();
    ::close(fd);
    lk.lock();
  }
  workers_.erase(std::find(workers_.begin(), workers_.end(), me));
}

// Runs one read/write on the calling worker thread and settles it. Called
// without the lock; the fd stays valid because inflight_ > 0.
void Handle::execute(const std::shared_ptr<Request>& req, int fd) {
  maybeStall(path_, req->offset);

  char* buf = static_cast<char*>(req->buf);
  uint64_t done = 0;
  const bool isRead = req->op == Op::Read;
  int err = transfer(fd, isRead, buf, req->length, req->offset, &done);

  if (!req->claim()) {
    // The promise already rejected at its deadline; only the buffer (owned
    // by req) had to stay alive until now.
    stats_->lateCompletions++;
    return;
  }
  req->claimedBy(err ? Outcome::SysError : Outcome::Ok, err,
                 isRead ? "read" : "write");
  if (err) {
    stats_->errors++;
  } else {
    if (isRead) {
      stats_->reads++;
      stats_->bytesRead += req->length;
    } else {
      stats_->writes++;
      stats_->bytesWritten += req->length;
    }
  }
  req->sink->deliver(req);
}

int Handle::transfer(int fd, bool isRead, char* buf, uint64_t length, int64_t offset, uint64_t* doneOut) {
  if (isRead && !direct_) {
    // Best effort against stale page-cache data when O_DIRECT is refused.
    ::posix_fadvise(fd, offset, static_cast<off_t>(length), POSIX_FADV_DONTNEED);
  }
  uint64_t done = 0;
  int err = 0;
  while (done < length) {
    off_t off = static_cast<off_t>(offset + static_cast<int64_t>(done));
    ssize_t n = isRead ? ::pread(fd, buf + done, length - done, off)
                       : ::pwrite(fd, buf + done, length - done, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (n == 0) {
      if (!isRead) err = EIO;  // a zero-length write would loop forever
      break;
    }
    done += static_cast<uint64_t>(n);
    // A partial sector means EOF inside it; another O_DIRECT pread at an
    // unaligned offset would only fail with EINVAL.
    if (isRead && done % kSectorAlign) break;
  }
  if (!err && isRead && done < length) {
    if (info_.isBlockDevice) {
      err = ENXIO;  // past the end of a device is a layout error, not zeros
    } else {
      // sanlock treats short/sparse regular files as zero-filled.
      std::memset(buf + done, 0, length - done);
    }
  }
  *doneOut = done;
  return err;
}

void WriteGate::open() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    open_ = true;
  }
  cv_.notify_all();
}

bool WriteGate::waitOpen(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lk(mu_);
  return cv_.wait_until(lk, deadline, [this] { return open_; });
}

namespace {

// Linux AIO contexts (raw syscalls, no libaio) for a CompareWrite's writes, shared by the I/O
// threads: a thread takes one for its writes and gives it back once every write it submitted
// has completed. Made when none is free, kept for the process's life: made per thread, each new
// or parked thread paid io_setup (0.03-0.08 ms) on the path of its first release, and each
// thread's exit an io_destroy (30-40 ms: it waits for an RCU grace period). Each context takes
// max(8, 4·CPUs)·2 of the system-wide fs.aio-max-nr, which QEMU's aio=native needs too (a VM
// whose io_setup fails does not start): at most kMaxAioContexts, so a mass release (a 64-disk
// domain's stop) writes one by one past them. A request that gets none (all taken, or io_setup
// failed: retried after kAioRetryMs) writes one after the other, as before AIO.
constexpr long kMaxWritesTogether = 8;
constexpr int kMaxAioContexts = 4;
constexpr auto kAioRetryMs = std::chrono::milliseconds(60000);
class AioPool {
 public:
  // A free context, or 0.
  aio_context_t take() {
    std::lock_guard<std::mutex> g(mu_);
    if (!free_.empty()) {
      aio_context_t c = free_.back();
      free_.pop_back();
      return c;
    }
    if (live_ >= kMaxAioContexts || Clock::now() < retryAt_) return 0;
    aio_context_t c = 0;
    if (setupFailsForTest() || ::syscall(SYS_io_setup, kMaxWritesTogether, &c) != 0) {
      const uint32_t testMs = hooks().aioRetryMs.load(std::memory_order_relaxed);
      retryAt_ = Clock::now() + (testMs ? std::chrono::milliseconds(testMs) : kAioRetryMs);
      return 0;
    }
    live_++;
    return c;
  }
  // Every write submitted on it has completed.
  void give(aio_context_t c) {
    std::lock_guard<std::mutex> g(mu_);
    free_.push_back(c);
  }
  // io_getevents failed on it (not expected): destroyed, which waits for what is in flight, so
  // no write outlives its buffer.
  void discard(aio_context_t c) {
    ::syscall(SYS_io_destroy, c);
    std::lock_guard<std::mutex> g(mu_);
    live_--;
  }
  int live() {
    std::lock_guard<std::mutex> g(mu_);
    return live_;
  }
  // testDropFreeAioContexts: destroys the free contexts, so the next request needs io_setup.
  int dropFree() {
    std::vector<aio_context_t> drop;
    {
      std::lock_guard<std::mutex> g(mu_);
      drop.swap(free_);
    }
    for (aio_context_t c : drop) ::syscall(SYS_io_destroy, c);
    std::lock_guard<std::mutex> g(mu_);
    live_ -= static_cast<int>(drop.size());
    return static_cast<int>(drop.size());
  }

 private:
  // testFailAioSetup: uses up one of the failures asked for, errno as io_setup would set it.
  // Production pays one atomic load here (and one more when io_setup really fails), nothing else.
  static bool setupFailsForTest() {
    TestHooks& h = hooks();
    uint32_t n = h.aioSetupFailures.load(std::memory_order_relaxed);
    while (n && !h.aioSetupFailures.compare_exchange_weak(n, n - 1)) {
    }
    if (!n) return false;
    errno = h.aioSetupErrno.load();
    return true;
  }

  std::mutex mu_;
  std::vector<aio_context_t> free_;
  int live_ = 0;
  Clock::time_point retryAt_{};
};
AioPool& aioPool() {
  static AioPool* p = new AioPool();  // never destroyed: detached threads use it
  return *p;
}
// A context taken for one CompareWrite's writes, given back when they are done.
struct AioLease {
  aio_context_t ctx;
  explicit AioLease(aio_context_t c) : ctx(c) {}
  ~AioLease() {
    if (ctx) aioPool().give(ctx);
  }
  AioLease(const AioLease&) = delete;
  AioLease& operator=(const AioLease&) = delete;
  void discard() {
    aioPool().discard(ctx);
    ctx = 0;
  }
};

}  // namespace

IoThreadCounts testIoThreads() {
  IoThreadCounts c = threadPark().counts();
  c.aioContexts = aioPool().live();
  return c;
}

uint32_t testFailAioSetup(uint32_t count, int err, uint32_t retryMs) {
  TestHooks& h = hooks();
  h.aioSetupErrno.store(err);
  h.aioRetryMs.store(retryMs);
  return h.aioSetupFailures.exchange(count);
}

int testDropFreeAioContexts() { return aioPool().dropFree(); }

int Handle::writeAll(const std::shared_ptr<Request>& req, int fd, char* data, uint64_t* written, uint64_t* nwrites) {
  const auto& writes = req->writes;
  const size_t n = writes.size();
  uint64_t done = 0;
  int err = 0;
  // Write i ended with errno e (0: it landed): the first error is the request's.
  auto ended = [&](size_t i, int e) {
    if (e) {
      if (!err) err = e;
    } else {
      *written += writes[i].second;
      (*nwrites)++;
    }
  };
  // One write, a page-cache fallback (AIO would run it inside io_submit anyway) or no context:
  // one after the other. A request past its deadline starts no further write.
  AioLease aio(n < 2 || n > static_cast<size_t>(kMaxWritesTogether) || !direct_ || aioRefused_.load() ? 0 : aioPool().take());
  if (!aio.ctx) {
    for (size_t i = 0; i < n && !err; i++) {
      if (req->settled()) break;  // timed out: the caller went on without us
      ended(i, transfer(fd, false, data, writes[i].second, writes[i].first, &done));
      data += writes[i].second;
    }
    return err;
  }
  if (req->settled()) return 0;
  struct iocb cbs[kMaxWritesTogether];
  struct iocb* ptrs[kMaxWritesTogether];
  char* bufs[kMaxWritesTogether];
  for (size_t i = 0; i < n; i++) {
    std::memset(&cbs[i], 0, sizeof cbs[i]);
    cbs[i].aio_data = i;
    cbs[i].aio_fildes = static_cast<uint32_t>(fd);
    cbs[i].aio_lio_opcode = IOCB_CMD_PWRITE;
    cbs[i].aio_buf = reinterpret_cast<uint64_t>(data);
    cbs[i].aio_nbytes = writes[i].second;
    cbs[i].aio_offset = writes[i].first;
    ptrs[i] = &cbs[i];
    bufs[i] = data;
    data += writes[i].second;
  }
  long submitted = 0;
  while (submitted < static_cast<long>(n)) {
    long r = ::syscall(SYS_io_submit, aio.ctx, static_cast<long>(n) - submitted, ptrs + submitted);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && submitted == 0 && (errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) aioRefused_.store(true);
    if (r <= 0) break;  // refused (EAGAIN; a file system without AIO): the rest below
    submitted += r;
  }
  if (submitted > 0) stats_->writesTogether += static_cast<uint64_t>(submitted);
  // What io_submit did not take is written here, while the rest is in flight.
  for (size_t i = static_cast<size_t>(submitted); i < n; i++) {
    if (req->settled()) break;  // timed out: no further write starts
    ended(i, transfer(fd, false, bufs[i], writes[i].second, writes[i].first, &done));
  }
  // Wait for every submitted write, as a pwrite would (a hung server keeps this thread here;
  // the watchdog settles the request at its deadline meanwhile).
  long got = 0;
  while (got < submitted) {
    struct io_event ev[kMaxWritesTogether];
    long r = ::syscall(SYS_io_getevents, aio.ctx, submitted - got, submitted - got, ev, nullptr);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      // Not expected with a valid context; still, no write may outlive its buffer.
      if (!err) err = errno;
      aio.discard();
      break;
    }
    for (long k = 0; k < r; k++) {
      const size_t i = static_cast<size_t>(ev[k].data);
      const int64_t res = static_cast<int64_t>(ev[k].res);
      int e = 0;
      if (res < 0) {
        e = static_cast<int>(-res);
      } else if (static_cast<uint64_t>(res) < writes[i].second) {
        // A short write: the rest as a pwrite would continue it, unless the request timed out.
        const uint64_t part = static_cast<uint64_t>(res);
        e = req->settled() ? ETIMEDOUT
                           : transfer(fd, false, bufs[i] + part, writes[i].second - part, writes[i].first + static_cast<int64_t>(part), &done);
      }
      ended(i, e);
    }
    got += r;
  }
  return err;
}

// Read, compare, then the writes (writeAll), on this worker thread: one settlement for all. A
// request past its deadline stops before its next syscall (its promise has rejected already).
void Handle::executeCompareWrite(const std::shared_ptr<Request>& req, int fd) {
  const Clock::time_point began = Clock::now();
  maybeStall(path_, req->offset);
  char* buf = static_cast<char*>(req->buf);
  char* expected = buf;
  // Read in place into the caller's block (readCompareWrite into allocAligned memory), else
  // into buf after the expected bytes.
  char* got = req->block ? static_cast<char*>(req->block->data) : buf + req->compareLength;
  char* data = req->block ? buf + req->compareLength : got + req->length;
  // The renewal's timestamp is taken before its read, as the lease engine takes it.
  if (req->stamp.on && !req->writes.empty())
    req->stampedSeconds = applyStamp(req->stamp, reinterpret_cast<uint8_t*>(data), &req->stampedChecksum);
  uint64_t done = 0;
  const char* syscall = "read";
  int err = transfer(fd, true, got, req->length, req->offset, &done);
  bool matched = !err && std::memcmp(expected, got + req->compareAt, req->compareLength) == 0;
  uint64_t written = 0, nwrites = 0;
  // A gate holds the writes until the caller's own step before them is done. Never opened by
  // the deadline: nothing is written and the request times out (here, or by the watchdog if
  // it got there first), whether or not the watchdog has settled it yet.
  // Closed meanwhile (close() resolves at once for a request in flight): nothing is written.
  if (matched && req->gate) {
    req->gateWaiting.store(true);
    const bool gateOpen = req->gate->waitOpen(req->deadline);
    bool closed;
    {
      std::lock_guard<std::mutex> g(mu_);
      closed = closing_;
    }
    if (!gateOpen || closed) {
      if (!settle(req, gateOpen ? Outcome::Cancelled : Outcome::Timeout, gateOpen ? ECANCELED : ETIMEDOUT, "write"))
        stats_->lateCompletions++;
      stats_->reads++;
      stats_->bytesRead += req->length;
      return;
    }
    req->gateWaiting.store(false);
  }
  if (matched) {
    syscall = "write";
    req->writing.store(true);
    err = writeAll(req, fd, data, &written, &nwrites);
  }
  const Clock::time_point ended = Clock::now();
  if (!req->claim()) {
    stats_->lateCompletions++;
    return;
  }
  req->matched = matched && !err;
  req->ranFor = ended - began;
  req->claimedBy(err ? Outcome::SysError : Outcome::Ok, err, syscall);
  if (err) {
    stats_->errors++;
  }
  stats_->reads++;
  stats_->bytesRead += req->length;
  stats_->writes += nwrites;
  stats_->bytesWritten += written;
  req->sink->deliver(req);
}

// open() runs on the worker too: on NFS or a FIFO it can block indefinitely.
void Handle::executeOpen(const std::shared_ptr<Request>& req) {
  const int base = (readOnly_ ? O_RDONLY : (O_RDWR | O_SYNC)) | O_CLOEXEC;
  int fd = -1;
  int err = 0;
  const char* syscall = "open";
  bool direct = true;
  if (hooks().forceDirectEinval.load()) {
    errno = EINVAL;
  } else {
    fd = retryOpen(path_.c_str(), base | O_DIRECT);
  }
  if (fd < 0 && errno == EINVAL) {
    // The filesystem refuses O_DIRECT (tmpfs, some FUSE): fall back to
    // synchronous writes through the page cache; JS warns about it.
    direct = false;
    fd = retryOpen(path_.c_str(),
                   (readOnly_ ? O_RDONLY : O_RDWR) | O_DSYNC | O_CLOEXEC);
  }
  DeviceInfo info;
  if (fd < 0) {
    err = errno;
  } else {
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      err = errno;
      syscall = "fstat";
    } else if (S_ISBLK(st.st_mode)) {
      int lss = 0;
      uint64_t bytes = 0;
      info.isBlockDevice = true;
      if (::ioctl(fd, BLKSSZGET, &lss) != 0 ||
          ::ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
        err = errno;
        syscall = "ioctl";
      } else {
        info.logicalSectorSize = static_cast<uint32_t>(lss);
        info.size = bytes;
      }
    } else {
      info.size = static_cast<uint64_t>(st.st_size);
    }
    if (!err) {
      // Which file this fd is: a lease path may name another file later.
      info.dev = static_cast<uint64_t>(st.st_dev);
      info.ino = static_cast<uint64_t>(st.st_ino);
      info.nlink = static_cast<uint64_t>(st.st_nlink);
    }
    if (err) {
      ::close(fd);
      fd = -1;
    }
  }

  if (!req->claim()) {
    // Timed out already: nobody will ever use this handle.
    stats_->lateCompletions++;
    if (fd >= 0) ::close(fd);
    std::lock_guard<std::mutex> g(mu_);
    closing_ = true;
    return;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    if (fd >= 0) {
      fd_ = fd;
      direct_ = direct;
      info_ = info;
    } else {
      closing_ = true;  // failed open: let this worker exit
    }
  }
  req->direct = direct;
  req->info = info;
  if (err) {
    req->claimedBy(Outcome::SysError, err, syscall);
    stats_->errors++;
  } else {
    req->claimedBy(Outcome::Ok, 0, "open");
  }
  req->sink->deliver(req);
}

// ---------------------------------------------------------------------------
namespace {

// Longer than a sector read takes on healthy storage, NFS included.
constexpr auto kProbeSlow = std::chrono::milliseconds(200);

// The pool that runs Op::Probe requests (see submitProbe in io_engine.h).
// Heap-allocated and never freed, like the registry: its detached threads may
// outlive everything else.
class ProbePool {
 public:
  void submit(std::shared_ptr<Request> req) {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(req);
    watchDeadline(req);
    dispatchLocked();
  }

  // A request's deadline passed: a busy thread may be stuck now, and what is
  // queued behind it needs another.
  void onDeadline() {
    std::lock_guard<std::mutex> g(mu_);
    dispatchLocked();
  }

 private:
  void dispatchLocked() {
    if (queue_.empty()) return;
    const Clock::time_point now = Clock::now();
    size_t idle = 0, healthy = 0;
    for (auto& w : workers_) {
      if (!w->busy)
        idle++;
      else if (now - w->since < kProbeSlow && w->deadline > now)
        healthy++;
    }
    if (idle) cv_.notify_one();
    // A few threads that keep finding work beat one per request: each sleep and
    // wake-up costs more than a sector read. A thread busy for longer than a
    // sector read takes (kProbeSlow) may be stuck on a hung server: it does not
    // count, and other threads are added, up to kMaxProbeThreads, so that a
    // hung file does not hold up the others. At the cap a request waits; its
    // deadline rejects it if nobody comes.
    size_t added = 0;
    while (queue_.size() > idle + added && healthy + idle + added < kProbeThreads &&
           workers_.size() < kMaxProbeThreads) {
      auto slot = std::make_shared<Slot>();
      try {
        std::thread(&ProbePool::workerMain, this, slot).detach();
      } catch (const std::system_error& e) {
        if (!workers_.empty()) break;  // the existing threads will get to it
        int err = e.code().value() ? e.code().value() : EAGAIN;
        for (auto& r : queue_) settle(r, Outcome::SysError, err, "pthread_create");
        queue_.clear();
        return;
      }
      workers_.push_back(slot);
      added++;
    }
    // Still waiting for a thread: look again once the busy ones count as slow.
    if (queue_.size() > idle + added) watchdog().add(queue_.back(), now + kProbeSlow, true);
  }

  struct Slot {
    bool busy = false;
    Clock::time_point since;
    Clock::time_point deadline;
  };

  void workerMain(std::shared_ptr<Slot> me) {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      if (!cv_.wait_for(lk, std::chrono::milliseconds(kIdleThreadMs),
                        [&] { return !queue_.empty(); }))
        break;
      std::shared_ptr<Request> req = std::move(queue_.front());
      queue_.pop_front();
      if (req->settled()) continue;  // timed out while queued: never start it
      me->busy = true;
      me->since = Clock::now();
      me->deadline = req->deadline;
      lk.unlock();
      execute(req);
      req.reset();
      reapDeadlines();
      lk.lock();
      me->busy = false;
    }
    workers_.erase(std::find(workers_.begin(), workers_.end(), me));
  }

  static void execute(const std::shared_ptr<Request>& req) {
    PathStats& stats = *req->stats;
    const char* path = req->path.c_str();
    const int base = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    bool direct = true;
    int fd = -1;
    int err = 0;
    const char* syscall = "open";
    if (hooks().forceDirectEinval.load()) {
      errno = EINVAL;
    } else {
      fd = retryOpen(path, base | O_DIRECT);
    }
    if (fd < 0 && errno == EINVAL) {
      direct = false;  // the filesystem refuses O_DIRECT; JS warns
      fd = retryOpen(path, base);
    }
    DeviceInfo info;
    bool regular = false;
    if (fd < 0) {
      err = errno;
    } else {
      struct stat st;
      if (::fstat(fd, &st) != 0) {
        err = errno;
        syscall = "fstat";
      } else {
        regular = S_ISREG(st.st_mode);
        info.size = static_cast<uint64_t>(st.st_size);
        info.dev = static_cast<uint64_t>(st.st_dev);
        info.ino = static_cast<uint64_t>(st.st_ino);
        info.nlink = static_cast<uint64_t>(st.st_nlink);
        info.mode = static_cast<uint32_t>(st.st_mode);
        info.mtimeSec = static_cast<int64_t>(st.st_mtim.tv_sec);
        info.mtimeNsec = static_cast<int64_t>(st.st_mtim.tv_nsec);
      }
    }
    uint64_t done = 0;
    if (!err && regular) {
      maybeStall(req->path, 0);
      if (!direct)
        ::posix_fadvise(fd, 0, static_cast<off_t>(req->length),
                        POSIX_FADV_DONTNEED);
      char* buf = static_cast<char*>(req->buf);
      while (done < req->length) {
        ssize_t n = ::pread(fd, buf + done, req->length - done,
                            static_cast<off_t>(done));
        if (n < 0) {
          if (errno == EINTR) continue;
          err = errno;
          syscall = "read";
          break;
        }
        if (n == 0) break;
        done += static_cast<uint64_t>(n);
        if (done % kSectorAlign) break;  // EOF inside a sector
      }
      // sanlock treats short/sparse regular files as zero-filled.
      if (!err && done < req->length)
        std::memset(buf + done, 0, req->length - done);
    }
    if (fd >= 0) ::close(fd);

    if (!req->claim()) {
      stats.lateCompletions++;
      return;
    }
    req->direct = direct;
    req->info = info;
    req->claimedBy(err ? Outcome::SysError : Outcome::Ok, err, syscall);
    if (err) {
      stats.errors++;
    } else if (regular) {
      stats.reads++;
      stats.bytesRead += req->length;
    }
    req->sink->deliver(req);
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  std::vector<std::shared_ptr<Slot>> workers_;
};

ProbePool& probePool() {
  static ProbePool* p = new ProbePool();
  return *p;
}

void probeDeadline() { probePool().onDeadline(); }

}  // namespace

void submitProbe(std::shared_ptr<Request> req) { probePool().submit(std::move(req)); }

}  // namespace lockagent
