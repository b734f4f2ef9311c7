/**
 * The cleanup sweep: virt-sanlock-cleanup done safely.
 *
 * virt-sanlock-cleanup deletes each lease file while holding its lease exclusively
 * (`sanlock client command -r RES -c /bin/rm -f FILE`). This sweep keeps that rule and closes the
 * holes it leaves:
 *
 *  - Only one host of the cluster sweeps at a time: the whole sweep runs under the lease
 *    __LIBVIRT__DISKS__:__lockagent_cleanup__ (file <disk_lease_dir>/__lockagent_cleanup__).
 *  - Only MD5-named files that are free (released, never used, or owned by a host that is dead
 *    as sanlock judges a takeover), older than min-age and with no other hard link are attempted.
 *    Acquiring writes the leader: through a hard link that write lands in a file elsewhere. The
 *    link count is checked again after the second name is made, on the fd the agent acquires
 *    through, before the unlink and on the fd the pin writes through.
 *  - The lease is acquired through a second, private name of the same inode
 *    (.lockagent-cleanup.<md5>): the agent holds the lease on exactly the inode that is
 *    checked and deleted, and can still release it after the real name is gone.
 *  - After acquiring: the real name must still be that inode, unmodified since it was
 *    classified, and the leader must be exactly the one our acquire committed (lver = the
 *    classified lver + 1: nobody used it in between), written by us: when another host's
 *    ballot committed us, that host was acquiring the lease right then and may hold an fd of
 *    the file, and a leader naming us but written by another host is free to everyone once
 *    our dblock says RELEASED — the pin below would not hold. Such a file is kept.
 *  - A host that opened the file just before the unlink could acquire it on the unlinked inode
 *    after our release — a lease on a file nobody else can see, while a new file at the same
 *    path is leased by someone else. So before releasing, the leader of the unlinked inode is
 *    rewritten still naming us as owner (only write_timestamp changes; write_id stays ours,
 *    all outside the checksum): such a late acquirer sees a live owner and gets -243, and our
 *    own release stops at "leader changed" (-251), which the agent logs and treats as released.
 *    The agent's acquire also checks, once it holds a lease, that the path still names the
 *    file it leased, and otherwise releases and follows the path (src/agent/agent.ts).
 */
import { promises as fsp } from 'fs';
import { join } from 'path';
import { Agent, HeldLease } from '../agent/agent';
import { leaseFileOwner } from '../agent/leasefile';
import { ensureResourceFile } from '../agent/resourcefile';
import { AgentConfig, DISKS_LOCKSPACE } from '../config/config';
import { LeaseSpec, OwnerRef } from '../agent/types';
import { DirectFile } from '../io/directio';
import { Clock, systemClock } from '../lease/clock';
import { timeoutsFor } from '../lease/timeouts';
import { Logger } from '../log/logger';
import { decodeLeader, geometryFor, leadersEqual, LeaseError, PAXOS_DISK_MAGIC, SANLK } from '../ondisk';
import { StateStore } from '../state/statestore';
import { LeaseStorage } from '../lease/storage';
import {
  classifyEntry, ClassifyContext, hardLinkText, LEFTOVER_PREFIX, LivenessView, needsWatching, RECOVERING, SWEEP_LOCK_NAME,
} from './classify';
import { joinedView, WatchView } from './liveness';
import { SweepReport, Verdict } from '../control/replies';
import { summarize } from './report';
import { inspect, listDir, scanDirectory, statEntry } from './scan';

export interface SweepDeps {
  agent: Agent;
  config: Pick<AgentConfig, 'diskLeaseDir' | 'ioTimeout' | 'sectorSize' | 'alignSize' | 'cleanupMinAge' | 'userId' | 'groupId'>;
  log: Logger;
  store?: StateStore;
  clock?: Clock;
}

export interface SweepHooks {
  /** the sweep lock is held; the directory is not read yet (tests hold a sweep open here) */
  locked?(): Promise<void>;
  /** the directory is classified; nothing is deleted yet (tests change files here) */
  scanned?(): Promise<void>;
  /** the second name of `name` is made and checked; its lease is not taken yet (tests use the lease here) */
  acquiring?(name: string): Promise<void>;
}

/** The file gained another name after it was classified: nothing may be written to it. */
class HardLinked extends Error {}

/** Links of a lease file while the sweep holds it by its own name and its second name. */
const SWEEP_LINKS = 2;

