// Sector I/O engine: per-handle worker threads, a deadline watchdog and
// per-path counters. Deliberately free of any Node-API types so the threading
// logic can be reasoned about (and tested) on its own; addon.cc bridges it to
// JavaScript through a Sink.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stamp.h"

namespace lockagent {

using Clock = std::chrono::steady_clock;

// Milliseconds (fractional) as a duration of Clock, to the microsecond.
inline Clock::duration msDuration(double ms) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::microseconds(static_cast<int64_t>(ms * 1000.0)));
}

// Upper bound on threads per handle. Only reached when earlier requests are
// stuck past their deadline; beyond it requests fail fast (see Handle).
constexpr size_t kMaxThreadsPerHandle = 4;
// How long an idle thread of the probe pool waits for the next request before it exits.
constexpr int kIdleThreadMs = 5000;
// How long an idle I/O thread waits for the next request on its handle before it exits, unless
// the open asks otherwise. Short: a held lease's file has no I/O from its acquire to its release
// (hours), and 1,000 leases acquired in a few seconds must not leave 1,000 threads behind
// (measured: 1,013 threads, +50 MiB RSS, for 5 s; at 250 ms still ~150 threads at the peak of
// that burst). The requests of one acquire, and a release right after it, follow each other by
// far less. A lockspace's handle asks for more than its renewal interval, so it keeps one thread
// from one renewal to the next.
constexpr int kDefaultHandleIdleMs = 50;
// A handle's thread that leaves (idle, or its handle closed) waits this long, at most
// kMaxParkedThreads of them, for the next handle that needs a thread (ThreadPark in
// io_engine.cc): a held lease's release and each acquire's open take a waiting thread instead of
// creating one.
constexpr int kParkMs = 60000;
// How far from its start time a scheduled request may start: a thread that wakes by itself
// about then (waiting for the next of a series, Request::nextIn) starts it then, rather than
// being woken to wait (Handle::submitAt) or waiting again for the rest. The caller's times come
// from its own whole-millisecond clock reads. SCHEDULE_SLACK_MS (src/lease/storage.ts) restates
// it as the storage contract; the addon exports it (scheduleSlackMs) and a test holds them equal.
constexpr auto kStartSlack = std::chrono::milliseconds(2);
constexpr size_t kMaxParkedThreads = 4;
constexpr size_t kBufferAlignment = 4096;
constexpr uint64_t kSectorAlign = 512;
constexpr uint64_t kMaxIoLength = 1ull << 30;

// CompareWrite: read `length` bytes at `offset`; when the expected bytes are found at
// `compareAt` in them, write `writes` (one hand-off to the I/O thread instead of one per sector;
// see LeaseStorage.writeIfUnchanged and readCompareWrite). Two or more writes go to the kernel
// together (Linux AIO, one io_submit) and land in any order: on a filer that is one round trip
// for all of them. They never overlap (the addon refuses that). Not atomic: other hosts may
// write in between, as with separate requests.
enum class Op { Open, Read, Write, Close, Probe, CompareWrite };

// How a request was settled. Exactly one settlement happens per request; the
// first party to flip Request::settled_ decides which.
enum class Outcome {
  Pending,
  Ok,
  SysError,   // err/syscall hold the failing syscall's errno
  Timeout,    // deadline passed (watchdog)
  Stuck,      // not started: every thread of the handle is stuck (fail fast)
  Cancelled,  // queued when close() was called
  Closed,     // submitted after close()
  ReadOnly,   // write on a handle opened read-only
  Late,       // scheduled, but its thread reached it after its latest start: never started
};

struct PathStats {
  std::atomic<uint64_t> reads{0}, writes{0}, bytesRead{0}, bytesWritten{0},
      errors{0}, timeouts{0}, lateCompletions{0}, writesTogether{0};
};

struct StatsSnapshot {
  uint64_t reads = 0, writes = 0, bytesRead = 0, bytesWritten = 0, errors = 0,
           timeouts = 0, lateCompletions = 0, writesTogether = 0;
};

// Counters live in a process-wide registry keyed by the path string as given
// to open(). Entries are shared with open handles, so reset zeroes in place.
std::shared_ptr<PathStats> statsFor(const std::string& path);
StatsSnapshot snapshotStats(const std::string* path /* nullptr = totals */);
void resetStats();
// Frees the cached aligned I/O buffers (they are reused across requests).
void dropBufferCache();

