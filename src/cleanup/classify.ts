/**
 * What the cleanup sweeper thinks of each entry of the lease directory (disk_lease_dir). Pure:
 * the scanner (scan.ts) gathers the facts — lstat, the first sectors of the file, the hosts of
 * the lockspace as this host sees them — and this module decides.
 *
 * Only `free` entries with an MD5 name, one link and an old enough mtime are deletable (plus
 * `leftover` names of an interrupted sweep that hold a lease area of their resource). Whatever
 * cannot be judged with certainty is kept: an owner that is FAIL or UNKNOWN is "in use", never
 * guessed dead; a file with another hard link is never written through, so never deleted.
 */
import { DISKS_LOCKSPACE } from '../config/config';
import { HostState } from '../lease/hostmonitor';
import { CleanupClass, Holder, Verdict } from '../control/replies';
import {
  DBLOCK_FL_RELEASED, DELTA_DISK_MAGIC, decodeDblock, decodeLeader, decodeModeBlock, geometryFromLeader, isShared,
  LeaderRecord, PAXOS_DISK_CLEAR, PAXOS_DISK_MAGIC, SANLK, verifyPaxosLeader,
} from '../ondisk';

/** Why this host's earlier-generation leases are not judged yet (SweepOptions.recovering). */
export const RECOVERING = 'the agent is still recovering the leases it held before its restart';

/** The lockspace file: never touched. */
export const LOCKSPACE_FILE = DISKS_LOCKSPACE;
/** The resource (and file) that makes one host of the cluster the only sweeper. */
export const SWEEP_LOCK_NAME = '__lockagent_cleanup__';
/** Second name a sweep gives a lease file while deleting it (hidden: virt-sanlock-cleanup skips it). */
export const LEFTOVER_PREFIX = '.lockagent-cleanup.';

const MD5_NAME = /^[0-9a-f]{32}$/;

/** Order of classes in tables and summaries. */
export const CLASS_ORDER: readonly CleanupClass[] = [
  'free', 'in use', 'too recent', 'not a lease', 'unknown name', 'linked', 'leftover', 'lockspace', 'error',
];

export function isMd5Name(name: string): boolean {
  return MD5_NAME.test(name);
}

export function isLeftoverName(name: string): boolean {
  return name.startsWith(LEFTOVER_PREFIX) && isMd5Name(name.slice(LEFTOVER_PREFIX.length));
}

/**
 * Why a lease file with `nlink` names is kept: acquiring it writes the leader into a file that
 * is also reachable by another name, possibly outside the lease directory.
 */
export function hardLinkText(nlink: number): string {
  return `has ${nlink} hard links: the file is also reachable by another name (maybe outside the lease directory), ` +
    'so the sweeper never writes to it or deletes it';
}

/** One host of the lockspace, as this host judges it (sanlock's host_status + get_host_flag). */
export interface HostView {
  hostId: number;
  /** FREE: its delta lease is released (timestamp 0); LIVE/UNKNOWN/FAIL/DEAD as sanlock. */
  state: HostState;
  /** owner_generation of its delta record */
  generation: number;
  name: string;
  /** seconds since its renewals were last seen changing (or since we first looked) */
  ageSeconds: number;
  /** its host_dead_seconds, from the io_timeout it wrote */
  deadAfter: number;
}

/** How the sweeper sees the other hosts. The daemon's view comes from its joined lockspace. */
export interface LivenessView {
  /** how liveness was judged, for the report */
  readonly source: string;
  /** this host, when it is a member of the lockspace */
  readonly self?: { hostId: number; generation: number };
  /** undefined: no knowledge of this host_id (then nothing it owns is judged free) */
  host(hostId: number): HostView | undefined;
  /** sanlock's host_live(): may a SHARED holder of this generation still use its lease? */
  hostLive(hostId: number, generation: number): boolean;
  /** host_ids whose delta lease is not free: only their dblocks can hold live claims */
  candidates(): number[];
}

export interface EntryStat {
  kind: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mtimeMs: number;
  /** exact mtime (ns, decimal), to notice a write within the same millisecond */
  mtimeNs: string;
  /** decimal strings: NFS inode numbers may exceed 2^53 */
  ino: string;
  dev: string;
  nlink: number;
}