export interface SweepOptions {
  dryRun: boolean;
  /** default: cleanup_min_age from the config */
  minAgeSeconds?: number;
  onProgress?: (done: number, total: number) => void;
  /**
   * The daemon is stopping: no further entry is examined and no further file deleted; the file
   * in hand finishes its steps (second name removed, leases released) and the report says so.
   */
  signal?: AbortSignal;
  /**
   * The daemon's start-up recovery (re-adoption and the reconcile with the lease directory) has
   * not finished: a real sweep is refused (RECOVERING_TEXT); a dry run reports leases of an
   * earlier generation of this host as not decided rather than free.
   */
  recovering?: boolean;
  hooks?: SweepHooks;
}

/** Why a real sweep is refused right after the agent started (see SweepOptions.recovering). */
export const RECOVERING_TEXT = `${RECOVERING}; try again in a moment`;

/** The owner the sweeper's leases are held for: shown by `lockagent status`. */
export function sweeperOwner(agent: Agent): OwnerRef & { name: string } {
  return { uuid: `cleanup:${agent.hostName}`, name: 'lockagent cleanup' };
}

/** Agents with a sweep in progress in this process. */
const sweeping = new WeakSet<Agent>();

export function isSweeping(agent: Agent): boolean {
  return sweeping.has(agent);
}

/**
 * Refusals of an acquire that mean "someone holds it" rather than "something is broken"
 * (docs/cleanup.md lists them): -243 a live owner, -244/-245 another host won the ballot or
 * committed itself in ours, -246 a shared acquire outrun by others past its retries, -247 an
 * owner not waited for, -11 live shared holders (or a release of it in progress here), -16 an
 * acquire of it in progress here, -17 held by another owner here.
 */
export const HELD_BY_OTHER: readonly number[] = [
  SANLK.ACQUIRE_IDLIVE, SANLK.ACQUIRE_OWNED, SANLK.ACQUIRE_OTHER, SANLK.ACQUIRE_SHRETRY, SANLK.ACQUIRE_OWNED_RETRY,
  SANLK.EAGAIN, SANLK.EBUSY, SANLK.EEXIST,
];

function heldByOther(e: unknown): boolean {
  const rv = (e as LeaseError).rv;
  if (HELD_BY_OTHER.includes(rv)) return true;
  // The acquire gave up waiting for an owner that stopped renewing but is not dead yet.
  return rv === SANLK.ERROR && /deadline/.test((e as Error).message ?? '');
}

const errMsg = (e: unknown) => (e instanceof Error ? e.message : String(e));

async function unlinkQuiet(path: string): Promise<void> {
  await fsp.unlink(path).catch(() => undefined);
}

/** The sector-0 leader of a lease file, or undefined when unreadable or not a lease. */
async function readLeader(path: string, ioTimeoutMs: number): Promise<ReturnType<typeof decodeLeader> | undefined> {
  try {
    const f = await DirectFile.open(path, { readOnly: true, timeoutMs: ioTimeoutMs });
    try {
      const l = decodeLeader(await f.read(0, 4096, ioTimeoutMs), 0);
      return l.magic === PAXOS_DISK_MAGIC ? l : undefined;
    } finally {
      await f.close().catch(() => undefined);
    }
  } catch {
    return undefined;
  }
}

/**
 * Rewrite the leader we hold with write_timestamp + 1 (outside the checksummed bytes): still ours,
 * still held — but no longer the record our release expects, so the release leaves it held.
 * write_id/write_generation (also outside the checksum) are set to ours: a leader that names
 * us as owner but another host as writer is free to every acquirer once our dblock says
 * RELEASED (sanlock's "released, then overwritten by a host committing us" rule), and our
 * release writes exactly that dblock.
 */
async function pinLeader(path: string, held: HeldLease, ioTimeoutMs: number): Promise<void> {
  const ss = held.token.sectorSize;
  const f = await DirectFile.open(path, { timeoutMs: ioTimeoutMs });
  try {
    // Only the second name is left: any other link is a name someone made meanwhile.
    if (f.linkCount !== undefined && f.linkCount > 1) throw new HardLinked(`the deleted file gained another name (${f.linkCount} links)`);
    const sector = await f.read(0, ss, ioTimeoutMs);
    if (!leadersEqual(decodeLeader(sector, 0), held.token.leader)) throw new Error('the leader changed while we held it');
    sector.writeBigUInt64LE(BigInt(held.token.host.hostId), 176);
    sector.writeBigUInt64LE(BigInt(held.token.host.generation), 184);
    sector.writeBigUInt64LE(sector.readBigUInt64LE(192) + 1n, 192);
    await f.write(0, sector, ioTimeoutMs);
  } finally {
    await f.close().catch(() => undefined);
  }
}

