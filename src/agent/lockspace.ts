import { readFileSync } from 'fs';
import { FileLeaseStorage } from '../io/file-storage';
import { nativeQuickScan } from '../io/native';
import { Clock } from '../lease/clock';
import { canScheduleRenewal, DeltaLease, deltaAcquire, describeOwner, deltaRelease, deltaRenew, isCorruptRenewal, readDeltaLeader, readLockspaceGeometry } from '../lease/delta';
import { HostMonitor, HostState, HostStatus } from '../lease/hostmonitor';
import { HostLiveness, lockspaceLiveness } from '../lease/liveness';
import { LeaseStorage, NOT_STARTED, StartWindow } from '../lease/storage';
import { StorageOpener } from './types';
import { deltaAcquireHeldDelay, RENEWAL_PAUSE_MS, timeoutsFor } from '../lease/timeouts';
import { backoffDelay } from '../lease/wait';
import { Geometry, LeaderRecord, LeaseError, namesEqual, SANLK } from '../ondisk';
import { sameLeader } from '../lease/record';
import { Logger } from '../log/logger';
import { RenewalHistory } from './renewals';
import { chooseHostId, HostIdChoice } from './hostidclaim';

/**
 * One lockspace this host is a member of: the join (delta acquire) running in the background
 * with retries, the renewal loop (each renewal after a success handed to the file's I/O thread
 * ahead of its time: scheduleRenew), the host monitor fed by renewals, and the lease-loss
 * timeline (warning at 6·io, failure at 8·io) checked on a timer of its own (armTimeline), so a
 * hung renewal cannot delay the verdict.
 */
export type JoinState = 'joining' | 'joined' | 'retrying' | 'lost' | 'leaving' | 'left';

export interface LockspaceSpec {
  name: string;
  /** 0 while `host_id = auto` has not chosen one yet */
  hostId: number;
  /** host_id = auto: choose a free slot (hostidclaim.ts), keep it across restarts */
  autoHostId?: boolean;
  /** host_id = auto chooses no id above this (max_hosts: the disk lease areas serve ids up to it) */
  autoHostIdLimit?: number;
  path: string;
  offset: number;
  ioTimeout: number;
  hostName: string;
}

export interface LockspaceHooks {
  /** Renewals failed for 8·io (or our sector was overwritten): every owner must stop using its leases. */
  onLost(ls: Lockspace, reason: string): void;
  /** A renewal succeeded after a loss: the lockspace is usable again (new generation). */
  onJoined?(ls: Lockspace): void;
  /**
   * Our delta lease as recorded before a restart, to continue it instead of acquiring anew.
   * `sameMachine`: the record was written on this machine (its identity matches), not copied
   * with the state database to a clone.
   */
  previousDelta?(ls: Lockspace): PreviousDelta | undefined;
  /** We hold this delta lease now (record it for a restart). */
  onDeltaLease?(ls: Lockspace, lease: DeltaLease): void;
  /** A renewal succeeded, or we joined: lease.lastSuccess moved (the fencing guard's deadline follows it). */
  onRenewed?(ls: Lockspace): void;
  /** Every renewal attempt (metrics). Must not throw. */
  onRenewal?(ls: Lockspace, r: RenewalReport): void;
}

export interface PreviousDelta {
  bootId: string;
  generation: number;
  hostId?: number;
  sameMachine?: boolean;
}

export interface RenewalReport {
  ok: boolean;
  /** the area read and our sector's write, when the renewal got that far (ms) */
  readMs?: number;
  writeMs?: number;
  /** the read and the write went as one request: readMs is the whole of it */
  oneRequest?: boolean;
  /** seconds that were left before 8·io (lease failure) when this renewal completed */
  marginS: number;
}

export interface HostReport extends HostStatus {
  state: HostState;
  /** seconds since we saw its timestamp change (or since our first look) */
  ageSeconds: number;
}

const BACKOFF_MAX_S = 60;

/** How long a held slot is watched for another host's renewal: one renewal interval (2·io) + 2 s for its I/O. */
export function slotWatchSeconds(ioTimeout: number): number {
  return timeoutsFor(ioTimeout).idRenewal + 2;
}

function slotBusyError(space: string, hostId: number, now: LeaderRecord, ourName: boolean): LeaseError {
  return new LeaseError(SANLK.HOSTID_BUSY,
    `host_id ${hostId} in lockspace ${space} is being renewed by another live host (node "${now.resourceName}", generation ${now.ownerGeneration})` +
    (ourName ? ' under this host\'s own host name — duplicate host_id/host_name? (a cloned host, or a second agent started with a copied config)' : '') +
    `; not taking it: give every host its own host_id${ourName ? ' and host_name' : ''} in lockagent.conf, or stop the other agent`);
}