// Aligned memory handed to JavaScript as a Buffer (allocAligned) that a read can fill in place:
// no buffer of the request's own, no copy at completion. Shared by the JS Buffer (released by
// its finalizer) and every request reading into it, so a read that outlives its deadline still
// writes into live memory (the caller abandons such a buffer: LeaseStorage.readInto).
struct AlignedBlock {
  AlignedBlock(void* d, uint64_t n) : data(d), size(n) {}
  ~AlignedBlock();
  AlignedBlock(const AlignedBlock&) = delete;
  AlignedBlock& operator=(const AlignedBlock&) = delete;
  void* const data;
  const uint64_t size;
};
// nullptr on ENOMEM. Registered until freed, so findBlock can tell our memory from any other.
std::shared_ptr<AlignedBlock> allocBlock(uint64_t size);
// The block that starts at `data`, or nullptr (memory not from allocBlock, or already freed).
std::shared_ptr<AlignedBlock> findBlock(const void* data);

// Holds a CompareWrite's writes (not its read) until opened: the caller overlaps a step of its
// own that must come before the writes (the release's journal commit) with the hand-off to the
// I/O thread and the read. Opened on the JS thread, waited for on the request's I/O thread; a
// request past its deadline stops waiting (the watchdog has settled it).
class WriteGate {
 public:
  void open();
  // Until opened or `deadline`; true when opened.
  bool waitOpen(Clock::time_point deadline);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

struct DeviceInfo {
  bool isBlockDevice = false;
  uint64_t size = 0;
  uint32_t logicalSectorSize = 512;
  // st_dev / st_ino of the opened fd: which file the fd is, whatever the path names later.
  uint64_t dev = 0;
  uint64_t ino = 0;
  // st_nlink at the open: a lease file with another name elsewhere must not be written.
  uint64_t nlink = 0;
  // Probe only: st_mode and st_mtim of the opened fd.
  uint32_t mode = 0;
  int64_t mtimeSec = 0;
  int64_t mtimeNsec = 0;
};

class Handle;
struct Request;

// Receives settled requests on arbitrary threads; must not block for long
// and must not call back into the Handle (called with the handle lock held).
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void deliver(std::shared_ptr<Request> req) = 0;
};

struct Request {
  Request(Op op, std::string path, int64_t offset, uint64_t length,
          double timeoutMs);
  // A scheduled request (Handle::submitAt), started at `startAt`; its deadline counts from then.
  Request(Op op, std::string path, int64_t offset, uint64_t length,
          double timeoutMs, Clock::time_point startAt);
  ~Request();
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  // Allocates the aligned buffer; false on ENOMEM.
  bool allocate();
  // Atomically claims the right to settle; only one caller ever gets true.
  bool claim() {
    bool expected = false;
    return settled_.compare_exchange_strong(expected, true,
                                            std::memory_order_acq_rel);
  }
  bool settled() const { return settled_.load(std::memory_order_acquire); }
  // Records the outcome; only for the caller that won claim().
  void claimedBy(Outcome o, int e, const char* sc) {
    outcome = o;
    err = e;
    if (sc && sc[0]) syscall = sc;
  }

