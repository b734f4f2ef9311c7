import { DBLOCK_FL_RELEASED, LFL_SHORT_HOLD, MBLOCK_SHARED } from '../ondisk/constants';
import { Dblock, decodeModeBlock, isShared, sealDblockInto } from '../ondisk/dblock';
import { LeaderRecord } from '../ondisk/leader';
import { describeResult, heldByAnotherHost, LeaseError, SANLK } from '../ondisk/results';
import { DEFAULT_GEOMETRY, geometryFromLeader } from '../ondisk/sizes';
import { verifyPaxosLeader } from '../ondisk/verify';
import { dblockOffset, writeDblock } from './ballot';
import { ioError, isIoTimeout, timedIo, writeSector } from './diskio';
import {
  LeaseAcquireError, LeaseHolder, paxosLeaseAcquire, PaxosAcquireOptions, paxosLeaseRelease, readPaxosLeader, releasedLeader,
} from './paxos';
import { sameLeader, sealLeader } from './record';
import { AcquireHint, PaxosHost, ResourceLocation, ResourceToken, resName, TokenMode } from './token';
import { sleepMs } from './wait';

/**
 * Resource leases as a host holds them (sanlock's resource.c: acquire_token, release_token,
 * clear_dead_shared, read_resource_owners): exclusive and shared modes on top of the paxos
 * acquire, and undoing a half-done acquire so no orphan ownership stays on disk.
 */

/** sanlock's default sh_retries: shared acquirers retry this often past a SHORT_HOLD owner. */
export const SH_RETRIES = 8;

export interface AcquireOptions extends Omit<PaxosAcquireOptions, 'shared' | 'keepSharedMode'> {
  mode?: TokenMode;
}

/**
 * acquire_token. Exclusive: win the ballot, then if shared holders were seen, clear the dead
 * ones and give the lease back with -EAGAIN (-11) if any is alive. Shared: win the ballot with
 * SHORT_HOLD, write our RELEASED dblock with a SHARED mode block, release the leader; retry
 * up to 8 times past another brief exclusive hold (-246 after that).
 */
export async function acquireResource(res: ResourceLocation, host: PaxosHost, opts: AcquireOptions): Promise<ResourceToken> {
  const shared = opts.mode === 'SH';
  const name = resName(res);
  for (let shRetries = 0; ; shRetries++) {
    let got;
    try {
      got = await paxosLeaseAcquire(res, host, { ...opts, shared });
    } catch (e) {
      if (!(e instanceof LeaseError)) throw e;
      const ae = e instanceof LeaseAcquireError ? e : undefined;
      const held = heldByAnotherHost(e.rv);
      if (held && shared && ae?.leader && (ae.leader.flags & LFL_SHORT_HOLD)) {
        if (shRetries < SH_RETRIES) {
          // Another shared acquirer holds it for a moment; it will be free again shortly.
          await sleepMs(opts.clock, Math.floor(opts.clock.random() * 1000), opts.cancel, () => `acquiring ${name} shared`);
          continue;
        }
        throw new LeaseAcquireError(SANLK.ACQUIRE_SHRETRY,
          `resource ${name}: gave up the shared acquire after ${SH_RETRIES} retries; other hosts keep holding it briefly (${e.message})`,
          { leader: ae.leader, holder: ae.holder });
      }
      if (ae?.retract) await retract(res, host, ae, opts);
      throw e;
    }

    const token: ResourceToken = {
      res, host, mode: shared ? 'SH' : 'EX', sectorSize: got.sectorSize, alignSize: got.alignSize,
      leader: got.leader, dblock: got.dblock, lver: got.leader.lver,
    };
    if (shared) {
      await becomeShared(token, opts);
      return token;
    }
    if (got.sharedHosts.length) {
      const live = await clearDeadShared(token, got.sharedHosts, opts);
      if (live.length) {
        await releaseResource(token, opts);
        throw new LeaseAcquireError(SANLK.EAGAIN,
          `resource ${name} is held shared by live host${live.length > 1 ? 's' : ''} ${live.join(', ')}; it cannot be acquired exclusively until they release it`,
          { leader: got.leader });
      }
    }
    return token;
  }
}

