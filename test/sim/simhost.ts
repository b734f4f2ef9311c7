import { LeaseError, SANLK } from '../../src/ondisk';
import { Clock } from '../../src/lease/clock';
import { deltaAcquire, DeltaLease, deltaRelease, deltaRenew, isCorruptRenewal } from '../../src/lease/delta';
import { HostMonitor } from '../../src/lease/hostmonitor';
import { IoBufferPool } from '../../src/lease/iobuf';
import { lockspaceLiveness } from '../../src/lease/liveness';
import { MemStorage } from '../helpers/memstorage';
import { acquireResource, releaseResource } from '../../src/lease/resource';
import { LeaseStorage } from '../../src/lease/storage';
import { hostDeadSeconds, Timeouts, timeoutsFor } from '../../src/lease/timeouts';
import { AcquireHint, ResourceLocation, ResourceToken } from '../../src/lease/token';
import { arena } from './arena';
import { Gate } from './gate';
import { Oracle } from './oracle';
import { prng, VirtualScheduler } from './virtualclock';

/**
 * A simulated host running a lockagent daemon the way sanlock runs: join the lockspace, renew
 * every 2·io, stop using leases (kill the "pids") when renewals fail for 8·io or the delta
 * lease is corrupt, let the watchdog reset the host if that does not happen by 8·io + 60.
 * Workers acquire and release resources at random. The world crashes, pauses and restarts it.
 */

export interface World {
  sched: VirtualScheduler;
  storage: MemStorage;
  oracle: Oracle;
  resources: ResourceLocation[];
  spaceName: string;
  durationMs: number;
  stats: SimStats;
  log(line: string): void;
}

export interface SimStats {
  joins: number;
  joinErrors: Record<string, number>;
  acquireErrors: Record<string, number>;
  releaseErrors: Record<string, number>;
  renewErrors: Record<string, number>;
  crashes: number;
  pauses: number;
  watchdogResets: number;
  lockspaceFailures: number;
  leaves: number;
  releases: number;
  /** acquisitions that started from a release hint (no first area read) */
  hintedAcquisitions: number;
}

const count = (m: Record<string, number>, k: number | string) => {
  m[k] = (m[k] ?? 0) + 1;
};

/** One daemon process: its gate, clock and view of the storage. */
class Proc {
  readonly gate = new Gate();
  readonly clock: Clock;
  readonly storage: LeaseStorage;
  /** The renewal read buffer, handed from one membership to the next (sanlock's task->iobuf). */
  renewBuf?: Buffer;
  /**
   * Read buffers per resource, kept by the host across restarts: a buffer in a pool is not in
   * use, so a crash cannot leave a read in flight into it. The in-memory disk then copies
   * only what changed since that buffer's last read.
   */
  readonly pools: Map<number, IoBufferPool>;
  poolFor(resource: number): IoBufferPool {
    let p = this.pools.get(resource);
    if (!p) {
      p = new IoBufferPool(1, (n) => arena.alloc(n));
      this.pools.set(resource, p);
    }
    return p;
  }
  constructor(world: World, readonly tag: string, readonly bootMs: number, seed: number, pools: Map<number, IoBufferPool>) {
    this.pools = pools;
    const sched = world.sched;
    const g = this.gate;
    this.clock = {
      monotime: () => Math.floor((sched.nowMs() + bootMs) / 1000),
      nowMs: () => sched.nowMs() + bootMs,
      sleep: (ms) => g.wrap(sched.sleep(ms)),
      random: prng(seed),
    };
    const v = world.storage.view(tag);
    this.storage = {
      id: v.id,
      read: (o, l, t) => g.wrap(v.read(o, l, t)),
      readInto: (o, b, t) => g.wrap((v.readInto as NonNullable<LeaseStorage['readInto']>)(o, b, t)),
      write: (o, d, t) => g.wrap(v.write(o, d, t)),
    };
  }
}

type MemberState = 'joined' | 'leaving' | 'failed' | 'out';

/** Read the state afresh: it changes while we await, which TypeScript's narrowing ignores. */
const stateOf = (m: { state: MemberState }): MemberState => m.state;

