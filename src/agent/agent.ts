import { allocIoBuffer, canReadFileHead, DirectFile, FileId, readFileHead, sameFileId } from '../io/directio';
import { FileLeaseStorage } from '../io/file-storage';
import { Clock } from '../lease/clock';
import { readPaxosLeader } from '../lease/paxos';
import { acquireResource, releaseResource } from '../lease/resource';
import { LeaseStorage } from '../lease/storage';
import { AcquireHint, ResourceToken } from '../lease/token';
import { LeaseAcquireError } from '../lease/paxos';
import { IoBufferPool } from '../lease/iobuf';
import { heldByAnotherHost, hostIdOutOfRange, LeaderRecord, LeaseError, MAX_IO_TIMEOUT, namesEqual, SANLK, verifyPaxosLeader } from '../ondisk';
import { Logger } from '../log/logger';
import { DeltaLease } from '../lease/delta';
import { JournalRow, LeaseRow, OwnerRow, StateStore, StoreHealth } from '../state/statestore';
import { LeaseMode, LeaseSpec, OwnerRef, StorageOpener } from './types';
import { FailedOwner, killDeadline, LeaseFailurePolicy } from './failure';
import { currentBootId, JoinState, Lockspace, LockspaceSpec, RenewalReport } from './lockspace';
import { machineIdentity } from './hostname';
import { Housekeeping } from './housekeeping';
import { KeyedQueue } from './keyedqueue';
import { RenewalRecord } from './renewals';
import { identify, isSame, ProcessId, stillThere } from './process';

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
  /** This machine's identity (hostname.ts machineIdentity, the default): tells our records from a clone's copy. */
  machineIdentity?: () => string | undefined;
  /** default wait for a lockspace join before an acquire gives up */
  joinWaitMs?: number;
  openStorage?: StorageOpener;
  /**
   * Which file a lease path names right now, or undefined when it does not exist. Default: open
   * it read-only (an open revalidates the name on NFS, a stat may answer from the attribute
   * cache) and fstat the fd.
   */
  identifyPath?: (path: string, timeoutMs: number) => Promise<FileId | undefined>;
  /** the daemon's metrics (the core never imports them) */
  observer?: AgentObserver;
  /** The fencing guard's view of our leases (src/agent/guard.ts); kept up to date when owners change. */
  fence?: AgentFence;
  /** Host slots the first read of an acquire expects (config max_hosts; ResourceLocation.numHosts). */
  numHosts?: number;
  /** What runs after a reply, and when (tests hold it back); default a Housekeeping of its own. */
  housekeeping?: Housekeeping;
}

/** What the agent tells the fencing guard client (src/agent/guard.ts GuardClient). */
export interface AgentFence {
  /** Throws when this owner may not acquire (leases in these lockspaces) now: they could not be fenced. */
  admit(owner: OwnerRef, lockspaces: Iterable<string>): void;
  /** The owners or pids holding leases changed. */
  changed(): void;
  /** A lockspace renewed its delta lease (or joined): its deadline moves. */
  renewed(ls: Lockspace): void;
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
  return e instanceof LeaseError ? e.rv : SANLK.ERROR;
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
  /**
   * That file, kept open from the acquire to the release: the release writes to the inode we
   * acquired (never to a file re-created under the name since) without a reopen or a check.
   * Undefined once closed (a failed release): the next release opens the path and checks it.
   */
  storage?: LeaseStorage;
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
  /**
   * The owner's pid is the process using the leases (a client that registered itself): when it
   * exits, its leases are released, as sanlock does when a registered process goes away.
   * Domains leave this to libvirt's lifecycle events.
   */
  watchPid?: boolean;
}

export interface ReleaseOptions {
  /** keep the lease rows (their lver) for a resume's check: a pause, not a stop */
  keepRecord?: boolean;
  /**
   * The caller rewrote the leader it holds on purpose (the sweeper pins the lease of a file it
   * deleted): the release finding it changed (-251) is the expected outcome, logged at debug.
   */
  leaderPinned?: boolean;
}

/** How often watched owner processes are checked (one read of /proc/PID/stat each). */
const OWNER_WATCH_MS = 1000;

/**
 * How often one acquire follows a lease file that is deleted or replaced under it before it
 * gives up with -11. Each round means another host deleted the file while we held an fd of it.
 */
export const FILE_REPLACED_RETRIES = 3;

/** An acquire or release of a lease on its way on disk here, by an owner; `done` when it ends (see Agent.busy). */
interface LocalWork {
  uuid: string;
  name: string;
  op: 'acquire' | 'release';
  done: Promise<void>;
}

