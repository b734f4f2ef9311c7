import {
  DELTA_DISK_MAGIC, DELTA_DISK_VERSION_MAJOR, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC,
  PAXOS_DISK_VERSION_MAJOR, VERSION_MAJOR_MASK,
} from './constants';
import { dblockValid } from './dblock';
import { decodeLeader, leaderChecksum, LeaderRecord } from './leader';
import { namesEqual } from './names';
import { SANLK } from './results';

/**
 * sanlock's verify_leader for a delta (lockspace) record, same checks in the same order:
 * magic, major version, lockspace name, checksum. Returns 0 or a sanlock result code.
 */
export function verifyDeltaLeader(buf: Buffer, off: number, spaceName: string): { rv: number; leader: LeaderRecord } {
  const leader = decodeLeader(buf, off);
  let rv: number = SANLK.OK;
  if (leader.magic !== DELTA_DISK_MAGIC) rv = SANLK.LEADER_MAGIC;
  else if (((leader.version & VERSION_MAJOR_MASK) >>> 0) !== DELTA_DISK_VERSION_MAJOR) rv = SANLK.LEADER_VERSION;
  else if (!namesEqual(leader.spaceName, spaceName)) rv = SANLK.LEADER_LOCKSPACE;
  else if (leaderChecksum(buf, off) !== leader.checksum) rv = SANLK.LEADER_CHECKSUM;
  return { rv, leader };
}

/**
 * verify_leader for a paxos (resource) record: magic (CLEAR counts as bad magic), major version,
 * lockspace, resource, num_hosts >= host_id, checksum. `hostId` 0 skips the num_hosts check.
 */
export function verifyPaxosLeader(
  buf: Buffer, off: number, spaceName: string, resourceName: string, hostId = 0,
): { rv: number; leader: LeaderRecord } {
  const leader = decodeLeader(buf, off);
  let rv: number = SANLK.OK;
  if (leader.magic === PAXOS_DISK_CLEAR || leader.magic !== PAXOS_DISK_MAGIC) rv = SANLK.LEADER_MAGIC;
  else if (((leader.version & VERSION_MAJOR_MASK) >>> 0) !== PAXOS_DISK_VERSION_MAJOR) rv = SANLK.LEADER_VERSION;
  else if (!namesEqual(leader.spaceName, spaceName)) rv = SANLK.LEADER_LOCKSPACE;
  else if (!namesEqual(leader.resourceName, resourceName)) rv = SANLK.LEADER_RESOURCE;
  else if (leader.numHosts < hostId) rv = SANLK.LEADER_NUMHOSTS;
  else if (leaderChecksum(buf, off) !== leader.checksum) rv = SANLK.LEADER_CHECKSUM;
  return { rv, leader };
}

/**
 * Every dblock of a paxos area (sectors 2..num_hosts+1) must verify, else -214. `area` starts at
 * the lease offset and must cover the dblock sectors that are checked.
 */
export function verifyDblocks(area: Buffer, numHosts: number, sectorSize: number): number {
  for (let i = 0; i < numHosts; i++) {
    const off = (2 + i) * sectorSize;
    if (off + 56 > area.length) break;
    if (!dblockValid(area, off)) return SANLK.DBLOCK_CHECKSUM;
  }
  return SANLK.OK;
}
