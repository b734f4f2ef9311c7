// systemd notify and wdmd client bindings (hostwatch.cc).
#ifndef LOCKAGENT_HOSTWATCH_H_
#define LOCKAGENT_HOSTWATCH_H_

#include <napi.h>

namespace lockagent {

// WDMD_NAME_SIZE of wdmd.h, which is not included: libwdmd is loaded at run time.
constexpr int WDMD_NAME_SIZE_ = 128;

void registerHostWatch(Napi::Env env, Napi::Object exports);

}  // namespace lockagent

#endif  // LOCKAGENT_HOSTWATCH_H_
