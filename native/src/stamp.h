// A scheduled renewal's stamp, put into its sector by the I/O thread when it starts (before its
// read, where the lease engine takes a renewal's timestamp): the time in whole seconds of
// CLOCK_MONOTONIC, then sanlock's checksum over the record. The rules restated from
// src/ondisk/crc32c.ts (sanlockChecksum) and src/lease/wait.ts (leaseTimestamp: at least 1);
// test/native/stamp.test.ts checks the two against each other. No Node types.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockagent {

struct SectorStamp {
  bool on = false;
  uint32_t timestampAt = 0;     // u64 little-endian, in the first write's data
  uint32_t checksumAt = 0;      // u32 little-endian
  uint32_t checksumLength = 0;  // bytes from the start of the data
};

// sanlock's CRC-32C variant: Castagnoli, reflected, seed 0xFFFFFFFE, no final xor.
uint32_t sanlockChecksum(const uint8_t* data, size_t length);

// Writes the stamp into `data` (at least max(timestampAt + 8, checksumAt + 4, checksumLength)
// bytes, checked by the addon); returns the timestamp and sets *checksum.
uint64_t applyStamp(const SectorStamp& s, uint8_t* data, uint32_t* checksum);

}  // namespace lockagent
