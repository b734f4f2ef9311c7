import { DBLOCK_FL_RELEASED, LFL_SHORT_HOLD } from '../ondisk/constants';
import { Dblock, dblockValid, decodeDblock, emptyDblock } from '../ondisk/dblock';
import { LeaderRecord } from '../ondisk/leader';
import { describeResult, LeaseError, SANLK } from '../ondisk/results';
import { DEFAULT_GEOMETRY, Geometry, geometryFromLeader, paxosReadSize } from '../ondisk/sizes';
import { verifyPaxosLeader } from '../ondisk/verify';
import { collectShared, dblockBlank, dblockOffset, firstMbal, runBallot, usedDblocks } from './ballot';
import { Clock } from './clock';
import { sameLeader, sealLeader } from './record';
import { ioError, readArea, timedIo, writeSector } from './diskio';
import { IoBufferPool, OpBuffers } from './iobuf';
import { HostLiveness } from './liveness';
import { hostDeadSeconds } from './timeouts';
import { AcquireHint, PaxosHost, ResourceLocation, resName } from './token';
import { Cancel, checkCancel, leaseTimestamp, sleepMs } from './wait';

/**
 * Disk Paxos resource leases, one consensus instance per lease version (sanlock's
 * paxos_lease.c): the acquire with its owner-liveness wait, and the leader release.
 */

/** Who holds a lease, as an operator needs to hear it. */
export interface LeaseHolder {
  hostId: number;
  generation: number;
  /** The holder's host name from its delta lease, when known. */
  hostName?: string;
  /** Seconds since we last saw its delta lease renewed, when known. */
  lastRenewalAgo?: number;
  lver: number;
}

/** A failed acquire: sanlock's code, an operator sentence, and what the caller must undo. */
export class LeaseAcquireError extends LeaseError {
  /** The leader as sanlock returns it (the owner's, or the one we committed). */
  readonly leader?: LeaderRecord;
  readonly holder?: LeaseHolder;
  /**
   * We may have become the owner anyway (I/O failed in phase 2 or at commit, or we gave up
   * after our dblock carried a value): the caller must erase our claim (T_RETRACT_PAXOS).
   */
  readonly retract: boolean;
  /** Our dblock as last written, for the retract. */
  readonly dblock?: Dblock;
  constructor(rv: number, message: string, extra: { leader?: LeaderRecord; holder?: LeaseHolder; retract?: boolean; dblock?: Dblock } = {}) {
    super(rv, message);
    this.name = 'LeaseAcquireError';
    this.leader = extra.leader;
    this.holder = extra.holder;
    this.retract = extra.retract ?? false;
    this.dblock = extra.dblock;
  }
}

export interface PaxosAcquireOptions {
  clock: Clock;
  /** The joined lockspace; without it a lease held by another host fails with -241. */
  liveness?: HostLiveness;
  /** Acquire only if the lease is at this lver (-240 otherwise): resume after a pause/migration. */
  lver?: number;
  /** Acquire for a shared lease: commit ourselves with LFL_SHORT_HOLD. */
  shared?: boolean;
  /** Fail with -247 instead of waiting for a possibly-dead owner. */
  ownerNoWait?: boolean;
  /** Write this num_hosts into the leader on commit (SANLK_RES_NUM_HOSTS). */
  numHosts?: number;
  /** Keep our SHARED mode block in ballot writes (sh→ex conversion). */
  keepSharedMode?: boolean;
  cancel?: Cancel;
  iobufs?: IoBufferPool;
  /** What our last release of this lease left on disk: lets an exclusive acquire skip its first read. */
  hint?: AcquireHint;
}

export interface PaxosAcquireResult {
  /** The leader now on disk naming us (ours, or committed for us by another host). */
  leader: LeaderRecord;
  /** Our dblock from the ballot (zero when another host committed us without our ballot). */
  dblock: Dblock;
  sectorSize: number;
  alignSize: number;
  /** Hosts whose mode block was SHARED during our ballots (check them before using EX). */
  sharedHosts: number[];
}

