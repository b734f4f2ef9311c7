import { Dblock, Geometry, LeaderRecord } from '../ondisk';
import { LeaseStorage } from './storage';

/**
 * The vocabulary shared by the paxos files: where a resource lease lives, who we are in its
 * lockspace, and the token (sanlock's struct token) a host holds after acquiring it.
 */

export interface ResourceLocation {
  storage: LeaseStorage;
  /** Byte offset of the lease area (its leader sector). */
  offset: number;
  spaceName: string;
  resourceName: string;
  /**
   * Sector/align size to start with (sanlock starts from the lockspace's). The leader's own
   * sizes win: acquire restarts with them when they differ. Default 512/1M.
   */
  geometry?: Geometry;
  /**
   * Host slots (num_hosts) the lease is expected to have: the first read of an acquire covers
   * the leader, the request and this many dblocks instead of the whole align area; a leader
   * that says more costs one more read. Default: the geometry's max_hosts (the whole area).
   */
  numHosts?: number;
}

/** Us, as a lockspace member: sanlock's token->host_id / host_generation / io_timeout. */
export interface PaxosHost {
  hostId: number;
  /** Our delta lease generation (owner_generation of our acquire). */
  generation: number;
  /** Our lockspace io_timeout: every lease I/O gets this many seconds. */
  ioTimeout: number;
}

/** How a lease is held, in the agent's words: by one host or shared by several. */
export type LeaseMode = 'exclusive' | 'shared';

/** The same, in sanlock's token shorthand (SANLK_RES_SHARED is "SH"). */
export type TokenMode = 'EX' | 'SH';

/** A held resource lease (sanlock's token + struct resource): what release needs. */
export interface ResourceToken {
  res: ResourceLocation;
  host: PaxosHost;
  mode: TokenMode;
  /** Sector size the lease actually uses (from its leader). */
  sectorSize: number;
  alignSize: number;
  /** The leader as of our acquire (what we committed, or what another host committed for us). */
  leader: LeaderRecord;
  /** Our dblock from the winning ballot: release rewrites it with RELEASED set. */
  dblock: Dblock;
  lver: number;
}

/**
 * What our exclusive release left on disk: the freed leader (as written) and our RELEASED
 * dblock. The next acquire of the same lease by the same host may run its ballot from this
 * instead of reading the whole area first (one area read less: 5 I/Os instead of 6). The
 * phase-1 read shows the leader again; if it is not byte for byte what we wrote, the acquire
 * goes back to the full path. Safe as an ordinary acquire whose first read was simply slow:
 * Disk Paxos does not rely on that read being fresh, only on the phase reads.
 */
export interface AcquireHint {
  leader: LeaderRecord;
  dblock: Dblock;
  geometry: Geometry;
  hostId: number;
  generation: number;
}

/** "LS:RES1", as sanlock names a resource. */
export function resName(res: Pick<ResourceLocation, 'spaceName' | 'resourceName'>): string {
  return `${res.spaceName}:${res.resourceName}`;
}