/**
 * Our dblock sector rewritten with RELEASED, keeping our ballot values, and a SHARED mode block
 * or none. The values stay: erasing a vote can let another ballot choose a different owner for
 * a lease version that was already decided.
 */
async function writeReleasedDblock(token: Pick<ResourceToken, 'res' | 'host' | 'sectorSize'>, d: Dblock, sharedGen?: number): Promise<Dblock> {
  try {
    return await writeDblock(token, { ...d, flags: DBLOCK_FL_RELEASED },
      sharedGen !== undefined ? { flags: MBLOCK_SHARED, generation: sharedGen } : undefined);
  } catch (e) {
    throw ioError(e, SANLK.DBLOCK_WRITE, `${resName(token.res)}: writing our dblock`);
  }
}

/** Shared acquire after the ballot: mode block SHARED, then give the leader back. */
async function becomeShared(token: ResourceToken, opts: AcquireOptions): Promise<void> {
  const undo = async (e: unknown): Promise<never> => {
    // R_UNDO_SHARED: no SHARED mode block of ours, and not the leader owner either.
    await writeReleasedDblock(token, token.dblock).catch(() => undefined);
    await paxosLeaseRelease(token.res, token.host, token.sectorSize, token.leader, opts).catch(() => undefined);
    throw e;
  };
  try {
    token.dblock = await writeReleasedDblock(token, token.dblock, token.host.generation);
  } catch (e) {
    await undo(e);
  }
  try {
    await paxosLeaseRelease(token.res, token.host, token.sectorSize, token.leader, opts);
  } catch (e) {
    await undo(e);
  }
}

/**
 * Undo an acquire that failed after our dblock carried a value (I/O failure in phase 2 or at
 * commit, or cancellation): another host may still commit us, or our own timed-out leader
 * write may still land. Mark our dblock RELEASED (others then ignore a leader naming us that
 * another host wrote) and clear the leader if we wrote it.
 *
 * sanlock's R_ERASE_ALL writes a zeroed dblock here instead. That erases our vote: if our
 * ballot had already chosen a value, a competing ballot can then choose a different owner for
 * the same lease version, and our late leader write plus this release can free the lease under
 * that owner (found by the simulation). Keeping the vote keeps Paxos safe.
 */
async function retract(res: ResourceLocation, host: PaxosHost, e: LeaseAcquireError, opts: AcquireOptions): Promise<void> {
  const sectorSize = (e.leader && geometryFromLeader(e.leader.sectorSize, e.leader.flags)?.sectorSize) ?? res.geometry?.sectorSize ?? DEFAULT_GEOMETRY.sectorSize;
  if (e.dblock) await writeReleasedDblock({ res, host, sectorSize }, e.dblock).catch(() => undefined);
  await paxosLeaseRelease(res, host, sectorSize, e.leader && e.leader.lver ? e.leader : undefined, opts).catch(() => undefined);
}

/**
 * clear_dead_shared: re-read each shared holder's mode block; clear the whole sector of a holder
 * that is no longer alive (the one case where we write another host's sector); return the
 * live ones.
 */
async function clearDeadShared(token: ResourceToken, hosts: number[], opts: AcquireOptions): Promise<number[]> {
  const live: number[] = [];
  const { res, host, sectorSize: ss } = token;
  for (const h of hosts) {
    if (h === host.hostId) continue;
    const at = res.offset + dblockOffset(ss, h);
    let sector: Buffer;
    try {
      sector = await timedIo('dblock_read', () => res.storage.read(at, ss, host.ioTimeout * 1000));
    } catch (e) {
      await releaseResource(token, opts).catch(() => undefined);
      throw ioError(e, SANLK.DBLOCK_READ, `${resName(res)}: reading the mode block of shared holder host ${h}`);
    }
    const mb = decodeModeBlock(sector, 0);
    if (!isShared(mb) || !mb.generation) continue; // released since our ballot saw it
    const alive = opts.liveness ? opts.liveness.hostLive(h, mb.generation) : true;
    if (alive) {
      live.push(h);
      continue;
    }
    try {
      await timedIo('dblock_write', () => writeSector(res.storage, at, ss, host.ioTimeout * 1000, () => undefined));
    } catch (e) {
      await releaseResource(token, opts).catch(() => undefined);
      throw ioError(e, SANLK.DBLOCK_WRITE, `${resName(res)}: clearing the shared lease of dead host ${h}`);
    }
  }
  return live;
}