const holderText = (h: LeaseHolder) =>
  `host ${h.hostId}${h.hostName ? ` (node ${h.hostName})` : ''}, generation ${h.generation}` +
  (h.lastRenewalAgo !== undefined ? `, last renewal ${h.lastRenewalAgo} s ago` : '');

interface LeaseRead {
  leader: LeaderRecord;
  maxMbal: number;
  /** Our own dblock as on disk (it may hold our vote from an earlier, failed acquire). */
  ourDblock?: Dblock;
}

/**
 * paxos_lease_leader_read: sector 0, verified. `hostId` enables the num_hosts check.
 */
export async function readPaxosLeader(
  res: ResourceLocation, sectorSize: number, hostId: number, ioTimeout: number,
): Promise<LeaderRecord> {
  let buf: Buffer;
  try {
    buf = await timedIo('leader_read', () => res.storage.read(res.offset, sectorSize, ioTimeout * 1000));
  } catch (e) {
    throw ioError(e, SANLK.LEADER_READ, `reading the leader of ${resName(res)}`);
  }
  const { rv, leader } = verifyPaxosLeader(buf, 0, res.spaceName, res.resourceName, hostId);
  if (rv < 0) throw new LeaseError(rv, `the leader of ${resName(res)} at ${res.storage.id}:${res.offset} is invalid: ${describeResult(rv)}`);
  return leader;
}

/** A leader write that failed; `leader` is the record as it would be stored (it may still land). */
class LeaderWriteError extends LeaseError {
  constructor(readonly inner: LeaseError, readonly leader: LeaderRecord) {
    super(inner.rv, inner.message);
  }
}

/** Write a leader as sector 0 (the rest of the sector zeroed); returns it as stored. */
async function writeLeader(res: ResourceLocation, sectorSize: number, rec: LeaderRecord, ioTimeout: number, what: string): Promise<LeaderRecord> {
  const sector = Buffer.alloc(sectorSize);
  const sealed = sealLeader(rec, sector, 0);
  try {
    await timedIo('leader_write', () => res.storage.write(res.offset, sector, ioTimeout * 1000));
  } catch (e) {
    throw new LeaderWriteError(ioError(e, SANLK.LEADER_WRITE, what), sealed);
  }
  return sealed;
}

/**
 * paxos_lease_acquire. Run a ballot for lver+1 when the lease is free, ours, or an older
 * generation of ours; otherwise watch the owner's delta lease once a second until it renews
 * (-243), is released or re-acquired (take it), or stays unchanged for its host_dead seconds.
 */
export async function paxosLeaseAcquire(res: ResourceLocation, host: PaxosHost, opts: PaxosAcquireOptions): Promise<PaxosAcquireResult> {
  const bufs = new OpBuffers(opts.iobufs);
  try {
    return await acquire(res, host, opts, bufs);
  } finally {
    bufs.release();
  }
}