/** Changes at every boot: monotonic timestamps are comparable only within one boot. */
export function currentBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** A record's boot is this one: never when the boot id cannot be read (every such record would match). */
function sameBoot(bootId: string): boolean {
  const now = currentBootId();
  return now !== 'unknown' && bootId === now;
}

export class Lockspace {
  state: JoinState = 'joining';
  lease?: DeltaLease;
  monitor?: HostMonitor;
  /** the last join/renew problem, for status */
  lastError?: string;
  joinAttempts = 0;
  /** the last renewals, as `sanlock client renewal` shows them */
  readonly renewals = new RenewalHistory();
  private storage?: LeaseStorage;
  private stopped = false;
  private abort = new AbortController();
  private renewTimer?: NodeJS.Timeout;
  private checkTimer?: NodeJS.Timeout;
  private renewing = false;
  private warned = false;
  private waiters: Array<{ resolve: (l: DeltaLease) => void; reject: (e: Error) => void }> = [];

  constructor(
    readonly spec: LockspaceSpec,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly hooks: LockspaceHooks,
    private readonly openStorage: StorageOpener = (p, o) => FileLeaseStorage.open(p, o),
  ) {}

  get name(): string {
    return this.spec.name;
  }

  /** Begin joining in the background; status and releases are served meanwhile. */
  start(): void {
    void this.joinLoop();
  }