/** What the scanner learnt about one directory entry. */
export interface EntryFacts {
  name: string;
  stat?: EntryStat;
  /** the first bytes of the file (leader, request, dblocks); shorter when the file is */
  head?: Buffer;
  /** lstat, open or read failed */
  error?: string;
}

export interface ClassifyContext {
  view: LivenessView;
  /** wall clock, ms (mtime ages) */
  nowMs: number;
  minAgeSeconds: number;
  /** local owners holding this resource on this host (the agent's records) */
  localOwners?: (resource: string) => string[];
  /**
   * A lease left by an earlier generation of this host: true when no record of this host's
   * agent refers to it (it will not be re-adopted), so it is an orphan.
   */
  ownOrphan?: (resource: string) => boolean;
  /**
   * This agent's start-up recovery has not finished: a lease of an earlier generation of this
   * host may be one that recovery or the reconcile is about to take back for a running owner
   * (after a lost state database no record refers to it), so it is not judged free.
   */
  recovering?: boolean;
}

/**
 * Bytes of the file the classification needs: the leader, the request sector and the dblocks
 * of every host that may hold a claim (the candidates, and the owner when another host wrote
 * the leader). `head` is what was read so far (at least the leader sector).
 */
export function bytesNeeded(head: Buffer, view: LivenessView): number {
  if (head.length < 512) return 4096;
  const l = decodeLeader(head, 0);
  if (l.magic !== PAXOS_DISK_MAGIC) return head.length;
  const g = geometryFromLeader(l.sectorSize, l.flags);
  if (!g) return head.length;
  let top = 0;
  for (const h of view.candidates()) if (h > top) top = h;
  if (l.timestamp && l.writeId !== l.ownerId && l.ownerId > top) top = l.ownerId;
  top = Math.min(top, l.numHosts, g.maxHosts);
  return Math.max(4096, (2 + top) * g.sectorSize);
}

const ago = (s: number) => `${s} s ago`;

function hostLabel(h: { hostId: number; name?: string }): string {
  return `host ${h.hostId}${h.name ? ` (${h.name})` : ''}`;
}

export function describeHolder(h: Holder): string {
  if (h.state === 'THIS HOST') {
    return `this host (host ${h.hostId}), ${h.mode === 'SH' ? 'shared' : 'exclusive'}` +
      (h.owners?.length ? `, owner ${h.owners.join(', ')}` : '');
  }
  const age = h.ageSeconds !== undefined ? `, renewed ${ago(h.ageSeconds)}` : '';
  return `${hostLabel(h)} ${h.state}${age}, ${h.mode === 'SH' ? 'shared' : 'exclusive'}`;
}

/** Not a usable lease for this file name: why, in words. */
function notALease(buf: Buffer, name: string): string | undefined {
  if (buf.length < 512) return `too short for a lease (${buf.length} bytes)`;
  const { rv, leader } = verifyPaxosLeader(buf, 0, DISKS_LOCKSPACE, name, 0);
  if (rv === SANLK.OK) {
    return geometryFromLeader(leader.sectorSize, leader.flags) ? undefined : `lease with an invalid sector size ${leader.sectorSize}`;
  }
  switch (rv) {
    case SANLK.LEADER_MAGIC:
      if (leader.magic === 0) return 'no lease record (zeros: never initialised, or being created)';
      if (leader.magic === PAXOS_DISK_CLEAR) return 'cleared lease (initialised with -z 1: unusable)';
      if (leader.magic === DELTA_DISK_MAGIC) return `a lockspace (delta leases of "${leader.spaceName}"), not a resource lease`;
      return `no lease record (magic 0x${leader.magic.toString(16).padStart(8, '0')})`;
    case SANLK.LEADER_VERSION: return `lease record of unsupported version 0x${leader.version.toString(16)}`;
    case SANLK.LEADER_LOCKSPACE: return `lease of lockspace "${leader.spaceName}", not ${DISKS_LOCKSPACE}`;
    case SANLK.LEADER_RESOURCE: return `lease for resource "${leader.resourceName}", not for its file name`;
    case SANLK.LEADER_CHECKSUM: return 'corrupt lease (leader checksum wrong)';
    default: return `invalid lease (${rv})`;
  }
}

interface LeaseJudgement {
  free: boolean;
  detail: string;
  holders: Holder[];
  leader: LeaderRecord;
}