async function acquire(res: ResourceLocation, host: PaxosHost, opts: PaxosAcquireOptions, bufs: OpBuffers): Promise<PaxosAcquireResult> {
  const { clock } = opts;
  const name = resName(res);
  let geometry: Geometry = res.geometry ?? DEFAULT_GEOMETRY;
  const sharedHosts = new Set<number>();
  const io = host.ioTimeout;
  const cancelWhat = () => `acquiring ${name}`;

  /**
   * Leader, request and num_hosts dblocks in one I/O: our max mbal, every dblock verified
   * (-214). sanlock reads the whole align area here but looks only at those; we read them
   * sized for the expected num_hosts, and read again, larger, when the leader says more.
   */
  let expectHosts = res.numHosts;
  const readLease = async (): Promise<LeaseRead> => {
    const len = Math.min(geometry.alignSize, paxosReadSize(Math.min(expectHosts ?? geometry.maxHosts, geometry.maxHosts), geometry.sectorSize));
    const buf = await bufs.get(len);
    let area: Buffer;
    try {
      area = await timedIo('area_read', () => readArea(res.storage, res.offset, len, io * 1000, buf));
    } catch (e) {
      bufs.poison(buf);
      throw ioError(e, SANLK.DBLOCK_READ, `acquiring ${name}: reading the lease`);
    }
    let got: LeaseRead | undefined;
    try {
      got = decodeLease(area, len);
    } finally {
      bufs.put(buf); // decoded: the next reader may have it
    }
    return got ?? readLease();
  };
  /** The lease as read into `area`; undefined when the leader has more slots than `len` covered. */
  const decodeLease = (area: Buffer, len: number): LeaseRead | undefined => {
    const { rv, leader } = verifyPaxosLeader(area, 0, res.spaceName, res.resourceName, host.hostId);
    if (len < geometry.alignSize && leader.numHosts + 2 > len / geometry.sectorSize) {
      // More slots than we read: once more, covering them (a len of the whole area ends this).
      expectHosts = leader.numHosts;
      return undefined;
    }
    if (rv < 0) {
      const why = rv === SANLK.LEADER_NUMHOSTS ? `: it has ${leader.numHosts} host slots, our host_id is ${host.hostId}` : '';
      throw new LeaseError(rv, `acquiring ${name}: the leader at ${res.storage.id}:${res.offset} is invalid: ${describeResult(rv)}${why}`);
    }
    // Every dblock must verify (-214), as verify_dblock in sanlock's lease read; track max mbal.
    const n = Math.min(leader.numHosts, Math.floor(area.length / geometry.sectorSize) - 2);
    let maxMbal = 0;
    for (const q of usedDblocks(area, geometry.sectorSize, n)) {
      const off = dblockOffset(geometry.sectorSize, q + 1);
      if (!dblockValid(area, off)) {
        throw new LeaseError(SANLK.DBLOCK_CHECKSUM,
          `acquiring ${name}: the dblock of host ${q + 1} in the lease area has a bad checksum (corrupt sector)`);
      }
      const mbal = decodeDblock(area, off).mbal;
      if (mbal > maxMbal) maxMbal = mbal;
    }
    const ourOff = dblockOffset(geometry.sectorSize, host.hostId);
    const ourDblock = host.hostId <= n && !dblockBlank(area, ourOff) ? decodeDblock(area, ourOff) : undefined;
    return { leader, maxMbal, ourDblock };
  };

  const hint = opts.hint;
  if (hint && !opts.shared && !opts.keepSharedMode && hint.hostId === host.hostId && hint.generation === host.generation &&
      hint.leader.timestamp === 0 && (!opts.lver || opts.lver === hint.leader.lver)) {
    checkCancel(clock, opts.cancel, cancelWhat);
    // The lease as our release left it: straight to the ballot (see AcquireHint).
    const r = await ballots(res, host, opts, bufs, hint.geometry, hint.leader, hint.dblock.mbal, true, sharedHosts, hint.dblock, hint.leader);
    if (r !== 'restart') return r;
  }

  for (;;) { // restart
    checkCancel(clock, opts.cancel, cancelWhat);
    const { leader: cur, maxMbal, ourDblock } = await readLease();
    const g = geometryFromLeader(cur.sectorSize, cur.flags);
    if (!g) throw new LeaseError(SANLK.LEADER_SECTORSIZE, `acquiring ${name}: the leader has an invalid sector/align size`);
    if (g.sectorSize !== geometry.sectorSize || g.alignSize !== geometry.alignSize) {
      geometry = g; // the lease was made with other sizes than the lockspace's
      continue;
    }
    if (opts.lver !== undefined && opts.lver !== 0 && cur.lver !== opts.lver) {
      throw new LeaseAcquireError(SANLK.ACQUIRE_LVER,
        `resource ${name} is at lease version ${cur.lver}, not the requested ${opts.lver}: another host held it since`, { leader: cur });
    }

    let reuseLeader = true;
    const ours = cur.ownerId === host.hostId;
    if (cur.timestamp !== 0 && !(ours && cur.ownerGeneration <= host.generation)) {
      const outcome = await waitForOwner(res, host, opts, cur, geometry.sectorSize);
      if (outcome === 'restart') continue;
      reuseLeader = false;
    }

    const r = await ballots(res, host, opts, bufs, geometry, cur, maxMbal, reuseLeader, sharedHosts, ourDblock);
    if (r === 'restart') continue;
    return r;
  }
}