interface Ctx {
  deps: SweepDeps;
  dir: string;
  owner: OwnerRef & { name: string };
  view: LivenessView;
  ioMs: number;
  acquireMs: number;
  hooks: SweepHooks;
}

/**
 * Delete one free lease file while holding its lease (see the file comment for the protocol).
 * Returns the verdict updated with what happened.
 */
async function deleteLease(c: Ctx, v: Verdict): Promise<Verdict> {
  const { agent, log, store } = c.deps;
  const path = join(c.dir, v.name);
  const alias = join(c.dir, LEFTOVER_PREFIX + v.name);
  const kept = (cls: Verdict['class'], detail: string, action: Verdict['action'] = 'kept'): Verdict =>
    ({ ...v, class: cls, detail, deletable: false, action });

  try {
    await fsp.link(path, alias);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return kept('free', `${v.detail}; gone before the delete (removed by someone else)`);
    return kept('error', `cannot make the private name ${alias}: ${errMsg(e)}`, 'failed');
  }

  // The same inode, unmodified since classification, under both names?
  try {
    const [a, p] = await Promise.all([statEntry(alias), statEntry(path)]);
    if (a.ino !== v.ino || a.dev !== v.dev || p.ino !== v.ino || p.mtimeNs !== v.mtimeNs) {
      await unlinkQuiet(alias);
      return kept('too recent', 'changed during the sweep (written to or replaced); kept');
    }
    if (a.nlink > SWEEP_LINKS) {
      await unlinkQuiet(alias);
      return kept('linked', `${hardLinkText(a.nlink - 1)} (linked during the sweep)`);
    }
  } catch (e) {
    await unlinkQuiet(alias);
    return kept('free', `${v.detail}; gone before the delete (${errMsg(e)})`);
  }

  await c.hooks.acquiring?.(v.name);
  const spec: LeaseSpec = { lockspace: DISKS_LOCKSPACE, resource: v.name, path: alias, offset: 0, mode: 'exclusive' };
  // On the fd the acquire writes through, before its first write.
  const checkFile = (st: LeaseStorage) => {
    if (st.linkCount !== undefined && st.linkCount > SWEEP_LINKS) throw new HardLinked(`${hardLinkText(st.linkCount - 1)} (linked during the sweep)`);
  };
  let held: HeldLease;
  try {
    [held] = await agent.acquire(c.owner, [spec], { timeoutMs: c.acquireMs, checkFile });
  } catch (e) {
    await unlinkQuiet(alias);
    if (e instanceof HardLinked) return kept('linked', e.message);
    if (heldByOther(e)) return kept('in use', `its lease could not be taken: ${errMsg(e)}`);
    return kept('error', `acquiring its lease failed: ${errMsg(e)}`, 'failed');
  }

  const releaseNormally = async (why: string) => {
    await agent.release(c.owner, [spec]).catch((e) => log.warning(`cleanup: releasing ${v.name} (${why}) failed: ${errMsg(e)}`));
    await unlinkQuiet(alias);
  };

  // Holding it: is it the lease we classified, on the inode the path names?
  try {
    const ours = await readLeader(alias, c.ioMs);
    const expectLver = (v.lver ?? 0) + 1;
    let problem: string | undefined;
    let linked: string | undefined;
    if (held.file && (held.file.ino.toString() !== v.ino || held.file.dev.toString() !== v.dev)) problem = 'the file we leased is not the one classified';
    else if (!ours || !leadersEqual(ours, held.token.leader)) problem = 'its leader is not the one our acquire wrote';
    else if (ours.writeId !== held.token.host.hostId || ours.writeGeneration !== held.token.host.generation) {
      // Another host's ballot committed us: it was acquiring this lease at the same moment, and
      // may still hold an fd of this file. Someone is about to use it; keep it.
      problem = `host ${ours.writeId} was acquiring it at the same moment (its ballot committed our lease)`;
    } else if (held.token.lver !== expectLver) {
      // Someone took and gave back the lease in between: our commit overwrote who it was.
      problem = `used during the sweep, by this host or another (lease version ${held.token.lver - 1}, classified at ${expectLver - 1})`;
    }
    else {
      const p = await statEntry(path).catch(() => undefined);
      if (!p) problem = 'its name vanished while we held the lease';
      else if (p.ino !== v.ino || p.dev !== v.dev) problem = 'its name now refers to another file';
      else if (p.nlink > SWEEP_LINKS) linked = `${hardLinkText(p.nlink - 1)} (linked during the sweep)`;
    }
    if (linked) {
      // Our acquire wrote to it already, as any acquirer's could; release and leave it be.
      await releaseNormally('hard-linked');
      return kept('linked', linked);
    }
    if (problem) {
      await releaseNormally(problem);
      return kept('in use', `${problem}; kept`);
    }
  } catch (e) {
    await releaseNormally('verification failed');
    return kept('error', `verifying the held lease failed: ${errMsg(e)}`, 'failed');
  }

  // An acquire by a local owner already on its way (journalled before it opens the file)?
  const local = store?.pendingOps().find((op) => op.lockspace === DISKS_LOCKSPACE && op.resource === v.name && op.ownerUuid !== c.owner.uuid);
  if (local) {
    await releaseNormally('local acquire in progress');
    return kept('in use', `this host is acquiring it right now (owner ${local.ownerUuid}); kept`);
  }
  try {
    await fsp.unlink(path); // started in the same tick as the check above
  } catch (e) {
    await releaseNormally('unlink failed');
    return kept('error', `unlink failed: ${errMsg(e)}`, 'failed');
  }

  let note = '';
  try {
    await pinLeader(alias, held, c.ioMs);
    log.info(`cleanup: deleted ${v.name} (${v.detail}); its lease stays held on the unlinked file, so the agent's release leaves it held`);
    await agent.release(c.owner, [spec], { leaderPinned: true }).catch((e) => log.warning(`cleanup: releasing the lease of deleted ${v.name}: ${errMsg(e)}`));
  } catch (e) {
    // Never hand back a lease on an unreachable inode with a free leader: keep it held (in the
    // agent's records); the next sweep releases it, long after any late acquirer gave up.
    note = `; its lease stays held by this host until the next sweep (pinning the leader failed: ${errMsg(e)})`;
    log.warning(`cleanup: deleted ${v.name}, but ${note.slice(2)}`);
  }
  if (!note) {
    try {
      await fsp.unlink(alias);
    } catch (e) {
      note = `; the private name ${LEFTOVER_PREFIX}${v.name} remains (${errMsg(e)}): the next sweep removes it`;
    }
  }
  return { ...v, deletable: false, action: 'deleted', detail: `${v.detail}${note}` };
}