/** Who may be using a valid lease, as sanlock's acquire would judge it (sanlock's paxos_lease_acquire). */
function judgeLease(buf: Buffer, name: string, ctx: ClassifyContext): LeaseJudgement {
  const leader = decodeLeader(buf, 0);
  const ss = leader.sectorSize;
  const { view } = ctx;
  const self = view.self;
  const holders: Holder[] = [];
  const notes: string[] = [];
  const dblocksRead = Math.max(0, Math.min(leader.numHosts, Math.floor(buf.length / ss) - 2));
  let freeWhy: string;

  const held = leader.timestamp !== 0 && leader.ownerId !== 0;
  if (!held) {
    freeWhy = leader.lver === 0 ? 'never used' : `released (lease version ${leader.lver})`;
  } else {
    const owner = leader.ownerId;
    const gen = leader.ownerGeneration;
    const ownerDblock = owner <= dblocksRead ? decodeDblock(buf, (2 + owner - 1) * ss) : undefined;
    const hv = view.host(owner);
    if (self && owner === self.hostId) {
      if (gen < self.generation && !ctx.recovering && ctx.ownOrphan?.(name)) {
        freeWhy = `left by an earlier run of this host's agent (generation ${gen}) and recorded by no owner`;
      } else {
        holders.push({ hostId: owner, generation: gen, mode: 'EX', state: 'THIS HOST', owners: ctx.localOwners?.(name) });
        freeWhy = '';
        if (gen < self.generation) {
          notes.push(ctx.recovering
            ? `held by an earlier generation (${gen}) of this host; not decided: recovering (${RECOVERING})`
            : `held by an earlier generation (${gen}) of this host; the agent may re-adopt it`);
        }
      }
    } else if (leader.writeId !== leader.ownerId && ownerDblock && (ownerDblock.flags & DBLOCK_FL_RELEASED)) {
      freeWhy = `released by host ${owner} (lease version ${leader.lver}; host ${leader.writeId} wrote the leader)`;
    } else if (!hv) {
      holders.push({ hostId: owner, generation: gen, mode: 'EX', state: 'UNKNOWN' });
      freeWhy = '';
      notes.push(`nothing is known about host ${owner} yet`);
    } else if (hv.state === 'FREE') {
      freeWhy = `owner ${hostLabel(hv)} left the lockspace (its delta lease is free)`;
    } else if (hv.generation > gen) {
      freeWhy = `owner ${hostLabel(hv)} joined again since (generation ${hv.generation} > ${gen}): its old leases are void`;
    } else if (hv.state === 'DEAD') {
      freeWhy = `owner ${hostLabel(hv)} is dead: not renewed for ${hv.ageSeconds} s (host_dead ${hv.deadAfter} s)`;
    } else {
      holders.push({ hostId: owner, generation: gen, mode: 'EX', name: hv.name || undefined, state: hv.state, ageSeconds: hv.ageSeconds });
      freeWhy = '';
    }
  }

  for (let h = 1; h <= dblocksRead; h++) {
    const mb = decodeModeBlock(buf, (2 + h - 1) * ss);
    if (!isShared(mb)) continue;
    if (held && h === leader.ownerId && holders.some((x) => x.hostId === h)) continue;
    const live = view.hostLive(h, mb.generation);
    if (!live) {
      notes.push(`stale shared mark of host ${h} (generation ${mb.generation}, not alive)`);
      continue;
    }
    if (self && h === self.hostId) {
      holders.push({ hostId: h, generation: mb.generation, mode: 'SH', state: 'THIS HOST', owners: ctx.localOwners?.(name) });
    } else {
      const hv = view.host(h);
      holders.push({ hostId: h, generation: mb.generation, mode: 'SH', name: hv?.name || undefined, state: hv?.state ?? 'UNKNOWN', ageSeconds: hv?.ageSeconds });
    }
  }

  if (holders.length) {
    const detail = holders.map(describeHolder).join('; ') + `, lease version ${leader.lver}` + (notes.length ? `; ${notes.join('; ')}` : '');
    return { free: false, detail, holders, leader };
  }
  return { free: true, detail: freeWhy + (notes.length ? `; ${notes.join('; ')}` : ''), holders, leader };
}

function kindText(k: EntryStat['kind']): string {
  return k === 'directory' ? 'a directory' : k === 'symlink' ? 'a symbolic link (not followed)' : 'not a regular file';
}