/**
 * The preliminary wait for a live-looking owner. Returns 'run' when the lease may be taken,
 * 'restart' when the leader changed; throws -241/-243/-247 or a read error.
 */
async function waitForOwner(
  res: ResourceLocation, host: PaxosHost, opts: PaxosAcquireOptions, cur: LeaderRecord, sectorSize: number,
): Promise<'run' | 'restart'> {
  const { clock, liveness } = opts;
  const name = resName(res);
  const owner = cur.ownerId;
  if (!liveness) {
    throw new LeaseAcquireError(SANLK.ACQUIRE_LOCKSPACE,
      `resource ${name} is held by host ${owner}, generation ${cur.ownerGeneration} (lver ${cur.lver}), and lockspace ` +
      `${res.spaceName} is not joined here, so the owner's liveness cannot be checked`, { leader: cur, holder: { hostId: owner, generation: cur.ownerGeneration, lver: cur.lver } });
  }
  const hs = liveness.snapshot(owner);
  const known = !!hs && !!hs.lastCheck && !!hs.lastLive && hs.ownerId === owner && hs.ownerGeneration === cur.ownerGeneration;
  const waitStart = known ? hs.lastLive : liveness.now();
  let lastTs = known ? hs.timestamp : 0;
  /** When we (or the monitor) last saw the owner's delta timestamp change. */
  let lastSeenChange = known ? hs.lastLive : undefined;
  const sawLiveAtLastCheck = !!hs && !!hs.lastLive && hs.lastCheck === hs.lastLive;
  let hostName = hs?.ownerName || undefined;

  const holder = (): LeaseHolder => ({
    hostId: owner, generation: cur.ownerGeneration, hostName, lver: cur.lver,
    lastRenewalAgo: lastSeenChange !== undefined ? Math.max(0, liveness.now() - lastSeenChange) : undefined,
  });
  let waited = 0;
  let deadSecs = hostDeadSeconds(hs?.ioTimeout ?? 0, host.ioTimeout);
  const cancelWhat = () => `acquiring ${name}: waiting for ${holderText(holder())} to renew or be dead (${waited} s of ${deadSecs} s)`;

  for (;;) {
    const delta = await liveness.readDelta(owner).catch((e: unknown) => {
      if (e instanceof LeaseError) {
        throw new LeaseAcquireError(e.rv, `acquiring ${name}: cannot check owner host ${owner}: ${e.message}`, { leader: cur });
      }
      throw e;
    });
    if (delta.resourceName) hostName = delta.resourceName;
    // A host_id becomes free or changes hands only after host_dead: the owner is gone.
    if (delta.timestamp === 0) return 'run';
    if (delta.ownerId !== owner || delta.ownerGeneration > cur.ownerGeneration) return 'run';

    if (!lastTs) {
      lastTs = delta.timestamp;
    } else {
      if (delta.timestamp !== lastTs) lastSeenChange = liveness.now();
      if (delta.timestamp !== lastTs || sawLiveAtLastCheck) {
        // Alive. Its release may have been overwritten by a host that committed it as owner
        // in the same ballot; its RELEASED dblock tells.
        if (cur.writeId !== cur.ownerId && await ownerReleased(res, sectorSize, owner, host.ioTimeout)) return 'run';
        throw new LeaseAcquireError(SANLK.ACQUIRE_IDLIVE, `resource ${name} is held by ${holderText(holder())}`,
          { leader: cur, holder: holder() });
      }
      // Judge its death by its own io_timeout: the record we just read is the freshest word.
      deadSecs = hostDeadSeconds(delta.ioTimeout || hs?.ioTimeout || 0, host.ioTimeout);
      waited = liveness.now() - waitStart;
      if (waited > deadSecs) return 'run';
      if (opts.ownerNoWait) {
        throw new LeaseAcquireError(SANLK.ACQUIRE_OWNED_RETRY,
          `resource ${name} is held by ${holderText(holder())}; its renewals stopped ${waited} s ago, ` +
          `it is dead after ${deadSecs} s (not waiting: owner no-wait)`, { leader: cur, holder: holder() });
      }
    }
    await sleepMs(clock, 1000, opts.cancel, cancelWhat);
    const tmp = await readPaxosLeader(res, sectorSize, host.hostId, host.ioTimeout);
    if (!sameLeader(cur, tmp)) return 'restart';
  }
}