/** A leftover private name of an interrupted sweep: only a name this tool made; remove it. */
async function removeLeftover(c: Ctx, v: Verdict): Promise<Verdict> {
  const alias = join(c.dir, v.name);
  const real = join(c.dir, v.name.slice(LEFTOVER_PREFIX.length));
  try {
    const a = await statEntry(alias);
    if (a.ino !== v.ino || a.dev !== v.dev || a.nlink !== v.nlink) {
      return { ...v, class: 'too recent', deletable: false, action: 'kept', detail: 'changed during the sweep (replaced or linked); kept' };
    }
    if (a.nlink > 1) {
      const p = await statEntry(real).catch(() => undefined);
      if (!p || p.ino !== a.ino || p.dev !== a.dev) {
        return { ...v, class: 'error', deletable: false, action: 'failed', detail: `has ${a.nlink} names but ${real} is not one of them; kept for inspection` };
      }
    }
    await fsp.unlink(alias);
    return { ...v, deletable: false, action: 'deleted' };
  } catch (e) {
    return { ...v, class: 'error', deletable: false, action: 'failed', detail: `cannot remove: ${errMsg(e)}` };
  }
}

function classifyContext(deps: SweepDeps, view: LivenessView, minAgeSeconds: number, skipOwner?: string, recovering?: boolean): () => ClassifyContext {
  const { agent, store } = deps;
  let referenced: Set<string> | undefined;
  return () => ({
    view,
    nowMs: Date.now(),
    minAgeSeconds,
    recovering,
    localOwners: (resource) => agent.ownersList()
      .filter((o) => o.ref.uuid !== skipOwner && o.leases.some((l) => l.spec.lockspace === DISKS_LOCKSPACE && l.spec.resource === resource))
      .map((o) => o.ref.name),
    ownOrphan: store ? (resource) => {
      referenced ??= new Set([
        ...store.leases().filter((l) => l.lockspace === DISKS_LOCKSPACE).map((l) => l.resource),
        ...store.pendingOps().filter((o) => o.lockspace === DISKS_LOCKSPACE).map((o) => o.resource),
      ]);
      return !referenced.has(resource);
    } : undefined,
  });
}

