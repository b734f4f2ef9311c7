// Names for libvirt's numeric codes (error numbers and domains, domain states
// and their reasons, lifecycle events and details, close reasons), so that JS
// gets both the number and a readable name. Codes that a newer libvirt adds
// come back as "UNKNOWN(n)"; the number is always passed through unchanged.
#pragma once

#include <string>

namespace lockagent {
namespace virt {

std::string errorName(int code);         // VIR_ERR_NO_DOMAIN
std::string errorDomainName(int domain); // VIR_FROM_TEST
std::string stateName(int state);        // PAUSED
std::string stateReasonName(int state, int reason);  // USER
std::string eventName(int event);        // STOPPED
std::string eventDetailName(int event, int detail);  // DESTROYED
std::string closeReasonName(int reason); // EOF

}  // namespace virt
}  // namespace lockagent