export interface ReleaseOptions {
  clock: AcquireOptions['clock'];
  /**
   * The release writes nothing before this settles (the agent's journal entry of the release);
   * the leader read that precedes the writes does not wait for it.
   */
  writesAfter?: Promise<unknown>;
}

/**
 * release_token. Exclusive: our dblock with RELEASED (failure here is tolerable: the leader
 * write is what frees the lease for others), then the leader release. Shared: our dblock with
 * RELEASED and a zero mode block; the leader is not ours.
 */
export async function releaseResource(token: ResourceToken, opts: ReleaseOptions): Promise<AcquireHint | undefined> {
  const fast = await releaseIfUnchanged(token, opts);
  if (!(fast instanceof StepByStep)) return fast;
  // The leader first, before writing anything: if the area is no longer this resource's at our
  // lease version or later (the file was re-created or re-initialized — inode numbers get
  // reused), neither our dblock nor the leader belongs there. Also the read the leader release
  // needs, so still 3 I/Os.
  const leader = await readPaxosLeader(token.res, token.sectorSize, token.host.hostId, token.host.ioTimeout);
  if (leader.lver < token.lver) {
    throw new LeaseError(SANLK.RELEASE_LVER,
      `releasing ${resName(token.res)}: the lease area is at version ${leader.lver}, below ours (${token.lver}): it was initialized again since; left alone`);
  }
  await opts.writesAfter?.catch(() => undefined);
  if (fast.wrote && sameLeader(leader, fast.wrote)) {
    // The one request's writes went out together and its leader write landed, another (our
    // dblock) failed: the lease is free, as sanlock's release is once its leader write lands
    // whatever became of the dblock. The dblock once more, its failure tolerable as below.
    await writeReleasedDblock(token, token.dblock).catch(() => undefined);
    return undefined;
  }
  if (token.mode === 'SH') {
    await writeReleasedDblock(token, token.dblock);
    return undefined;
  }
  const dblock = await writeReleasedDblock(token, token.dblock).catch(() => undefined);
  const freed = await paxosLeaseRelease(token.res, token.host, token.sectorSize, token.leader, opts, leader);
  // Both writes landed as we made them: the next acquire here may start from them.
  const geometry = geometryFromLeader(token.sectorSize, token.leader.flags);
  if (!dblock || !freed || !geometry) return undefined;
  return { leader: freed, dblock, geometry, hostId: token.host.hostId, generation: token.host.generation };
}

/**
 * The release goes step by step (releaseResource). `wrote`: the freed leader the one-request
 * release sent, when its writes went out and one of them failed — that write may have landed.
 */
class StepByStep {
  constructor(readonly wrote?: LeaderRecord) {}
}

/**
 * The common exclusive release in one storage request (LeaseStorage.writeIfUnchanged): when the
 * leader on disk is byte for byte the one we committed, every check of the release below
 * passes (lver, owner, writer, record), so its two writes follow the read directly, sent
 * together (in either order they leave what sanlock's release leaves; the leader free while our
 * dblock is not yet RELEASED is free to every host: a ballot for the next lease version ignores
 * a dblock of ours). Anything else — another leader, a storage without the call, a shared
 * lease, an I/O error other than a timeout — goes the step-by-step way, which reads again and
 * says what it found. A timeout is the release failing, as one of the steps timing out would be.
 */