/** The report's note of a sweep cut short by the daemon's stop (SweepOptions.signal). */
function stoppedText(examined: number, total: number | undefined, notDeleted: number): string {
  if (total === undefined) return 'the sweep was stopped (the agent is stopping) before the directory was read';
  return `the sweep was stopped (the agent is stopping): ${examined} of ${total} entries examined` +
    (notDeleted ? `, ${notDeleted} deletable left for the next sweep` : '');
}

function report(dir: string, dryRun: boolean, minAgeSeconds: number, started: number, files: Verdict[], extra: Partial<SweepReport>): SweepReport {
  const { summary, line } = summarize(files, dryRun);
  return {
    dir, dryRun, minAgeSeconds, status: 'done', liveness: '', startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started, files, summary, summaryLine: line, errors: [], ...extra,
  };
}

/**
 * A read-only classification without the lockspace joined (the CLI's --dry-run without a daemon,
 * or a daemon whose lockspace is not joined): the lockspace is read, the directory classified,
 * and — only if some lease is held by a host not judged yet — the lockspace is read again 2·io
 * later and those files once more.
 */
export async function dryRunStandalone(
  config: SweepDeps['config'],
  opts: {
    minAgeSeconds?: number; onProgress?: (done: number, total: number) => void; onWatch?: (seconds: number) => void; sleep?: (ms: number) => Promise<void>;
    /** stop examining entries (the daemon is stopping); the report says so */
    signal?: AbortSignal;
  } = {},
): Promise<SweepReport> {
  const started = Date.now();
  const dir = config.diskLeaseDir;
  const minAge = opts.minAgeSeconds ?? config.cleanupMinAge;
  const ioMs = config.ioTimeout * 1000;
  const errors: string[] = [];
  let view: LivenessView;
  let watch: WatchView | undefined;
  try {
    watch = await WatchView.read(join(dir, DISKS_LOCKSPACE), DISKS_LOCKSPACE, config.ioTimeout);
    view = watch;
  } catch (e) {
    errors.push(`cannot read the lockspace ${join(dir, DISKS_LOCKSPACE)}: ${errMsg(e)}; every held lease is reported in use`);
    view = { source: 'lockspace unreadable', host: () => undefined, hostLive: () => true, candidates: () => [] };
  }
  const ctx = () => ({ view, nowMs: Date.now(), minAgeSeconds: minAge });
  const names = await listDir(dir);
  const files = await scanDirectory(dir, names, ctx, { ioTimeoutMs: ioMs, onProgress: opts.onProgress, signal: opts.signal });
  if (files.length < names.length) errors.push(stoppedText(files.length, names.length, 0));
  const unsure = files.map((f, i) => (needsWatching(f) ? i : -1)).filter((i) => i >= 0);
  if (watch && unsure.length && !opts.signal?.aborted) {
    const hosts = [...new Set(unsure.flatMap((i) => files[i].holders!.map((h) => h.hostId)))];
    const secs = watch.watchSeconds(hosts);
    opts.onWatch?.(secs);
    await watch.watch(secs, opts.sleep);
    for (const i of unsure) files[i] = classifyEntry(await inspect(dir, files[i].name, view, ioMs), ctx());
  }
  return report(dir, true, minAge, started, files, { liveness: view.source, errors });
}

/**
 * One sweep inside the daemon. A dry run reads only. A real sweep holds the sweep lock for its
 * whole duration; when another host holds it the report says 'busy' and nothing is examined.
 */