  const Op op;
  const std::string path;
  const int64_t offset;
  const uint64_t length;
  const double timeoutMs;
  // When the request may start (its creation, unless scheduled) and its deadline (startAt +
  // timeoutMs).
  const Clock::time_point startAt;
  const Clock::time_point deadline;
  // Scheduled requests only (Handle::submitAt): a thread that reaches it later than this settles
  // it Late instead of starting it (the caller's reason to do it at that time has passed).
  bool scheduled = false;
  Clock::time_point latestStart = Clock::time_point::max();
  // Scheduled CompareWrite only, optional: stamped into the first write's data at its start
  // (stamp.h), and what was stamped.
  SectorStamp stamp;
  uint64_t stampedSeconds = 0;
  uint32_t stampedChecksum = 0;
  // Scheduled requests only: another of the same series follows, starting this long after this
  // one started (a lockspace's renewals): its thread waits for that time when done, so that
  // submitAt need not wake it (0: none announced).
  Clock::duration nextIn{0};
  // Size of buf: `length`, except for CompareWrite (the expected bytes, the `length` bytes
  // read unless they land in `block`, then the data of each write, in that order).
  uint64_t bufSize;
  // CompareWrite only: (file offset, length) of each write, its data following in buf.
  std::vector<std::pair<int64_t, uint64_t>> writes;
  // CompareWrite only: the expected bytes are compared with the bytes read at compareAt
  // (compareLength bytes; writeIfUnchanged compares the whole read, readCompareWrite one
  // sector of it).
  uint64_t compareAt = 0;
  uint64_t compareLength = 0;
  // CompareWrite only: the bytes read equalled the expected ones and every write was done.
  bool matched = false;
  // CompareWrite only: from its start to its completion (a scheduled one's duration is not the
  // caller's to measure: it does not see the start).
  Clock::duration ranFor{0};
  // CompareWrite only: its first write has started (a failure or timeout names that phase).
  std::atomic<bool> writing{false};
  // CompareWrite only, optional: the writes wait until it is opened (the read does not).
  std::shared_ptr<WriteGate> gate;
  // True while the worker waits for the gate: a timeout then is the caller's step, not storage.
  std::atomic<bool> gateWaiting{false};

  // Aligned I/O buffer, owned by the request (freed in the destructor) so it
  // stays valid for a syscall that outlives the JS promise.
  void* buf = nullptr;
  // readInto a Buffer from allocAligned: buf points into this block (not owned, never cached).
  std::shared_ptr<AlignedBlock> block;

  // Written by whoever won claim(), before Sink::deliver (which publishes).
  Outcome outcome = Outcome::Pending;
  int err = 0;
  const char* syscall = "";
  bool direct = true;
  DeviceInfo info;
  size_t threadsStuck = 0;

  std::shared_ptr<PathStats> stats;
  std::shared_ptr<Sink> sink;
  std::weak_ptr<Handle> handle;
  // Only set for Op::Open: keeps the handle alive until JS wraps it.
  std::shared_ptr<Handle> owner;
  // Opaque JS-thread state (napi_deferred); never touched off the JS thread.
  void* jsDeferred = nullptr;
  // readInto only: napi_ref to the caller's Buffer, filled on the JS thread at
  // completion (never by a late syscall); never touched off the JS thread.
  void* jsTarget = nullptr;

 private:
  std::atomic<bool> settled_{false};
};

// One open path. Requests are executed by this handle's own detached threads
// (parked ones taken over from closed or idle handles, else new ones), so a hung
// syscall here never delays another handle.
class Handle : public std::enable_shared_from_this<Handle> {
  friend class ThreadPark;

 public:
  Handle(std::string path, bool readOnly, std::shared_ptr<PathStats> stats,
         int idleMs = kDefaultHandleIdleMs);
  ~Handle();

  // All of these are called on the JS thread and never block on I/O.
  void submit(std::shared_ptr<Request> req);
  // A request to start at req->startAt, at most kStartSlack early (a lockspace's next renewal,
  // submitted when the last one completes: the JS thread is not woken to start it). One at a time per handle;
  // requests submitted meanwhile go ahead of it. The handle keeps a thread waiting for it, past
  // its idle time. Settled Late when its thread gets to it after req->latestStart.
  void submitAt(std::shared_ptr<Request> req);
  // Settles the scheduled request Cancelled unless a thread has taken it; true when one was.
  bool cancelScheduled();
  void close(std::shared_ptr<Request> closeReq);
  void shutdown();  // close without a promise (handle garbage-collected)

  // Watchdog hook: a request of this handle passed its deadline, so a busy
  // thread may now count as stuck and a replacement may be needed.
  void onDeadline();

  size_t threadCount();
  const std::string& path() const { return path_; }
  const std::shared_ptr<PathStats>& stats() const { return stats_; }
  bool readOnly() const { return readOnly_; }

 private:
  struct WorkerSlot {
    bool busy = false;
    Clock::time_point deadline;
    // While idle: when it wakes by itself (submitAt leaves it be when that is the start time).
    Clock::time_point idleUntil = Clock::time_point::max();
    // After a scheduled request with nextInMs: when the next one of its series starts.
    Clock::time_point expectNext{};
  };

