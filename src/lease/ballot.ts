import { DBLOCK_SIZE, MBLOCK_SHARED, MODE_BLOCK_OFFSET } from '../ondisk/constants';
import { Dblock, dblockValid, decodeDblock, decodeModeBlock, encodeModeBlockInto, isShared, sealDblockInto } from '../ondisk/dblock';
import { SANLK } from '../ondisk/results';
import { paxosReadSize } from '../ondisk/sizes';
import { decodeLeader, LeaderRecord, leadersEqual } from '../ondisk/leader';
import { Clock } from './clock';
import { ioError, readArea, timedIo, writeSector } from './diskio';
import { OpBuffers } from './iobuf';
import { PaxosHost, ResourceLocation } from './token';

/**
 * One Disk Paxos ballot on one disk (sanlock's run_ballot), for one lease version (lver).
 * Every host writes only its own dblock sector and reads everyone's.
 */

/**
 * Ballot numbers: host h uses k·max_hosts + h, so numbers never collide; the next attempt
 * starts above the largest mbal seen. Note max_hosts, not num_hosts (1, 2001, 4002 for 512/1M).
 */
export function firstMbal(maxMbal: number, maxHosts: number, hostId: number): number {
  if (!maxMbal) return hostId;
  return maxMbal - (maxMbal % maxHosts) + maxHosts + hostId;
}

export interface BallotContext {
  res: ResourceLocation;
  host: PaxosHost;
  sectorSize: number;
  clock: Clock;
  bufs: OpBuffers;
  /**
   * Host ids seen with a SHARED mode block in phase 1. Accumulates over attempts, like sanlock's
   * token->shared_bitmap; the exclusive acquirer checks these holders after winning.
   */
  sharedHosts: Set<number>;
  /** Write our SHARED mode block with each dblock (sh→ex conversion keeps it); default false. */
  keepSharedMode?: boolean;
  /**
   * The leader this ballot assumes (an AcquireHint's, not read beforehand): the phase-1 read
   * (which starts at the leader sector) must show exactly it, or the ballot stops with
   * `leaderMoved`.
   */
  expectLeader?: LeaderRecord;
}

export interface BallotResult {
  /** 0, -210/-211 (I/O), -212 (newer lver seen), -213 (higher mbal seen). */
  rv: number;
  message?: string;
  /** Our dblock as last written (or about to be written when the write failed). */
  dblock: Dblock;
  /** Phase 2 started: on an I/O failure now, another host may still commit our value (retract). */
  phase2: boolean;
  /** Our phase-2 dblock (our vote) was written: it must not be erased within this lver. */
  voted: boolean;
  /** With expectLeader: the leader found instead (rv is then -212). */
  leaderMoved?: LeaderRecord;
  /** A phase-1 read completed: every dblock's shared mode was seen (ctx.sharedHosts). */
  phase1Read?: boolean;
}

/**
 * A never-written dblock (all 56 bytes zero): valid, and no vote. Most of a 2000-host lease
 * is blank, so this skips decoding them.
 */
export function dblockBlank(area: Buffer, off: number): boolean {
  const end = off + BLANK_LEN;
  for (let i = off; i < end; i++) if (area[i] !== 0) return false;
  return true;
}
/** Local copies: a re-exported constant is a getter call in CommonJS output, too slow in these loops. */
const BLANK_LEN = DBLOCK_SIZE;
const BLANK_WORDS = DBLOCK_SIZE >>> 2;
/** Low byte of the mode block's flags (little-endian u32 at 128). */
const MODE_FLAGS = MODE_BLOCK_OFFSET;

/**
 * The 0-based slots (host_id - 1) among the first `n` dblocks that are not blank, or, with
 * `shared`, whose mode block says SHARED. A 2000-host area is scanned on every read of every
 * ballot phase; reading it as 32-bit words is ~4x faster than byte by byte, and it is the
 * agent's largest CPU cost per acquire after the I/O itself (scripts/bench throughput).
 */
