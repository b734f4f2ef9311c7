#include "stamp.h"

#include <time.h>

namespace lockagent {

namespace {
struct CrcTable {
  uint32_t t[256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
  }
};
const CrcTable kCrc;
}  // namespace

uint32_t sanlockChecksum(const uint8_t* data, size_t length) {
  uint32_t c = 0xfffffffeu;
  for (size_t i = 0; i < length; i++) c = kCrc.t[(c ^ data[i]) & 0xff] ^ (c >> 8);
  return c;
}

uint64_t applyStamp(const SectorStamp& s, uint8_t* data, uint32_t* checksum) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t seconds = ts.tv_sec > 0 ? static_cast<uint64_t>(ts.tv_sec) : 1;
  for (int i = 0; i < 8; i++) data[s.timestampAt + i] = static_cast<uint8_t>(seconds >> (8 * i));
  const uint32_t c = sanlockChecksum(data, s.checksumLength);
  for (int i = 0; i < 4; i++) data[s.checksumAt + i] = static_cast<uint8_t>(c >> (8 * i));
  *checksum = c;
  return seconds;
}

}  // namespace lockagent