async function identifyByOpen(path: string, timeoutMs: number): Promise<FileId | undefined> {
  let f: DirectFile;
  try {
    f = await DirectFile.open(path, { readOnly: true, timeoutMs });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  // Not awaited: the close is one more hand-off to an I/O thread the acquire need not wait for.
  void f.close().catch(() => undefined);
  if (!f.fileId) throw new Error(`cannot tell which file ${path} is (no st_ino from the I/O addon)`);
  return f.fileId;
}

/** What the state database keeps of our delta lease per lockspace (meta `delta:<name>`). */
interface DeltaRecord {
  bootId: string;
  generation: number;
  hostId?: number;
  /** machine identity (hostname.ts) of the writer: a clone's copy of the database is not ours */
  identity?: string;
  /**
   * Generations up to this one of our host_id were another host's (a dead host's slot taken
   * with host_id = auto, or one a removed host left): their leases are that host's, free to
   * everyone now, and not ours to take back at the start-up reconcile.
   */
  foreignUpTo?: number;
}

/** A lease the start-up reconcile checks on disk (see Agent.reconcile). */
export interface LeaseCandidate {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
}

/**
 * What runs now and needs which lease (key "lockspace:resource"), from outside the agent core
 * (the libvirt integration); undefined when it cannot tell.
 */
export type RunningLeaseOwners = () => Promise<Map<string, { uuid: string; name: string; action?: string }> | undefined>;

/** Placeholder owners of leases found on disk that no known owner holds (Agent.reconcile). */
const ORPHAN_PREFIX = 'unknown-owner:';
const isOrphan = (uuid: string) => uuid.startsWith(ORPHAN_PREFIX);
const orphanRef = (c: LeaseCandidate) => ({ uuid: `${ORPHAN_PREFIX}${c.lockspace}:${c.resource}`, name: `unknown owner of ${c.resource}` });

/**
 * How many leases of one request (a domain's disks) are acquired, released or created at once:
 * each is a file descriptor with its own I/O thread and a pooled area buffer while it runs.
 */
export const ACQUIRE_CONCURRENCY = 8;
/**
 * Acquires run side by side beyond each request's first, shared by all requests: 125 requests
 * of 8 leases each (a host starting its domains) must not start 1,000 acquires at once, each
 * with an area buffer and an I/O thread (the daemon's peak RSS reached 258 MiB). A request that
 * finds none spare takes its leases one after another; its first never waits for a slot.
 */
export const SPARE_ACQUIRES = 16;
/**
 * Lease-area reads (1-8 MiB buffers) in flight or being decoded at once, whatever the number of
 * requests: it bounds the memory of a burst (125 requests of 8 leases took the daemon to 145 MiB
 * when each acquire kept an area buffer). A read holds its buffer only until its bytes are
 * decoded (OpBuffers), so acquires between reads (writing, checking the file) hold none, and 4
 * serve 8 clients as 8 did when a buffer was held for the whole acquire (docs/benchmarks.md).
 */
export const AREA_USERS = 4;

export async function forEachLimited<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

interface OwnerState {
  ref: OwnerRef & { name: string };
  leases: Map<string, HeldLease>;
  action?: string;
  /** the process ref.pid named at registration */
  process?: ProcessId;
  /** release the leases when that process exits (AcquireOptions.watchPid) */
  watched?: boolean;
  /** its exit was seen; the release is under way */
  exiting?: boolean;
}

const key = (l: { lockspace: string; resource: string }) => `${l.lockspace}:${l.resource}`;
const toMode = (m: LeaseMode) => (m === 'shared' ? 'SH' : 'EX');

/** Release hints kept (about 1 KiB each). */
const MAX_HINTS = 4096;

export class Agent {
  readonly lockspaces = new Map<string, Lockspace>();
  private identity?: { value: string | undefined };
  private readonly owners = new Map<string, OwnerState>();
  private readonly queue = new KeyedQueue();
  /**
   * What a reply need not wait for (log lines, a release's record and close): run once the reply
   * is on its way, at a quiet moment (Housekeeping). Before the reply they were ~0.3 ms of a
   * release's 1.2 ms; right after it, in front of the client's next request.
   */
  private readonly housekeeping: Housekeeping;
  /**
   * Lease-area read buffers (1-8 MiB) shared by all acquires, as sanlock reuses its iobufs: a
   * fresh buffer per read made V8 spend about half the agent's CPU on garbage collection
   * (scripts/bench throughput, docs/benchmarks.md). At most AREA_USERS reads hold one at a
   * time; the others wait their turn.
   */
  // Aligned buffers the addon reads lease areas into in place (allocIoBuffer).
  private readonly iobufs = new IoBufferPool(4, allocIoBuffer, AREA_USERS);
  /**
   * What our last exclusive release of each lease left on disk (path, offset → AcquireHint):
   * the next acquire of it starts its ballot from there, one area read less. Bounded; an entry
   * is used once; a stale one only costs that acquire the read it tried to save.
   */
  private readonly hints = new Map<string, AcquireHint>();
  /**
   * Leases whose acquire or release is on its way on disk, by key, with the owner doing it. One
   * host_id runs one ballot per lease at a time: two owners here acquiring the same lease would
   * both win it (the same dblock, the same owner on disk), and a release under way would free it
   * under a new holder. Another owner's acquire waits for it to end, up to its own timeout
   * (waitBusy: then EBUSY or EAGAIN, which sanlock's acquire_token answers at once for a
   * resource being added or removed).
   */
  private readonly busy = new Map<string, LocalWork>();
  private readonly openStorage: StorageOpener;
  private readonly identifyPath: (path: string, timeoutMs: number) => Promise<FileId | undefined>;
  private ownerWatch?: NodeJS.Timeout;

  constructor(private readonly o: AgentOptions) {
    this.housekeeping = o.housekeeping ?? new Housekeeping({ onError: (e) => this.o.log.error(`after a reply: ${(e as Error).stack ?? e}`) });
    // Every request in flight (an acquire's, a release's, a renewal's) is a chance for it.
    const onSubmit = () => this.housekeeping.duringIo();
    this.openStorage = o.openStorage ?? ((p, so) => FileLeaseStorage.open(p, { ...so, onSubmit }));
    this.identifyPath = o.identifyPath ?? identifyByOpen;
  }

  get hostName(): string {
    return this.o.hostName;
  }

  /** Forget the pooled read buffers (acquires in progress keep theirs); see memtrim.ts. */
  dropIoBuffers(): void {
    this.iobufs.drop();
  }

  // ---- lockspaces -----------------------------------------------------------------------------

  addLockspace(given: Omit<LockspaceSpec, 'hostName' | 'hostId' | 'autoHostId'> & { hostId: number | 'auto' }): Lockspace {
    const auto = given.hostId === 'auto';
    const spec = { ...given, hostId: given.hostId === 'auto' ? 0 : given.hostId, autoHostId: auto || undefined };
    // The control socket is an API: values the config file would refuse are refused here too,
    // before anything is joined (an absurd host_id would otherwise be retried for ever).
    const outOfRange = auto ? undefined : hostIdOutOfRange(spec.hostId);
    if (outOfRange) throw new LeaseError(SANLK.ADDLS_INVALID_HOSTID, `${outOfRange}: give lockspace ${spec.name} this host's host_id`);
    if (!Number.isInteger(spec.ioTimeout) || spec.ioTimeout < 1 || spec.ioTimeout > MAX_IO_TIMEOUT) {
      throw new LeaseError(SANLK.EINVAL, `io_timeout ${spec.ioTimeout} is outside 1..${MAX_IO_TIMEOUT} seconds (it is stored in one byte on disk); use this host's io_timeout, e.g. 10`);
    }
    const existing = this.lockspaces.get(spec.name);
    if (existing) {
      if ((auto ? !existing.spec.autoHostId : existing.spec.hostId !== spec.hostId) || existing.spec.path !== spec.path || existing.spec.offset !== spec.offset) {
        throw new LeaseError(SANLK.EEXIST, `lockspace ${spec.name} is already joined as host_id ${existing.spec.hostId} at ${existing.spec.path}:${existing.spec.offset}`);
      }
      return existing;
    }
    const ls = new Lockspace({ ...spec, hostName: this.o.hostName }, this.o.clock, this.o.log, {
      onLost: (l, reason) => this.onLockspaceLost(l, reason),
      previousDelta: (l) => {
        const r = this.deltaRecord(l.name);
        if (!r) return undefined;
        const here = this.machineIdentity();
        return { bootId: r.bootId, generation: r.generation, hostId: r.hostId, sameMachine: here !== undefined && r.identity === here };
      },
      onRenewed: (l) => this.o.fence?.renewed(l),
      // The host_id is kept too: with host_id = auto it is how a restart finds its slot again.
      // And the machine's identity: a clone's copy of the database must not pass for our record;
      // and the generations another host held in this slot (see foreignUpTo), carried on.
      onDeltaLease: (l, lease) => {
        const rec: DeltaRecord = { bootId: currentBootId(), generation: lease.generation, hostId: lease.hostId, identity: this.machineIdentity() };
        const foreign = this.foreignUpTo(l.name, lease);
        if (foreign) rec.foreignUpTo = foreign;
        this.o.store.write(() => this.o.store.setMeta(`delta:${l.name}`, JSON.stringify(rec)));
      },
      onRenewal: (l, r) => this.o.observer?.renewal?.(l, r),
    }, this.openStorage);
    this.lockspaces.set(spec.name, ls);
    this.o.store.write(() => this.o.store.saveLockspace({ name: spec.name, hostId: spec.hostId, path: spec.path, offset: spec.offset, generation: 0, ioTimeout: spec.ioTimeout }));
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
    this.o.store.write(() => this.o.store.removeLockspace(name));
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
   * resources), up to ACQUIRE_CONCURRENCY at once: on the first refusal no more are started,
   * and once those under way have ended the leases taken by this call are released again.
   */
  acquire(owner: OwnerRef, specs: LeaseSpec[], opts: AcquireOptions = {}): Promise<HeldLease[]> {
    // One deadline for the whole request, counted from here: the owner's queue, waits, joins and
    // ballots share it.
    const waitUntil = opts.timeoutMs ? this.o.clock.nowMs() + opts.timeoutMs : undefined;
    return observed(this.queue.run(owner.uuid, () => this.acquireNow(owner, specs, opts, waitUntil)), this.o.observer?.acquired);
  }

  private async acquireNow(owner: OwnerRef, specs: LeaseSpec[], opts: AcquireOptions, waitUntil: number | undefined): Promise<HeldLease[]> {
    // One lease named twice is taken once; in two modes it is a contradiction (sanlock refuses any
    // lease named twice, EEXIST from its second token): refused before anything changes.
    const modes = new Map<string, LeaseMode>();
    for (const s of specs) {
      const m = modes.get(key(s));
      const mode = s.mode ?? 'exclusive';
      if (m !== undefined && m !== mode) {
        throw new LeaseError(SANLK.EINVAL, `resource ${key(s)} is named twice in one request, ${m} and ${mode}: name it once, in the mode wanted`);
      }
      modes.set(key(s), mode);
    }
    this.o.fence?.admit(owner, specs.map((s) => s.lockspace));
    const proc = owner.pid !== undefined ? this.registeredProcess(owner.pid, this.owners.get(owner.uuid)?.process) : undefined;
    const st = this.ownerState(owner, opts.action);
    if (proc) {
      st.process = proc;
      if (opts.watchPid) st.watched = true;
      if (st.watched) this.watchOwners();
    }
    const taken: HeldLease[] = new Array<HeldLease>(specs.length);
    const fresh: HeldLease[] = [];
    // Ended once this call is over, its rollback included: a waiting owner then sees the outcome.
    let done: Array<() => void> = [];
    try {
      const first = new Map<string, number>();
      const todo: Array<{ i: number; s: LeaseSpec }> = [];
      const left = () => (waitUntil === undefined ? undefined : Math.max(1, waitUntil - this.o.clock.nowMs()));
      // No await unless one is busy: the check below and the marking must see the same state.
      for (let b = this.otherBusy(owner.uuid, specs); b; b = this.otherBusy(owner.uuid, specs)) await this.waitBusy(b, waitUntil);
      for (const [i, s] of specs.entries()) {
        if (first.has(key(s))) continue; // named twice (in one mode: checked first): the same lease, filled in below
        first.set(key(s), i);
        const mine = st.leases.get(key(s)) ?? this.takeFromOrphan(st, s);
        if (mine) { taken[i] = mine; continue; }
        const shared = this.localHolder(owner.uuid, s);
        if (shared) {
          // A resume's version check holds for a shared lease joined here too: the one held here
          // now is not the one it had if another host held the lease in between.
          if (s.lver !== undefined && s.lver !== 0 && s.lver !== shared.token.lver) {
            throw this.explainAcquireFailure(new LeaseAcquireError(SANLK.ACQUIRE_LVER,
              `resource ${key(s)} is at lease version ${shared.token.lver} here, not the requested ${s.lver}: another host held it since`, { leader: shared.token.leader }), s);
          }
          const h = this.joinShared(st, shared);
          fresh.push(h);
          taken[i] = h;
          continue;
        }
        todo.push({ i, s });
      }
      // Before the next await: another owner here wanting one of them waits until it is done.
      done = todo.map(({ s }) => this.markBusy(s, owner.uuid, owner.name ?? owner.uuid, 'acquire'));
      // The leases of one request are taken side by side (each has its own file descriptor and
      // I/O thread): a domain with 64 disks waits for the slowest few, not for the sum of all.
      let refused: { e: unknown } | undefined;
      const extra = this.takeSpareAcquires(Math.min(ACQUIRE_CONCURRENCY, todo.length) - 1);
      await forEachLimited(todo, 1 + extra, async ({ i, s }) => {
        if (refused) return; // all or nothing: once one is refused, start no more
        try {
          const h = await this.acquireOne(st, s, { ...opts, timeoutMs: left() });
          fresh.push(h);
          taken[i] = h;
        } catch (e) {
          refused ??= { e };
        }
      }).finally(() => { this.spareAcquires += extra; });
      if (refused) throw refused.e;
      for (const [i, s] of specs.entries()) taken[i] ??= taken[first.get(key(s))!];
      // With a fresh lease the owner row went in with its journal entry.
      if (!todo.length) this.saveOwner(st);
      // Before the caller hears "acquired": the guard knows the owner's pid from now on.
      this.o.fence?.changed();
      return taken;
    } catch (e) {
      // All or nothing: give back what this call took; leases held before stay held.
      await forEachLimited(fresh, ACQUIRE_CONCURRENCY, (h) => this.releaseOne(st, h).catch(() => undefined));
      if (st.leases.size === 0 && !this.knownRows(owner.uuid).length) this.forgetOwner(owner.uuid);
      // A sync while they were held may have given the guard this owner's pid.
      if (fresh.length) this.o.fence?.changed();
      throw e;
    } finally {
      for (const d of done) d();
    }
  }

  /**
   * The process a registering owner names: it must exist, and be neither init nor the agent
   * (their death is not an owner's exit, and signalling them on a lease failure would take the
   * host or the agent down). A pid still naming the process registered before keeps its identity.
   */
  private registeredProcess(pid: number, before?: ProcessId): ProcessId {
    if (pid <= 1 || pid === process.pid) {
      throw new LeaseError(SANLK.EINVAL, `pid ${pid} cannot own leases: it is ${pid === process.pid ? 'the agent itself' : pid === 1 ? 'init' : 'not a process id'}; ` +
        'pass the pid of the process that uses the leases, or no pid');
    }
    if (before?.pid === pid && isSame(before)) return before;
    const id = identify(pid);
    if (!id) throw new LeaseError(SANLK.ESRCH, `no process with pid ${pid} is running: pass the pid of the process that uses the leases`);
    return id;
  }

  /**
   * Another owner on this host holding the same lease, as sanlock's acquire_token judges it (one
   * acquiring or releasing it was waited for just before, waitBusy): held with either of the two
   * exclusive, refused (EEXIST); held shared and wanted shared, its acquisition is returned, to be
   * shared without a write (joinShared): this host_id's mode block already says SHARED.
   */
  private localHolder(uuid: string, s: LeaseSpec): HeldLease | undefined {
    for (const [u, o] of this.owners) {
      if (u === uuid) continue;
      const h = o.leases.get(key(s));
      if (!h) continue;
      if (h.spec.mode === 'exclusive' || (s.mode ?? 'exclusive') === 'exclusive' || h.spec.path !== s.path || h.spec.offset !== s.offset) {
        throw new LeaseError(SANLK.EEXIST, `${s.path} (${key(s)}) is already leased on this host by ${o.ref.name} (${u})` +
          (h.spec.path !== s.path || h.spec.offset !== s.offset ? `, at ${h.spec.path}:${h.spec.offset}` : ''));
      }
      return h;
    }
    return undefined;
  }

  /**
   * A shared lease another owner here holds, now this owner's too (sanlock's "acquire_token add
   * shared"): the same acquisition — token, open file — and nothing written. The last of them to
   * release writes the release (releaseOne).
   */
  private joinShared(st: OwnerState, holder: HeldLease): HeldLease {
    const h: HeldLease = { spec: { ...holder.spec }, token: holder.token, file: holder.file, storage: holder.storage };
    const s = h.spec;
    st.leases.set(key(s), h);
    const owner = { uuid: st.ref.uuid, name: st.ref.name, pid: st.ref.pid ?? null, state: 'active' as const };
    this.o.store.write(() => this.o.store.transaction(() => {
      this.o.store.upsertOwner(owner);
      this.o.store.recordLease({ ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode: s.mode, lver: h.token.lver, generation: h.token.host.generation });
    }), `recording the lease ${key(s)}`);
    this.housekeeping.later(() => this.o.log.info(`acquired shared lease ${key(s)} (${s.path}:${s.offset}) for ${st.ref.name}, with the other holders on this host`));
    return h;
  }

  /** Another owner here holding this acquisition of the lease (a shared lease, joinShared). */
  private sharedHere(uuid: string, h: HeldLease): boolean {
    for (const [u, o] of this.owners) if (u !== uuid && o.leases.get(key(h.spec))?.token === h.token) return true;
    return false;
  }

  /** `s` is being acquired or released by `uuid` until the returned function is called. */
  private markBusy(s: LeaseSpec, uuid: string, name: string, op: LocalWork['op']): () => void {
    let end!: () => void;
    const entry: LocalWork = { uuid, name, op, done: new Promise<void>((r) => { end = r; }) };
    this.busy.set(key(s), entry);
    return () => {
      if (this.busy.get(key(s)) === entry) this.busy.delete(key(s));
      end();
    };
  }

  /** Another owner here acquiring or releasing one of `specs` (see busy). */
  private otherBusy(uuid: string, specs: LeaseSpec[]): LocalWork | undefined {
    return specs.map((s) => this.busy.get(key(s))).find((b) => b !== undefined && b.uuid !== uuid);
  }

  /** Until `b` is done, or refused (EBUSY or EAGAIN, as sanlock answers at once) at `until`. */
  private async waitBusy(b: LocalWork, until: number | undefined): Promise<void> {
    if (until === undefined) return b.done;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => { timer = setTimeout(() => r(true), Math.max(0, until - this.o.clock.nowMs())); });
    const timedOut = await Promise.race([b.done.then(() => false), late]);
    clearTimeout(timer);
    if (timedOut) {
      throw new LeaseError(b.op === 'acquire' ? SANLK.EBUSY : SANLK.EAGAIN,
        `the lease is still being ${b.op === 'acquire' ? 'acquired' : 'released'} on this host by ${b.name} (${b.uuid}) at this request's timeout; try again`);
    }
  }

  /** See SPARE_ACQUIRES: up to `want` of them, never waiting; give them back with `+=`. */
  private spareAcquires = SPARE_ACQUIRES;
  private takeSpareAcquires(want: number): number {
    const n = Math.max(0, Math.min(want, this.spareAcquires));
    this.spareAcquires -= n;
    return n;
  }

  private async acquireOne(st: OwnerState, s: LeaseSpec, opts: AcquireOptions): Promise<HeldLease> {
    const { timeoutMs } = opts;
    const ls = this.lockspaceFor(s.lockspace);
    const mode: LeaseMode = s.mode ?? 'exclusive';
    if (ls.state !== 'joined') this.o.log.info(`acquire of ${key(s)} for ${st.ref.name} waits for lockspace ${ls.name} to join (${ls.state})`);
    const t0 = performance.now();
    const deadline = timeoutMs ? this.o.clock.nowMs() + timeoutMs : undefined;
    const lease = await ls.waitJoined(timeoutMs ?? this.o.joinWaitMs ?? 120000);
    // Journalled (with the owner row: each lease's entry carries it, as the leases of one
    // request are taken side by side) before the first write to the lease: after a crash,
    // recover() finishes or undoes it.
    // A failing store does not stop the acquire (the intent is kept in memory and written when
    // it can be): after a crash, reconcile() finds a lease the database missed on disk.
    const op = await this.journal(() => this.saveOwner(st), { op: 'acquire', ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode });
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
            { storage, offset: s.offset, spaceName: s.lockspace, resourceName: s.resource, numHosts: this.o.numHosts },
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
            await closeStorage(storage);
            continue;
          }
          // The lockspace lost or removed while the ballot ran (neither saw this lease: it was in no
          // owner's list yet): not held, as sanlock's check_new_tokens_space answers. Checked in the
          // same tick as the lease goes in: from then on a loss or a removal sees it.
          if (this.lockspaces.get(s.lockspace) !== ls || ls.state !== 'joined' || ls.lease !== lease) {
            await releaseResource(token, { clock: this.o.clock }).catch(() => undefined);
            throw new LeaseError(SANLK.ENOSPC, `lockspace ${s.lockspace} was ${this.lockspaces.get(s.lockspace) === ls ? `lost (${ls.state})` : 'removed'} ` +
              `while ${key(s)} was being acquired: not held (released again); try again once the lockspace is joined`);
          }
          const held: HeldLease = { spec: { lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode }, token, file: storage.fileId, storage };
          st.leases.set(key(s), held);
          await this.o.store.commit(() => this.o.store.transaction(() => {
            this.o.store.recordLease({ ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode, lver: token.lver, generation: lease.generation });
            if (op.id !== undefined) this.o.store.endOp(op.id);
          }), `recording the lease ${key(s)}`);
          const lver = token.lver;
          this.housekeeping.later(() => this.o.log.info(`acquired ${mode} lease ${key(s)} (${s.path}:${s.offset}) lver ${lver} for ${st.ref.name}`));
          const ms = (x: number) => x.toFixed(1);
          this.o.log.debug(`acquire ${key(s)}: join+journal ${ms(t1 - t0)} ms, open ${ms(t2 - t1)}, paxos+check+record ${ms(performance.now() - t2)}${hint ? ' (from release hint)' : ''}`);
          return held;
        } catch (e) {
          // Held by another host: is it still the file the path names (asked while our fd keeps
          // its inode number from reuse)? A host deleting lease files holds the lease while it
          // unlinks: refused on the old file, the path may name a new one (or none: the domain
          // manager creates it again), which is what to try.
          const retry = round < FILE_REPLACED_RETRIES && storage.fileId && e instanceof LeaseError && (heldByAnotherHost(e.rv) || e.rv === SANLK.ACQUIRE_OWNED_RETRY);
          const now = retry ? await this.checkLeasedFile(s.path, storage.fileId!, lease.ioTimeout).catch(() => 'same' as const) : 'same';
          await closeStorage(storage);
          if (e instanceof LeaseError) {
            if (now === 'other' || (now === 'missing' && opts.recreate)) {
              this.o.log.info(`acquire of ${key(s)} for ${st.ref.name}: refused on ${s.path} (${e.message}), which ` +
                `${now === 'missing' ? 'was deleted meanwhile (a lease-file cleanup?): creating it again' : 'was replaced by a new file meanwhile'} and trying again`);
              if (now === 'missing') await opts.recreate!(s);
              continue;
            }
          }
          throw e;
        }
      }
    } catch (e) {
      void this.o.store.commit(() => { if (op.id !== undefined) this.o.store.endOp(op.id); });
      throw this.explainAcquireFailure(e, s);
    }
  }

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

  /** Our record of the delta lease of a lockspace (written at each join), if readable. */
  private deltaRecord(lockspace: string): DeltaRecord | undefined {
    try {
      const v = this.o.store.getMeta(`delta:${lockspace}`);
      return v ? (JSON.parse(v) as DeltaRecord) : undefined;
    } catch {
      return undefined; // an unreadable store is reported by the store
    }
  }

  /**
   * The highest generation of our host_id that another host held (0: none known): the record we
   * replaced when we acquired the slot named another host, or our record says so from an earlier
   * join of the same slot (a continued lease, or a fast reacquire, replaces only our own record).
   */
  private foreignUpTo(lockspace: string, lease: DeltaLease): number {
    const p = lease.previous;
    const replaced = p && p.ownerGeneration > 0 && !namesEqual(p.resourceName, lease.hostName.slice(0, 47)) ? p.ownerGeneration : 0;
    const r = this.deltaRecord(lockspace);
    // Carried on only within the slot's history (a lockspace initialised again starts it afresh).
    return Math.max(replaced, r && r.hostId === lease.hostId && r.generation <= lease.generation ? r.foreignUpTo ?? 0 : 0);
  }

  /** Read once: machine-id and product UUID do not change while we run. */
  private machineIdentity(): string | undefined {
    this.identity ??= { value: (this.o.machineIdentity ?? machineIdentity)() };
    return this.identity.value;
  }

  /** A host's name as its delta lease in the lockspace says, when we have seen it. */
  private hostNameOf(lockspace: string, hostId: number): string | undefined {
    try {
      return this.lockspaces.get(lockspace)?.liveness().snapshot(hostId)?.ownerName || undefined;
    } catch {
      return undefined; // not joined
    }
  }

  release(owner: OwnerRef, specs?: LeaseSpec[], opts: ReleaseOptions = {}): Promise<number> {
    return observed(this.releaseNow(owner, specs, opts), this.o.observer?.released);
  }

  private releaseNow(owner: OwnerRef, specs: LeaseSpec[] | undefined, opts: ReleaseOptions): Promise<number> {
    return this.queue.run(owner.uuid, async () => {
      const st = this.owners.get(owner.uuid);
      if (!st) return 0;
      const which = specs ? [...new Set(specs.map((s) => st.leases.get(key(s))).filter((h): h is HeldLease => !!h))] : [...st.leases.values()];
      let n = 0;
      let firstErr: Error | undefined;
      // Side by side, as they were acquired (a domain's disks): each has its own file.
      await forEachLimited(which, ACQUIRE_CONCURRENCY, async (h) => {
        try {
          await this.releaseOne(st, h, { ...opts, forgetIfEmpty: !opts.keepRecord });
          n++;
        } catch (e) {
          firstErr ??= e as Error;
        }
      });
      if (!opts.keepRecord && st.leases.size === 0 && this.owners.get(owner.uuid) === st) this.forgetOwner(owner.uuid);
      if (n) this.o.fence?.changed();
      if (firstErr) throw firstErr;
      return n;
    });
  }

  /**
   * Release one lease. Journalled before the disk write, so that after a crash (or a database
   * that failed to record the release) the restart knows the lease was being let go: a lease we
   * released is never a reason to act on its owner. The journal commit runs beside the storage
   * request's hand-off and leader read; its writes wait for the commit (writesAfter). What the
   * disk says wins: once the release is written the lease is gone from memory and the release
   * succeeded, even when the database cannot record it yet (StateStore.write keeps and retries
   * the write).
   * With `forgetIfEmpty`, an owner left without leases is removed in the same commit.
   */
  private async releaseOne(st: OwnerState, h: HeldLease, opts: ReleaseOptions & { forgetIfEmpty?: boolean } = {}): Promise<void> {
    const { keepRecord = false, forgetIfEmpty = false, leaderPinned = false } = opts;
    const s = h.spec;
    // Shared with another owner here (joinShared): this host still holds it, nothing changes on disk.
    const alone = !this.sharedHere(st.ref.uuid, h);
    if (!alone) {
      st.leases.delete(key(s));
      this.recordRelease(st, s, keepRecord, forgetIfEmpty, undefined);
      this.housekeeping.later(() => this.o.log.info(`released shared lease ${key(s)} of ${st.ref.name}; other owners on this host still hold it`));
      return;
    }
    // Before the first await: another owner here wanting the lease waits until the release is done.
    const done = this.markBusy(s, st.ref.uuid, st.ref.name, 'release');
    try {
      await this.releaseAlone(st, h, keepRecord, forgetIfEmpty, leaderPinned);
    } finally {
      done();
    }
  }

  private async releaseAlone(st: OwnerState, h: HeldLease, keepRecord: boolean, forgetIfEmpty: boolean, leaderPinned: boolean): Promise<void> {
    const s = h.spec;
    // Not awaited here: the storage's writes wait for it, and so does everything below that uses the entry.
    const journalled = this.journal(undefined, { op: 'release', ownerUuid: st.ref.uuid, lockspace: s.lockspace, resource: s.resource, path: s.path, offset: s.offset, mode: s.mode });
    // A release that wrote nothing (it failed): its entry is closed, the lease stays held.
    const closeEntry = () => void journalled.then((op) => this.o.store.commit(() => { if (op.id !== undefined) this.o.store.endOp(op.id); }));
    // The file kept open since the acquire: no reopen, and by construction the inode we leased.
    let storage: LeaseStorage | undefined = h.storage;
    try {
      storage ??= await this.openStorage(s.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        closeEntry();
        throw e;
      }
      // Deleted while we held it (by hand: lease-respecting cleanups need the lease): the lease
      // on that file is unreachable by name and stays as it is.
      this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${s.path} no longer exists; the lease on the deleted file is left as it is`);
    }
    try {
      if (!storage) {
        // nothing to write
      } else if (storage !== h.storage && h.file && storage.fileId && !sameFileId(h.file, storage.fileId)) {
        // Never write our dblock or leader into a different file: our ballot values would be
        // a vote nobody cast in that file's paxos.
        this.o.log.warning(`release of ${key(s)} for ${st.ref.name}: ${s.path} is no longer the file we leased (deleted and re-created); ` +
          'the new file is left alone, the lease on the old one stays as it is');
      } else {
        h.token.res.storage = storage;
        const hint = await releaseResource(h.token, { clock: this.o.clock, writesAfter: journalled });
        if (hint) this.rememberHint(`${s.path}\0${s.offset}`, hint);
        this.housekeeping.later(() => this.o.log.info(`released ${s.mode} lease ${key(s)} of ${st.ref.name}`));
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
        if (rv !== SANLK.RELEASE_LVER && rv !== SANLK.RELEASE_OWNER) {
          // Still held by us (the write failed): the lease stays, and so does its record. The
          // fd is closed with the others below: a retry opens the path afresh and checks it.
          closeEntry();
          h.storage = undefined;
          throw e;
        }
        // Expected when the caller changed the leader on purpose (the sweeper's pin): not a fault.
        this.o.log[leaderPinned && rv === SANLK.RELEASE_OWNER ? 'debug' : 'warning'](`release of ${key(s)} for ${st.ref.name}: ${(e as Error).message}`);
      }
    } finally {
      // Not awaited: the reply need not wait for the close's hand-off to the I/O thread.
      if (storage) this.housekeeping.later(() => void closeStorage(storage));
    }
    const op = await journalled;
    h.storage = undefined;
    st.leases.delete(key(s));
    this.recordRelease(st, s, keepRecord, forgetIfEmpty, op.id);
  }

  /** A lease released (gone from st.leases): its record, and the owner's once it holds nothing (forgetIfEmpty). */
  private recordRelease(st: OwnerState, s: LeaseSpec, keepRecord: boolean, forgetIfEmpty: boolean, opId: number | undefined): void {
    const forget = forgetIfEmpty && st.leases.size === 0 && this.owners.get(st.ref.uuid) === st;
    if (forget) this.owners.delete(st.ref.uuid);
    // Not awaited: the release is on disk (or, shared with another owner here, needed no write)
    // and its journal entry committed, which is what a restart needs to know it was let go
    // (recover()). Queued now, so it goes in before any
    // later write (a new acquire of the same lease); lazily, so it shares the next request's
    // transaction, or goes in when the loop is quiet (StateStore.commit, Housekeeping).
    void this.o.store.commit(() => this.o.store.transaction(() => {
      if (keepRecord) this.o.store.markLeaseReleased(st.ref.uuid, s.lockspace, s.resource);
      else this.o.store.forgetLease(st.ref.uuid, s.lockspace, s.resource);
      if (forget) this.o.store.removeOwner(st.ref.uuid);
      if (opId !== undefined) this.o.store.endOp(opId);
    }), `recording the release of ${key(s)}`, { lazy: true });
    this.housekeeping.later(() => this.o.store.commitWaiting());
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
    if (st.process) this.o.store.setOwnerProcess(st.ref.uuid, { ...st.process, watched: !!st.watched });
  }

  private forgetOwner(uuid: string): void {
    this.owners.delete(uuid);
    this.o.store.write(() => this.o.store.removeOwner(uuid));
  }

  setOwnerPid(uuid: string, pid: number): void {
    const st = this.owners.get(uuid);
    const proc = pid > 1 && pid !== process.pid ? identify(pid) : undefined;
    if (st) {
      st.ref.pid = pid;
      st.process = proc;
    }
    this.o.store.write(() => this.o.store.transaction(() => {
      this.o.store.upsertOwner({ uuid, name: st?.ref.name ?? uuid, pid, state: 'active' });
      if (proc) this.o.store.setOwnerProcess(uuid, { ...proc, watched: !!st?.watched });
    }));
    this.o.fence?.changed();
  }

  // ---- owner processes -------------------------------------------------------------------------

  private watchOwners(): void {
    if (this.ownerWatch) return;
    this.ownerWatch = setInterval(() => this.checkOwnerProcesses(), OWNER_WATCH_MS);
    this.ownerWatch.unref();
  }

  /** Watched owners whose process exited (or whose pid now names another process) lose their leases. */
  private checkOwnerProcesses(): void {
    for (const st of this.owners.values()) {
      if (!st.watched || !st.process || st.exiting || isSame(st.process)) continue;
      st.exiting = true;
      const n = st.leases.size;
      this.o.log.info(`owner ${st.ref.name} (${st.ref.uuid}): its process ${st.process.pid} exited; releasing its ${n} lease(s)`);
      void this.release(st.ref).then(
        () => undefined,
        (e: Error) => this.o.log.warning(`releasing the leases of exited owner ${st.ref.name}: ${e.message}; trying again`),
      ).finally(() => { st.exiting = false; });
    }
  }

  /**
   * Journal an operation before its first write to storage (with `also`, in the same commit).
   * The entry id is filled in when the store takes it, possibly later: a failing store never
   * stops a lease operation.
   */
  private async journal(also: (() => void) | undefined, entry: Parameters<StateStore['beginOp']>[0]): Promise<{ id?: number }> {
    const op: { id?: number } = {};
    // Shared with the entries of concurrent requests (one commit); the disk waits for it.
    await this.o.store.commit(() => this.o.store.transaction(() => {
      also?.();
      op.id = this.o.store.beginOp(entry);
    }), `journalling the ${entry.op} of ${key(entry)}`);
    return op;
  }

  /** The owner's lease rows, or none when the store cannot be read. */
  private knownRows(uuid: string) {
    try {
      return this.o.store.leases(uuid);
    } catch {
      return [];
    }
  }

  stateStoreHealth(): StoreHealth {
    return this.o.store.health();
  }

  // ---- lease loss ------------------------------------------------------------------------------

  private onLockspaceLost(ls: Lockspace, reason: string): void {
    const stopping: Array<Promise<void>> = [];
    // Other hosts may take our leases host_dead after the last renewal we wrote: every action
    // must have ended its owner before then (the lease is still set while onLost runs).
    const deadline = killDeadline(ls.lease?.lastSuccess ?? this.o.clock.monotime(), ls.spec.ioTimeout);
    for (const st of this.owners.values()) {
      const lost = [...st.leases.values()].filter((h) => h.spec.lockspace === ls.name);
      if (!lost.length) continue;
      // Those leases are gone from our point of view: other hosts may take them after host_dead.
      for (const h of lost) {
        st.leases.delete(key(h.spec));
        if (h.storage) void closeStorage(h.storage);
        h.storage = undefined;
      }
      const failed: FailedOwner = { uuid: st.ref.uuid, name: st.ref.name, pid: st.ref.pid, process: st.process, reason: `lockspace ${ls.name} lost: ${reason}`, action: st.action, ...deadline };
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
   *
   * A lease the database says held is first checked on disk: one we released before the restart
   * (a release journalled, a free leader last owned by us, or any other holder while our delta
   * lease went on under the same generation — nobody can take a lease from a live generation)
   * was let go here and the database missed it; its owner is left alone, never killed for it.
   */
  async recover(ownerExists: (o: { uuid: string; name: string; pid: number | null; startTime: number | null }) => Promise<boolean>): Promise<{ adopted: number; released: number; forgotten: number }> {
    let adopted = 0;
    let released = 0;
    let forgotten = 0;
    let pending: JournalRow[];
    let ownerRows: OwnerRow[];
    try {
      pending = this.o.store.pendingOps();
      ownerRows = this.o.store.owners();
    } catch (e) {
      this.o.log.error(`restart recovery cannot read the state database: ${(e as Error).message}; what this host holds is taken from the lease directory`);
      return { adopted, released, forgotten };
    }
    // Owners that are gone are released after the others are re-adopted: a shared lease of one
    // that is gone and of one that runs is then the runner's (joinShared), and its release
    // writes nothing; released first, it would clear this host's SHARED mode block under a
    // running owner until that owner took it again.
    const vanished: Array<() => Promise<void>> = [];
    for (const o of ownerRows) {
      const rows = this.knownRows(o.uuid);
      // The start time tells the registered process from a later one that got its pid.
      let proc: ReturnType<StateStore['ownerProcess']>;
      try {
        proc = this.o.store.ownerProcess(o.uuid);
      } catch {
        proc = undefined;
      }
      const known = proc && proc.pid === o.pid ? proc : undefined;
      // A recorded process that is no longer running is proof the owner is gone, whatever
      // ownerExists (libvirt) would say or whether it can be asked at all: holding on until it
      // answers would keep other hosts from a disk nothing here uses any more.
      const dead = !!o.pid && !stillThere(o.pid, known?.startTime ?? null);
      if (dead) this.o.log.info(`owner ${o.name} (${o.uuid}): its process ${o.pid} is gone; releasing its leases`);
      const exists = dead ? false : await ownerExists({ ...o, startTime: known?.startTime ?? null }).catch(() => true);
      const ref = { uuid: o.uuid, name: o.name, pid: exists ? o.pid ?? undefined : undefined };
      const held: LeaseRow[] = [];
      for (const r of rows.filter((x) => x.held)) {
        if (await this.releasedBeforeRestart(o.name, r, pending)) {
          forgotten++;
          this.o.store.write(() => this.o.store.forgetLease(o.uuid, r.lockspace, r.resource));
        } else {
          held.push(r);
        }
      }
      const maybe = pending.filter((p) => p.ownerUuid === o.uuid && p.op === 'acquire' && !rows.some((r) => r.resource === p.resource && r.lockspace === p.lockspace));
      const specs = [...held, ...maybe].map((r) => ({ lockspace: r.lockspace, resource: r.resource, path: r.path, offset: r.offset, mode: r.mode }));
      if (!specs.length && rows.length && rows.every((r) => r.held)) {
        this.forgetOwner(o.uuid); // everything it had was released before the restart
        continue;
      }
      if (exists && o.state === 'active') {
        try {
          await this.acquire(ref, specs, { watchPid: known?.watched });
          adopted += specs.length;
          this.o.log.info(`re-adopted ${specs.length} lease(s) of ${o.name} after restart`);
        } catch (e) {
          this.o.log.error(`could not re-adopt the leases of ${o.name} after restart: ${(e as Error).message}`);
          void this.o.policy.onLeaseFailure({ uuid: o.uuid, name: o.name, pid: o.pid ?? undefined, process: known, reason: `its lease could not be re-adopted after an agent restart: ${(e as Error).message}` });
        }
      } else if (!exists) {
        // Take and release: the leases are ours (older generation), so this is immediate.
        vanished.push(async () => {
          try {
            if (specs.length) await this.acquire(ref, specs);
            released += await this.release(ref);
          } catch (e) {
            this.o.log.warning(`could not release the leases of vanished owner ${o.name}: ${(e as Error).message}`);
          }
          this.forgetOwner(o.uuid);
        });
      }
    }
    for (const release of vanished) await release();
    for (const p of pending) this.o.store.write(() => this.o.store.endOp(p.id));
    return { adopted, released, forgotten };
  }

  /** See recover(): true when the disk shows that a lease the database lists as held was released here. */
  private async releasedBeforeRestart(ownerName: string, r: LeaseRow, pending: JournalRow[]): Promise<boolean> {
    const ls = this.lockspaces.get(r.lockspace);
    if (!ls || r.mode === 'shared') return false; // a shared holder is not in the leader: let the acquire decide
    const lease = await ls.waitJoined(this.o.joinWaitMs ?? 120000).catch(() => undefined);
    if (!lease) return false;
    const leader = await this.readLeader(r, lease.ioTimeout).catch(() => undefined);
    if (!leader) return false;
    if (leader.timestamp !== 0 && leader.ownerId === lease.hostId && leader.ownerGeneration <= lease.generation) return false; // still ours
    const releasing = pending.some((p) => p.op === 'release' && p.ownerUuid === r.ownerUuid && p.lockspace === r.lockspace && p.resource === r.resource);
    // An agent frees its host_id only while it holds no lease in the lockspace (shutdown()).
    const p = lease.previous;
    const leftCleanly = !!p && p.timestamp === 0 && p.ownerId === lease.hostId && namesEqual(p.resourceName, lease.hostName.slice(0, 47)) && r.generation <= p.ownerGeneration;
    const why = releasing ? 'its release was under way'
      : leader.timestamp === 0 && leader.ownerId === lease.hostId ? 'we were the last to hold it and it is free'
        : r.generation === lease.generation ? `our delta lease went on under generation ${lease.generation}, so no other host could take it from us`
          : leftCleanly ? `this agent left lockspace ${r.lockspace} cleanly (generation ${p.ownerGeneration}), which it does only while holding no lease there` : undefined;
    if (!why) return false;
    const now = leader.timestamp === 0 ? 'free' : `held by host ${leader.ownerId} (generation ${leader.ownerGeneration})`;
    this.o.log.warning(`the state database says ${ownerName} holds ${key(r)} (${r.path}), but on disk it is ${now}: ${why}. ` +
      `It was released here before the restart and the database missed it; ${ownerName} is not acted on for it`);
    return true;
  }

  /** The leader of a lease area; undefined when the file does not exist. */
  private async readLeader(l: LeaseCandidate, ioTimeout: number): Promise<LeaderRecord | undefined> {
    // A real lease file with its lease at the start (every file of disk_lease_dir): one native
    // request (open, read, close) instead of a file handle and three round trips; the start-up
    // reconcile reads every lease file of the directory.
    if (!this.o.openStorage && l.offset === 0 && canReadFileHead()) {
      let head;
      try {
        head = await readFileHead(l.path, 4096, ioTimeout * 1000);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw e;
      }
      if (!head.data) return undefined; // not a regular file
      const { rv, leader } = verifyPaxosLeader(head.data, 0, l.lockspace, l.resource, 0);
      if (rv < 0) throw new LeaseError(rv, `the leader of ${l.lockspace}:${l.resource} in ${l.path} is invalid`);
      return leader;
    }
    let storage: LeaseStorage;
    try {
      storage = await this.openStorage(l.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      // 4 KiB: one read on 512- and 4096-byte sector devices alike; the leader is at its start.
      return await readPaxosLeader({ storage, offset: l.offset, spaceName: l.lockspace, resourceName: l.resource }, 4096, 0, ioTimeout);
    } finally {
      await closeStorage(storage);
    }
  }

  /**
   * After the lockspaces joined (and recover() ran): leases that this host_id holds on disk —
   * under our generation or an older one — but that no owner here holds. They are what a lost,
   * corrupt or failing state database forgot. Each is taken back at once under a placeholder
   * owner (an older generation of ours may be taken by other hosts, so this cannot wait), then
   * handed to the running owner that needs it, released when `runningOwners` says nothing
   * running needs it, or kept (and logged with the remedy) when nobody can tell.
   */
  async reconcile(candidates: LeaseCandidate[], runningOwners?: RunningLeaseOwners): Promise<{ found: number; readopted: number; released: number; kept: number }> {
    const r = { found: 0, readopted: 0, released: 0, kept: 0 };
    const heldHere = () => new Set([...this.owners.values()].flatMap((o) => [...o.leases.keys()]));
    const seen = heldHere();
    const todo = candidates.filter((c) => {
      if (seen.has(key(c)) || !this.lockspaces.has(c.lockspace)) return false;
      seen.add(key(c));
      return true;
    });
    const joined = new Map<string, DeltaLease>();
    const foreign = new Map<string, number>();
    for (const name of new Set(todo.map((c) => c.lockspace))) {
      const lease = await this.lockspaces.get(name)!.waitJoined(this.o.joinWaitMs ?? 120000).catch(() => undefined);
      if (lease) {
        joined.set(name, lease);
        foreign.set(name, this.foreignUpTo(name, lease));
      }
      else this.o.log.error(`start-up reconcile: lockspace ${name} did not join; the leases this host may hold in it are not checked`);
    }
    const found: LeaseCandidate[] = [];
    await forEachLimited(todo, 32, async (c) => {
      const lease = joined.get(c.lockspace);
      if (!lease) return;
      const leader = await this.readLeader(c, lease.ioTimeout).catch(() => undefined);
      if (leader && leader.timestamp !== 0 && leader.ownerId === lease.hostId && leader.ownerGeneration <= lease.generation && leader.ownerGeneration > foreign.get(c.lockspace)!) found.push(c);
    });
    const now = heldHere();
    const lost = found.filter((c) => !now.has(key(c)));
    if (!lost.length) return r;
    r.found = lost.length;
    const hostIds = [...new Set(lost.map((c) => joined.get(c.lockspace)!.hostId))].join(', ');
    this.o.log.warning(`found ${lost.length} lease(s) of host_id ${hostIds} on disk that no owner here holds (${this.storeStory()}): ` +
      `${lost.map((c) => `${key(c)} (${c.path})`).join(', ')}; taking them back before deciding what to do with each`);
    const taken: LeaseCandidate[] = [];
    for (const c of lost) {
      try {
        await this.acquire(orphanRef(c), [{ lockspace: c.lockspace, resource: c.resource, path: c.path, offset: c.offset }]);
        taken.push(c);
      } catch (e) {
        this.o.log.error(`could not take back ${key(c)} (${c.path}), held on disk by this host_id: ${(e as Error).message}`);
      }
    }
    const owners = runningOwners ? await runningOwners().catch(() => undefined) : undefined;
    for (const c of taken) {
      const orphan = orphanRef(c);
      if (!owners) {
        r.kept++;
        this.o.log.warning(`${key(c)} (${c.path}) is kept held for an unknown owner "${orphan.uuid}": nothing here tells which process used it. ` +
          `Once that process has stopped, release it: lockagent client release --owner ${orphan.uuid}`);
        continue;
      }
      const o = owners.get(key(c));
      try {
        if (o) {
          await this.acquire({ uuid: o.uuid, name: o.name }, [{ lockspace: c.lockspace, resource: c.resource, path: c.path, offset: c.offset }], { action: o.action });
          r.readopted++;
          this.o.log.warning(`${key(c)} (${c.path}): re-adopted for ${o.name}, which runs`);
        } else {
          await this.release(orphan);
          r.released++;
          this.o.log.warning(`${key(c)} (${c.path}): released (no running owner needs it)`);
        }
      } catch (e) {
        this.o.log.error(`${key(c)} (${c.path}): ${(e as Error).message}; it stays held for "${orphan.uuid}"`);
      }
    }
    return r;
  }

  /** Why the database may not know what we hold, for reconcile's warning. */
  private storeStory(): string {
    const h = this.o.store.health();
    if (h.movedAside) return `the state database ${h.path} was corrupt (moved to ${h.movedAside})`;
    if (h.backing === 'memory') return `the state database ${h.path} could not be opened`;
    return `the state database ${h.path} did not list them (it was missing, replaced, or failed to record them)`;
  }

  /** Hand a lease held for a placeholder owner (see reconcile) to the owner that asks for it. */
  private takeFromOrphan(st: OwnerState, s: LeaseSpec): HeldLease | undefined {
    if (isOrphan(st.ref.uuid)) return undefined;
    for (const [u, o] of this.owners) {
      const h = isOrphan(u) ? o.leases.get(key(s)) : undefined;
      if (!h || h.spec.path !== s.path || h.spec.offset !== s.offset) continue;
      o.leases.delete(key(s));
      const empty = o.leases.size === 0;
      if (empty) this.owners.delete(u);
      st.leases.set(key(s), h);
      const row = { ownerUuid: st.ref.uuid, lockspace: h.spec.lockspace, resource: h.spec.resource, path: h.spec.path, offset: h.spec.offset, mode: h.spec.mode, lver: h.token.lver, generation: h.token.host.generation };
      const owner = { uuid: st.ref.uuid, name: st.ref.name, pid: st.ref.pid ?? null, state: 'active' as const };
      this.o.store.write(() => this.o.store.transaction(() => {
        this.o.store.upsertOwner(owner);
        this.o.store.recordLease(row);
        this.o.store.forgetLease(u, h.spec.lockspace, h.spec.resource);
        if (empty) this.o.store.removeOwner(u);
      }), `recording the owner of ${key(s)}`);
      this.o.log.warning(`${key(s)}: held since the agent's state was lost ("${u}"), now owned by ${st.ref.name}`);
      return h;
    }
    return undefined;
  }

  // ---- status --------------------------------------------------------------------------------

  lockspaceStatus(): Array<{ name: string; hostId: number; path: string; offset: number; state: JoinState; generation?: number; ioTimeout: number; renewedAgo?: number; lastError?: string; ioTimeoutMismatches: Array<{ hostId: number; ownerName: string; ioTimeout: number }>; renewals: RenewalRecord[] }> {
    return [...this.lockspaces.values()].map((ls) => ({
      name: ls.name, hostId: ls.spec.hostId, path: ls.spec.path, offset: ls.spec.offset, state: ls.state,
      generation: ls.lease?.generation, ioTimeout: ls.spec.ioTimeout, renewedAgo: ls.secondsSinceRenewal(),
      lastError: ls.lastError, ioTimeoutMismatches: ls.ioTimeoutMismatches(), renewals: ls.renewals.list(),
    }));
  }

  async shutdown(releaseAll: boolean): Promise<void> {
    clearInterval(this.ownerWatch);
    if (releaseAll) {
      for (const o of [...this.owners.values()]) await this.release(o.ref).catch(() => undefined);
    }
    // The releases' records and closes: the store and the files are closed after us.
    this.housekeeping.flush();
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
