#include "deltascan.h"

#include <cstring>

namespace lockagent {

size_t deltaQuickScan(const DeltaScan& s) {
  size_t k = 0;
  const size_t nameBytes = kScanNameWords * sizeof(uint32_t);
  for (size_t i = 0; i < s.hosts; i++) {
    const uint32_t* w = s.words + i * s.step;
    uint32_t* p = s.prev + i * kScanWatchedWords;
    const uint32_t* o = w + kScanOwnerWord;
    const uint32_t* t = w + kScanTimestampWord;
    const bool sameRecord = w[0] == p[0] && o[0] == p[1] && o[1] == p[2] && o[2] == p[3] && o[3] == p[4];
    if (sameRecord && t[0] == p[5] && t[1] == p[6]) continue;
    const size_t id = i + 1;
    if (sameRecord && s.quick[id] == 1 &&
        (static_cast<int64_t>(i) == s.ourIndex || (w[s.ourBitWord] & s.ourBitMask) == 0) &&
        std::memcmp(w + kScanSpaceNameWord, s.spaceWords, nameBytes) == 0 &&
        std::memcmp(w + kScanOwnerNameWord, s.names + id * kScanNameWords, nameBytes) == 0 &&
        (w[kScanIoTimeoutWord] >> 16) == s.ioTimeouts[id]) {
      p[5] = t[0];
      p[6] = t[1];
      s.lastLive[id] = s.now;
      continue;
    }
    s.slow[k++] = static_cast<int32_t>(i);
  }
  return k;
}

}  // namespace lockagent