  // Makes sure a thread will take the queue. With notify false an idle
  // thread is not woken here: true is returned and the caller wakes it once it
  // has released the lock.
  bool dispatchLocked(bool notify = true);
  // Settles a request the handle cannot take (closed, or a write on a read-only handle); true if so.
  bool refusedLocked(const std::shared_ptr<Request>& req);
  // Starts a worker (a parked thread or a new one); 0, or the errno when no thread could be made.
  int startWorkerLocked();
  void cancelQueuedLocked(Outcome why);
  void workerMain(std::shared_ptr<WorkerSlot> me);
  void execute(const std::shared_ptr<Request>& req, int fd);
  void executeCompareWrite(const std::shared_ptr<Request>& req, int fd);
  // The pread/pwrite loop of one transfer; returns 0 or an errno, *done the bytes moved.
  int transfer(int fd, bool isRead, char* buf, uint64_t length, int64_t offset, uint64_t* done);
  // A CompareWrite's writes (data back to back from `data`), submitted together when the
  // thread has an AIO context, else one after the other. Returns 0 or the first errno; *written
  // and *nwrites count what landed.
  int writeAll(const std::shared_ptr<Request>& req, int fd, char* data, uint64_t* written, uint64_t* nwrites);
  void executeOpen(const std::shared_ptr<Request>& req);

  const std::string path_;
  const bool readOnly_;
  const int idleMs_;
  const std::shared_ptr<PathStats> stats_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Request>> queue_;
  // submitAt's request until its start time (then it goes to the front of queue_).
  std::shared_ptr<Request> scheduled_;
  std::vector<std::shared_ptr<WorkerSlot>> workers_;
  int fd_ = -1;
  // Set once by the open, before the handle is handed to JS.
  bool direct_ = true;
  // io_submit refused this file once (EINVAL, EOPNOTSUPP, ENOSYS): its writes go one by one.
  std::atomic<bool> aioRefused_{false};
  DeviceInfo info_;
  bool closing_ = false;
  // Threads currently inside a syscall on fd_. The fd is only closed when
  // this is zero so its number cannot be reused under a pending pread.
  int inflight_ = 0;
};

// Registers a request with the process-wide deadline watchdog thread.
void watchDeadline(const std::shared_ptr<Request>& req);
// A request completed on this thread: lets the watchdog drop the deadlines
// that need no wake-up any more (any thread; takes the watchdog's lock only).
void reapDeadlines();

// Op::Probe: one-shot look at one file for a directory scan (the cleanup sweep):
// open read-only (O_DIRECT, else O_DSYNC-less fallback with DONTNEED;
// O_NOFOLLOW|O_NONBLOCK: a symlink fails with ELOOP, a FIFO never blocks),
// fstat, read req->length bytes from offset 0 when it is a regular file, close.
// Runs on a small process-wide pool instead of a Handle: a thread and three
// JS round trips per file cost far more than the I/O. kProbeThreads threads
// serve the queue; one busy for longer than a sector read takes may be stuck
// and is not counted (threads are added, up to kMaxProbeThreads); a request
// that finds every thread stuck waits in the queue until its deadline
// rejects it.
constexpr size_t kProbeThreads = 8;
constexpr size_t kMaxProbeThreads = 64;
void submitProbe(std::shared_ptr<Request> req);

// Test hooks (not part of the public API).
void testForceDirectEinval(bool on);
void testInjectStall(const std::string& path, int64_t offset, uint32_t ms,
                     uint32_t count);
// How many times the deadline watchdog thread has woken up.
uint64_t testWatchdogWakeups();
// Handle threads created so far, and those parked now (ThreadPark).
struct IoThreadCounts {
  uint64_t created;
  size_t parked;
  int aioContexts;  // live AIO contexts of I/O threads (writeAll)
};
IoThreadCounts testIoThreads();
// The next `count` io_setup calls of the AIO context pool fail with errno `err`; a failure then
// waits retryMs (0: the production minute) before the pool tries again. Returns the failures
// the last call asked for that were still to come (0: each was used).
uint32_t testFailAioSetup(uint32_t count, int err, uint32_t retryMs);
// Destroys the pool's free AIO contexts (so a test sees io_setup run); returns how many.
int testDropFreeAioContexts();

}  // namespace lockagent