export async function sweep(deps: SweepDeps, opts: SweepOptions): Promise<SweepReport> {
  const started = Date.now();
  const { agent, config, log } = deps;
  const clock = deps.clock ?? systemClock;
  const dir = config.diskLeaseDir;
  const minAge = opts.minAgeSeconds ?? config.cleanupMinAge;
  if (opts.recovering && !opts.dryRun) throw new LeaseError(SANLK.EBUSY, RECOVERING_TEXT);
  const ls = agent.lockspaces.get(DISKS_LOCKSPACE);
  const joined = ls && ls.state === 'joined' && ls.lease && ls.monitor ? ls : undefined;

  if (!joined) {
    if (opts.dryRun) return dryRunStandalone(config, { minAgeSeconds: minAge, onProgress: opts.onProgress, signal: opts.signal });
    throw new LeaseError(SANLK.ENOSPC, `cleanup needs lockspace ${DISKS_LOCKSPACE} joined on this host to delete anything ` +
      `(${ls ? `it is ${ls.state}` : 'it is not configured: auto_disk_leases = 1'}); lockagent cleanup --dry-run works without it`);
  }
  const view = joinedView(joined, clock);
  const owner = sweeperOwner(agent);
  const io = joined.spec.ioTimeout;
  const c: Ctx = {
    deps, dir, owner, view, ioMs: io * 1000, acquireMs: (timeoutsFor(io).idRenewal + 2) * 1000, hooks: opts.hooks ?? {},
  };
  const host = { hostId: joined.spec.hostId, name: agent.hostName, generation: joined.lease!.generation };
  const ctx = classifyContext(deps, view, minAge, owner.uuid, opts.recovering);
  const scanOpts = { ioTimeoutMs: c.ioMs, onProgress: opts.onProgress, signal: opts.signal };

  if (opts.dryRun) {
    const names = await listDir(dir);
    const files = await scanDirectory(dir, names, ctx, scanOpts);
    const liveness = view.source + (opts.recovering
      ? `; ${RECOVERING}: leases of its earlier generations are not decided` : '');
    const errors = files.length < names.length ? [stoppedText(files.length, names.length, 0)] : [];
    return report(dir, true, minAge, started, files, { liveness, host, errors });
  }

  if (sweeping.has(agent)) {
    return report(dir, false, minAge, started, [], { status: 'busy', liveness: view.source, host, sweeper: { hostId: host.hostId, name: host.name, thisHost: true } });
  }
  sweeping.add(agent);
  try {
    // Leases of an interrupted sweep (re-adopted after a restart): give them back first.
    if (agent.inquire(owner.uuid).length) {
      const n = await agent.release(owner).catch((e) => { log.warning(`cleanup: releasing leftovers of an earlier sweep: ${errMsg(e)}`); return 0; });
      if (n) log.info(`cleanup: released ${n} lease(s) left by an interrupted sweep`);
    }
    if (opts.signal?.aborted) return report(dir, false, minAge, started, [], { liveness: view.source, host, errors: [stoppedText(0, undefined, 0)] });
    const lockPath = join(dir, SWEEP_LOCK_NAME);
    const lockSpec: LeaseSpec = { lockspace: DISKS_LOCKSPACE, resource: SWEEP_LOCK_NAME, path: lockPath, offset: 0, mode: 'exclusive' };
    await ensureResourceFile(lockPath, DISKS_LOCKSPACE, SWEEP_LOCK_NAME, joined.lease!.geometry ?? geometryFor(config.sectorSize, config.alignSize), leaseFileOwner(config));
    try {
      await agent.acquire(owner, [lockSpec], { timeoutMs: c.acquireMs });
    } catch (e) {
      if (!heldByOther(e)) throw e;
      const l = await readLeader(lockPath, c.ioMs);
      const sweeper = l && l.timestamp && l.ownerId
        ? { hostId: l.ownerId, name: view.host(l.ownerId)?.name || undefined, thisHost: l.ownerId === host.hostId }
        : undefined;
      return report(dir, false, minAge, started, [], { status: 'busy', liveness: view.source, host, sweeper });
    }
    try {
      await c.hooks.locked?.();
      const listed = !opts.signal?.aborted;
      const names = listed ? await listDir(dir) : [];
      const files = await scanDirectory(dir, names, ctx, scanOpts);
      await c.hooks.scanned?.();
      let notDeleted = 0;
      for (let i = 0; i < files.length; i++) {
        const v = files[i];
        if (!v.deletable) continue;
        if (opts.signal?.aborted) {
          // Stopped between files: the one before finished all its steps.
          files[i] = { ...v, deletable: false, action: 'kept', detail: `${v.detail}; not deleted: the sweep was stopped` };
          notDeleted++;
          continue;
        }
        files[i] = v.class === 'leftover' ? await removeLeftover(c, v) : await deleteLease(c, v);
      }
      const stopped = !listed || files.length < names.length || notDeleted > 0;
      const errors = stopped ? [stoppedText(files.length, listed ? names.length : undefined, notDeleted)] : [];
      return report(dir, false, minAge, started, files, { liveness: view.source, host, errors });
    } finally {
      await agent.release(owner, [lockSpec]).catch((e) => log.warning(`cleanup: releasing the sweep lock: ${errMsg(e)}`));
    }
  } finally {
    sweeping.delete(agent);
  }
}