async function releaseIfUnchanged(token: ResourceToken, opts: ReleaseOptions): Promise<AcquireHint | undefined | StepByStep> {
  const { res, host, sectorSize } = token;
  const ours = token.leader;
  if (!res.storage.writeIfUnchanged || token.mode !== 'EX' || ours.writeId !== host.hostId ||
    ours.ownerId !== host.hostId || ours.ownerGeneration !== host.generation || ours.timestamp === 0 || ours.lver !== token.lver) return new StepByStep();
  const expected = Buffer.alloc(sectorSize);
  sealLeader(ours, expected, 0);
  const dblockSector = Buffer.alloc(sectorSize);
  const dblock = sealDblockInto({ ...token.dblock, flags: DBLOCK_FL_RELEASED }, dblockSector, 0);
  const leaderSector = Buffer.alloc(sectorSize);
  const freed = sealLeader(releasedLeader(ours, host, opts), leaderSector, 0);
  const writes = [
    { offset: res.offset + dblockOffset(sectorSize, host.hostId), data: dblockSector },
    { offset: res.offset, data: leaderSector },
  ];
  let done: true | Buffer;
  // A storage that cannot hold the writes alone gets the whole request after writesAfter.
  const holds = res.storage.holdsWrites === true;
  if (!holds) await opts.writesAfter?.catch(() => undefined);
  try {
    done = await timedIo('release_rmw', () => res.storage.writeIfUnchanged!(res.offset, expected, writes, 3 * host.ioTimeout * 1000, holds ? opts.writesAfter : undefined));
  } catch (e) {
    if (isIoTimeout(e)) throw ioError(e, SANLK.LEADER_WRITE, `releasing ${resName(res)}`);
    return new StepByStep(freed);
  }
  if (done !== true) return new StepByStep();
  const geometry = geometryFromLeader(sectorSize, ours.flags);
  return geometry ? { leader: freed, dblock, geometry, hostId: host.hostId, generation: host.generation } : undefined;
}

export interface ResourceOwner {
  hostId: number;
  generation: number;
  mode: TokenMode;
  /** Leader owner only: the committed timestamp (the owner's monotime at its ballot). */
  timestamp?: number;
}

export interface ResourceOwners {
  lver: number;
  leader: LeaderRecord;
  owners: ResourceOwner[];
  /** Some mode block is SHARED (sanlock sets SANLK_RES_SHARED). */
  shared: boolean;
}

/**
 * read_resource_owners (`client read`): the leader owner if the lease is held, plus every host
 * whose mode block is SHARED.
 */
export async function readResourceOwners(res: ResourceLocation, ioTimeout: number): Promise<ResourceOwners> {
  let g = res.geometry ?? DEFAULT_GEOMETRY;
  for (;;) {
    let area: Buffer;
    try {
      area = await timedIo('area_read', () => res.storage.read(res.offset, g.alignSize, ioTimeout * 1000));
    } catch (e) {
      throw ioError(e, SANLK.LEADER_READ, `reading ${resName(res)}`);
    }
    const { rv, leader } = verifyPaxosLeader(area, 0, res.spaceName, res.resourceName, 0);
    const lg = geometryFromLeader(leader.sectorSize, leader.flags);
    if (rv === 0 && lg && (lg.sectorSize !== g.sectorSize || lg.alignSize !== g.alignSize)) {
      g = lg;
      continue;
    }
    if (rv < 0) throw new LeaseError(rv, `the leader of ${resName(res)} at ${res.storage.id}:${res.offset} is invalid: ${describeResult(rv)}`);
    const owners: ResourceOwner[] = [];
    const held = leader.timestamp !== 0 && leader.ownerId !== 0;
    if (held) owners.push({ hostId: leader.ownerId, generation: leader.ownerGeneration, mode: 'EX', timestamp: leader.timestamp });
    let shared = false;
    const n = Math.min(leader.numHosts, Math.floor(area.length / g.sectorSize) - 2);
    for (let i = 0; i < n; i++) {
      const mb = decodeModeBlock(area, dblockOffset(g.sectorSize, i + 1));
      if (!isShared(mb)) continue;
      shared = true;
      if (held && i + 1 === leader.ownerId) continue;
      owners.push({ hostId: i + 1, generation: mb.generation, mode: 'SH' });
    }
    return { lver: leader.lver, leader, owners, shared };
  }
}

export type { LeaseHolder };
