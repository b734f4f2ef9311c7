import { ChildProcess, spawn } from 'child_process';
import { accessSync, closeSync, constants as FS, openSync, readFileSync } from 'fs';
import { connect, Socket } from 'net';
import { dirname, join } from 'path';
import { findPackageRoot } from '../io/packageroot';
import { Clock } from '../lease/clock';
import { timeoutsFor } from '../lease/timeouts';
import { LeaseError, SANLK } from '../ondisk';
import { Logger } from '../log/logger';
import { OwnerRef } from './types';
import type { Agent } from './agent';
import type { Lockspace } from './lockspace';

/**
 * The agent's side of the fencing guard (native/guard/lockagent-guard.c, docs/fencing.md): a
 * process of its own that SIGKILLs the owners of a lockspace when the deadline the agent gave it
 * passes. After every successful renewal, and whenever the owners of a lockspace change, the
 * agent sends the lockspace's owner pids and its deadline: host_dead after the start of the last
 * successful renewal, minus GUARD_MARGIN_S. The pid lists are computed when owners change, not
 * per renewal; a renewal whose pids the guard already has sends only the deadline (DEADLINE),
 * or the full SET to a guard older than that message. A SET the guard refuses (more owner pids
 * than it takes) leaves that lockspace unfenced: logged once, shown in status, acquires for pid
 * owners there refused, and not sent again until its pids change. A lockspace the agent itself declared
 * lost is left armed with its last deadline (the agent's failure action runs; an owner it
 * finished with is taken off), so a guard outlives an agent that dies in the middle of that.
 * An owner whose process does not exist yet but will write a pid file (a domain between
 * libvirt's `prepare` and QEMU's start: OwnerRef.pidFile) is sent as `@<pid-file-hex>/<uuid>`
 * to a guard that knows it (its HELLO says "pidfile"): at the deadline the guard kills the
 * process the file names if its command line carries `-uuid <uuid>`.
 */
export type FencingLayer = 'guard' | 'wdmd' | 'none';
export type FencingMode = 'enforce' | 'log';

/** The guard kills this long before host_dead (the agent's own kill comes earlier). */
export const GUARD_MARGIN_S = 5;
/** A guard the agent started (no systemd unit) exits after this long with no agent and nothing armed. */
const SPAWNED_IDLE_EXIT_S = 30;
/** How long a start-up waits for an existing guard to answer (it re-creates a removed socket within 1 s). */
const FIND_EXISTING_MS = 2000;
const RETRY_MS = 250;

export interface GuardOptions {
  agent: Agent;
  clock: Clock;
  log: Logger;
  fencing: FencingLayer;
  mode: FencingMode;
  /** the agent's control socket: the guard's socket is guard.sock beside it */
  controlSocket: string;
  killGraceSeconds: number;
  /** the guard binary; default: this build's native/build/Release/lockagent-guard */
  binary?: string;
}

/** The fencing section of `lockagent status`, as the guard's client reports it. */
export interface GuardStatus {
  layer: FencingLayer;
  mode: FencingMode;
  protected: boolean;
  guard: {
    state: 'running' | 'down' | 'off'; pid?: number; socket?: string; mode?: FencingMode; restarts?: number; lastGapMs?: number; downForMs?: number;
    /** pending: owners armed by their pid file (domain uuids whose QEMU pid is not known yet) */
    lockspaces?: Array<{ lockspace: string; deadlineMs: number; secondsLeft: number; pids: number[]; pending?: string[]; minMarginMs?: number; refused?: string }>;
    kills?: GuardKill[];
  };
  /** filled in by the watchdog layers when they are enabled */
  wdmd: string;
  systemdWatchdog: string;
}

export interface GuardKill {
  lockspace: string;
  pid: number;
  /** killed; would-kill (log mode); skipped (gone, or the pid was reused) */
  what: 'killed' | 'would-kill' | 'skipped';
  /** when the agent heard of it (ISO time) */
  reportedAt: string;
}

interface Sent {
  deadlineMs: number;
  pids: string[];
}

