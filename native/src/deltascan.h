// The quick path of a host monitor's look over a lockspace area (src/lease/hostmonitor.ts,
// quickScanJs, states the rule; this is the same loop in C++). No Node types: addon.cc binds it.
// Runs on the JS thread over memory the caller owns for the call's duration.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockagent {

// Little-endian u32 word indexes of a delta lease sector (owner_id at byte 32, lockspace name 56,
// owner name 104, timestamp 152, io_timeout's word 172) and the 48-byte name fields' word count.
constexpr size_t kScanOwnerWord = 8;
constexpr size_t kScanSpaceNameWord = 14;
constexpr size_t kScanOwnerNameWord = 26;
constexpr size_t kScanTimestampWord = 38;
constexpr size_t kScanIoTimeoutWord = 43;
constexpr size_t kScanNameWords = 12;
// Per sector the watched words kept from the last look: magic, owner (2), generation (2), timestamp (2).
constexpr size_t kScanWatchedWords = 7;

struct DeltaScan {
  const uint32_t* words;       // the area: hosts sectors of `step` words
  size_t hosts;
  size_t step;                 // words per sector
  uint32_t* prev;              // hosts * kScanWatchedWords
  const uint8_t* quick;        // hosts + 1, by host_id: 1 = its last record was good and ours
  const uint32_t* names;       // (hosts + 1) * kScanNameWords, by host_id: owner name as last decoded
  const uint32_t* spaceWords;  // kScanNameWords: our lockspace name
  const uint16_t* ioTimeouts;  // hosts + 1, by host_id: io_timeout of its last good record
  double* lastLive;            // hosts + 1, by host_id
  int64_t ourIndex;            // our host_id - 1
  size_t ourBitWord;           // where our bit of a sector's bitmap is
  uint32_t ourBitMask;
  double now;
  int32_t* slow;               // hosts: sector indexes left for the full path
};

// Returns how many sector indexes it wrote to s.slow.
size_t deltaQuickScan(const DeltaScan& s);

}  // namespace lockagent