  /** Resolves once joined (immediately if already); acquisitions wait here. */
  waitJoined(timeoutMs: number): Promise<DeltaLease> {
    if (this.state === 'joined' && this.lease) return Promise.resolve(this.lease);
    if (this.stopped) return Promise.reject(new LeaseError(SANLK.ENOSPC, `lockspace ${this.name} is being removed`));
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new LeaseError(SANLK.ENOSPC, `lockspace ${this.name} is not joined yet (${this.state}${this.lastError ? `: ${this.lastError}` : ''}); ` +
          'acquisitions wait for the join — check the lease directory and lockagent status'));
      }, timeoutMs);
      w.resolve = (l) => { clearTimeout(t); resolve(l); };
      w.reject = (e) => { clearTimeout(t); reject(e); };
      this.waiters.push(w);
    });
  }

  liveness(): HostLiveness {
    if (!this.lease || !this.monitor) throw new LeaseError(SANLK.ENOSPC, `lockspace ${this.name} is not joined`);
    return lockspaceLiveness(this.lease, this.monitor, this.clock);
  }

  /** Every host that ever appeared in the lockspace, with its state as sanlock would judge it. */
  hosts(): HostReport[] {
    if (!this.monitor) return [];
    const now = this.clock.monotime();
    return this.monitor.known().map((h) => ({
      ...h,
      state: this.monitor!.state(h.hostId, now),
      ageSeconds: now - (h.lastLive || h.firstCheck),
    }));
  }

  /** Hosts whose on-disk io_timeout differs from ours: their delays differ; operators should know. */
  ioTimeoutMismatches(): Array<{ hostId: number; ownerName: string; ioTimeout: number }> {
    return this.hosts()
      .filter((h) => h.hostId !== this.spec.hostId && h.state !== 'FREE' && h.state !== 'DEAD' && h.ioTimeout && h.ioTimeout !== this.spec.ioTimeout)
      .map((h) => ({ hostId: h.hostId, ownerName: h.ownerName, ioTimeout: h.ioTimeout }));
  }

  secondsSinceRenewal(): number | undefined {
    return this.lease ? this.clock.monotime() - this.lease.lastSuccess : undefined;
  }

  /** Stop renewing; release the delta lease if asked (only after every resource was released). */
  async stop(release: boolean): Promise<void> {
    this.stopped = true;
    this.state = 'leaving';
    this.abort.abort();
    clearTimeout(this.renewTimer);
    // A renewal waiting for its start time never starts (one already started completes before
    // the release below: the file's requests go in order).
    this.lease?.storage.cancelScheduled?.();
    clearTimeout(this.checkTimer);
    for (const w of this.waiters.splice(0)) w.reject(new LeaseError(SANLK.ENOSPC, `lockspace ${this.name} is being removed`));
    if (release && this.lease && !this.lease.released) {
      try {
        await deltaRelease(this.lease);
        this.log.info(`released host_id ${this.spec.hostId} in lockspace ${this.name}`);
      } catch (e) {
        this.log.warning(`releasing host_id ${this.spec.hostId} in lockspace ${this.name} failed: ${(e as Error).message}; other hosts will see it expire`);
      }
    }
    this.state = 'left';
  }

  /** The generation of our delta lease when the lockspace was lost: never continued. */
  private lostGeneration?: number;

  private async joinLoop(): Promise<void> {
    while (!this.stopped) {
      this.joinAttempts++;
      try {
        // One I/O thread kept from one renewal (every 2·io) to the next, not one started per renewal.
        this.storage ??= await this.openStorage(this.spec.path, { keepThreadMs: (2 * this.spec.ioTimeout + 1) * 1000 });
        if (this.spec.autoHostId && !this.spec.hostId) await this.chooseHostId(this.storage);
        const slot = await this.watchSlot(this.storage);
        let lease = await this.continueOwnLease(this.storage, slot);
        if (!lease) {
          // From here on a record under our name may be one this process wrote and never
          // verified (a write that timed out here can land later): never continued.
          this.acquireTried = true;
          this.sayWait(slot.leader);
          lease = await deltaAcquire({
            storage: this.storage, offset: this.spec.offset, spaceName: this.name, hostId: this.spec.hostId,
            hostName: this.spec.hostName, ioTimeout: this.spec.ioTimeout, clock: this.clock, cancel: { signal: this.abort.signal },
            requireFree: this.autoChoice === 'free', ownNameProven: (l) => this.leftByThisMachine(l),
          });
        }
        if (this.autoChoice) this.log.info(`host_id = auto: lockspace ${this.name}: took host_id ${this.spec.hostId} (${this.autoChoice})`);
        this.autoChoice = undefined;
        this.joined = { hostId: this.spec.hostId, generation: lease.generation };
        this.hooks.onDeltaLease?.(this, lease);
        if (this.stopped) return;
        this.lease = lease;
        this.monitor = new HostMonitor({
          spaceName: this.name, hostId: this.spec.hostId, sectorSize: lease.geometry.sectorSize,
          maxHosts: lease.geometry.maxHosts, ioTimeout: this.spec.ioTimeout, quickScan: nativeQuickScan(),
        });
        this.state = 'joined';
        this.warned = false;
        this.lastError = undefined;
        this.armTimeline();
        this.log.info(`joined lockspace ${this.name} as host_id ${this.spec.hostId} generation ${lease.generation} (${this.spec.path}:${this.spec.offset})`);
        // First renewal right away: it reads the whole lockspace and seeds the host monitor.
        this.scheduleRenew(0);
        for (const w of this.waiters.splice(0)) w.resolve(lease);
        this.hooks.onJoined?.(this);
        this.hooks.onRenewed?.(this);
        return;
      } catch (e) {
        if (this.stopped) return;
        const err = e as Error;
        this.lastError = err.message;
        this.state = 'retrying';
        if (this.spec.autoHostId && err instanceof LeaseError && err.rv === SANLK.HOSTID_BUSY) {
          // Another host has (or just took) the slot we chose, or took over the one we lost:
          // choose another one at once.
          this.log.info(`host_id = auto: lockspace ${this.name}: host_id ${this.spec.hostId} is taken (${err.message}); choosing another`);
          this.autoRejected.add(this.spec.hostId);
          this.spec.hostId = 0;
          this.autoChoice = undefined;
          this.joinAttempts = 0;
          await new Promise((r) => setTimeout(r, 100 + Math.floor(this.clock.random() * 400)));
          continue;
        }
        // No slot left to try: those found busy before may be free by the next attempt.
        if (this.spec.autoHostId && err instanceof LeaseError && err.rv === SANLK.ENOSPC) this.autoRejected.clear();
        const delay = backoffDelay(this.joinAttempts - 1, { initial: 1, max: BACKOFF_MAX_S });
        this.log.error(`cannot join lockspace ${this.name} as host_id ${this.spec.hostId} (attempt ${this.joinAttempts}): ${err.message}; retrying in ${delay} s`);
        await new Promise((r) => setTimeout(r, delay * 1000));
      }
    }
  }

  private autoChoice?: HostIdChoice['kind'];
  /** This process has tried a delta acquire (see joinLoop): a record under our name is not continued. */
  private acquireTried = false;
  /** The slot and generation this process last joined with (see leftByThisMachine). */
  private joined?: { hostId: number; generation: number };
  private readonly autoRejected = new Set<number>();

  /** host_id = auto: pick the slot this join attempt tries (hostidclaim.ts says which and why). */
  private async chooseHostId(storage: LeaseStorage): Promise<void> {
    const c = await chooseHostId({
      storage, offset: this.spec.offset, spaceName: this.name, hostName: this.spec.hostName, ioTimeout: this.spec.ioTimeout,
      clock: this.clock, remembered: this.hooks.previousDelta?.(this)?.hostId, rejected: this.autoRejected, limit: this.spec.autoHostIdLimit,
      log: (m) => this.log.warning(m), stopped: () => this.stopped,
    });
    this.spec.hostId = c.hostId;
    this.autoChoice = c.kind;
    this.log.info(`host_id = auto: lockspace ${this.name}: trying host_id ${c.hostId} (${c.kind === 'remembered' ? 'remembered from our state' :
      c.kind === 'named' ? 'it carries our host name' : c.kind === 'free' ? 'free' : 'its host is dead'})`);
  }

  /**
   * A slot someone else renews is never taken, whatever name it carries. Before taking or
   * continuing our host_id we watch its sector for one renewal interval and a little more
   * (2·io + 2 s): a live host — another machine configured with our host_id, or a clone of this
   * one with our host name, or a second agent started with a copied config — renews within that
   * time, and we refuse, naming it, and keep refusing at every retry. sanlock's delta acquire
   * waits for the same evidence (host_dead) but skips it for its own name, which a clone shares.
   * A free slot (timestamp 0) needs no watch. Returns the geometry and the sector as last read.
   */
  private async watchSlot(storage: LeaseStorage, seconds?: number): Promise<{ geometry: Geometry; leader: LeaderRecord }> {
    const geometry = await readLockspaceGeometry(storage, this.spec.offset, this.name, this.spec.ioTimeout);
    const read = () => readDeltaLeader(storage, this.spec.offset, geometry, this.name, this.spec.hostId, this.spec.ioTimeout);
    const first = await read();
    if (first.timestamp === 0) return { geometry, leader: first };
    const watchMs = (seconds ?? slotWatchSeconds(first.ioTimeout || this.spec.ioTimeout)) * 1000;
    const ours = this.isOurName(first.resourceName);
    this.log.info(`host_id ${this.spec.hostId} of ${this.name} was last written by ${ours ? 'our host name' : `"${first.resourceName}"`} ` +
      `(generation ${first.ownerGeneration}); watching it ${watchMs / 1000} s for renewals by another host before ${ours ? 'continuing' : 'taking'} it`);
    const until = this.clock.nowMs() + watchMs;
    let last = first;
    while (!this.stopped && this.clock.nowMs() < until) {
      await this.clock.sleep(Math.min(1000, Math.max(0, until - this.clock.nowMs())));
      if (this.stopped) break;
      const now = await read();
      if (now.timestamp === 0) return { geometry, leader: now };
      if (!sameLeader(now, last)) throw slotBusyError(this.name, this.spec.hostId, now, this.isOurName(now.resourceName));
      last = now;
    }
    return { geometry, leader: last };
  }

  /** A name in a delta record is ours (as stored: at most 47 bytes). */
  private isOurName(name: string): boolean {
    return namesEqual(name, this.spec.hostName.slice(0, 47));
  }

  /** Why the acquire about to run waits (deltaAcquire: a held slot is taken only once its writer proved dead). */
  private sayWait(leader: LeaderRecord): void {
    if (leader.timestamp === 0 || this.autoChoice === 'free') return;
    const wait = deltaAcquireHeldDelay(leader.ioTimeout, this.spec.ioTimeout);
    const who = describeOwner(leader);
    if (!this.isOurName(leader.resourceName)) {
      this.log.info(`lockspace ${this.name}: host_id ${this.spec.hostId} was last written by ${who}; waiting ${wait} s for it to prove dead before taking it`);
    } else if (!this.leftByThisMachine(leader)) {
      this.log.warning(`lockspace ${this.name}: host_id ${this.spec.hostId} carries our host name, but no record of this machine says it acquired ` +
        `generation ${leader.ownerGeneration} (a clone or a copied config with our host_name, or a lost state database): waiting ${wait} s for ${who} to prove dead before taking it`);
    }
  }

  /** Our record of the delta lease, if it is of the slot we are joining (host_id = auto may choose another). */
  private previousForSlot(): PreviousDelta | undefined {
    const prev = this.hooks.previousDelta?.(this);
    return prev && (prev.hostId === undefined || prev.hostId === this.spec.hostId) ? prev : undefined;
  }

  /**
   * The slot carries our name and the generation our record says this machine acquired (on this
   * boot, or an earlier one of the same machine identity): nobody acquired it since, so sanlock's
   * fast reacquire is safe. A clone (config and state database copied) has another boot and
   * another machine identity, and a lost database no record: then our name proves nothing, and
   * the acquire waits for the writer to prove dead.
   */
  private leftByThisMachine(leader: LeaderRecord): boolean {
    if (!this.isOurName(leader.resourceName)) return false;
    // This process joined with it (a lockspace lost and joined again; the record may lag behind
    // while the state database fails).
    if (this.joined && this.joined.hostId === this.spec.hostId && leader.ownerGeneration === this.joined.generation) return true;
    const prev = this.previousForSlot();
    return !!prev && (prev.sameMachine === true || sameBoot(prev.bootId)) && prev.generation === leader.ownerGeneration;
  }

  /**
   * After an agent restart (kill -9 included) on the same boot, our delta lease on disk may still
   * be ours: under our name and our generation, renewed less than host_dead ago (as other hosts
   * judge it), and — watchSlot saw to it — not renewed by anyone else. Then we go on renewing it:
   * a fresh acquire would bump the generation, and hosts waiting for our leases treat a newer
   * generation as "the owner is gone" and take them at once, while our domains still run.
   * Our record of the lease (boot id, generation) says which lease is ours; without the record
   * (the state database was lost) the sector's name and a timestamp that is plausible on this
   * boot's clock must do — the leases it covers are reconciled after the join. A lease older than
   * that, or from another boot, is acquired anew (after host_dead, when it is that close).
   */
  private async continueOwnLease(storage: LeaseStorage, slot: { geometry: Geometry; leader: LeaderRecord }): Promise<DeltaLease | undefined> {
    // Only a lease a previous process left: once this one tried an acquire, a record under our
    // name may be its own unverified write (or another host's under our name), never ours to go on with.
    if (this.acquireTried) return undefined;
    const prev = this.previousForSlot();
    if (prev && !sameBoot(prev.bootId)) return undefined;
    let { geometry: g, leader } = slot;
    // A lockspace we lost is joined with a new generation: its owners were stopped and its
    // leases are to be free for other hosts, whatever the sector's age says.
    if (this.lostGeneration !== undefined && leader.ownerGeneration === this.lostGeneration) return undefined;
    if (prev && leader.timestamp !== 0 && leader.ownerGeneration !== prev.generation && this.isOurName(leader.resourceName)) {
      // Our name, but not the generation we hold: another agent under our name wrote it since.
      // It may only be paused: the acquire waits for it as sanlock waits for a foreign owner.
      this.log.warning(`lockspace ${this.name}: host_id ${this.spec.hostId} carries our host name but generation ${leader.ownerGeneration}, not ours (${prev.generation}): ` +
        `another agent with our host name held it since; waiting ${deltaAcquireHeldDelay(leader.ioTimeout, this.spec.ioTimeout)} s for it to prove dead before taking it`);
      return undefined;
    }
    const t = timeoutsFor(this.spec.ioTimeout);
    // Other hosts take our leases only host_dead after the last renewal they saw. Until then a
    // renewal — same generation — keeps them ours; a new generation would free them at once
    // while our domains run (nothing stopped them while the agent was down). Leave room for
    // the first renewal's I/O.
    const lastChance = t.hostDead - 2 * this.spec.ioTimeout - 1;
    if (!prev && leader.timestamp !== 0 && leader.ownerId === this.spec.hostId && this.isOurName(leader.resourceName)) {
      // No record (the state database was lost): nothing says this machine wrote it on this boot.
      // Another live host under our name (a second agent with a copied config) renews at least
      // once per 8·io unless its own lease is failing: watch that long in all, if there is time
      // left to continue after it; otherwise it is acquired anew, after host_dead.
      // (The domains' leases come first: the watch is cut short to what host_dead leaves.)
      const age0 = this.clock.monotime() - leader.timestamp;
      if (age0 < 0) return undefined;
      const more = Math.min(t.idRenewalFail - t.idRenewal, lastChance - age0 - 1);
      // age0 is our clock against the writer's: a renewal period more at least, or not continued.
      if (more < t.idRenewal + this.spec.ioTimeout) return undefined;
      this.log.warning(`lockspace ${this.name}: no record of our delta lease in the state database, but host_id ${this.spec.hostId} carries our host name ` +
        `(generation ${leader.ownerGeneration}); watching it ${more} s more for another host renewing it before continuing it`);
      ({ geometry: g, leader } = await this.watchSlot(storage, more));
      if (leader.timestamp === 0) return undefined;
    }
    const age = this.clock.monotime() - leader.timestamp;
    if (leader.timestamp === 0 || leader.ownerId !== this.spec.hostId || (prev && leader.ownerGeneration !== prev.generation) ||
        !this.isOurName(leader.resourceName) || age < 0) {
      return undefined;
    }
    if (!prev) {
      this.log.warning(`lockspace ${this.name}: no record of our delta lease in the state database, but host_id ${this.spec.hostId} carries our host name ` +
        `(generation ${leader.ownerGeneration}, renewed ${age} s ago by this machine's clock) and nobody else renews it: continuing it; ` +
        'leases it covers are reconciled with what runs once joined');
    }
    if (age >= lastChance) {
      if (age < t.hostDead) {
        const wait = t.hostDead - age;
        this.log.warning(`lockspace ${this.name}: our delta lease was last renewed ${age} s ago, too close to host_dead (${t.hostDead} s) to continue; ` +
          `other hosts may take our leases now; joining with a new generation in ${wait} s`);
        await new Promise((r) => setTimeout(r, wait * 1000));
      }
      return undefined;
    }
    if (age >= t.idRenewalFail) {
      this.log.warning(`lockspace ${this.name}: our delta lease (generation ${leader.ownerGeneration}) was last renewed ${age} s ago, more than 8 x io_timeout; ` +
        `continuing it before host_dead (${t.hostDead} s) so that other hosts never see it expire while our domains run`);
    } else {
      this.log.info(`lockspace ${this.name}: our delta lease (generation ${leader.ownerGeneration}) was renewed ${age} s ago; continuing it`);
    }
    const lease = {
      spaceName: this.name, hostId: this.spec.hostId, hostName: this.spec.hostName, storage, offset: this.spec.offset,
      geometry: g, ioTimeout: this.spec.ioTimeout, generation: leader.ownerGeneration, leader, lastSuccess: leader.timestamp,
      lastResult: SANLK.OK, bitmap: Buffer.alloc(256), released: false,
    } as DeltaLease;
    // Renew it before we call ourselves joined: its last renewal may be 8 x io_timeout old or
    // more, and the once-a-second timeline check would declare the lockspace lost — stopping
    // every owner — if it ran before the first scheduled renewal completed. A failure here is
    // retried by the join loop, which reads the lease again.
    await deltaRenew(lease, this.clock);
    return lease;
  }

  /**
   * The next renewal in `ms`. After a success it is handed to the lockspace file's I/O thread
   * at once, to start at its time (deltaRenew with `at`): the event loop then wakes once per
   * renewal, for its result, instead of also for a timer that starts it (on an idle host each
   * wake-up of the agent costs more CPU than the renewal's JavaScript: docs/benchmarks.md).
   * Otherwise (the first renewal, retries, a storage that cannot) a timer starts it.
   * True when handed over.
   */
  private scheduleRenew(ms: number): boolean {
    if (this.stopped) return false;
    clearTimeout(this.renewTimer);
    const at = this.handOverWindow(ms);
    if (at) {
      void this.renewOnce(at);
      return true;
    }
    this.renewTimer = setTimeout(() => void this.renewOnce(), ms);
    return false;
  }

  /**
   * When the renewal due in `ms` can go to the I/O thread now: the last one succeeded and only
   * restamps our sector (canScheduleRenewal), and it settles — done, failed, or timed out
   * io_timeout after its start — before the timeline's warning is due, so that it serves as the
   * timeline check meanwhile (no timer of ours fires while renewals succeed). It is not started
   * once idRenewalFail has passed since the last success: the verdict a renewal timer firing late
   * meets in renewOnce.
   */
  private handOverWindow(ms: number): StartWindow | undefined {
    const lease = this.lease;
    if (ms <= 0 || !lease || !this.monitor?.checked || !canScheduleRenewal(lease)) return undefined;
    const t = timeoutsFor(this.spec.ioTimeout);
    const now = this.clock.nowMs();
    if (ms + this.spec.ioTimeout * 1000 >= (lease.lastSuccess + t.idRenewalWarn) * 1000 - now) return undefined;
    return { startInMs: ms, latestStartInMs: (lease.lastSuccess + t.idRenewalFail) * 1000 - 1 - now, nextInMs: t.idRenewal * 1000 + RENEWAL_PAUSE_MS };
  }

  /** Runs a renewal now, or with `at` hands it to the I/O thread to start then (handOverWindow). */
  private async renewOnce(at?: StartWindow): Promise<void> {
    const lease = this.lease;
    if (!lease || this.stopped || this.state === 'lost' || this.renewing) return;
    const t = timeoutsFor(this.spec.ioTimeout);
    const now = this.clock.monotime();
    if (!at) {
      const due = lease.lastSuccess + t.idRenewal;
      // The very first renewal (seeding the monitor) runs at once; later ones every 2·io.
      if (this.monitor?.checked && now < due) {
        this.scheduleRenew((due - now) * 1000);
        return;
      }
      // The verdict first: a renewal timer that fires late (the agent was stopped, the machine
      // froze) must not renew a lease that has expired meanwhile: the timeline loses it, and
      // other hosts may take its leases at host_dead, which a late renewal would push back.
      if (now - lease.lastSuccess >= t.idRenewalFail) {
        this.checkTimeline();
        return;
      }
    }
    this.renewing = true;
    const began = this.clock.nowMs() + (at?.startInMs ?? 0);
    const before = lease.lastSuccess;
    const margin = () => before + t.idRenewalFail - this.clock.monotime();
    let next: number | undefined;
    let ok = false;
    try {
      const r = at ? await deltaRenew(lease, this.clock, at) : await deltaRenew(lease, this.clock);
      if (r === NOT_STARTED) {
        // Cancelled (stop, a lost lockspace: nothing more to do) or its I/O thread could not
        // start it in time (the machine stopped): a renewal started now judges.
        if (this.lease === lease) next = 0;
        return;
      }
      ok = true;
      this.renewals.success(r.leader.timestamp, r.readMs, r.writeMs);
      this.hooks.onRenewal?.(this, { ok: true, readMs: r.readMs, writeMs: r.writeMs, oneRequest: r.oneRequest, marginS: margin() });
      if (this.monitor) {
        this.monitor.observe(r.area, this.clock.monotime());
        this.reportIoTimeoutMismatches(this.monitor);
      }
      if (this.warned) this.log.warning(`lockspace ${this.name}: renewal succeeded again after ${now - (this.lastRenewOk ?? now)} s of failures`);
      this.warned = false;
      this.lastRenewOk = this.clock.monotime();
      this.lastError = undefined;
      this.hooks.onRenewed?.(this);
      // sanlock's cadence (RENEWAL_PAUSE_MS): id_renewal and half a second after this one began
      next = Math.max(0, began + t.idRenewal * 1000 + RENEWAL_PAUSE_MS - this.clock.nowMs());
    } catch (e) {
      const err = e as LeaseError;
      this.lastError = err.message;
      this.renewals.failure(err instanceof LeaseError ? err.rv : SANLK.EIO);
      this.hooks.onRenewal?.(this, { ok: false, marginS: margin() });
      if (err instanceof LeaseError && isCorruptRenewal(err.rv)) {
        this.lose(`our delta lease was overwritten or became unreadable: ${err.message}`);
      } else {
        this.log.warning(`lockspace ${this.name}: renewal failed (${this.clock.monotime() - lease.lastSuccess} s since the last success): ${err.message}`);
        next = 500;
      }
    } finally {
      this.renewing = false;
      // After `renewing` is cleared: the next renewal may be handed over at once.
      const handedOver = next !== undefined && this.scheduleRenew(next);
      // The timeline check: a renewal handed over is it until it settles; otherwise a timer, armed
      // anew after a success, kept (ticking) through failures.
      if (handedOver) this.disarmTimeline();
      else if (ok || !this.checkTimer) this.armTimeline();
    }
  }

  private lastRenewOk?: number;
  private readonly mismatchReported = new Map<number, number>();

  /**
   * Log once per host (and again if it changes) when another host runs with another io_timeout.
   * A host's io_timeout changes only with its record, so only the hosts whose record changed at
   * this look are examined (with 2,000 hosts, judging every one at every renewal cost more than
   * the read).
   */
  private reportIoTimeoutMismatches(monitor: HostMonitor): void {
    const now = this.clock.monotime();
    for (const hostId of monitor.changedAtLastLook()) {
      // The common case (same io_timeout, or already reported) is told apart without building a
      // snapshot.
      const io = monitor.recordedIoTimeout(hostId);
      if (hostId === this.spec.hostId || !io || io === this.spec.ioTimeout || this.mismatchReported.get(hostId) === io) continue;
      const h = monitor.snapshot(hostId);
      if (!h) continue;
      const state = monitor.state(hostId, now);
      if (state === 'FREE' || state === 'DEAD') continue;
      this.mismatchReported.set(hostId, io);
      this.log.warning(`lockspace ${this.name}: host ${hostId} (${h.ownerName}) uses io_timeout ${io} s, this host ${this.spec.ioTimeout} s; ` +
        'takeover and failure delays differ between them — use one io_timeout on every host');
    }
  }

  /**
   * The timeline check is due when the last successful renewal turns 6·io old (the warning);
   * from then on it runs once a second, as sanlock's main loop does, until a renewal succeeds
   * (which arms it anew) or the lockspace is lost. A timer of its own, not the renewal's, so a
   * hung renewal cannot delay the verdict; no timer fires while renewals succeed, so an idle
   * agent is not woken every second for nothing. While a renewal handed to the I/O thread waits
   * or runs, no timer at all (handOverWindow: it settles before the warning is due).
   */
  private armTimeline(): void {
    this.disarmTimeline();
    if (this.stopped || this.state !== 'joined' || !this.lease) return;
    const dueMs = (this.lease.lastSuccess + timeoutsFor(this.spec.ioTimeout).idRenewalWarn) * 1000;
    this.checkTimer = setTimeout(() => this.timelineTick(), Math.max(0, dueMs - this.clock.nowMs()));
    this.checkTimer.unref();
  }

  private disarmTimeline(): void {
    // ref() first: Node drops the timer's (now empty) list only when a ref'ed timer is cleared. An
    // unref'ed one leaves its list queued, and as each renewal arms a delay of its own (5-6 s at
    // io 1), every renewal left a wake-up of the event loop that found nothing to do.
    this.checkTimer?.ref();
    clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
  }

  private timelineTick(): void {
    this.checkTimeline();
    if (this.stopped || this.state !== 'joined') return;
    this.checkTimer = setTimeout(() => this.timelineTick(), 1000);
    this.checkTimer.unref();
  }

  /** sanlock's main loop: judge time since the last successful renewal. */
  private checkTimeline(): void {
    if (this.state !== 'joined' || !this.lease) return;
    const t = timeoutsFor(this.spec.ioTimeout);
    const since = this.clock.monotime() - this.lease.lastSuccess;
    if (since >= t.idRenewalFail) {
      this.lose(`renewals failed for ${since} s (limit ${t.idRenewalFail} s = 8 x io_timeout ${this.spec.ioTimeout})`);
    } else if (since >= t.idRenewalWarn) {
      this.warned = true;
      this.log.warning(`lockspace ${this.name}: no successful renewal for ${since} s; leases fail in ${t.idRenewalFail - since} s ` +
        `(other hosts may take them ${t.hostDead - since} s from now)${this.lastError ? `; last error: ${this.lastError}` : ''}`);
    }
  }

  private lose(reason: string): void {
    if (this.state === 'lost') return;
    this.state = 'lost';
    clearTimeout(this.renewTimer);
    this.lease?.storage.cancelScheduled?.();
    clearTimeout(this.checkTimer);
    this.log.error(`lockspace ${this.name} lost: ${reason}; stopping every owner that uses it`);
    this.hooks.onLost(this, reason);
    // Join again (fast reacquire: a new generation) only after host_dead since our last renewal.
    // A new generation tells waiting hosts our leases are free at once; before host_dead our
    // owners may still be running (SIGTERM grace, an ignored signal), so rejoining earlier would
    // hand their disks to another host while they write.
    this.lostGeneration = this.lease?.generation ?? this.lostGeneration;
    const last = this.lease?.lastSuccess ?? this.clock.monotime();
    const wait = Math.max(1, last + timeoutsFor(this.spec.ioTimeout).hostDead - this.clock.monotime());
    this.log.warning(`lockspace ${this.name}: rejoining in ${wait} s (host_dead after our last renewal)`);
    this.lease = undefined;
    this.monitor = undefined;
    this.joinAttempts = 0;
    setTimeout(() => { if (!this.stopped) void this.joinLoop(); }, wait * 1000);
  }
}
