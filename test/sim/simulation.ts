import { buildLockspaceArea, buildResourceArea, Geometry } from '../../src/ondisk';
import { IoFault, IoRequest, IoStats, MemStorage } from '../helpers/memstorage';
import { ResourceLocation } from '../../src/lease/token';
import { configFor, SimConfig } from './config';
import { Oracle, Violation } from './oracle';
import { SimHost, SimStats, World } from './simhost';
import { arena } from './arena';
import { prng, VirtualScheduler } from './virtualclock';

/**
 * One deterministic simulation run: a lockspace and a few resource leases on one in-memory
 * disk, 3–6 hosts with their own clocks, random work, random faults. Same seed, same run.
 */

export interface SimResult {
  seed: number;
  config: SimConfig;
  violations: Violation[];
  stats: SimStats;
  io: IoStats;
  acquisitions: number;
  sharedAcquisitions: number;
  events: number;
  virtualMs: number;
  /** The last lines of the event log (all of it when `fullLog`). */
  log: string[];
}

const SPACE = 'LS';

// Building 2000 sealed records per lockspace is slow; every seed with the same sizes gets a copy.
const areaCache = new Map<string, Buffer>();
function cached(key: string, build: () => Buffer): Buffer {
  let b = areaCache.get(key);
  if (!b) {
    b = build();
    areaCache.set(key, b);
  }
  return b;
}

function lockspaceArea(g: Geometry): Buffer {
  return cached(`ls:${g.sectorSize}:${g.alignSize}`, () => {
    const { area, commitSector } = buildLockspaceArea({ spaceName: SPACE, geometry: g, ioTimeout: 10 });
    commitSector.copy(area, 0);
    return area;
  });
}

function resourceArea(g: Geometry, name: string, numHosts: number): Buffer {
  return cached(`res:${g.sectorSize}:${g.alignSize}:${name}:${numHosts}`,
    () => buildResourceArea({ spaceName: SPACE, resourceName: name, geometry: g, numHosts }));
}

/** Per-I/O fault plan of a seed. */
function faultPlan(cfg: SimConfig, rng: () => number): (req: IoRequest) => IoFault | undefined {
  return (req) => {
    if (!cfg.ioFaultRate || rng() >= cfg.ioFaultRate) return undefined;
    const x = rng();
    const t = req.timeoutMs || 10_000;
    if (x < 0.35) return { type: 'error', afterMs: Math.floor(rng() * 50) };
    if (x < 0.6) return { type: 'slow', latencyMs: Math.floor(t * (1 + rng() * 2)) }; // beyond the timeout: late completion
    if (x < 0.85) return { type: 'slow', latencyMs: Math.floor(t * rng() * 0.9) };
    if (x < 0.9 || !cfg.tornWrites || req.kind === 'read') return { type: 'hang' };
    return { type: 'torn', sectors: 0, bytes: 1 + Math.floor(rng() * (cfg.geometry.sectorSize - 1)), afterMs: Math.floor(rng() * 20) };
  };
}

export interface RunOptions {
  faults?: boolean;
  /** Keep every log line (replay); otherwise only the last 300. */
  fullLog?: boolean;
  config?: SimConfig;
}

