/**
 * A multi-host cluster on one machine for the devcount-style overlap test and the chaos run:
 * lockagent daemons (and optionally real sanlock daemons) as hosts over one directory of lease
 * files, one driver process per host running scripts/chaos/devcount-worker.js, fault injection
 * (kill -9 of a host, SIGSTOP of a daemon, kill of a holder) and the analysis of the drivers'
 * logs: acquisitions, oracle overlaps, and intersecting hold intervals.
 *
 * Used by test/multihost/devcount.test.ts (CI size) and scripts/chaos/multihost.ts (long runs).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { findPackageRoot } from '../../src/io/packageroot';
import { decodeLeader } from '../../src/ondisk';
import { AgentHost, startHost, stopHost, waitJoined, writeHostConfig } from '../../test/helpers/agentproc';
import { lockagent, sparseFile } from '../../test/helpers/cli';
import {
  addLockspace, killSanlockDaemon, SanlockDaemon, signalSanlockDaemon, startSanlockDaemon, stopSanlockDaemon,
} from '../../test/helpers/sanlockd';

export const LS = '__LIBVIRT__DISKS__';
const MiB = 1048576;

/** CLOCK_MONOTONIC seconds, the clock of the drivers' logs and of delta-lease timestamps. */
export const monoNow = (): number => Number(process.hrtime.bigint()) / 1e9;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface ClusterOptions {
  base: string;
  /** lockagent hosts get host_ids 1..n */
  lockagentHosts: number;
  /** sanlock daemon hosts get host_ids n+1..n+m */
  sanlockHosts: number;
  /** resources r1..rK */
  resources: number;
  ioTimeout?: number;
  holdMs?: [number, number];
  pauseMs?: [number, number];
  /**
   * Pause of sanlock hosts' holders between holds. sanlock re-acquires a lease it just released
   * faster than a lockagent lane gets to it, so without a longer pause the sanlock host takes most
   * acquisitions. Default 200–800 ms.
   */
  sanlockPauseMs?: [number, number];
  /** holders keep holding this long after SIGTERM (a slow guest shutdown); default 0 */
  termDelayMs?: number;
  /** this percentage of holds lasts longHoldMs (a VM that runs a while) */
  longHoldPct?: number;
  longHoldMs?: [number, number];
  say?: (line: string) => void;
}

export interface LaneSpec {
  res: string;
  mode: 'loop' | 'hold';
  spec: { lockspace: string; resource: string; path: string; offset: number };
  countFile: string;
}

export interface Driver {
  host: number;
  incarnation: number;
  log: string;
  proc: ChildProcess;
  started: number;
  ended?: number;
  exited: Promise<void>;
}

export interface Fault {
  t: number;
  kind: string;
  host: number;
  detail?: string;
}

export interface Event {
  t: number;
  ev: string;
  host: number;
  res?: string;
  t0?: number;
  pid?: number;
  rv?: number;
  msg?: string;
  [k: string]: unknown;
}

export interface Hold {
  host: number;
  res: string;
  start: number;
  end: number;
  /** the driver log / pid it came from, for messages */
  who: string;
  open: boolean;
}

export interface Report {
  acquisitions: number;
  byHost: Record<number, number>;
  byResource: Record<string, number>;
  busy: number;
  errors: number;
  errorsByRv: Record<string, number>;
  overlaps: Event[];
  intersections: string[];
  holds: Hold[];
}

export class Cluster {
  readonly leaseDir: string;
  readonly logDir: string;
  readonly lsPath: string;
  readonly io: number;
  readonly agents = new Map<number, AgentHost>();
  readonly sanlocks = new Map<number, SanlockDaemon>();
  readonly drivers: Driver[] = [];
  readonly active = new Map<number, Driver>();
  readonly faults: Fault[] = [];
  private readonly worker: string;
  private incarnations = 0;
  private readonly tails = new Map<string, { offset: number; rest: string }>();
  readonly events: Event[] = [];
  /** the latest periodic counters of each driver log */
  private readonly latestStats = new Map<string, Event>();

  constructor(readonly o: ClusterOptions) {
    this.leaseDir = path.join(o.base, 'leases');
    this.logDir = path.join(o.base, 'logs');
    this.lsPath = path.join(this.leaseDir, LS);
    this.io = o.ioTimeout ?? 1;
    this.worker = path.join(findPackageRoot(), 'scripts', 'chaos', 'devcount-worker.js');
  }

