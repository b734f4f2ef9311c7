#include "virt_loop.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

namespace lockagent {
namespace virt {
namespace {

std::once_flag gOnce;
LoopStatus gStatus;
std::atomic<uint64_t> gIterations{0};
std::atomic<bool> gRunning{false};

// libvirt prints every error to stderr unless an error function is set.
// Errors are reported to JS through virGetLastError() instead.
void quietErrors(void*, virErrorPtr) {}

void fill(LoopStatus& s, const char* fallback) {
  virErrorPtr e = virGetLastError();
  s.ok = false;
  s.code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
  s.domain = e ? e->domain : VIR_FROM_EVENT;
  s.message = e && e->message ? e->message : fallback;
  virResetLastError();
}

void loopMain() {
  pthread_setname_np(pthread_self(), "lv-events");
  gRunning.store(true);
  for (;;) {
    if (virEventRunDefaultImpl() < 0) {
      // Only fails on poll() errors other than EINTR; never spin.
      virResetLastError();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    gIterations.fetch_add(1, std::memory_order_relaxed);
  }
}

void init() {
  if (virInitialize() < 0) {
    fill(gStatus, "virInitialize failed");
    return;
  }
  virSetErrorFunc(nullptr, quietErrors);
  if (virEventRegisterDefaultImpl() < 0) {
    fill(gStatus, "virEventRegisterDefaultImpl failed");
    return;
  }
  try {
    std::thread(loopMain).detach();
  } catch (const std::exception& e) {
    gStatus.ok = false;
    gStatus.code = VIR_ERR_SYSTEM_ERROR;
    gStatus.domain = VIR_FROM_EVENT;
    gStatus.message = std::string("cannot start the libvirt event thread: ") + e.what();
    return;
  }
  gStatus.ok = true;
}

}  // namespace

const LoopStatus& ensureEventLoop() {
  std::call_once(gOnce, init);
  return gStatus;
}

uint64_t loopIterations() { return gIterations.load(std::memory_order_relaxed); }
bool loopRunning() { return gRunning.load(); }

}  // namespace virt
}  // namespace lockagent