export async function runSeed(seed: number, opts: RunOptions = {}): Promise<SimResult> {
  const cfg = opts.config ?? configFor(seed, opts.faults ?? true);
  const rng = prng(seed);
  const sched = new VirtualScheduler();
  const g = cfg.geometry;
  const size = g.alignSize * (1 + cfg.resources);
  const storage = new MemStorage({
    id: 'shared-disk', size, data: arena.alloc(size), sectorSize: g.sectorSize, clock: sched.clock(),
    latencyMs: (req) => 1 + Math.floor(rng() * (req.kind === 'read' && req.length > g.sectorSize ? 20 : 8)),
    fault: faultPlan(cfg, prng(seed ^ 0xfa017)),
  });
  storage.load(0, lockspaceArea(g));
  const resources: ResourceLocation[] = [];
  for (let i = 0; i < cfg.resources; i++) {
    const off = g.alignSize * (1 + i);
    storage.load(off, resourceArea(g, `R${i}`, cfg.numHosts));
    resources.push({ storage, offset: off, spaceName: SPACE, resourceName: `R${i}`, geometry: g });
  }

  const log: string[] = [];
  const hosts = new Map<number, SimHost>();
  const stats: SimStats = {
    joins: 0, joinErrors: {}, acquireErrors: {}, releaseErrors: {}, renewErrors: {},
    crashes: 0, pauses: 0, watchdogResets: 0, lockspaceFailures: 0, leaves: 0, releases: 0, hintedAcquisitions: 0,
  };
  const oracle = new Oracle((holder) => {
    const id = Number(/^h(\d+)#/.exec(holder)?.[1]);
    return hosts.get(id)?.renewalDeadlineMs(holder) ?? -Infinity;
  });
  const world: World = {
    sched, storage, oracle, resources, spaceName: SPACE, durationMs: cfg.durationMs, stats,
    log: (line) => {
      log.push(`${String(sched.nowMs()).padStart(7)} ${line}`);
      if (!opts.fullLog && log.length > 600) log.splice(0, 300);
    },
  };

  for (const h of cfg.hosts) {
    const host = new SimHost(world, h.hostId, h.ioTimeout, h.bootS, Math.floor(rng() * 2 ** 31));
    host.workers = cfg.workersPerHost;
    hosts.set(h.hostId, host);
    host.start(Math.floor(rng() * 10_000));
  }

  // Faults and clean leaves, as Poisson-ish arrivals per host.
  const everyMs = (s: number) => (s ? Math.max(1000, Math.floor(-Math.log(1 - rng()) * s * 1000)) : Infinity);
  for (const host of hosts.values()) {
    const crashAt = (t: number): void => {
      const next = t + everyMs(cfg.crashEveryS);
      if (next < cfg.durationMs * 0.8) sched.at(next, () => { host.crash('injected'); crashAt(next); });
    };
    const pauseAt = (t: number): void => {
      const next = t + everyMs(cfg.pauseEveryS);
      if (next >= cfg.durationMs * 0.8) return;
      sched.at(next, () => {
        const maxIo = host.ioTimeout;
        // Short (< 8·io), past the renewal deadline, or past host_dead (the watchdog resets it).
        const kind = rng();
        const ms = kind < 0.4 ? Math.floor(rng() * 8 * maxIo * 1000)
          : kind < 0.8 ? Math.floor((8 * maxIo + rng() * 55) * 1000)
            : Math.floor((8 * maxIo + 60 + rng() * 40) * 1000);
        host.pause(ms);
        pauseAt(next + ms);
      });
    };
    const leaveAt = (t: number): void => {
      const next = t + everyMs(cfg.leaveEveryS);
      if (next < cfg.durationMs * 0.8) sched.at(next, () => { void host.leave(); leaveAt(next); });
    };
    crashAt(0);
    pauseAt(0);
    leaveAt(0);
  }

  await sched.runUntil(cfg.durationMs);
  arena.reset(); // the run is over: nothing will touch its buffers again

  return {
    seed, config: cfg, violations: oracle.violations, stats, io: storage.stats,
    acquisitions: oracle.acquisitions, sharedAcquisitions: oracle.sharedAcquisitions,
    events: sched.events, virtualMs: sched.nowMs(), log,
  };
}

/** One line describing a seed's run, for reports. */
export function describeRun(r: SimResult): string {
  const c = r.config;
  return `seed ${r.seed}: ${c.hosts.length} hosts (ids ${c.hosts.map((h) => `${h.hostId}/io${h.ioTimeout}`).join(',')}), ` +
    `${c.resources} resources, ${c.geometry.sectorSize}/${c.geometry.alignSize >> 20}M num_hosts ${c.numHosts}, ` +
    `${Math.round(r.virtualMs / 1000)} s virtual; ${r.acquisitions} acquisitions (${r.sharedAcquisitions} SH), ` +
    `${r.stats.crashes} crashes, ${r.stats.pauses} pauses, ${r.stats.watchdogResets} watchdog resets, ` +
    `${Object.values(r.io.faults).reduce((a, b) => a + b, 0)} I/O faults, ${r.io.lateCompletions} late completions`;
}