const NO_PIDS: string[] = [];
/** Owner pids the guard takes per lockspace (MAX_PIDS in native/guard/lockagent-guard.c). */
export const GUARD_MAX_PIDS = 65536;
/** Domains armed by their pid file per lockspace (MAX_PENDING in the guard), and the longest pid file path (PIDFILE_MAX, with its NUL). */
const GUARD_MAX_PENDING = 1024;
const GUARD_PIDFILE_MAX = 256;
/** A libvirt domain uuid, as the guard checks it against QEMU's `-uuid` argument. */
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What a guard older than the DEADLINE message answers to it. */
const UNKNOWN_REQUEST = 'unknown request';

export function guardSocketPath(controlSocket: string): string {
  return join(dirname(controlSocket), 'guard.sock');
}

/** The guard of this build, or undefined when it was not built. */
export function defaultGuardBinary(): string | undefined {
  try {
    const p = join(findPackageRoot(), 'native', 'build', 'Release', 'lockagent-guard');
    accessSync(p, FS.X_OK);
    return p;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot (the guard checks it before a kill). */
export function pidStartTime(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export class GuardClient {
  readonly socketPath: string;
  private sock?: Socket;
  private buf = '';
  private registered = false;
  private stopped = false;
  private recovered = false;
  private guardPid?: number;
  private child?: ChildProcess;
  private downSince?: number;
  private retryTimer?: NodeJS.Timeout;
  private armedAtHello = new Set<string>();
  private readonly sent = new Map<string, Sent>();
  private readonly minMarginMs = new Map<string, number>();
  private readonly startTimes = new Map<string, string>();
  /** Owner pids (pid:starttime) per lockspace, computed when owners change; undefined: compute anew. */
  private pidsByLs?: Map<string, string[]>;
  /** The delta lease each lockspace had at its last sync: a new one (a rejoin) computes the pids anew. */
  private readonly leaseSeen = new Map<string, unknown>();
  /** The pids the connected guard was given by SET, per lockspace: a DEADLINE may only follow these. */
  private readonly guardHas = new Map<string, string[]>();
  /**
   * Lockspaces whose SET the guard refused (why, and the pids refused: the same pids are not sent
   * again; undefined after a reconnect, so a new guard is asked once). Their owners are not fenced.
   */
  private readonly refused = new Map<string, { why: string; pids?: string[] }>();
  /** Whether the connected guard takes owners known by a pid file (its HELLO says "pidfile"). */
  private pidFileKnown = false;
  /** Messages logged once per agent run, by key (a key naming the guard's pid: once per guard). */
  private readonly said = new Set<string>();
  private once(key: string, level: 'info' | 'warning', message: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.o.log[level](message);
  }
  /** Whether the connected guard knows DEADLINE; undefined until it answered one. */
  private deadlineKnown?: boolean;
  /** Requests whose answer (OK or ERR, in order) has not come yet. */
  private pending: Array<{ kind: 'SET' | 'CLEAR' | 'DEADLINE'; name: string; pids?: string[] }> = [];
  readonly kills: GuardKill[] = [];
  restarts = 0;
  lastGapMs?: number;

  constructor(private readonly o: GuardOptions) {
    this.socketPath = guardSocketPath(o.controlSocket);
  }

  get enabled(): boolean {
    return this.o.fencing === 'guard';
  }

  /** Connect to the guard, starting it when none answers. Resolves once registered or given up on (then retried in the background). */
  async start(): Promise<void> {
    if (this.o.fencing === 'none') {
      this.o.log.warning('fencing = none: owners are not fenced if this agent stops renewing (stopped, killed, hung) — another host may start ' +
        'the same VM at host_dead while they run; set fencing = guard (docs/fencing.md)');
      return;
    }
    if (!this.enabled) return;
    const io = [...this.o.agent.lockspaces.values()].map((l) => l.spec.ioTimeout);
    for (const i of new Set(io)) {
      const t = timeoutsFor(i);
      if (t.idRenewalFail + this.o.killGraceSeconds + 1 > t.hostDead - GUARD_MARGIN_S) {
        this.o.log.warning(`kill_grace_seconds = ${this.o.killGraceSeconds} is too long for io_timeout ${i}: the guard kills owners at host_dead - ${GUARD_MARGIN_S} s ` +
          `= ${t.hostDead - GUARD_MARGIN_S} s after the last renewal, before the grace after the lease failure (${t.idRenewalFail} s) ends; ` +
          `lower kill_grace_seconds to at most ${t.hostDead - GUARD_MARGIN_S - t.idRenewalFail - 1}`);
      }
    }
    if (await this.tryConnect()) return;
    // Under systemd the unit may be re-creating a removed socket (it does within 1 s); elsewhere
    // nothing answering means no guard.
    const until = Date.now() + (process.env.INVOCATION_ID ? FIND_EXISTING_MS : 0);
    while (!this.stopped && Date.now() < until) {
      await sleep(RETRY_MS);
      if (await this.tryConnect()) return;
    }
    this.launch();
    const until2 = Date.now() + 5000;
    while (!this.stopped && Date.now() < until2) {
      if (await this.tryConnect()) return;
      await sleep(RETRY_MS);
    }
    this.o.log.error(`fencing guard: cannot reach ${this.socketPath} after starting it; acquires for owners with a pid are refused until it answers (retrying)`);
    this.scheduleReconnect();
  }

  /** Startup recovery is over: the agent's lease table is complete, send it. */
  setRecovered(): void {
    this.recovered = true;
    if (this.registered) this.syncAll(true);
  }

  /** Throws when an owner with a pid may not acquire (in these lockspaces) now: its leases could not be fenced. */
  admit(owner: OwnerRef, lockspaces: Iterable<string> = []): void {
    if (!this.enabled || owner.pid === undefined || !this.recovered) return;
    if (this.registered) {
      for (const name of lockspaces) {
        const r = this.refused.get(name);
        if (!r) continue;
        throw new LeaseError(SANLK.EAGAIN, `the fencing guard refused the owner pids of lockspace ${name} (${r.why}), so leases of ` +
          `${owner.name ?? owner.uuid} there could not be enforced if this agent stopped renewing: release leases of other owners with a pid ` +
          `in ${name} (the guard takes up to ${GUARD_MAX_PIDS.toLocaleString('en-US')} per lockspace), then try again`);
      }
      return;
    }
    throw new LeaseError(SANLK.EAGAIN, `the fencing guard (lockagent-guard, ${this.socketPath}) is not running, so leases of ${owner.name ?? owner.uuid} ` +
      'could not be enforced if this agent stopped renewing; the agent is restarting it — try again in a few seconds, and check the guard\'s log ' +
      '(journalctl -u lockagent-guard, or guard.log beside the control socket)');
  }

  /** The owners of some lockspace changed (acquire, release, pid learnt). */
  changed(): void {
    this.pidsByLs = undefined;
    if (this.registered && this.recovered) this.syncAll(false);
  }

  /** A lockspace renewed (or joined): move its deadline. */
  renewed(ls: Lockspace): void {
    if (this.registered && this.recovered) this.sync(ls);
  }

  /** The agent's failure action finished with this owner: the guard need not kill it (lockspaces the agent declared lost). */
  failureHandled(pid: number | undefined): void {
    // The agent dropped the owner's leases of the lost lockspace: its pid lists are stale.
    this.pidsByLs = undefined;
    if (pid === undefined) return;
    for (const [name, s] of this.sent) {
      const ls = this.o.agent.lockspaces.get(name);
      if (ls && ls.state === 'joined') continue;
      const pids = s.pids.filter((p) => !p.startsWith(`${pid}:`));
      if (pids.length !== s.pids.length) this.send(name, { deadlineMs: s.deadlineMs, pids });
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    // The guard keeps the deadlines it has: leases of running owners stay fenced while we are down.
    this.sock?.destroy();
    this.child?.unref();
  }

  status(): GuardStatus {
    const now = this.o.clock.nowMs();
    const spaces = [...this.sent.entries()].filter(([, s]) => s.pids.length).map(([name, s]) => ({
      lockspace: name, deadlineMs: s.deadlineMs, secondsLeft: Math.round((s.deadlineMs - now) / 100) / 10,
      pids: s.pids.filter((p) => !p.startsWith('@')).map((p) => Number(p.split(':')[0])),
      pending: s.pids.filter((p) => p.startsWith('@')).map((p) => p.slice(p.indexOf('/') + 1)),
      minMarginMs: this.minMarginMs.get(name), refused: this.refused.get(name)?.why,
    }));
    const guard: GuardStatus['guard'] = this.enabled ? {
      state: this.registered ? 'running' : 'down', pid: this.guardPid, socket: this.socketPath, mode: this.o.mode, lockspaces: spaces,
      restarts: this.restarts, lastGapMs: this.lastGapMs, downForMs: this.downSince !== undefined ? now - this.downSince : undefined,
      kills: this.kills.slice(-20),
    } : { state: 'off' };
    return {
      layer: this.o.fencing,
      mode: this.o.mode,
      protected: this.o.fencing !== 'none' && (!this.enabled || (this.registered && !this.refused.size)) && this.o.mode === 'enforce',
      guard,
      // (filled in by the watchdog layers when they are enabled)
      wdmd: 'absent',
      systemdWatchdog: 'off',
    };
  }

  // ---- internals --------------------------------------------------------------------------------

  private deadlineFor(ls: Lockspace): number | undefined {
    if (ls.state !== 'joined' || !ls.lease) return undefined;
    const t = timeoutsFor(ls.spec.ioTimeout);
    // lastSuccess is the timestamp our renewal wrote, taken at its start (whole seconds, rounded
    // down): others see it later, and take our leases host_dead after they saw it.
    return (ls.lease.lastSuccess + t.hostDead - GUARD_MARGIN_S) * 1000;
  }

  /** The lockspace's owner pids: one walk over all owners after a change, then the same array until the next. */
  private pidsOf(name: string): string[] {
    if (!this.pidsByLs) {
      const by = new Map<string, string[]>();
      const live = new Set<string>();
      const pendingIn = new Map<string, number>();
      const add = (leases: Array<{ spec: { lockspace: string } }>, token: string, pending: boolean) => {
        for (const name of new Set(leases.map((l) => l.spec.lockspace))) {
          if (pending) {
            const n = pendingIn.get(name) ?? 0;
            if (n >= GUARD_MAX_PENDING) {
              this.once(`pending-cap:${name}`, 'warning', `lockspace ${name}: more than ${GUARD_MAX_PENDING} domains between prepare and their STARTED event; ` +
                'the guard takes that many by their pid file, the others are fenced from their STARTED event on');
              continue;
            }
            pendingIn.set(name, n + 1);
          }
          const list = by.get(name);
          if (list) list.push(token);
          else by.set(name, [token]);
        }
      };
      for (const o of this.o.agent.ownersList()) {
        if (!o.leases.length) continue;
        if (o.ref.pid === undefined) {
          const t = this.pidFileToken(o.ref);
          if (t) add(o.leases, t, true);
          continue;
        }
        const k = `${o.ref.uuid}:${o.ref.pid}`;
        let st = this.startTimes.get(k);
        if (!st) {
          st = pidStartTime(o.ref.pid);
          if (!st) continue; // already gone
          this.startTimes.set(k, st);
        }
        live.add(k);
        add(o.leases, `${o.ref.pid}:${st}`, false);
      }
      for (const k of this.startTimes.keys()) if (!live.has(k)) this.startTimes.delete(k);
      this.pidsByLs = by;
    }
    return this.pidsByLs.get(name) ?? NO_PIDS;
  }

  /**
   * `@<pid-file-hex>/<uuid>` for an owner known by the pid file its process will write, when the
   * connected guard knows such owners; otherwise none (logged once per guard: those owners are
   * not fenced until their pid is known).
   */
  private pidFileToken(ref: OwnerRef): string | undefined {
    if (!ref.pidFile || !UUID_RE.test(ref.uuid) || !ref.pidFile.startsWith('/')) return undefined;
    if (Buffer.byteLength(ref.pidFile) >= GUARD_PIDFILE_MAX) {
      this.once(`pidfile-long:${ref.uuid}`, 'warning', `domain ${ref.name ?? ref.uuid}: its QEMU pid file path ${ref.pidFile} is ${GUARD_PIDFILE_MAX} bytes or longer, ` +
        'more than the guard takes; the domain is fenced from its STARTED event on');
      return undefined;
    }
    if (!this.pidFileKnown) {
      if (this.registered) {
        this.once(`pidfile-old:${this.guardPid}`, 'info', `fencing guard pid ${this.guardPid} predates owners known by a pid file (an older lockagent-guard, it outlives agent upgrades): ` +
          'a domain is fenced by it only once the agent knows its QEMU pid (the STARTED event); restart lockagent-guard to close that window');
      }
      return undefined;
    }
    return `@${Buffer.from(ref.pidFile).toString('hex')}/${ref.uuid.toLowerCase()}`;
  }

  private sync(ls: Lockspace): void {
    const deadlineMs = this.deadlineFor(ls);
    // Not joined (lost, rejoining): keep what the guard has — the last deadline stays armed.
    if (deadlineMs === undefined) return;
    if (this.leaseSeen.get(ls.name) !== ls.lease) {
      this.leaseSeen.set(ls.name, ls.lease);
      this.pidsByLs = undefined;
    }
    this.send(ls.name, { deadlineMs, pids: this.pidsOf(ls.name) });
  }

  private syncAll(full: boolean): void {
    for (const ls of this.o.agent.lockspaces.values()) this.sync(ls);
    const known = new Set(this.o.agent.lockspaces.keys());
    for (const name of [...this.sent.keys(), ...(full ? this.armedAtHello : [])]) {
      if (!known.has(name)) this.send(name, { deadlineMs: 0, pids: [] });
    }
    if (full) this.armedAtHello.clear();
  }

  private send(name: string, s: Sent): void {
    const prev = this.sent.get(name);
    const refused = this.refused.get(name);
    if (!s.pids.length) {
      this.refused.delete(name);
      if (prev && !prev.pids.length) return;
      if (this.write('CLEAR', name, `CLEAR ${name}\n`)) this.guardHas.delete(name);
    } else if (refused?.pids && samePids(refused.pids, s.pids)) {
      // The guard refused these pids (and disarmed the lockspace): a renewal sends nothing.
    } else if (this.deadlineKnown !== false && samePids(this.guardHas.get(name), s.pids)) {
      // The guard has these pids: only the deadline moves (if it did).
      if (prev?.deadlineMs !== s.deadlineMs) this.write('DEADLINE', name, `DEADLINE ${name} ${s.deadlineMs}\n`);
    } else {
      this.sendSet(name, s);
    }
    if (!s.pids.length && !this.o.agent.lockspaces.has(name)) this.sent.delete(name);
    else this.sent.set(name, s);
  }

  private sendSet(name: string, s: Sent): void {
    // Every SET goes through here: owners known by a pid file only to a guard that takes them (a
    // list cached for an earlier guard, resent after a reconnect, must not disarm an older one).
    const pids = this.pidFileKnown ? s.pids : s.pids.filter((p) => !p.startsWith('@'));
    if (this.write('SET', name, `SET ${name} ${s.deadlineMs} ${pids.join(' ')}\n`, pids)) this.guardHas.set(name, pids);
  }

  /** The guard answered a DEADLINE with ERR: it does not know the message, or not the lockspace's pids. Send them. */
  private deadlineRefused(name: string, why: string): void {
    if (why === UNKNOWN_REQUEST) {
      // (once per guard: other lockspaces' DEADLINEs may be on their way already)
      if (this.deadlineKnown !== false) {
        this.o.log.info(`fencing guard pid ${this.guardPid} predates the DEADLINE message (an older lockagent-guard, it outlives agent upgrades): ` +
          'sending the full pid list with every renewal until it is restarted');
      }
      this.deadlineKnown = false;
    } else {
      this.o.log.debug(`fencing guard: ${why}; sending the pids of ${name} again`);
    }
    this.guardHas.delete(name);
    const s = this.sent.get(name);
    if (s?.pids.length) this.sendSet(name, s);
  }

  /**
   * The guard refused a SET (and disarmed the lockspace): its owners are not fenced. Logged once;
   * the same pids are not sent again (renewals stay cheap), a change of owners tries again.
   */
  private setRefused(name: string, pids: string[], why: string): void {
    this.guardHas.delete(name);
    const known = this.refused.get(name);
    this.refused.set(name, { why, pids });
    if (known?.why === why) return;
    this.o.log.error(`fencing guard refused the ${pids.length} owner pids of lockspace ${name}: ${why}. Those owners are NOT fenced if this agent ` +
      `stops renewing, and acquires for owners with a pid in ${name} are refused until the guard takes them: release leases of owners with ` +
      `a pid there (the guard takes up to ${GUARD_MAX_PIDS.toLocaleString('en-US')} per lockspace), or move some owners to another lockspace`);
  }

  /** Whether the line went out (then an answer will come, in order). */
  private write(kind: 'SET' | 'CLEAR' | 'DEADLINE', name: string, line: string, pids?: string[]): boolean {
    if (!this.sock || this.sock.destroyed) return false;
    this.sock.write(line);
    this.pending.push({ kind, name, pids });
    return true;
  }

  private tryConnect(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = connect(this.socketPath);
      let settled = false;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        resolve(ok);
      };
      s.once('error', () => { s.destroy(); done(false); });
      s.once('connect', () => {
        this.sock = s;
        this.buf = '';
        // Maybe another guard than before: it has none of our pids, and may not know DEADLINE.
        this.pending = [];
        this.guardHas.clear();
        this.deadlineKnown = undefined;
        for (const r of this.refused.values()) r.pids = undefined;
        s.setEncoding('utf8');
        s.on('data', (d: string) => this.onData(d, () => done(true)));
        s.removeAllListeners('error');
        s.on('error', () => undefined);
        s.once('close', () => { this.onClose(s); done(false); });
        s.write(`HELLO ${process.pid} ${this.o.mode}\n`);
      });
    });
  }

  private onData(d: string, onRegistered: () => void): void {
    this.buf += d;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      const f = line.split(' ');
      switch (f[0]) {
        case 'HELLO':
          this.guardPid = Number(f[1]);
          this.pidFileKnown = f.slice(3).includes('pidfile');
          this.pidsByLs = undefined;
          this.armedAtHello.clear();
          break;
        case 'ARMED':
          this.armedAtHello.add(f[1]);
          break;
        case 'KILLED':
          this.onKilled(f[1], Number(f[2]), Number(f[3]), Number(f[4]));
          break;
        case 'OK': {
          const req = this.pending.shift();
          if (req?.kind === 'DEADLINE') this.deadlineKnown = true;
          if (req?.kind === 'SET' && this.refused.delete(req.name)) {
            this.o.log.warning(`fencing guard took the owner pids of lockspace ${req.name} (${req.pids?.length}): its owners are fenced again`);
          }
          if (Number(f[2]) >= 0) this.minMarginMs.set(f[1], Number(f[2]));
          break;
        }
        case 'ERR': {
          const req = this.pending.shift();
          if (req?.kind === 'DEADLINE') {
            this.deadlineRefused(req.name, line.slice(4));
            break;
          }
          if (req?.kind === 'SET') {
            this.setRefused(req.name, req.pids ?? NO_PIDS, line.slice(4));
            break;
          }
          this.o.log.error(`fencing guard refused a request: ${line.slice(4)}`);
          break;
        }
        case 'END':
          this.registered = true;
          if (this.downSince !== undefined) {
            this.lastGapMs = this.o.clock.nowMs() - this.downSince;
            this.downSince = undefined;
            this.o.log.warning(`fencing guard is back (pid ${this.guardPid}) after ${(this.lastGapMs / 1000).toFixed(1)} s without it; leases re-registered`);
          } else {
            this.o.log.info(`fencing guard pid ${this.guardPid} (${this.socketPath}, mode ${this.o.mode}): owners are SIGKILLed at host_dead - ${GUARD_MARGIN_S} s if renewals stop`);
          }
          // Before startup recovery is over the table is incomplete: the guard keeps what the
          // previous agent gave it until then.
          if (this.recovered) this.syncAll(true);
          onRegistered();
          break;
      }
    }
  }

  private onKilled(lockspace: string, pid: number, what: number, agoMs: number): void {
    const k: GuardKill = { lockspace, pid, what: what === 0 ? 'killed' : what === 1 ? 'would-kill' : 'skipped', reportedAt: new Date().toISOString() };
    this.kills.push(k);
    if (this.kills.length > 100) this.kills.shift();
    const ago = agoMs > 0 ? ` ${(agoMs / 1000).toFixed(0)} s ago` : '';
    if (k.what === 'killed') this.o.log.error(`fencing guard SIGKILLed pid ${pid}${ago}: its lockspace ${lockspace} was not renewed before the guard's deadline (host_dead - ${GUARD_MARGIN_S} s)`);
    else if (k.what === 'would-kill') this.o.log.warning(`fencing guard would have SIGKILLed pid ${pid}${ago} (fencing_mode = log): lockspace ${lockspace} missed the guard's deadline`);
    else if (pid === 0) this.o.log.info(`fencing guard deadline of lockspace ${lockspace} passed${ago}; a domain it held leases for had no QEMU process yet`);
    else this.o.log.info(`fencing guard deadline of lockspace ${lockspace} passed${ago}; pid ${pid} was already gone (or was not the owner's process)`);
  }

  private onClose(s: Socket): void {
    if (this.sock !== s) return;
    this.sock = undefined;
    const was = this.registered;
    this.registered = false;
    if (this.stopped) return;
    if (was) {
      this.downSince = this.o.clock.nowMs();
      this.o.log.error(`fencing guard (pid ${this.guardPid}) is gone: owners are not fenced if this agent stops renewing; restarting it, ` +
        'and refusing acquires for owners with a pid until it is back');
      this.restarts++;
    }
    this.scheduleReconnect(true);
  }

  private scheduleReconnect(launchNow = false): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    let tries = 0;
    const attempt = async () => {
      if (this.stopped || this.registered) return;
      if (await this.tryConnect()) return;
      // Try an existing guard first (it may be re-creating its socket), then start one.
      if ((launchNow && tries === 0) || tries % 8 === 4) this.launch();
      tries++;
      this.retryTimer = setTimeout(() => void attempt(), RETRY_MS);
    };
    this.retryTimer = setTimeout(() => void attempt(), launchNow ? 0 : RETRY_MS);
  }

  /** Start the guard: its own systemd unit under systemd, else a detached process of its own session. */
  private launch(): void {
    if (process.env.INVOCATION_ID) {
      // Under systemd a child would live in our cgroup, which `systemctl restart lockagent` kills.
      const c = spawn('systemctl', ['start', '--no-block', 'lockagent-guard.service'], { stdio: 'ignore' });
      c.on('error', (e) => this.o.log.error(`cannot start lockagent-guard.service: ${e.message}`));
      this.o.log.warning('starting lockagent-guard.service');
      return;
    }
    // $LOCKAGENT_GUARD_BIN: another guard binary (packaging; tests use a missing one).
    const bin = this.o.binary ?? (process.env.LOCKAGENT_GUARD_BIN || defaultGuardBinary());
    if (!bin) {
      this.o.log.error('the fencing guard binary (native/build/Release/lockagent-guard) is not built: run npm run build:native, or set fencing = none to run unprotected');
      return;
    }
    const logPath = join(dirname(this.socketPath), 'guard.log');
    let out: number | 'ignore' = 'ignore';
    try { out = openSync(logPath, 'a', 0o600); } catch { /* no log file */ }
    // detached: a session and process group of its own, so a kill of the agent's group spares it.
    const c = spawn(bin, ['--socket', this.socketPath, '--mode', this.o.mode, '--idle-exit', String(SPAWNED_IDLE_EXIT_S)], {
      detached: true, stdio: ['ignore', out, out],
    });
    if (typeof out === 'number') closeSync(out);
    c.on('error', (e) => this.o.log.error(`cannot start the fencing guard ${bin}: ${e.message}`));
    c.unref();
    this.child = c;
    this.o.log.info(`started the fencing guard ${bin} (pid ${c.pid}), log ${logPath}`);
  }
}

function samePids(a: string[] | undefined, b: string[]): boolean {
  if (a === b) return true;
  return !!a && a.length === b.length && a.every((p, i) => p === b[i]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