/** The owner's dblock says RELEASED (a failed read counts as "no"). */
async function ownerReleased(res: ResourceLocation, sectorSize: number, owner: number, ioTimeout: number): Promise<boolean> {
  try {
    const buf = await timedIo('dblock_read', () => res.storage.read(res.offset + dblockOffset(sectorSize, owner), sectorSize, ioTimeout * 1000));
    return (decodeDblock(buf, 0).flags & DBLOCK_FL_RELEASED) !== 0;
  } catch {
    return false;
  }
}

/**
 * Ballots for next_lver = cur.lver + 1 until one commits. Before each attempt the leader is
 * re-read (the first attempt may reuse the preliminary read): if this lver was committed
 * meanwhile we are done (ours) or lost (-244); a newer lver or any change restarts.
 */
async function ballots(
  res: ResourceLocation, host: PaxosHost, opts: PaxosAcquireOptions, bufs: OpBuffers, geometry: Geometry,
  cur: LeaderRecord, maxMbal: number, reuseLeader: boolean, sharedHosts: Set<number>, ourDblock?: Dblock,
  expectLeader?: LeaderRecord,
): Promise<PaxosAcquireResult | 'restart'> {
  const { clock } = opts;
  const name = resName(res);
  const ss = geometry.sectorSize;
  const nextLver = cur.lver + 1;
  let ourMbal = firstMbal(maxMbal, cur.maxHosts, host.hostId);
  let lastDblock: Dblock | undefined;
  /** Our vote in this lver as known on disk: kept by every later ballot for the same lver. */
  let ourVote = ourDblock;
  /** A phase-1 read of ours saw every dblock (so sharedHosts is complete). */
  let scannedShared = false;
  const result = (leader: LeaderRecord, dblock: Dblock): PaxosAcquireResult => ({
    leader, dblock, sectorSize: ss, alignSize: geometry.alignSize, sharedHosts: [...sharedHosts].sort((a, b) => a - b),
  });
  const ctx = { res, host, sectorSize: ss, clock, bufs, sharedHosts, keepSharedMode: opts.keepSharedMode, expectLeader };

  for (;;) {
    if (opts.cancel) {
      try {
        checkCancel(clock, opts.cancel, () => `acquiring ${name}`);
      } catch (e) {
        // Our dblock may carry a value another host could still commit: make the caller retract.
        throw new LeaseAcquireError((e as LeaseError).rv, (e as LeaseError).message, { retract: !!lastDblock?.inp, dblock: lastDblock });
      }
    }
    const tmp = reuseLeader ? cur : await readPaxosLeader(res, ss, host.hostId, host.ioTimeout);
    reuseLeader = false;
    if (tmp.lver === nextLver) {
      if (tmp.ownerId === host.hostId && tmp.ownerGeneration === host.generation) {
        // Another host's ballot committed our value. Unless one of our phase-1 reads saw the
        // whole area, we do not know the shared holders yet: look, or the caller would take
        // an exclusive lease over a live shared one.
        if (!scannedShared) await scanShared(res, host, ss, cur.numHosts, sharedHosts, tmp, lastDblock);
        return result(tmp, lastDblock ?? emptyDblock());
      }
      throw new LeaseAcquireError(SANLK.ACQUIRE_OWNED,
        `resource ${name} was acquired by host ${tmp.ownerId}, generation ${tmp.ownerGeneration}, at lease version ${tmp.lver} while we were running our ballot`,
        { leader: tmp, holder: { hostId: tmp.ownerId, generation: tmp.ownerGeneration, lver: tmp.lver, hostName: opts.liveness?.snapshot(tmp.ownerId)?.ownerName || undefined } });
    }
    if (tmp.lver > nextLver || !sameLeader(cur, tmp)) return 'restart';

    const b = await runBallot(ctx, cur.numHosts, nextLver, ourMbal, ourVote);
    lastDblock = b.dblock;
    if (b.phase1Read) scannedShared = true;
    if (b.voted) ourVote = b.dblock;
    if (expectLeader && (b.rv === SANLK.DBLOCK_MBAL || b.rv === SANLK.DBLOCK_LVER)) {
      // Started from an AcquireHint and something changed: the full path reads the area
      // (including our dblock and any vote in it) and goes on from there.
      if (b.leaderMoved && !(b.leaderMoved.lver >= cur.lver)) await unwriteHintDblock(res, host, ss);
      return 'restart';
    }
    if (b.rv === SANLK.DBLOCK_MBAL || b.rv === SANLK.DBLOCK_LVER) {
      // Contention: back off a random 0–1 s so competing hosts do not keep colliding.
      await sleepMs(clock, Math.floor(clock.random() * 1000), undefined, () => name);
      ourMbal += cur.maxHosts;
      continue;
    }
    if (b.rv < 0) {
      throw new LeaseAcquireError(b.rv, `acquiring ${name}: ${b.message}`, { retract: b.phase2, dblock: b.dblock });
    }

    // Chosen: commit next_lver with the ballot's value as the new leader.
    const d = b.dblock;
    const nl: LeaderRecord = {
      ...cur, lver: d.lver, ownerId: d.inp, ownerGeneration: d.inp2, timestamp: d.inp3,
      writeId: host.hostId, writeGeneration: host.generation, writeTimestamp: leaseTimestamp(clock),
    };
    if (opts.numHosts) nl.numHosts = opts.numHosts;
    if (nl.ownerId === host.hostId) {
      // SHORT_HOLD hints to shared acquirers that this exclusive hold is brief; set it only
      // for ourselves: we do not know what another proposer wanted.
      nl.flags = opts.shared ? (nl.flags | LFL_SHORT_HOLD) : (nl.flags & ~LFL_SHORT_HOLD);
    }
    let written: LeaderRecord;
    try {
      written = await writeLeader(res, ss, nl, host.ioTimeout, `acquiring ${name}: committing lver ${nl.lver}`);
    } catch (e) {
      const le = e as LeaderWriteError;
      throw new LeaseAcquireError(le.rv, le.message, { leader: le.leader, retract: true, dblock: d });
    }
    // sanlock compares only owner_id here. Committing an earlier generation of our own host_id
    // (its vote survived a crash) is not ours to use: other hosts see our newer delta
    // generation and take that lease at once. Treat it as another owner and go round again.
    if (written.ownerId !== host.hostId || written.ownerGeneration !== host.generation) {
      throw new LeaseAcquireError(SANLK.ACQUIRE_OTHER,
        `resource ${name}: our ballot for lease version ${written.lver} committed host ${written.ownerId}, generation ${written.ownerGeneration}, ` +
        'whose value was already accepted; it holds the lease now',
        { leader: written, holder: { hostId: written.ownerId, generation: written.ownerGeneration, lver: written.lver } });
    }
    return result(written, d);
  }
}

