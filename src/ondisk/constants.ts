/** On-disk constants of sanlock 3.8.5 (src/leader.h, paxos_dblock.h, mode_block.h, rindex_disk.h). */

export const DELTA_DISK_MAGIC = 0x12212010;
export const PAXOS_DISK_MAGIC = 0x06152010;
/** Written by `init -z 1`: a paxos lease deliberately made unusable. */
export const PAXOS_DISK_CLEAR = 0x11282016;
export const REQ_DISK_MAGIC = 0x08292011;
export const RINDEX_DISK_MAGIC = 0x01042018;

export const DELTA_DISK_VERSION = 0x00030004;
export const PAXOS_DISK_VERSION = 0x00060004;
export const REQ_DISK_VERSION = 0x00010001;
export const RINDEX_DISK_VERSION = 0x00010002;
export const DELTA_DISK_VERSION_MAJOR = 0x00030000;
export const PAXOS_DISK_VERSION_MAJOR = 0x00060000;
export const REQ_DISK_VERSION_MAJOR = 0x00010000;
export const VERSION_MAJOR_MASK = 0xffff0000;

/** Leader flags. */
export const LFL_SHORT_HOLD = 0x1;
export const LFL_ALIGN_1M = 0x10;
export const LFL_ALIGN_2M = 0x20;
export const LFL_ALIGN_4M = 0x40;
export const LFL_ALIGN_8M = 0x80;
export const LFL_ALIGN_MASK = 0xf0;

/** dblock flags (not covered by the dblock checksum). */
export const DBLOCK_FL_RELEASED = 0x1;
/** mode block flags. */
export const MBLOCK_SHARED = 0x1;

/** Force modes of a request record. */
export const REQ_FORCE_NONE = 0;
export const REQ_FORCE_KILL = 1;
export const REQ_FORCE_GRACEFUL = 2;

export const NAME_ID_SIZE = 48;
/** Delta leases store at most 47 name characters plus a NUL. */
export const HOST_NAME_MAX_ON_DISK = 47;
export const SANLK_PATH_LEN = 1024;

export const LEADER_RECORD_SIZE = 200;
/** Only the first 256 bytes of a leader sector belong to the leader; 256..511 is the delta bitmap. */
export const LEADER_RECORD_MAX = 256;
export const LEADER_CHECKSUM_LEN = 168;
/** Multi-disk leader comparisons use only the first 152 bytes. */
export const LEADER_COMPARE_LEN = 152;
export const DBLOCK_SIZE = 56;
export const DBLOCK_CHECKSUM_LEN = 48;
export const MODE_BLOCK_OFFSET = 128;
export const MODE_BLOCK_SIZE = 16;
export const REQUEST_RECORD_SIZE = 24;
export const HOSTID_BITMAP_OFFSET = 256;
export const HOSTID_BITMAP_SIZE = 256;

/** Sector of the lock value block inside a paxos area (hard-coded upstream). */
export const LVB_SECTOR = 2002;
/** Default lease io_timeout in seconds. */
export const DEFAULT_IO_TIMEOUT = 10;
/** Highest host_id: sanlock's DEFAULT_MAX_HOSTS (fewer fit in some geometries; the join checks those). */
export const MAX_HOST_ID = 2000;

/**
 * Why `hostId` cannot be this host's host_id in a lockspace it joins, or undefined when it can:
 * 1..MAX_HOST_ID (sanlock's DEFAULT_MAX_HOSTS, 2000; a lockspace's geometry may hold fewer, which
 * the join checks). The one range check of every place that joins: the config's `lockspaces`
 * entries, the agent's add_lockspace, `lockagent client add_lockspace`; each adds its remedy.
 */
export function hostIdOutOfRange(hostId: number): string | undefined {
  return Number.isInteger(hostId) && hostId >= 1 && hostId <= MAX_HOST_ID ? undefined : `host_id ${hostId} is outside 1..${MAX_HOST_ID}`;
}
/** Highest io_timeout: the delta record stores it in one byte. */
export const MAX_IO_TIMEOUT = 255;
