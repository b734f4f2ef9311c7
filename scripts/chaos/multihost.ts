/**
 * The long multi-host chaos run (scripts/chaos/multihost.sh builds and runs this): lockagent
 * hosts and real sanlock daemon hosts over one directory of lease files contend on a few
 * resources through devcount-style holders, while faults are injected:
 *
 *   kill-host    kill -9 of a lockagent daemon and its holders (a host crash); restarted after
 *                5–20 s: it rejoins with a new generation and frees what its dead holders held
 *   kill-holder  kill -9 of a host's holder process only; restarted after 2–5 s (same owners)
 *   stall-short  SIGSTOP of a daemon (lockagent or sanlock) for 2–5 s, less than 8·io: no lease
 *                may be lost
 *   stall-long   SIGSTOP of a lockagent daemon for 12–30 s: more than 8·io (its leases fail and
 *                it kills its holders on SIGCONT) but less than host_dead (68 s), so nobody can
 *                have taken them yet
 *
 * At the end it prints acquisitions, faults, overlaps (count-file oracle), intersecting holds
 * (interval check) and the log directory, and exits 1 if any overlap or intersection was found.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Cluster, formatReport, monoNow, sleep } from './harness';

interface Args {
  duration: number;
  hosts: number;
  sanlockHosts: number;
  resources: number;
  faultEvery: number;
  dir?: string;
  seed?: number;
  holdMs: [number, number];
  pauseMs: [number, number];
  faults: string[];
  termDelayMs: number;
  longHoldPct: number;
  longHoldMs: [number, number];
  /** hosts driving each resource; 0 = all */
  contenders: number;
}

const ALL_FAULTS = ['kill-host', 'kill-holder', 'stall-short', 'stall-long', 'kill-daemon'];
const DEFAULT_FAULTS = ['kill-host', 'kill-holder', 'stall-short', 'stall-long'];

function usage(msg?: string): never {
  if (msg) console.error(`multihost: ${msg}`);
  console.error([
    'usage: multihost.sh [--duration SECONDS] [--hosts N] [--sanlock-hosts M] [--resources K]',
    '                    [--fault-every SECONDS] [--faults LIST] [--hold MIN-MAX] [--pause MIN-MAX]',
    '                    [--long-hold PCT:MIN-MAX] [--term-delay MS] [--contenders C] [--dir DIR]',
    '  defaults: --duration 600 --hosts 8 --sanlock-hosts 1 --resources 3 --fault-every 20 --hold 20-100 --pause 0-50',
    `            --faults ${DEFAULT_FAULTS.join(',')} (also: kill-daemon) --long-hold 0:5000-15000 --term-delay 0`,
    '            --contenders 0 (every host drives every resource; C: each resource on C hosts, round robin)',
    '  (100,000 acquisitions take several hours on a 2-CPU machine: e.g. --duration 21600)',
  ].join('\n'));
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    duration: 600, hosts: 8, sanlockHosts: 1, resources: 3, faultEvery: 20, holdMs: [20, 100], pauseMs: [0, 50],
    faults: DEFAULT_FAULTS, termDelayMs: 0, longHoldPct: 0, longHoldMs: [5000, 15000], contenders: 0,
  };
  const range = (s: string): [number, number] => {
    const m = /^(\d+)-(\d+)$/.exec(s);
    if (!m) usage(`expected MIN-MAX milliseconds, got "${s}"`);
    return [Number(m[1]), Number(m[2])];
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) usage(`${k} needs a value`);
    const num = () => {
      if (!/^\d+$/.test(v)) usage(`${k} needs a number, got "${v}"`);
      return Number(v);
    };
    switch (k) {
      case '--duration': a.duration = num(); break;
      case '--hosts': a.hosts = num(); break;
      case '--sanlock-hosts': a.sanlockHosts = num(); break;
      case '--resources': a.resources = num(); break;
      case '--contenders': a.contenders = num(); break;
      case '--fault-every': a.faultEvery = num(); break;
      case '--hold': a.holdMs = range(v); break;
      case '--pause': a.pauseMs = range(v); break;
      case '--dir': a.dir = v; break;
      case '--term-delay': a.termDelayMs = num(); break;
      case '--faults': {
        a.faults = v.split(',').filter(Boolean);
        const bad = a.faults.filter((f) => !ALL_FAULTS.includes(f));
        if (bad.length) usage(`unknown fault(s) ${bad.join(', ')}; known: ${ALL_FAULTS.join(', ')}`);
        break;
      }
      case '--long-hold': {
        const m = /^(\d+):(\d+-\d+)$/.exec(v);
        if (!m) usage(`--long-hold needs PCT:MIN-MAX, got "${v}"`);
        a.longHoldPct = Number(m[1]);
        a.longHoldMs = range(m[2]);
        break;
      }
      default: usage(`unknown option ${k}`);
    }
  }
  if (a.hosts < 1 || a.hosts + a.sanlockHosts > 2000) usage('--hosts must be at least 1 (and hosts + sanlock hosts at most 2000)');
  if (a.resources < 1) usage('--resources must be at least 1');
  if (a.contenders === 1 || a.contenders > a.hosts + a.sanlockHosts) usage('--contenders must be 0 (every host) or 2..hosts + sanlock hosts');
  return a;
}