  get hostIds(): number[] {
    return [...this.agents.keys(), ...this.sanlocks.keys()].sort((a, b) => a - b);
  }

  isSanlock(host: number): boolean {
    return this.sanlocks.has(host);
  }

  resourceNames(): string[] {
    return Array.from({ length: this.o.resources }, (_, i) => `r${i + 1}`);
  }

  private say(line: string): void {
    this.o.say?.(line);
  }

  /** Lease files: the lockspace (io_timeout written as ours, so joins take 2·io) and r1..rK. */
  async init(): Promise<void> {
    fs.mkdirSync(this.leaseDir, { recursive: true });
    fs.mkdirSync(this.logDir, { recursive: true });
    sparseFile(this.lsPath, MiB);
    const r = await lockagent(['direct', 'init', '-s', `${LS}:0:${this.lsPath}:0`, '-o', String(this.io)]);
    if (r.code !== 0) throw new Error(`init of the lockspace failed: ${r.stdout}${r.stderr}`);
    for (const res of this.resourceNames()) {
      const f = sparseFile(path.join(this.leaseDir, res), MiB);
      const x = await lockagent(['direct', 'init', '-r', `${LS}:${res}:${f}:0`]);
      if (x.code !== 0) throw new Error(`init of ${res} failed: ${x.stdout}${x.stderr}`);
    }
  }

  /** Start every host and wait until all joined the lockspace. */
  async start(): Promise<void> {
    const n = this.o.lockagentHosts;
    const joins: Array<Promise<unknown>> = [];
    for (let id = 1; id <= n; id++) {
      const h = writeHostConfig(this.o.base, id, { leaseDir: this.leaseDir, ioTimeout: this.io, hostName: `la-node${id}` });
      this.agents.set(id, h);
      startHost(h);
      joins.push(waitJoined(h, LS, 60_000));
    }
    for (let id = n + 1; id <= n + this.o.sanlockHosts; id++) {
      joins.push((async () => {
        const d = await startSanlockDaemon(this.o.base, `sl-node${id}`);
        this.sanlocks.set(id, d);
        await addLockspace(d, `${LS}:${id}:${this.lsPath}:0`, this.io);
      })());
    }
    await Promise.all(joins);
    this.say(`${n} lockagent host(s) and ${this.o.sanlockHosts} sanlock host(s) joined ${LS} (io_timeout ${this.io})`);
  }

  lanes(mode: 'loop' | 'hold' = 'loop', only?: string[]): LaneSpec[] {
    return (only ?? this.resourceNames()).map((res) => ({
      res, mode,
      spec: { lockspace: LS, resource: res, path: path.join(this.leaseDir, res), offset: 0 },
      countFile: path.join(this.leaseDir, `count-${res}`),
    }));
  }

