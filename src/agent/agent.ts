import { DirectFile, FileId, sameFileId } from '../io/directio';
import { FileLeaseStorage } from '../io/file-storage';
import { Clock } from '../lease/clock';
import { SANLK_ERROR } from '../lease/diskio';
import { acquireResource, releaseResource } from '../lease/resource';
import { LeaseStorage } from '../lease/storage';
import { AcquireHint, ResourceToken } from '../lease/token';
import { LeaseAcquireError } from '../lease/paxos';
import { IoBufferPool } from '../lease/iobuf';
import { LeaseError, SANLK } from '../ondisk';
import { Logger } from '../log/logger';
import { LeaseMode, StateStore } from '../state/statestore';
import { LeaseSpec, OwnerRef } from '../control/protocol';
import { FailedOwner, LeaseFailurePolicy } from './failure';
import { currentBootId, JoinState, Lockspace, LockspaceSpec, RenewalReport } from './lockspace';
import { KeyedQueue } from './keyedqueue';

/**
 * The agent's lease bookkeeping: lockspaces this host joined, and for each owner (a domain, a
 * process) the resource leases it holds. Every change is written to the state store before it
 * is acknowledged, so a restarted agent can re-adopt leases instead of releasing them.
 * Operations for one owner run in order; different owners proceed in parallel.
 */

export interface AgentOptions {
  clock: Clock;
  log: Logger;
  store: StateStore;
  hostName: string;
  policy: LeaseFailurePolicy;
  /** default wait for a lockspace join before an acquire gives up */
  joinWaitMs?: number;
  openStorage?: (path: string) => Promise<LeaseStorage>;
  /**
   * Which file a lease path names right now, or undefined when it does not exist. Default: open
   * it read-only (an open revalidates the name on NFS, a stat may answer from the attribute
   * cache) and fstat the fd.
   */
  identifyPath?: (path: string, timeoutMs: number) => Promise<FileId | undefined>;
  /** the daemon's metrics (the core never imports them) */
  observer?: AgentObserver;
}

/** What the agent core reports as it works; every method must be cheap and must not throw. */
export interface AgentObserver {
  renewal?(lockspace: Lockspace, r: RenewalReport): void;
  /** one acquire or release request, with its result code (0 = OK) and duration */
  acquired?(rv: number, seconds: number): void;
  released?(rv: number, seconds: number): void;
}

/** The result code of a failed request (SANLK_ERROR when it carries none). */
function resultCode(e: unknown): number {
  return e instanceof LeaseError ? e.rv : SANLK_ERROR;
}

/** Report a request's outcome to `report` without changing it. */
function observed<T>(p: Promise<T>, report: ((rv: number, seconds: number) => void) | undefined): Promise<T> {
  if (!report) return p;
  const t0 = performance.now();
  p.then(() => report(0, (performance.now() - t0) / 1000), (e) => report(resultCode(e), (performance.now() - t0) / 1000));
  return p;
}

export interface HeldLease {
  spec: Required<Pick<LeaseSpec, 'lockspace' | 'resource' | 'path' | 'offset'>> & { mode: LeaseMode };
  token: ResourceToken;
  /** The file the lease was acquired on (when the storage can tell): its path named it then. */
  file?: FileId;
}

export interface AcquireOptions {
  timeoutMs?: number;
  action?: string;
  /**
   * Called when a lease file vanished under an acquire (a cleanup on another host deleted it
   * while we were opening it): re-create it, as the caller created it before (auto disk leases).
   * Without it such an acquire fails with -2.
   */
  recreate?: (spec: LeaseSpec) => Promise<void>;
  /**
   * Called with the opened lease storage before anything is written to it; throwing refuses the
   * acquire with that error (the cleanup sweeper refuses a file that gained another hard link).
   */
  checkFile?: (storage: LeaseStorage) => void;
}

/**
 * How often one acquire follows a lease file that is deleted or replaced under it before it
 * gives up with -11. Each round means another host deleted the file while we held an fd of it.
 */
export const FILE_REPLACED_RETRIES = 3;