/** One joined lockspace, from add_lockspace to its removal. */
class Membership {
  private st: MemberState = 'joined';
  private waiters: (() => void)[] = [];
  get state(): MemberState {
    return this.st;
  }
  set state(s: MemberState) {
    this.st = s;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  /** Resolves (through the process gate) at the next state change. */
  changed(): Promise<void> {
    return this.proc.gate.wrap(new Promise<void>((r) => this.waiters.push(r)));
  }
  readonly abort = new AbortController();
  readonly holdings = new Map<number, ResourceToken>();
  readonly busy = new Set<number>();
  /** AcquireHints from our exclusive releases, as the agent keeps them (lost with the process). */
  readonly hints = new Map<number, AcquireHint>();
  readonly workers: Promise<void>[] = [];
  renewLoop?: Promise<void>;
  stopRenewals = false;
  /** The wdmd connection: open from join until a clean removal. */
  wdConnected = true;
  constructor(readonly key: string, readonly proc: Proc, readonly lease: DeltaLease, readonly monitor: HostMonitor) {}
}

export class SimHost {
  private procSeq = 0;
  private readonly pools = new Map<number, IoBufferPool>();
  private memberSeq = 0;
  proc?: Proc;
  member?: Membership;
  name: string;
  private readonly rng: () => number;
  private readonly io: number;
  private readonly t: Timeouts;

  constructor(private readonly w: World, readonly hostId: number, ioTimeout: number, private bootS: number, seed: number) {
    this.rng = prng(seed);
    this.io = ioTimeout;
    this.t = timeoutsFor(ioTimeout);
    this.name = this.newName();
  }

  get ioTimeout(): number {
    return this.io;
  }

  private newName(): string {
    const hex = Math.floor(this.rng() * 0xffffffff).toString(16).padStart(8, '0');
    return `${hex}-sim.h${this.hostId}`;
  }