/**
 * The leader went back below the lver our hint ballot wrote (the area was initialized again):
 * our dblock now names a future lver that would make every other host's ballot abort with
 * -212. Put back what initialization left there, a blank sector. A failed write is left for
 * our next ballot on this lease to overwrite.
 */
async function unwriteHintDblock(res: ResourceLocation, host: PaxosHost, sectorSize: number): Promise<void> {
  await timedIo('dblock_write', () => writeSector(res.storage, res.offset + dblockOffset(sectorSize, host.hostId), sectorSize, host.ioTimeout * 1000, () => undefined))
    .catch(() => undefined);
}

/** The shared holders of the lease area, read now (see ballots). A failed read fails the acquire. */
async function scanShared(
  res: ResourceLocation, host: PaxosHost, sectorSize: number, numHosts: number, into: Set<number>, leader: LeaderRecord, dblock?: Dblock,
): Promise<void> {
  let area: Buffer;
  try {
    area = await timedIo('area_read', () => readArea(res.storage, res.offset, paxosReadSize(numHosts, sectorSize), host.ioTimeout * 1000));
  } catch (e) {
    const err = ioError(e, SANLK.DBLOCK_READ, `acquiring ${resName(res)}: reading the shared holders`);
    throw new LeaseAcquireError(err.rv, err.message, { leader, retract: true, dblock });
  }
  collectShared(area, sectorSize, usedDblocks(area, sectorSize, numHosts, true), into);
}