export function usedDblocks(area: Buffer, sectorSize: number, n: number, shared = false): number[] {
  const out: number[] = [];
  const aligned = (area.byteOffset & 3) === 0 && (sectorSize & 3) === 0;
  if (!aligned) {
    for (let q = 0; q < n; q++) {
      const off = dblockOffset(sectorSize, q + 1);
      if (!dblockBlank(area, off) || (shared && area[off + MODE_FLAGS] & MBLOCK_SHARED)) out.push(q);
    }
    return out;
  }
  const w = new Int32Array(area.buffer, area.byteOffset, area.length >>> 2);
  const step = sectorSize >>> 2;
  const modeWord = MODE_FLAGS >>> 2;
  for (let q = 0, base = 2 * step; q < n; q++, base += step) {
    let any = 0;
    for (let k = 0; k < BLANK_WORDS; k++) any |= w[base + k];
    if (any !== 0 || (shared && (w[base + modeWord] & MBLOCK_SHARED))) out.push(q);
  }
  return out;
}

/** Add the hosts (1-based) among `used` slots whose valid dblock carries a SHARED mode block. */
export function collectShared(area: Buffer, sectorSize: number, used: number[], into: Set<number>): void {
  for (const q of used) {
    const off = dblockOffset(sectorSize, q + 1);
    if (isShared(decodeModeBlock(area, off)) && dblockValid(area, off)) into.add(q + 1);
  }
}

/** Offset of host_id's dblock sector in the lease area: leader, request, then one per host. */
export function dblockOffset(sectorSize: number, hostId: number): number {
  return (2 + hostId - 1) * sectorSize;
}

/** Write our dblock as one whole sector (zeroing the mode block unless we keep SHARED). */
export async function writeDblock(
  ctx: Pick<BallotContext, 'res' | 'host' | 'sectorSize'>, d: Dblock, mode?: { flags: number; generation: number },
): Promise<Dblock> {
  let sealed = d;
  await timedIo('dblock_write', () => writeSector(ctx.res.storage, ctx.res.offset + dblockOffset(ctx.sectorSize, ctx.host.hostId), ctx.sectorSize,
    ctx.host.ioTimeout * 1000, (s) => {
      sealed = sealDblockInto(d, s, 0);
      if (mode) encodeModeBlockInto(mode, s, 0);
    }));
  return sealed;
}

type Phase = 1 | 2;

/**
 * @param ourVote our dblock as last known on disk. If it holds a vote (bal, inp) for this same
 *   lver, phase 1 keeps it, as Disk Paxos specifies. sanlock 3.8.5 resets bal/inp to 0 here;
 *   when a host re-runs a ballot for an lver whose value it had already chosen (its commit
 *   failed), that erases the only copy of the chosen value and another host can decide a
 *   different owner for the same lver (found by the simulation). The kept values are ordinary
 *   dblock contents to sanlock peers: they pick bk_max by bal, as for any accepted value.
 */
export async function runBallot(ctx: BallotContext, numHosts: number, nextLver: number, ourMbal: number, ourVote?: Dblock): Promise<BallotResult> {
  const seen = { phase1Read: false };
  const r = await ballotSteps(ctx, numHosts, nextLver, ourMbal, ourVote, seen);
  return { ...r, phase1Read: seen.phase1Read };
}