  startDriver(host: number, lanes: LaneSpec[]): Driver {
    const inc = ++this.incarnations;
    const log = path.join(this.logDir, `driver-h${host}-${inc}.jsonl`);
    const cfgFile = path.join(this.logDir, `driver-h${host}-${inc}.json`);
    const sl = this.sanlocks.get(host);
    const cfg = {
      host, label: `h${host}.${inc}`, log, lanes, holdMs: this.o.holdMs ?? [50, 200],
      pauseMs: sl ? (this.o.sanlockPauseMs ?? [200, 800]) : (this.o.pauseMs ?? [0, 200]),
      termDelayMs: this.o.termDelayMs ?? 0, longHold: { pct: this.o.longHoldPct ?? 0, ms: this.o.longHoldMs ?? [5000, 15000] },
      ...(sl ? { sanlock: { runDir: sl.runDir } } : { socket: this.agents.get(host)!.socket }),
    };
    fs.writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
    const out = fs.openSync(path.join(this.logDir, `driver-h${host}-${inc}.out`), 'a');
    const proc = spawn(process.execPath, [this.worker, 'lanes', cfgFile], { stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const d: Driver = { host, incarnation: inc, log, proc, started: monoNow(), exited: undefined as unknown as Promise<void> };
    d.exited = new Promise((resolve) => proc.once('exit', () => { d.ended = monoNow(); resolve(); }));
    this.drivers.push(d);
    this.active.set(host, d);
    return d;
  }

  driverAlive(host: number): boolean {
    const d = this.active.get(host);
    return !!d && d.ended === undefined;
  }

  /** SIGTERM: the driver finishes its holds, releases and exits. */
  async stopDriver(host: number, timeoutMs = 60_000): Promise<void> {
    const d = this.active.get(host);
    if (!d || d.ended !== undefined) return;
    d.proc.kill('SIGTERM');
    const t = setTimeout(() => d.proc.kill('SIGKILL'), timeoutMs);
    await d.exited;
    clearTimeout(t);
  }

  /** A holder crash: kill -9 of the driver only; its daemon keeps the leases. */
  async killDriver(host: number): Promise<void> {
    const d = this.active.get(host);
    if (!d || d.ended !== undefined) return;
    this.fault('kill-holder', host);
    d.proc.kill('SIGKILL');
    await d.exited;
  }

  /** A host crash: kill -9 of its daemon and its driver together. Returns the kill time. */
  async killHost(host: number): Promise<number> {
    const d = this.active.get(host);
    const t = monoNow();
    this.fault('kill-host', host);
    if (d && d.ended === undefined) d.proc.kill('SIGKILL');
    const a = this.agents.get(host);
    if (a) await stopHost(a, 'SIGKILL');
    else await killSanlockDaemon(this.sanlocks.get(host));
    if (d) await d.exited;
    return t;
  }

  /** A daemon crash: kill -9 of the lockagent daemon only; its holders keep running. */
  async killDaemon(host: number): Promise<void> {
    const a = this.agents.get(host);
    if (!a) throw new Error(`host ${host} is not a lockagent host`);
    this.fault('kill-daemon', host);
    await stopHost(a, 'SIGKILL');
  }

  /** Start a killed lockagent host again (same config, same state db) and wait for its join. */
  async restartAgent(host: number): Promise<number> {
    const a = this.agents.get(host)!;
    startHost(a);
    this.fault('restart-host', host);
    return waitJoined(a, LS, 120_000);
  }

  /** SIGSTOP the host's daemon for `seconds` (renewals stop), then SIGCONT. */
  async stallDaemon(host: number, seconds: number): Promise<void> {
    const a = this.agents.get(host);
    const s = this.sanlocks.get(host);
    this.fault(seconds >= 8 * this.io ? 'stall-long' : 'stall-short', host, `${seconds} s`);
    if (a) process.kill(a.proc!.pid!, 'SIGSTOP');
    else if (s) signalSanlockDaemon(s, 'SIGSTOP');
    try {
      await sleep(seconds * 1000);
    } finally {
      if (a) process.kill(a.proc!.pid!, 'SIGCONT');
      else if (s) signalSanlockDaemon(s, 'SIGCONT');
    }
  }

  fault(kind: string, host: number, detail?: string): void {
    this.faults.push({ t: monoNow(), kind, host, detail });
    this.say(`fault: ${kind} host ${host}${detail ? ` (${detail})` : ''}`);
  }

  /** The host's delta-lease timestamp on disk (its last renewal, in the shared monotonic clock). */
  deltaTimestamp(host: number): number {
    const fd = fs.openSync(this.lsPath, 'r');
    try {
      const b = Buffer.alloc(512);
      fs.readSync(fd, b, 0, 512, (host - 1) * 512);
      return decodeLeader(b, 0).timestamp;
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Read what the drivers appended since the last call. */
  poll(): Event[] {
    const fresh: Event[] = [];
    for (const d of this.drivers) {
      const st = this.tails.get(d.log) ?? { offset: 0, rest: '' };
      let size = 0;
      try {
        size = fs.statSync(d.log).size;
      } catch {
        continue;
      }
      if (size > st.offset) {
        const fd = fs.openSync(d.log, 'r');
        const b = Buffer.alloc(size - st.offset);
        fs.readSync(fd, b, 0, b.length, st.offset);
        fs.closeSync(fd);
        st.offset = size;
        const text = st.rest + b.toString('utf8');
        const lines = text.split('\n');
        st.rest = lines.pop() ?? '';
        for (const l of lines) {
          if (!l) continue;
          const e = JSON.parse(l) as Event;
          (e as { log?: string }).log = path.basename(d.log);
          if (e.ev === 'stats') {
            this.latestStats.set(path.basename(d.log), e);
            continue;
          }
          fresh.push(e);
        }
      }
      this.tails.set(d.log, st);
    }
    this.events.push(...fresh);
    return fresh;
  }

  async waitEvent(what: string, pred: (e: Event) => boolean, timeoutMs: number): Promise<Event> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      this.poll();
      const e = this.events.find(pred);
      if (e) return e;
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
      await sleep(250);
    }
  }

  /** Stop every driver (gracefully), then every daemon. Safe to call twice and after failures. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.active.keys()].map((h) => this.stopDriver(h, 30_000).catch(() => undefined)));
    await Promise.all([...this.agents.values()].map((a) => stopHost(a, 'SIGTERM').catch(() => undefined)));
    await Promise.all([...this.sanlocks.values()].map((s) => stopSanlockDaemon(s).catch(() => undefined)));
    // anything that did not go away: kill it
    for (const d of this.drivers) if (d.ended === undefined) d.proc.kill('SIGKILL');
    await Promise.all([...this.agents.values()].map((a) => stopHost(a, 'SIGKILL').catch(() => undefined)));
  }

  /** Acquisition counts, oracle overlaps, intersecting holds. */
  analyze(): Report {
    this.poll();
    const rep: Report = { acquisitions: 0, byHost: {}, byResource: {}, busy: 0, errors: 0, errorsByRv: {}, overlaps: [], intersections: [], holds: [] };
    const byLog = new Map<string, Event[]>();
    for (const e of this.events) {
      const log = (e as { log?: string }).log ?? '';
      if (!byLog.has(log)) byLog.set(log, []);
      byLog.get(log)!.push(e);
    }
    for (const d of this.drivers) {
      const evs = byLog.get(path.basename(d.log)) ?? [];
      const open = new Map<string, Event>();
      let lastTotals: Event | undefined;
      for (const e of evs) {
        if (e.ev === 'acq') {
          rep.acquisitions++;
          rep.byHost[e.host] = (rep.byHost[e.host] ?? 0) + 1;
          rep.byResource[e.res!] = (rep.byResource[e.res!] ?? 0) + 1;
          open.set(`${e.res}|${e.pid ?? ''}`, e);
        } else if (e.ev === 'rel') {
          const k = `${e.res}|${e.pid ?? ''}`;
          const a = open.get(k);
          if (a) {
            rep.holds.push({ host: e.host, res: e.res!, start: a.t0 ?? a.t, end: e.t, who: `${path.basename(d.log)}${e.pid ? ` pid ${e.pid}` : ''}`, open: false });
            open.delete(k);
          }
        } else if (e.ev === 'overlap') {
          rep.overlaps.push(e);
        } else if (e.ev === 'err') {
          rep.errorsByRv[String(e.rv)] = (rep.errorsByRv[String(e.rv)] ?? 0) + 1;
        } else if (e.ev === 'summary') {
          lastTotals = e;
        }
      }
      // holds cut short by a kill end when their process died
      for (const a of open.values()) {
        rep.holds.push({ host: a.host, res: a.res!, start: a.t0 ?? a.t, end: d.ended ?? monoNow(), who: `${path.basename(d.log)} (killed while holding)`, open: true });
      }
      lastTotals ??= this.latestStats.get(path.basename(d.log));
      if (lastTotals) rep.busy += Number(lastTotals.busy ?? 0);
    }
    rep.errors = Object.values(rep.errorsByRv).reduce((a, b) => a + b, 0);
    for (const res of this.resourceNames()) {
      const hs = rep.holds.filter((h) => h.res === res).sort((a, b) => a.start - b.start);
      let prev: Hold | undefined;
      for (const h of hs) {
        if (prev && h.start < prev.end) {
          rep.intersections.push(`${res}: ${h.who} [${h.start.toFixed(3)}, ${h.end.toFixed(3)}] starts before ${prev.who} [${prev.start.toFixed(3)}, ${prev.end.toFixed(3)}] ended`);
        }
        if (!prev || h.end > prev.end) prev = h;
      }
    }
    return rep;
  }
}

export function formatReport(rep: Report, faults: Fault[], logDir: string): string {
  const kinds: Record<string, number> = {};
  for (const f of faults) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
  return [
    `acquisitions: ${rep.acquisitions} (by host ${JSON.stringify(rep.byHost)}, by resource ${JSON.stringify(rep.byResource)})`,
    `refused while held (busy): ${rep.busy}; other errors: ${rep.errors} ${JSON.stringify(rep.errorsByRv)}`,
    `faults injected: ${faults.length} ${JSON.stringify(kinds)}`,
    `overlaps (count-file oracle): ${rep.overlaps.length}`,
    `intersecting holds (interval check): ${rep.intersections.length}`,
    ...rep.overlaps.slice(0, 10).map((e) => `  overlap: ${JSON.stringify(e)}`),
    ...rep.intersections.slice(0, 10).map((s) => `  ${s}`),
    `logs: ${logDir}`,
  ].join('\n');
}