export interface PaxosReleaseOptions {
  clock: Clock;
}

/**
 * paxos_lease_release, run after our dblock was rewritten with RELEASED. If another host wrote
 * the leader (it committed us in the same ballot) leave the leader alone: clearing it could
 * overwrite a newer leader, and other hosts honour our RELEASED dblock. Otherwise it must still
 * be exactly what we wrote: clear its timestamp. `last` undefined: "whatever is there".
 * `preread`: the leader as the caller read it just before (releaseResource reads it first).
 */
export async function paxosLeaseRelease(
  res: ResourceLocation, host: PaxosHost, sectorSize: number, last: LeaderRecord | undefined, opts: PaxosReleaseOptions,
  preread?: LeaderRecord,
): Promise<LeaderRecord | undefined> {
  const name = resName(res);
  const leader = preread ?? await readPaxosLeader(res, sectorSize, host.hostId, host.ioTimeout);
  const ref = last ?? leader;
  if (leader.writeId !== host.hostId) return undefined;
  if (leader.lver !== ref.lver) {
    throw new LeaseError(SANLK.RELEASE_LVER,
      `releasing ${name}: the lease is at version ${leader.lver}, not our ${ref.lver}; host ${leader.ownerId} took it since`);
  }
  if (leader.timestamp === 0) {
    throw new LeaseError(SANLK.RELEASE_OWNER, `releasing ${name}: the lease is already free`);
  }
  if (leader.ownerId !== host.hostId || leader.ownerGeneration !== host.generation) {
    throw new LeaseError(SANLK.RELEASE_OWNER,
      `releasing ${name}: the lease is owned by host ${leader.ownerId}, generation ${leader.ownerGeneration}, not by us (host ${host.hostId}, generation ${host.generation})`);
  }
  if (!sameLeader(leader, ref)) {
    throw new LeaseError(SANLK.RELEASE_OWNER, `releasing ${name}: the leader changed since we wrote it`);
  }
  return writeLeader(res, sectorSize, releasedLeader(leader, host, opts), host.ioTimeout, `releasing ${name}: clearing the leader`);
}

/** The leader a release writes: free (timestamp 0), written by us now, SHORT_HOLD cleared. */
export function releasedLeader(leader: LeaderRecord, host: PaxosHost, opts: PaxosReleaseOptions): LeaderRecord {
  return {
    ...leader, timestamp: 0, writeId: host.hostId, writeGeneration: host.generation,
    writeTimestamp: leaseTimestamp(opts.clock), flags: leader.flags & ~LFL_SHORT_HOLD,
  };
}
