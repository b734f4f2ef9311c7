// The one bridge from worker threads to the JS thread, shared by both addons:
// a ThreadSafeFunction behind a mutex. Threads post heap boxes; once the Node
// environment lets the TSFN go (detach/release), later posts are deleted
// instead of touching a freed TSFN.
#pragma once

#include <node_api.h>

#include <mutex>

namespace lockagent {

class TsfnBridge {
 public:
  void attach(napi_threadsafe_function t) {
    std::lock_guard<std::mutex> g(mu_);
    tsfn_ = t;
  }
  void detach() {
    std::lock_guard<std::mutex> g(mu_);
    tsfn_ = nullptr;
  }
  // Gives up this thread's reference to the TSFN (a worker thread that ends).
  void release() {
    std::lock_guard<std::mutex> g(mu_);
    if (tsfn_) napi_release_threadsafe_function(tsfn_, napi_tsfn_release);
    tsfn_ = nullptr;
  }

 protected:
  // Hands `boxed` to the JS thread, or deletes it when that is no longer
  // possible. Unbounded queue: a non-blocking call never fails with
  // queue-full, so a slow JS consumer never blocks the posting thread.
  template <typename T>
  void post(T* boxed) {
    std::lock_guard<std::mutex> g(mu_);
    if (!tsfn_ || napi_call_threadsafe_function(tsfn_, boxed, napi_tsfn_nonblocking) != napi_ok)
      delete boxed;
  }

 private:
  std::mutex mu_;
  napi_threadsafe_function tsfn_ = nullptr;
};

}  // namespace lockagent