async function ballotSteps(
  ctx: BallotContext, numHosts: number, nextLver: number, ourMbal: number, ourVote: Dblock | undefined, seen: { phase1Read: boolean },
): Promise<BallotResult> {
  const { host, sectorSize: ss, res } = ctx;
  const readLen = paxosReadSize(numHosts, ss);
  const what = `ballot for ${res.spaceName}:${res.resourceName} lver ${nextLver}`;
  const mode = ctx.keepSharedMode ? { flags: MBLOCK_SHARED, generation: host.generation } : undefined;
  const keep = ourVote && ourVote.lver === nextLver && ourVote.bal && ourVote.inp ? ourVote : undefined;
  let dblock: Dblock = {
    mbal: ourMbal, bal: keep?.bal ?? 0, inp: keep?.inp ?? 0, inp2: keep?.inp2 ?? 0, inp3: keep?.inp3 ?? 0,
    lver: nextLver, checksum: 0, flags: 0,
  };
  let voted = false;

  const write = async (phase: Phase): Promise<BallotResult | undefined> => {
    try {
      dblock = await writeDblock(ctx, dblock, mode);
      return undefined;
    } catch (e) {
      const err = ioError(e, SANLK.DBLOCK_WRITE, `${what}: phase ${phase} writing our dblock`, true);
      return { rv: err.rv, message: err.message, dblock, phase2: phase === 2, voted };
    }
  };

  /** Read all dblocks; abort on a newer lver or a higher mbal; in phase 1 pick bk_max. */
  const read = async (phase: Phase): Promise<{ fail?: BallotResult; bkMax?: Dblock }> => {
    const buf = await ctx.bufs.get(readLen);
    let area: Buffer;
    try {
      area = await timedIo('area_read', () => readArea(res.storage, res.offset, readLen, host.ioTimeout * 1000, buf));
    } catch (e) {
      ctx.bufs.poison(buf);
      const err = ioError(e, SANLK.DBLOCK_READ, `${what}: phase ${phase} reading the dblocks`, true);
      return { fail: { rv: err.rv, message: err.message, dblock, phase2: phase === 2, voted } };
    }
    try {
      return judge(phase, area);
    } finally {
      ctx.bufs.put(buf); // decoded: the next reader may have it
    }
  };
  /** What phase `phase` learns from the dblocks in `area` (synchronous: the buffer goes back after). */
  const judge = (phase: Phase, area: Buffer): { fail?: BallotResult; bkMax?: Dblock } => {
    if (phase === 1 && ctx.expectLeader) {
      const seen = decodeLeader(area, 0);
      if (!leadersEqual(seen, ctx.expectLeader)) {
        return { fail: { rv: SANLK.DBLOCK_LVER, message: `${what}: the leader changed since our release`, dblock, phase2: false, voted, leaderMoved: seen } };
      }
    }
    // Shared holders first, over the whole area: the checks below may stop at the first host
    // with a higher ballot, and a holder after it would go unseen. An exclusive acquirer that
    // then finds the lease committed to it by another host's ballot (no phase 1 of its own
    // completing) would take it over a live shared holder (simulation seed 1646).
    const used = usedDblocks(area, ss, numHosts, true);
    if (phase === 1) {
      collectShared(area, ss, used, ctx.sharedHosts);
      seen.phase1Read = true;
    }
    let bkMax: Dblock | undefined;
    for (const q of used) {
      const off = dblockOffset(ss, q + 1);
      if (!dblockValid(area, off)) {
        // From a hint, leave corrupt areas to the full path (which refuses them with -214).
        if (phase === 1 && ctx.expectLeader) return { fail: { rv: SANLK.DBLOCK_LVER, message: `${what}: the dblock of host ${q + 1} is corrupt`, dblock, phase2: false, voted } };
        continue; // a torn or foreign sector is not a vote
      }
      const bk = decodeDblock(area, off);
      if (bk.lver < dblock.lver) continue;
      if (bk.lver > dblock.lver) {
        return { fail: { rv: SANLK.DBLOCK_LVER, message: `${what}: host ${q + 1} is already at lver ${bk.lver}`, dblock, phase2: phase === 2, voted } };
      }
      if (bk.mbal > dblock.mbal) {
        return { fail: { rv: SANLK.DBLOCK_MBAL, message: `${what}: host ${q + 1} runs a higher ballot (${bk.mbal} > ${dblock.mbal})`, dblock, phase2: phase === 2, voted } };
      }
      if (phase === 1 && bk.inp && bk.bal && (!bkMax || bk.bal > bkMax.bal)) bkMax = bk;
    }
    return { bkMax };
  };

  // Phase 1: announce our ballot number, learn any value already accepted in this instance.
  const w1 = await write(1);
  if (w1) return w1;
  const r1 = await read(1);
  if (r1.fail) return r1.fail;

  // Paxos rule: propose the value with the highest bal seen; ourselves only if none.
  dblock = r1.bkMax
    ? { ...dblock, inp: r1.bkMax.inp, inp2: r1.bkMax.inp2, inp3: r1.bkMax.inp3, bal: dblock.mbal }
    : { ...dblock, inp: host.hostId, inp2: host.generation, inp3: ctx.clock.monotime(), bal: dblock.mbal };

  // Phase 2: accept the value; nobody may have started a higher ballot meanwhile.
  const w2 = await write(2);
  if (w2) return w2;
  voted = true;
  const r2 = await read(2);
  if (r2.fail) return r2.fail;
  return { rv: SANLK.OK, dblock, phase2: true, voted };
}