  private log(s: string): void {
    this.w.log(`h${this.hostId}${this.proc ? `#${this.procSeq}` : ''} ${s}`);
  }

  /** Virtual time at which `bootMs`-clock second `s` happens. */
  private globalMs(proc: Proc, s: number): number {
    return s * 1000 - proc.bootMs;
  }

  /** Deadline (virtual ms) after which the oracle may no longer treat this member as in its lease. */
  renewalDeadlineMs(key: string): number {
    const m = this.member;
    if (!m || m.key !== key) return -Infinity;
    return this.globalMs(m.proc, m.lease.lastSuccess + this.t.idRenewalFail);
  }

  start(atMs: number): void {
    this.w.sched.at(atMs, () => this.boot());
  }

  private boot(): void {
    const seq = ++this.procSeq;
    const proc = new Proc(this.w, `h${this.hostId}.${seq}`, this.bootS * 1000, Math.floor(this.rng() * 2 ** 31), this.pools);
    proc.gate.onResume = () => this.checkOurLease(proc);
    this.proc = proc;
    this.log(`boot (monotime ${proc.clock.monotime()}, name ${this.name})`);
    void this.daemon(proc);
  }

  /** add_lockspace, run it until it ends, rejoin after a while; forever, until the process dies. */
  private async daemon(proc: Proc): Promise<void> {
    const { clock } = proc;
    for (;;) {
      if (clock.nowMs() - proc.bootMs > this.w.durationMs) return;
      let lease: DeltaLease;
      try {
        lease = await deltaAcquire({
          storage: proc.storage, offset: 0, spaceName: this.w.spaceName, hostId: this.hostId, hostName: this.name,
          ioTimeout: this.io, clock,
        });
      } catch (e) {
        count(this.w.stats.joinErrors, (e as LeaseError).rv ?? 'exception');
        this.log(`join failed: ${(e as Error).message}`);
        await clock.sleep(1000 + Math.floor(this.rng() * 10_000));
        continue;
      }
      this.w.stats.joins++;
      lease.iobuf = proc.renewBuf ?? arena.alloc(lease.geometry.alignSize);
      const g = lease.geometry;
      const monitor = new HostMonitor({ spaceName: this.w.spaceName, hostId: this.hostId, sectorSize: g.sectorSize, maxHosts: g.maxHosts, ioTimeout: this.io });
      const m = new Membership(`h${this.hostId}#${this.procSeq}.${++this.memberSeq}`, proc, lease, monitor);
      this.member = m;
      this.log(`joined as ${m.key} generation ${lease.generation}`);
      this.armWatchdog(m);
      m.renewLoop = this.renewLoop(m);
      void this.mainLoop(m);
      for (let i = 0; i < this.workers; i++) m.workers.push(this.worker(m, i));
      await this.untilOut(m);
      proc.renewBuf = m.lease.iobuf;
      this.log(`lockspace removed (${m.key})`);
      await clock.sleep(2000 + Math.floor(this.rng() * 30_000));
    }
  }

  workers = 1;

  private async untilOut(m: Membership): Promise<void> {
    while (stateOf(m) !== 'out') await m.changed();
  }

  /** The lockspace thread: renew once 2·io have passed since the last success. */
  private async renewLoop(m: Membership): Promise<void> {
    const { clock } = m.proc;
    while (m.state !== 'out' && !m.stopRenewals) {
      if (clock.monotime() - m.lease.lastSuccess < this.t.idRenewal) {
        // sanlock sleeps 1 s at a time until due; jump straight to that check.
        const steps = Math.max(1, Math.ceil(((m.lease.lastSuccess + this.t.idRenewal) * 1000 - clock.nowMs()) / 1000));
        await clock.sleep(steps * 1000);
        continue;
      }
      await clock.sleep(500);
      if (stateOf(m) === 'out' || m.stopRenewals) break;
      try {
        const r = await deltaRenew(m.lease, clock);
        m.monitor.observe(r.area, clock.monotime());
        this.armWatchdog(m);
      } catch (e) {
        const rv = (e as LeaseError).rv;
        count(this.w.stats.renewErrors, rv ?? 'exception');
        if (rv === undefined) throw e;
        if (isCorruptRenewal(rv) && (m.state === 'joined' || m.state === 'leaving')) {
          this.log(`renewal corrupt: ${(e as Error).message}`);
          this.fail(m, `corrupt renewal ${rv}`);
        }
      }
    }
  }

  /** The daemon's main loop: once a second, stop using the lockspace after 8·io without renewal. */
  private async mainLoop(m: Membership): Promise<void> {
    const { clock } = m.proc;
    const phase = Math.floor(this.rng() * 1000);
    while (stateOf(m) === 'joined' || stateOf(m) === 'leaving') {
      this.checkOurLease(m.proc);
      // It checks once a second; the first check that can fail is just after the deadline.
      const due = (m.lease.lastSuccess + this.t.idRenewalFail) * 1000 + phase - clock.nowMs();
      await Promise.race([clock.sleep(Math.max(1000, due)), m.changed()]);
    }
  }

  /** check_our_lease: also run first thing when a paused process resumes. */
  private checkOurLease(proc: Proc): void {
    const m = this.member;
    if (!m || m.proc !== proc || (m.state !== 'joined' && m.state !== 'leaving')) return;
    if (proc.clock.monotime() - m.lease.lastSuccess >= this.t.idRenewalFail) this.fail(m, 'renewals failed for 8·io');
  }

  /**
   * Lockspace failure: stop acquiring, kill the pids using its leases (they die within a few
   * seconds), then remove the lockspace. The oracle stops counting them as users at the kill.
   */
  private fail(m: Membership, why: string): void {
    if (m.state === 'failed' || m.state === 'out') return;
    this.w.stats.lockspaceFailures++;
    this.log(`lockspace failed (${why}); killing pids`);
    m.state = 'failed';
    m.abort.abort();
    const killMs = Math.floor(this.rng() * 10_000);
    this.w.sched.after(killMs, () => {
      if (m.proc.gate.crashed) return;
      this.w.oracle.endAll(m.key);
      m.holdings.clear();
      m.wdConnected = false;
      m.state = 'out';
      this.log(`pids killed (${m.key})`);
    });
  }

  /** wdmd: reset the host if the connection is still open host_dead after the last renewal. */
  private armWatchdog(m: Membership): void {
    const last = m.lease.lastSuccess;
    const at = this.globalMs(m.proc, last + hostDeadSeconds(this.io, this.io));
    this.w.sched.at(at, () => {
      if (!m.wdConnected || m.proc.gate.crashed || m.lease.lastSuccess !== last) return;
      this.w.stats.watchdogResets++;
      this.log(`watchdog fired (last renewal ${last})`);
      this.crash('watchdog reset');
    });
  }

  /** A worker: acquire a random resource, use it a while, release it. */
  private async worker(m: Membership, n: number): Promise<void> {
    const { clock } = m.proc;
    const signal = m.abort.signal;
    const liveness = lockspaceLiveness(m.lease, m.monitor, clock);
    const host = { hostId: this.hostId, generation: m.lease.generation, ioTimeout: this.io };
    while (m.state === 'joined') {
      await this.idle(m, 200 + Math.floor(this.rng() * 5000));
      if (m.state !== 'joined') break;
      const free = this.w.resources.map((_, i) => i).filter((i) => !m.busy.has(i));
      if (!free.length) continue;
      const r = free[Math.floor(this.rng() * free.length)];
      const mode = this.rng() < 0.3 ? 'SH' : 'EX';
      m.busy.add(r);
      let token: ResourceToken;
      const hint = m.hints.get(r);
      m.hints.delete(r);
      try {
        // Through this process's storage view: its I/O stops with it and carries its tag.
        token = await acquireResource({ ...this.w.resources[r], storage: m.proc.storage }, host, {
          clock, liveness, mode, cancel: { signal }, iobufs: m.proc.poolFor(r), ownerNoWait: this.rng() < 0.1, hint,
        });
      } catch (e) {
        m.busy.delete(r);
        const rv = (e as LeaseError).rv;
        if (rv === undefined) throw e;
        count(this.w.stats.acquireErrors, rv);
        if (rv !== SANLK.ACQUIRE_IDLIVE && rv !== -201) this.log(`w${n} acquire R${r} ${mode}: ${rv} ${(e as Error).message}`);
        continue;
      }
      // sanlock refuses to hand out a lease once its lockspace is failing.
      const gap = clock.monotime() - m.lease.lastSuccess;
      if (m.state !== 'joined' || gap >= this.t.idRenewalFail) {
        this.log(`w${n} acquired R${r} ${mode} lver ${token.lver} but the lockspace is ${m.state}: not using it`);
        if (stateOf(m) === 'leaving') await releaseResource(token, { clock }).catch(() => undefined);
        m.busy.delete(r);
        continue;
      }
      if (hint) this.w.stats.hintedAcquisitions++;
      m.holdings.set(r, token);
      this.w.oracle.acquired(m.key, r, mode, this.w.sched.nowMs(), token.lver);
      this.log(`w${n} acquired R${r} ${mode} lver ${token.lver}`);
      await this.idle(m, 500 + Math.floor(this.rng() * 20_000));
      if (stateOf(m) === 'failed' || stateOf(m) === 'out') {
        m.busy.delete(r); // the kill ends its use; sanlock does no disk release for a dead lockspace
        break;
      }
      this.w.oracle.ended(m.key, r);
      m.holdings.delete(r);
      this.w.stats.releases++;
      try {
        const hint = await releaseResource(token, { clock });
        if (hint) m.hints.set(r, hint);
        this.log(`w${n} released R${r}`);
      } catch (e) {
        count(this.w.stats.releaseErrors, (e as LeaseError).rv ?? 'exception');
        this.log(`w${n} release R${r}: ${(e as Error).message}`);
      }
      m.busy.delete(r);
    }
  }

  /** Sleep up to `ms`, waking early when the membership stops being joined. */
  private async idle(m: Membership, ms: number): Promise<void> {
    if (m.state !== 'joined') return;
    await Promise.race([m.proc.clock.sleep(ms), m.changed()]);
  }

  /** Clean rem_lockspace: stop workers (they release their leases), then release the host_id. */
  async leave(): Promise<void> {
    const m = this.member;
    if (!m || m.state !== 'joined' || m.proc.gate.crashed || m.proc.gate.paused) return;
    this.w.stats.leaves++;
    this.log(`leaving ${m.key}`);
    m.state = 'leaving';
    m.abort.abort();
    await Promise.all(m.workers);
    await this.releaseAll(m);
    if (stateOf(m) !== 'leaving') return; // failed meanwhile
    // Release the delta lease only after every resource: others treat a free host_id's leases as free.
    m.stopRenewals = true;
    await m.renewLoop;
    if (stateOf(m) === 'leaving' && m.lease.lastResult === 0) await deltaRelease(m.lease).catch(() => undefined);
    m.wdConnected = false;
    m.state = 'out';
  }

  private async releaseAll(m: Membership): Promise<void> {
    for (const [r, token] of [...m.holdings]) {
      this.w.oracle.ended(m.key, r);
      m.holdings.delete(r);
      await releaseResource(token, { clock: m.proc.clock }).catch(() => undefined);
    }
  }

  /** The process dies (or the host resets): nothing of it runs again; its leases stay on disk. */
  crash(why: string): void {
    const proc = this.proc;
    if (!proc || proc.gate.crashed) return;
    this.w.stats.crashes++;
    this.log(`CRASH (${why})`);
    proc.gate.crash();
    const landed = this.w.storage.settlePending(proc.tag, () => this.rng() < 0.5);
    if (landed) this.log(`${landed} in-flight writes settled`);
    if (this.member) {
      this.w.oracle.endAll(this.member.key);
      this.member.wdConnected = false;
    }
    this.member = undefined;
    this.proc = undefined;
    const restartMs = 1000 + Math.floor(this.rng() * 60_000);
    if (this.rng() < 0.5) this.bootS = 20 + Math.floor(this.rng() * 40); // a reboot: monotime starts over
    if (this.rng() < 0.4) this.name = this.newName(); // a new daemon uuid: no fast reacquire
    this.w.sched.after(restartMs, () => this.boot());
  }

  /** SIGSTOP the daemon for `ms`; the watchdog keeps counting. */
  pause(ms: number): void {
    const proc = this.proc;
    if (!proc || proc.gate.crashed || proc.gate.paused) return;
    this.w.stats.pauses++;
    this.log(`pause for ${ms} ms`);
    proc.gate.pause();
    this.w.sched.after(ms, () => {
      if (proc.gate.crashed) return;
      this.log('resume');
      proc.gate.resume();
    });
  }
}
