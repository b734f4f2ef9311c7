/**
 * What each control op answers (the `result` of a response line), as the agent sends it and
 * the CLI reads it. The shapes come from the core where the core has them; `Ops` in
 * protocol.ts maps each op to its request and one of these.
 */
import type { Agent } from '../agent/agent';
import type { GuardStatus } from '../agent/guard';
import type { RenewalRecord } from '../agent/renewals';
import type { LeaseSpec } from '../agent/types';
import type { HostReport } from '../agent/lockspace';
import type { HostState } from '../lease/hostmonitor';
import type { StoreHealth } from '../state/statestore';

/** A lease as held: its spec and the version (lver) it was acquired at. */
export interface HeldLeaseReply extends LeaseSpec {
  lver: number;
}

/** A domain the libvirt integration reports in `status` (a paused domain whose lease went stale). */
export interface DomainStatus {
  uuid: string;
  name: string;
  state: string;
}

/** The fencing section of `status`: the guard's, with the watchdog layers' fields beside it. */
export interface FencingStatus extends Omit<GuardStatus, 'wdmd' | 'systemdWatchdog'> {
  wdmd?: string;
  /** seconds until wdmd fails our test, when armed */
  wdmdExpiresIn?: number;
  /** the lockspace whose renewal sets that expiry */
  wdmdLockspace?: string;
  systemdWatchdog?: string;
  systemdWatchdogIntervalMs?: number;
}

export interface StatusReply {
  hostName: string;
  stateStore?: StoreHealth;
  lockspaces: ReturnType<Agent['lockspaceStatus']>;
  owners: Array<{ uuid: string; name: string; pid?: number; leases: HeldLeaseReply[] }>;
  /** with the libvirt integration */
  domains?: DomainStatus[];
  fencing?: FencingStatus;
}

export type HostStatusReply = Array<{ lockspace: string; hostId: number; state: string; hosts: HostReport[] }>;

export interface RenewalsReply {
  lockspace: string;
  hostId: number;
  ioTimeout: number;
  renewals: RenewalRecord[];
}

export interface AddLockspaceReply {
  lockspace: string;
  hostId: number;
  generation?: number;
}

// ---- the cleanup sweep's report (src/cleanup builds it, `lockagent cleanup` prints it) -------

export type CleanupClass =
  | 'lockspace' | 'in use' | 'free' | 'too recent' | 'not a lease' | 'unknown name' | 'linked' | 'leftover' | 'error';

export interface Holder {
  hostId: number;
  generation: number;
  mode: 'EX' | 'SH';
  name?: string;
  /** as judged; THIS HOST for leases of this host */
  state: HostState | 'THIS HOST';
  ageSeconds?: number;
  /** local owners (domains) holding it, when this host is the holder */
  owners?: string[];
}

export interface Verdict {
  name: string;
  class: CleanupClass;
  detail: string;
  /** a sweep may delete it (after acquiring its lease) */
  deletable: boolean;
  holders?: Holder[];
  /** lease version in the leader */
  lver?: number;
  /** identity as classified: a delete goes ahead only while the path still names this inode, unmodified */
  ino?: string;
  dev?: string;
  /** link count as classified (leftover names: 2 while the lease file keeps its own name) */
  nlink?: number;
  mtimeMs?: number;
  mtimeNs?: string;
  size?: number;
  /** seconds since the last modification */
  ageSeconds?: number;
  /** what the sweep did; absent in a dry run */
  action?: 'deleted' | 'kept' | 'failed';
}

export interface SweepReport {
  dir: string;
  dryRun: boolean;
  minAgeSeconds: number;
  /** 'busy': another sweeper holds the sweep lock; nothing was examined */
  status: 'done' | 'busy';
  /** who holds the sweep lock (busy), when it could be read */
  sweeper?: { hostId: number; name?: string; thisHost: boolean };
  /** this host, when it is a member of the lockspace */
  host?: { hostId: number; name: string; generation?: number };
  /** how other hosts' liveness was judged */
  liveness: string;
  /** ISO time the sweep started */
  startedAt: string;
  durationMs: number;
  files: Verdict[];
  summary: SweepSummary;
  /** "12 files: 3 deleted, 8 in use, 1 not a lease" */
  summaryLine: string;
  /** sweep-level problems (the lock, the lockspace), beside per-file errors */
  errors: string[];
}

export interface SweepSummary {
  total: number;
  deleted: number;
  /** files left per class (deleted files are not counted again) */
  byClass: Partial<Record<CleanupClass, number>>;
  /** per-file errors and failed deletions */
  failed: number;
}
