import {
  DEFAULT_IO_TIMEOUT, DELTA_DISK_MAGIC, DELTA_DISK_VERSION, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC,
  PAXOS_DISK_VERSION,
} from './constants';
import { LEADER_RECORD_SIZE } from './constants';
import { emptyLeader, LeaderRecord, sealLeaderInto } from './leader';
import { encodeRequestInto, freshRequest } from './request';
import { LeaseError, SANLK } from './results';
import { Geometry } from './sizes';

/**
 * Builders for freshly initialised lease areas, byte-identical to `sanlock direct init`.
 * They are pure: callers write the returned buffers.
 */

export interface LockspaceInit {
  spaceName: string;
  geometry: Geometry;
  /** written into every record; sanlock's default is 10 */
  ioTimeout?: number;
}

/** The delta record every host_id sector of a fresh lockspace holds. */
export function freshDeltaLeader(init: LockspaceInit): LeaderRecord {
  return {
    ...emptyLeader(),
    magic: DELTA_DISK_MAGIC,
    version: DELTA_DISK_VERSION,
    flags: init.geometry.alignFlag,
    sectorSize: init.geometry.sectorSize,
    numHosts: 0,
    maxHosts: 1,
    spaceName: init.spaceName,
    ioTimeout: (init.ioTimeout ?? DEFAULT_IO_TIMEOUT) & 0xffff,
  };
}

/**
 * sanlock writes a lockspace in two steps so a crash cannot leave a half-written area that
 * looks valid: first the whole area with sector 0's magic = 0 ("uncommitted"), then sector 0
 * with the real magic. Returns both writes.
 */
export function buildLockspaceArea(init: LockspaceInit): { area: Buffer; commitSector: Buffer } {
  const g = init.geometry;
  const area = Buffer.alloc(g.alignSize);
  const rec = freshDeltaLeader(init);
  // Every host_id sector holds the same record: seal it once and copy it.
  sealLeaderInto(rec, area, g.sectorSize);
  for (let i = 2; i < g.maxHosts; i++) area.copy(area, i * g.sectorSize, g.sectorSize, g.sectorSize + LEADER_RECORD_SIZE);
  sealLeaderInto({ ...rec, magic: 0 }, area, 0);
  const commitSector = Buffer.alloc(g.sectorSize);
  sealLeaderInto(rec, commitSector, 0);
  return { area, commitSector };
}

export interface ResourceInit {
  spaceName: string;
  resourceName: string;
  geometry: Geometry;
  /** dblocks in use; default and maximum = max_hosts */
  numHosts?: number;
  /** `-z 1`: write the CLEAR magic */
  clear?: boolean;
  /** monotime for write_timestamp of a cleared lease */
  now?: number;
}

export function freshPaxosLeader(init: ResourceInit): LeaderRecord {
  const g = init.geometry;
  const numHosts = init.numHosts || g.maxHosts;
  if (numHosts < 1 || numHosts > g.maxHosts) {
    throw new LeaseError(SANLK.EINVAL, `num_hosts ${numHosts} is out of range: 1..${g.maxHosts} for ${g.sectorSize}/${g.alignSize >> 20}M`);
  }
  return {
    ...emptyLeader(),
    magic: init.clear ? PAXOS_DISK_CLEAR : PAXOS_DISK_MAGIC,
    version: PAXOS_DISK_VERSION,
    flags: g.alignFlag,
    sectorSize: g.sectorSize,
    numHosts,
    maxHosts: g.maxHosts,
    spaceName: init.spaceName,
    resourceName: init.resourceName,
    writeTimestamp: init.clear ? (init.now ?? 0) : 0,
  };
}

/** A fresh resource area: leader, request record, zero dblocks; written in one I/O. */
export function buildResourceArea(init: ResourceInit): Buffer {
  const g = init.geometry;
  const area = Buffer.alloc(g.alignSize);
  sealLeaderInto(freshPaxosLeader(init), area, 0);
  encodeRequestInto(freshRequest(), area, g.sectorSize);
  return area;
}
