import { encodeLeaderInto, LEADER_CHECKSUM_OFFSET, leaderChecksum, LeaderRecord } from '../ondisk/leader';
import { readName } from '../ondisk/names';

/**
 * Leader-record helpers on the engine's hot paths (every renewal compares and writes one; the
 * paxos owner wait compares one per second). Same results as ondisk's leadersEqual and
 * sealLeaderInto, without re-encoding or re-decoding whole records.
 */

/** The 200-byte records are equal (sanlock's memcmp), compared field by field. */
export function sameLeader(a: LeaderRecord, b: LeaderRecord): boolean {
  return a.timestamp === b.timestamp && a.ownerGeneration === b.ownerGeneration && a.ownerId === b.ownerId &&
    a.lver === b.lver && a.checksum === b.checksum && a.magic === b.magic && a.version === b.version &&
    a.flags === b.flags && a.sectorSize === b.sectorSize && a.numHosts === b.numHosts && a.maxHosts === b.maxHosts &&
    a.spaceName === b.spaceName && a.resourceName === b.resourceName && a.unused1 === b.unused1 &&
    a.unused2 === b.unused2 && a.ioTimeout === b.ioTimeout && a.writeId === b.writeId &&
    a.writeGeneration === b.writeGeneration && a.writeTimestamp === b.writeTimestamp;
}

/**
 * Encode `rec` at `off` with its checksum and return the record as stored (names as the disk
 * holds them: resource_name cut to `nameMax` bytes).
 */
export function sealLeader(rec: LeaderRecord, buf: Buffer, off = 0, nameMax = 48): LeaderRecord {
  encodeLeaderInto({ ...rec, checksum: 0 }, buf, off, nameMax);
  const checksum = leaderChecksum(buf, off);
  buf.writeUInt32LE(checksum, off + LEADER_CHECKSUM_OFFSET);
  return { ...rec, checksum, spaceName: readName(buf, off + 56), resourceName: readName(buf, off + 104) };
}
