// The process-wide libvirt event loop.
//
// libvirt allows exactly one event implementation per process and it must be
// registered before the first connection is opened (the remote driver decides
// at open time whether to watch its socket and to advertise keepalive). We
// register libvirt's default implementation from the addon's module init and
// run virEventRunDefaultImpl() forever on a dedicated thread: libvirt's docs
// require the loop to run continuously, keepalive replies and event dispatch
// depend on it, and it must never wait for JS. The thread is detached and not
// stopped: it does not keep Node alive (it is not a libuv handle).
#pragma once

#include <cstdint>
#include <string>

namespace lockagent {
namespace virt {

struct LoopStatus {
  bool ok = false;
  int code = 0;    // virErrorNumber when registration failed
  int domain = 0;  // virErrorDomain
  std::string message;
};

// Idempotent and thread-safe; the first call does the work.
const LoopStatus& ensureEventLoop();

// Diagnostics: completed virEventRunDefaultImpl() iterations, and whether the
// loop thread is running.
uint64_t loopIterations();
bool loopRunning();

}  // namespace virt
}  // namespace lockagent