const pick = <T>(xs: T[]): T => xs[Math.floor(Math.random() * xs.length)];
const between = (a: number, b: number) => a + Math.random() * (b - a);

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (typeof process.getuid === 'function' && process.getuid() !== 0 && args.sanlockHosts > 0) {
    console.error('multihost: sanlock daemon hosts need root; run as root or pass --sanlock-hosts 0');
    return 2;
  }
  const base = args.dir ?? fs.mkdtempSync(path.join('/tmp', 'lockagent-chaos-'));
  fs.mkdirSync(base, { recursive: true });
  const say = (l: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${l}`);
  say(`work dir ${base}: ${args.hosts} lockagent host(s), ${args.sanlockHosts} sanlock host(s), ${args.resources} resource(s), ${args.duration} s, ` +
    `a fault every ~${args.faultEvery} s from ${args.faults.join(',') || '(none)'}; holds ${args.holdMs.join('-')} ms` +
    (args.longHoldPct ? `, ${args.longHoldPct}% long (${args.longHoldMs.join('-')} ms)` : '') + (args.termDelayMs ? `, holders stop ${args.termDelayMs} ms after SIGTERM` : ''));
  const c = new Cluster({
    base, lockagentHosts: args.hosts, sanlockHosts: args.sanlockHosts, resources: args.resources, ioTimeout: 1,
    holdMs: args.holdMs, pauseMs: args.pauseMs, termDelayMs: args.termDelayMs, longHoldPct: args.longHoldPct, longHoldMs: args.longHoldMs, say,
  });
  let stop = false;
  process.on('SIGINT', () => { say('SIGINT: stopping after the current step'); stop = true; });
  process.on('SIGTERM', () => { stop = true; });
  let rc = 0;
  try {
    await c.init();
    await c.start();
    // Which resources each host drives: all of them, or (--contenders C) each resource on C
    // consecutive hosts (resource i: hosts i..i+C-1, wrapping), so that many resources stay contended without every lane of every
    // host spinning on refusals (each costs a lease read): more acquisitions per CPU second.
    const lanesOf = (h: number) => {
      if (!args.contenders) return c.lanes('loop');
      const ids = c.hostIds;
      const mine = c.resourceNames().filter((_, i) => {
        for (let k = 0; k < args.contenders; k++) if (ids[(i + k) % ids.length] === h) return true;
        return false;
      });
      return c.lanes('loop', mine);
    };
    for (const h of c.hostIds) c.startDriver(h, lanesOf(h));
    const t0 = monoNow();
    const busyHosts = new Set<number>();
    const pending: Array<Promise<void>> = [];
    let nextFault = t0 + args.faultEvery;
    let nextReport = t0 + 30;

    const runFault = async (kind: string, host: number) => {
      busyHosts.add(host);
      try {
        if (kind === 'kill-host') {
          await c.killHost(host);
          await sleep(between(5, 20) * 1000);
          await c.restartAgent(host);
          c.startDriver(host, lanesOf(host));
        } else if (kind === 'kill-daemon') {
          await c.killDaemon(host);
          await sleep(between(5, 20) * 1000);
          await c.restartAgent(host);
        } else if (kind === 'kill-holder') {
          await c.killDriver(host);
          await sleep(between(2, 5) * 1000);
          c.startDriver(host, lanesOf(host));
        } else if (kind === 'stall-short') {
          await c.stallDaemon(host, Math.round(between(2, 5)));
        } else if (kind === 'stall-long') {
          await c.stallDaemon(host, Math.round(between(12, 30)));
          // its leases failed: the daemon kills the holder (SIGTERM, SIGKILL after 3 s) and rejoins
          await sleep(8000);
          if (!c.driverAlive(host)) c.startDriver(host, lanesOf(host));
        }
      } catch (e) {
        say(`fault ${kind} on host ${host} did not complete: ${(e as Error).message}`);
      } finally {
        busyHosts.delete(host);
      }
    };

    while (!stop && monoNow() - t0 < args.duration) {
      await sleep(1000);
      const now = monoNow();
      // a holder that died outside a fault (fencing after a stall) is restarted
      for (const h of c.hostIds) {
        if (!busyHosts.has(h) && !c.driverAlive(h)) {
          say(`holder of host ${h} exited; restarting it`);
          c.startDriver(h, lanesOf(h));
        }
      }
      if (now >= nextFault) {
        nextFault = now + args.faultEvery * between(0.5, 1.5);
        const free = c.hostIds.filter((h) => !busyHosts.has(h));
        // never more than a third of the hosts down at once
        if (free.length && busyHosts.size < Math.max(1, Math.floor(c.hostIds.length / 3))) {
          const host = pick(free);
          const kinds = c.isSanlock(host) ? args.faults.filter((f) => f === 'stall-short') : args.faults;
          if (kinds.length) pending.push(runFault(pick(kinds), host));
        }
      }
      if (now >= nextReport) {
        nextReport = now + 30;
        const r = c.analyze();
        say(`${Math.round(now - t0)} s: ${r.acquisitions} acquisitions, ${c.faults.length} faults, overlaps ${r.overlaps.length}, intersections ${r.intersections.length}`);
        if (r.overlaps.length || r.intersections.length) say('OVERLAP FOUND: stopping early to keep the evidence');
        if (r.overlaps.length || r.intersections.length) break;
      }
    }
    await Promise.all(pending);
  } catch (e) {
    say(`chaos run failed: ${(e as Error).stack ?? e}`);
    rc = 1;
  } finally {
    await c.stopAll();
  }
  const rep = c.analyze();
  console.log(formatReport(rep, c.faults, c.logDir));
  fs.writeFileSync(path.join(c.logDir, 'report.json'), JSON.stringify({ ...rep, holds: undefined, faults: c.faults }, null, 2));
  if (rep.overlaps.length || rep.intersections.length) rc = 1;
  console.log(rc === 0 ? 'RESULT: no overlaps' : 'RESULT: FAILED (see the logs above)');
  return rc;
}

main().then((rc) => process.exit(rc), (e) => {
  console.error(e);
  process.exit(1);
});