async function identifyByOpen(path: string, timeoutMs: number): Promise<FileId | undefined> {
  let f: DirectFile;
  try {
    f = await DirectFile.open(path, { readOnly: true, timeoutMs });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  await f.close().catch(() => undefined);
  if (!f.fileId) throw new Error(`cannot tell which file ${path} is (no st_ino from the I/O addon)`);
  return f.fileId;
}

interface OwnerState {
  ref: OwnerRef & { name: string };
  leases: Map<string, HeldLease>;
  action?: string;
}

const key = (l: { lockspace: string; resource: string }) => `${l.lockspace}:${l.resource}`;
const toMode = (m: LeaseMode) => (m === 'shared' ? 'SH' : 'EX');

/** Release hints kept (about 1 KiB each). */
const MAX_HINTS = 4096;

export class Agent {
  readonly lockspaces = new Map<string, Lockspace>();
  private readonly owners = new Map<string, OwnerState>();
  private readonly queue = new KeyedQueue();
  /**
   * Lease-area read buffers (1-8 MiB) shared by all acquires, as sanlock reuses its iobufs: a
   * fresh buffer per read made V8 spend about half the agent's CPU on garbage collection
   * (scripts/bench throughput, docs/benchmarks.md).
   */
  private iobufs = new IoBufferPool();
  /**
   * What our last exclusive release of each lease left on disk (path, offset → AcquireHint):
   * the next acquire of it starts its ballot from there, one area read less. Bounded; an entry
   * is used once; a stale one only costs that acquire the read it tried to save.
   */
  private readonly hints = new Map<string, AcquireHint>();
  private readonly openStorage: (path: string) => Promise<LeaseStorage>;
  private readonly identifyPath: (path: string, timeoutMs: number) => Promise<FileId | undefined>;

  constructor(private readonly o: AgentOptions) {
    this.openStorage = o.openStorage ?? ((p) => FileLeaseStorage.open(p));
    this.identifyPath = o.identifyPath ?? identifyByOpen;
  }

  get hostName(): string {
    return this.o.hostName;
  }

  /** Forget the pooled read buffers (acquires in progress keep theirs); see memtrim.ts. */
  dropIoBuffers(): void {
    this.iobufs = new IoBufferPool();
  }

  // ---- lockspaces -----------------------------------------------------------------------------

  addLockspace(spec: Omit<LockspaceSpec, 'hostName'>): Lockspace {
    const existing = this.lockspaces.get(spec.name);
    if (existing) {
      if (existing.spec.hostId !== spec.hostId || existing.spec.path !== spec.path || existing.spec.offset !== spec.offset) {
        throw new LeaseError(SANLK.EEXIST, `lockspace ${spec.name} is already joined as host_id ${existing.spec.hostId} at ${existing.spec.path}:${existing.spec.offset}`);
      }
      return existing;
    }
    const ls = new Lockspace({ ...spec, hostName: this.o.hostName }, this.o.clock, this.o.log, {
      onLost: (l, reason) => this.onLockspaceLost(l, reason),
      previousDelta: (l) => {
        const v = this.o.store.getMeta(`delta:${l.name}`);
        return v ? (JSON.parse(v) as { bootId: string; generation: number }) : undefined;
      },
      onDeltaLease: (l, lease) => this.o.store.setMeta(`delta:${l.name}`, JSON.stringify({ bootId: currentBootId(), generation: lease.generation })),
      onRenewal: (l, r) => this.o.observer?.renewal?.(l, r),
    }, this.openStorage);
    this.lockspaces.set(spec.name, ls);
    this.o.store.saveLockspace({ name: spec.name, hostId: spec.hostId, path: spec.path, offset: spec.offset, generation: 0, ioTimeout: spec.ioTimeout });
    ls.start();
    return ls;
  }

  async removeLockspace(name: string): Promise<void> {
    const ls = this.lockspaces.get(name);
    if (!ls) throw new LeaseError(SANLK.ENOENT, `lockspace ${name} is not joined on this host`);
    const users = [...this.owners.values()].filter((o) => [...o.leases.values()].some((l) => l.spec.lockspace === name));
    if (users.length) {
      throw new LeaseError(SANLK.EBUSY, `lockspace ${name} still has leases of ${users.map((u) => u.ref.name).join(', ')}; release them first`);
    }
    await ls.stop(true);
    this.lockspaces.delete(name);
    this.o.store.removeLockspace(name);
  }

  private lockspaceFor(name: string): Lockspace {
    const ls = this.lockspaces.get(name);
    if (!ls) {
      throw new LeaseError(SANLK.ENOSPC, `lockspace ${name} is not joined on this host (libvirt would say "No space left on device"): ` +
        `add it with lockagent client add_lockspace -s ${name}:HOST_ID:PATH:OFFSET or list it in lockspaces = [...] in lockagent.conf`);
    }
    return ls;
  }

  // ---- owners and resources -------------------------------------------------------------------

  /**
   * Acquire every lease for the owner, all or nothing (like sanlock's acquire of several
   * resources): on the first refusal the leases taken by this call are released again.
   */
  acquire(owner: OwnerRef, specs: LeaseSpec[], opts: AcquireOptions = {}): Promise<HeldLease[]> {
    return observed(this.queue.run(owner.uuid, () => this.acquireNow(owner, specs, opts)), this.o.observer?.acquired);
  }

  private async acquireNow(owner: OwnerRef, specs: LeaseSpec[], opts: AcquireOptions): Promise<HeldLease[]> {
    const st = this.ownerState(owner, opts.action);
    const taken: HeldLease[] = [];
    const fresh: HeldLease[] = [];
    // The owner row is written in the same commit as the first journal entry: every commit is
    // an fsync on the event loop (scripts/bench: 6 → 3 commits per acquire+release).
    let ownerSaved = false;
    try {
      for (const s of specs) {
        const mine = st.leases.get(key(s));
        if (mine) { taken.push(mine); continue; }
        this.checkLocalConflict(owner.uuid, s);
        const h = await this.acquireOne(st, s, opts, ownerSaved);
        ownerSaved = true;
        fresh.push(h);
        taken.push(h);
      }
      if (!ownerSaved) this.saveOwner(st);
      return taken;
    } catch (e) {
      // All or nothing: give back what this call took; leases held before stay held.
      for (const h of fresh) await this.releaseOne(st, h).catch(() => undefined);
      if (st.leases.size === 0 && !this.o.store.leases(owner.uuid).length) this.forgetOwner(owner.uuid);
      throw e;
    }
  }

  /** Two owners on one host must not share an exclusive lease: sanlock refuses with -EEXIST. */
  private checkLocalConflict(uuid: string, s: LeaseSpec): void {
    for (const [u, o] of this.owners) {
      if (u === uuid) continue;
      const h = o.leases.get(key(s));
      if (h && (h.spec.mode === 'exclusive' || (s.mode ?? 'exclusive') === 'exclusive')) {
        throw new LeaseError(SANLK.EEXIST, `${s.path} (${key(s)}) is already leased on this host by ${o.ref.name} (${u})`);
      }
    }
  }

  private async acquireOne(st: OwnerState, s: LeaseSpec, opts: AcquireOptions, ownerSaved = false): Promise<HeldLease> {
    const { timeoutMs } = opts;
    const ls = this.lockspaceFor(s.lockspace);
    const mode: LeaseMode = s.mode ?? 'exclusive';
    if (ls.state !== 'joined') this.o.log.info(`acquire of ${key(s)} for ${st.ref.name} waits for lockspace ${ls.name} to join (${ls.state})`);
    const t0 = performance.now();
    const lease = await ls.waitJoined(timeoutMs ?? this.o.joinWaitMs ?? 120000);
    // Journalled (with the owner row) before the first write to the lease: after a crash,
    // recover() finishes or undoes it.
    const op = this.o.store.transaction(() => {
      if (!ownerSaved) this.saveOwner(st);
      return this.o.store.beginOp({ op: 'acquire', ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode });
    });
    const deadline = timeoutMs ? this.o.clock.nowMs() + timeoutMs : undefined;
    try {
      for (let round = 0; ; round++) {
        const t1 = performance.now();
        const storage = await this.openStorage(s.path);
        const t2 = performance.now();
        // Our last release's view of the lease, for the first round only (see AcquireHint).
        const hintKey = `${s.path}\0${s.offset}`;
        const hint = round === 0 ? this.hints.get(hintKey) : undefined;
        this.hints.delete(hintKey);
        try {
          opts.checkFile?.(storage);
          const token = await acquireResource(
            { storage, offset: s.offset, spaceName: s.lockspace, resourceName: s.resource },
            { hostId: lease.hostId, generation: lease.generation, ioTimeout: lease.ioTimeout },
            { clock: this.o.clock, liveness: ls.liveness(), lver: s.lver, mode: toMode(mode), cancel: deadline ? { deadlineMs: deadline } : undefined, iobufs: this.iobufs, hint },
          );
          // Holding it: does the path still name the file we leased? A host deleting lease
          // files (lockagent cleanup, virt-sanlock-cleanup) unlinks only while it holds the
          // lease, but our fd may be older than that unlink; then we hold a lease on a file
          // nobody else can see while the path names a new one. Once this check passes, the
          // name cannot change without the lease, which is ours now.
          let now: 'same' | 'missing' | 'other';
          try {
            now = storage.fileId ? await this.checkLeasedFile(s.path, storage.fileId, lease.ioTimeout) : 'same';
          } catch (e) {
            await releaseResource(token, { clock: this.o.clock }).catch(() => undefined);
            throw new LeaseError(SANLK.EIO, `cannot check that ${s.path} is still the file we leased (released it again): ${(e as Error).message}`);
          }
          if (now !== 'same') {
            await releaseResource(token, { clock: this.o.clock }).catch((e: unknown) =>
              this.o.log.warning(`releasing ${key(s)} on the replaced file failed (the file is unreachable by its name): ${(e as Error).message}`));
            const what = now === 'missing' ? 'was deleted' : 'was replaced by a new file';
            this.o.log.warning(`acquire of ${key(s)} for ${st.ref.name}: ${s.path} ${what} while we were acquiring its lease; ` +
              `released the lease on the old file${round < FILE_REPLACED_RETRIES ? ', trying again' : ''}`);
            if (round >= FILE_REPLACED_RETRIES) {
              throw new LeaseError(SANLK.EAGAIN, `the lease file was deleted or replaced ${round + 1} times while acquiring it; try again later`);
            }
            if (now === 'missing') {
              if (!opts.recreate) throw new LeaseError(SANLK.ENOENT, 'the lease file was deleted (by a cleanup on another host?) while acquiring it');
              await opts.recreate(s);
            }
            continue;
          }
          const held: HeldLease = { spec: { lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode }, token, file: storage.fileId };
          this.o.store.transaction(() => {
            this.o.store.recordLease({ ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode, lver: token.lver, generation: lease.generation });
            this.o.store.endOp(op);
          });
          st.leases.set(key(s), held);
          this.o.log.info(`acquired ${mode} lease ${key(s)} (${s.path}:${s.offset}) lver ${token.lver} for ${st.ref.name}`);
          const ms = (x: number) => x.toFixed(1);
          this.o.log.debug(`acquire ${key(s)}: join+journal ${ms(t1 - t0)} ms, open ${ms(t2 - t1)}, paxos+check+record ${ms(performance.now() - t2)}${hint ? ' (from release hint)' : ''}`);
          return held;
        } finally {
          await closeStorage(storage);
        }
      }
    } catch (e) {
      this.o.store.endOp(op);
      throw this.explainAcquireFailure(e, s);
    }
  }

  /**
   * The lease area at the path cannot be the one we acquired: not a leader of this resource, or
   * a lower lease version than ours (lver never goes back on one area). This catches a file
   * re-created under the same inode number, which (dev, ino) alone cannot: we keep no fd while
   * holding, so a deleted file's inode number may be reused at once. I/O errors propagate.
   */

  /**
   * 'same' when `path` names the file `leased` (st_dev, st_ino), else 'missing' or 'other'.
   * Sound because our fd of the leased file is still open: its inode number cannot be reused.
   */
  private async checkLeasedFile(path: string, leased: FileId, ioTimeout: number): Promise<'same' | 'missing' | 'other'> {
    const now = await this.identifyPath(path, Math.max(1000, ioTimeout * 1000));
    if (!now) return 'missing';
    return sameFileId(now, leased) ? 'same' : 'other';
  }

  /** Name the disk and the holder; contention is expected, so it is logged at info. */
  private explainAcquireFailure(e: unknown, s: LeaseSpec): Error {
    if (!(e instanceof LeaseError)) return e as Error;
    const h = e instanceof LeaseAcquireError ? e.holder : undefined;
    // The holder stays attached (LeaseAcquireError.holder): a stale resume names it in status.
    if (h) {
      const ago = h.lastRenewalAgo !== undefined ? `, last renewal ${h.lastRenewalAgo} s ago` : '';
      const msg = `${s.disk ? `disk ${s.disk}` : `lease ${s.path}`} is leased by host ${h.hostId}${h.hostName ? ` (node ${h.hostName})` : ''}${ago} [${key(s)}, sanlock ${e.rv}]`;
      this.o.log.info(`acquire refused: ${msg}`);
      return new LeaseAcquireError(e.rv, msg, { holder: h });
    }
    if (e.rv === SANLK.ACQUIRE_LVER) {
      // The leader names the last owner even after it released (sanlock keeps owner_id).
      const l = e instanceof LeaseAcquireError ? e.leader : undefined;
      const last = l?.ownerId ? { hostId: l.ownerId, generation: l.ownerGeneration, lver: l.lver, hostName: this.hostNameOf(s.lockspace, l.ownerId) } : undefined;
      const who = last ? `host ${last.hostId}${last.hostName ? ` (node ${last.hostName})` : ''}` : 'another host';
      return new LeaseAcquireError(e.rv, `${s.disk ? `disk ${s.disk}` : `lease ${s.path}`}: the lease changed hands since it was released here (${e.message}; last held by ${who}); ` +
        'the domain must not resume on stale data', { holder: last });
    }
    this.o.log.info(`acquire of ${key(s)} failed: ${e.message}`);
    return new LeaseError(e.rv, `${s.path} [${key(s)}]: ${e.message}`);
  }

  /** A host's name as its delta lease in the lockspace says, when we have seen it. */
  private hostNameOf(lockspace: string, hostId: number): string | undefined {
    try {
      return this.lockspaces.get(lockspace)?.liveness().snapshot(hostId)?.ownerName || undefined;
    } catch {
      return undefined; // not joined
    }
  }

  release(owner: OwnerRef, specs?: LeaseSpec[], opts: { keepRecord?: boolean } = {}): Promise<number> {
    return observed(this.releaseNow(owner, specs, opts), this.o.observer?.released);
  }

  private releaseNow(owner: OwnerRef, specs: LeaseSpec[] | undefined, opts: { keepRecord?: boolean }): Promise<number> {
    return this.queue.run(owner.uuid, async () => {
      const st = this.owners.get(owner.uuid);
      if (!st) return 0;
      const which = specs ? specs.map((s) => st.leases.get(key(s))).filter((h): h is HeldLease => !!h) : [...st.leases.values()];
      let n = 0;
      let firstErr: Error | undefined;
      for (const h of which) {
        try {
          await this.releaseOne(st, h, opts.keepRecord, !opts.keepRecord);
          n++;
        } catch (e) {
          firstErr ??= e as Error;
        }
      }
      if (!opts.keepRecord && st.leases.size === 0 && this.owners.get(owner.uuid) === st) this.forgetOwner(owner.uuid);
      if (firstErr) throw firstErr;
      return n;
    });
  }

  /**
   * Release one lease. Not journalled: until the final commit the lease row still says held, so
   * a crash in between is recovered like any held lease (re-adopted or taken and released).
   * With `forgetIfEmpty`, an owner left without leases is removed in the same commit.
   */
  private async releaseOne(st: OwnerState, h: HeldLease, keepRecord = false, forgetIfEmpty = false): Promise<void> {
    const s = h.spec;
    let storage: LeaseStorage | undefined;
    try {
      storage = await this.openStorage(s.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      // Deleted while we held it (by hand: lease-respecting cleanups need the lease): the lease
      // on that file is unreachable by name and stays as it is.
      this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${s.path} no longer exists; the lease on the deleted file is left as it is`);
    }
    try {
      if (!storage) {
        // nothing to write
      } else if (h.file && storage.fileId && !sameFileId(h.file, storage.fileId)) {
        // Never write our dblock or leader into a different file: our ballot values would be
        // a vote nobody cast in that file's paxos.
        this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${s.path} is no longer the file we leased (deleted and re-created); ` +
          'the new file is left alone, the lease on the old one stays as it is');
      } else {
        h.token.res.storage = storage;
        const hint = await releaseResource(h.token, { clock: this.o.clock });
        if (hint) this.rememberHint(`${s.path}\0${s.offset}`, hint);
        this.o.log.info(`released ${s.mode} lease ${key(s)} of ${st.ref.name}`);
      }
    } catch (e) {
      const rv = (e as LeaseError).rv;
      if (rv <= SANLK.LEADER_MAGIC && rv >= SANLK.LEADER_CHECKSUM) {
        // releaseResource read the leader before writing anything: not this resource's lease
        // area any more (re-created or re-initialized under the same inode number, as ext4
        // reuses them): the new file is left alone.
        this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${s.path} no longer holds the lease area we acquired (${(e as Error).message}); left alone`);
      } else {
        // -250/-251: someone else holds it now (or a lower version: re-initialized); nothing
        // of ours is left to release.
        if (rv !== SANLK.RELEASE_LVER && rv !== SANLK.RELEASE_OWNER) throw e;
        this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${(e as Error).message}`);
      }
    } finally {
      if (storage) await closeStorage(storage);
    }
    st.leases.delete(key(s));
    const forget = forgetIfEmpty && st.leases.size === 0 && this.owners.get(st.ref.uuid) === st;
    this.o.store.transaction(() => {
      if (keepRecord) this.o.store.markLeaseReleased(st.ref.uuid, s.lockspace, s.resource);
      else this.o.store.forgetLease(st.ref.uuid, s.lockspace, s.resource);
      if (forget) this.o.store.removeOwner(st.ref.uuid);
    });
    if (forget) this.owners.delete(st.ref.uuid);
  }

  private rememberHint(k: string, hint: AcquireHint): void {
    this.hints.delete(k);
    if (this.hints.size >= MAX_HINTS) this.hints.delete(this.hints.keys().next().value as string);
    this.hints.set(k, hint);
  }

  inquire(uuid: string): HeldLease[] {
    return [...(this.owners.get(uuid)?.leases.values() ?? [])];
  }

  ownersList(): Array<{ ref: OwnerRef & { name: string }; leases: HeldLease[] }> {
    return [...this.owners.values()].map((o) => ({ ref: o.ref, leases: [...o.leases.values()] }));
  }

  private ownerState(owner: OwnerRef, action?: string): OwnerState {
    let st = this.owners.get(owner.uuid);
    const name = owner.name ?? st?.ref.name ?? owner.uuid;
    if (!st) {
      st = { ref: { ...owner, name }, leases: new Map(), action };
      this.owners.set(owner.uuid, st);
    } else {
      st.ref = { ...st.ref, ...owner, name, pid: owner.pid ?? st.ref.pid };
      if (action) st.action = action;
    }
    return st;
  }

  /** The owner's row (written by the caller, with the journal entry when there is one). */
  private saveOwner(st: OwnerState): void {
    this.o.store.upsertOwner({ uuid: st.ref.uuid, name: st.ref.name, pid: st.ref.pid ?? null, state: 'active' });
  }

  private forgetOwner(uuid: string): void {
    this.owners.delete(uuid);
    this.o.store.removeOwner(uuid);
  }

  setOwnerPid(uuid: string, pid: number): void {
    const st = this.owners.get(uuid);
    if (st) st.ref.pid = pid;
    this.o.store.upsertOwner({ uuid, name: st?.ref.name ?? uuid, pid, state: 'active' });
  }

  // ---- lease loss ------------------------------------------------------------------------------

  private onLockspaceLost(ls: Lockspace, reason: string): void {
    const stopping: Array<Promise<void>> = [];
    for (const st of this.owners.values()) {
      const lost = [...st.leases.values()].filter((h) => h.spec.lockspace === ls.name);
      if (!lost.length) continue;
      // Those leases are gone from our point of view: other hosts may take them after host_dead.
      for (const h of lost) st.leases.delete(key(h.spec));
      const failed: FailedOwner = { uuid: st.ref.uuid, name: st.ref.name, pid: st.ref.pid, reason: `lockspace ${ls.name} lost: ${reason}`, action: st.action };
      stopping.push(this.o.policy.onLeaseFailure(failed));
    }
    // Until every owner is stopped, the lockspace keeps the host's watchdog test armed at its
    // last renewal (watchdogSources): if the actions hang, wdmd resets the host.
    if (stopping.length && ls.lease) {
      const entry = { lockspace: ls.name, lastSuccess: ls.lease.lastSuccess, ioTimeout: ls.spec.ioTimeout };
      this.stoppingOwners.add(entry);
      void Promise.allSettled(stopping).then(() => this.stoppingOwners.delete(entry));
    }
  }

  private readonly stoppingOwners = new Set<{ lockspace: string; lastSuccess: number; ioTimeout: number }>();

  /**
   * What must keep the host alive (the wdmd test, wdmd.ts): every joined lockspace's last
   * renewal, as sanlock arms one test per lockspace, and lost lockspaces whose owners are still
   * being stopped.
   */
  watchdogSources(): Array<{ lockspace: string; lastSuccess: number; ioTimeout: number }> {
    const out = [...this.stoppingOwners];
    for (const ls of this.lockspaces.values()) {
      if (ls.state === 'joined' && ls.lease) out.push({ lockspace: ls.name, lastSuccess: ls.lease.lastSuccess, ioTimeout: ls.spec.ioTimeout });
    }
    return out;
  }

  // ---- restart recovery ----------------------------------------------------------------------

  /**
   * After a restart (kill -9 included): owners that still exist keep their leases — re-acquired
   * under our new generation, which sanlock lets an older generation of the same host_id do at
   * once, so no other host can slip in. Leases of owners that are gone are released. Journal
   * entries of operations cut short are finished the same way.
   */
  async recover(ownerExists: (o: { uuid: string; name: string; pid: number | null }) => Promise<boolean>): Promise<{ adopted: number; released: number }> {
    let adopted = 0;
    let released = 0;
    const pending = this.o.store.pendingOps();
    for (const o of this.o.store.owners()) {
      const rows = this.o.store.leases(o.uuid);
      const exists = await ownerExists(o).catch(() => true);
      const ref = { uuid: o.uuid, name: o.name, pid: o.pid ?? undefined };
      const held = rows.filter((r) => r.held);
      const maybe = pending.filter((p) => p.ownerUuid === o.uuid && p.op === 'acquire' && !rows.some((r) => r.resource === p.resource && r.lockspace === p.lockspace));
      const specs = [...held, ...maybe].map((r) => ({ lockspace: r.lockspace, resource: r.resource, path: r.path, offset: r.offset, mode: r.mode }));
      if (exists && o.state === 'active') {
        try {
          await this.acquire(ref, specs);
          adopted += specs.length;
          this.o.log.info(`re-adopted ${specs.length} lease(s) of ${o.name} after restart`);
        } catch (e) {
          this.o.log.error(`could not re-adopt the leases of ${o.name} after restart: ${(e as Error).message}`);
          void this.o.policy.onLeaseFailure({ uuid: o.uuid, name: o.name, pid: o.pid ?? undefined, reason: `its lease could not be re-adopted after an agent restart: ${(e as Error).message}` });
        }
      } else if (!exists) {
        // Take and release: the leases are ours (older generation), so this is immediate.
        try {
          if (specs.length) await this.acquire(ref, specs);
          released += await this.release(ref);
        } catch (e) {
          this.o.log.warning(`could not release the leases of vanished owner ${o.name}: ${(e as Error).message}`);
        }
        this.forgetOwner(o.uuid);
      }
    }
    for (const p of pending) this.o.store.endOp(p.id);
    return { adopted, released };
  }

  // ---- status --------------------------------------------------------------------------------

  lockspaceStatus(): Array<{ name: string; hostId: number; path: string; offset: number; state: JoinState; generation?: number; ioTimeout: number; renewedAgo?: number; lastError?: string; ioTimeoutMismatches: Array<{ hostId: number; ownerName: string; ioTimeout: number }> }> {
    return [...this.lockspaces.values()].map((ls) => ({
      name: ls.name, hostId: ls.spec.hostId, path: ls.spec.path, offset: ls.spec.offset, state: ls.state,
      generation: ls.lease?.generation, ioTimeout: ls.spec.ioTimeout, renewedAgo: ls.secondsSinceRenewal(),
      lastError: ls.lastError, ioTimeoutMismatches: ls.ioTimeoutMismatches(),
    }));
  }

  async shutdown(releaseAll: boolean): Promise<void> {
    if (releaseAll) {
      for (const o of [...this.owners.values()]) await this.release(o.ref).catch(() => undefined);
    }
    for (const ls of this.lockspaces.values()) {
      const inUse = [...this.owners.values()].some((o) => [...o.leases.values()].some((l) => l.spec.lockspace === ls.name));
      // Never free the host_id while leases of it are held: others would treat them as free.
      await ls.stop(!inUse);
    }
  }
}

async function closeStorage(s: LeaseStorage): Promise<void> {
  const c = (s as { close?: () => Promise<void> }).close;
  if (c) await c.call(s).catch(() => undefined);
}