/** Decide about one directory entry. Never throws. */
export function classifyEntry(f: EntryFacts, ctx: ClassifyContext): Verdict {
  const base: Verdict = { name: f.name, class: 'error', detail: '', deletable: false };
  if (f.stat) {
    Object.assign(base, { ino: f.stat.ino, dev: f.stat.dev, mtimeMs: f.stat.mtimeMs, mtimeNs: f.stat.mtimeNs, size: f.stat.size });
    base.ageSeconds = Math.max(0, Math.floor((ctx.nowMs - f.stat.mtimeMs) / 1000));
  }
  const v = (cls: CleanupClass, detail: string, deletable = false, extra: Partial<Verdict> = {}): Verdict =>
    ({ ...base, class: cls, detail, deletable, ...extra });

  if (f.name === LOCKSPACE_FILE) return v('lockspace', 'the lockspace file (never touched)');
  if (f.name === SWEEP_LOCK_NAME) {
    let detail = 'sweeper lock (never touched)';
    if (f.head && f.head.length >= 512) {
      const l = decodeLeader(f.head, 0);
      if (l.magic === PAXOS_DISK_MAGIC) {
        const self = ctx.view.self?.hostId === l.ownerId;
        detail += !l.timestamp || !l.ownerId ? ': free'
          : self ? `: held by this host (host ${l.ownerId})` : `: held by ${hostLabel({ hostId: l.ownerId, name: ctx.view.host(l.ownerId)?.name })}`;
      }
    }
    return v('lockspace', detail);
  }
  if (f.error) return v('error', f.error);
  const st = f.stat;
  if (!st) return v('error', 'no information');

  if (isLeftoverName(f.name)) {
    if (st.kind !== 'file') return v('unknown name', `sweeper-style name but ${kindText(st.kind)}`);
    // Only what a sweep would have made: a lease area of the resource the name carries.
    const bad = notALease(f.head ?? Buffer.alloc(0), f.name.slice(LEFTOVER_PREFIX.length));
    if (bad) return v('not a lease', `sweeper-style name, but not a lease left by a sweep (${bad}); kept`);
    // A sweep's second name makes 2 links (the lease file's own name and this one).
    if (st.nlink > 2) return v('linked', hardLinkText(st.nlink));
    return st.nlink > 1
      ? v('leftover', 'second name left by an interrupted sweep (the lease file keeps its own name)', true, { nlink: st.nlink })
      : v('leftover', 'lease file unlinked by an interrupted sweep (no longer reachable by its name)', true, { nlink: st.nlink });
  }

  const md5 = isMd5Name(f.name);
  if (st.kind !== 'file') return v(md5 ? 'not a lease' : 'unknown name', kindText(st.kind));

  const buf = f.head ?? Buffer.alloc(0);
  const bad = notALease(buf, f.name);
  let inner: { cls: CleanupClass; detail: string; holders?: Holder[]; lver?: number; deletable: boolean };
  if (bad) {
    inner = { cls: 'not a lease', detail: bad, deletable: false };
  } else {
    const j = judgeLease(buf, f.name, ctx);
    if (!j.free) {
      inner = { cls: 'in use', detail: j.detail, holders: j.holders, lver: j.leader.lver, deletable: false };
    } else if ((base.ageSeconds ?? 0) < ctx.minAgeSeconds) {
      inner = { cls: 'too recent', detail: `${j.detail}; but modified ${ago(base.ageSeconds ?? 0)} (min age ${ctx.minAgeSeconds} s)`, lver: j.leader.lver, deletable: false };
    } else {
      inner = { cls: 'free', detail: j.detail, lver: j.leader.lver, deletable: true };
    }
  }
  if (!md5) {
    return v('unknown name', `not an MD5 name (32 lower-case hex digits); ${inner.cls}: ${inner.detail}`, false, { holders: inner.holders, lver: inner.lver });
  }
  if (st.nlink > 1) return v('linked', `${hardLinkText(st.nlink)}; ${inner.cls}: ${inner.detail}`, false, { holders: inner.holders, lver: inner.lver });
  return v(inner.cls, inner.detail, inner.deletable, { holders: inner.holders, lver: inner.lver });
}

/** Verdicts that named hosts this host could not judge yet (a standalone dry run watches them). */
export function needsWatching(v: Verdict): boolean {
  return v.class === 'in use' && !!v.holders?.some((h) => h.state === 'UNKNOWN');
}
