import { Geometry, geometryFor, MiB } from '../../src/ondisk';
import { prng } from './virtualclock';

/** Everything a seed decides up front: topology, timeouts, fault rates. */
export interface SimConfig {
  seed: number;
  geometry: Geometry;
  /** num_hosts of every resource lease (-n); host_ids are drawn from 1..numHosts. */
  numHosts: number;
  hosts: { hostId: number; ioTimeout: number; bootS: number }[];
  resources: number;
  durationMs: number;
  /** Probability that one I/O gets a fault. */
  ioFaultRate: number;
  /** Allow torn writes (they can leave a lease unusable until rewritten, as on real disks). */
  tornWrites: boolean;
  /** Mean virtual seconds between crashes / pauses / clean leaves, per host (0 = never). */
  crashEveryS: number;
  pauseEveryS: number;
  leaveEveryS: number;
  workersPerHost: number;
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

/** A random but seed-determined configuration. `faults` false gives a fault-free run. */
export function configFor(seed: number, faults = true): SimConfig {
  const r = prng(seed ^ 0x5eed);
  // 4096/1M (250 host slots) most of the time: a renewal scans every slot, and 2000 of them
  // make the 512/1M seeds several times dearer.
  const geometry = r() < 0.3 ? geometryFor(512, MiB) : geometryFor(4096, MiB);
  // Mostly small leases (fast ballots); sometimes the sanlock default of max_hosts.
  const numHosts = r() < 0.05 ? geometry.maxHosts : pick(r, [6, 8, 16]);
  const nHosts = 3 + Math.floor(r() * 4);
  const ids = new Set<number>();
  while (ids.size < nHosts) ids.add(1 + Math.floor(r() * Math.min(numHosts, nHosts + 4)));
  const mixedIo = r() < 0.25;
  const io = pick(r, [1, 1, 1, 2, 2, 5, 10]);
  const hosts = [...ids].map((hostId) => ({
    hostId,
    ioTimeout: mixedIo ? pick(r, [1, 2, 5]) : io,
    bootS: 20 + Math.floor(r() * 5000),
  }));
  const maxIo = Math.max(...hosts.map((h) => h.ioTimeout));
  const hostDead = 8 * maxIo + 60;
  return {
    seed, geometry, numHosts, hosts,
    resources: 1 + Math.floor(r() * 4),
    durationMs: Math.round((1.6 * hostDead + 30) * 1000),
    ioFaultRate: faults ? pick(r, [0, 0.002, 0.01, 0.03]) : 0,
    tornWrites: faults && r() < 0.15,
    crashEveryS: faults ? pick(r, [0, 60, 150, 400]) : 0,
    pauseEveryS: faults ? pick(r, [0, 80, 200]) : 0,
    leaveEveryS: pick(r, [0, 120, 300]),
    workersPerHost: 1 + Math.floor(r() * 2),
  };
}
