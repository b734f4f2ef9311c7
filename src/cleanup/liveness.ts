/**
 * Two ways for the sweeper to see the other hosts of __LIBVIRT__DISKS__:
 *
 *  - joinedView: inside the daemon, from the joined lockspace's host monitor — the same table
 *    sanlock's acquire consults, so "dead" means what it means to a takeover (host_dead of the
 *    owner's own io_timeout without a renewal).
 *  - WatchView: without a daemon (dry run only), from reading the lockspace twice about 2·io
 *    apart. A host whose record changed renews (LIVE); one whose record did not change is
 *    UNKNOWN — establishing death would take host_dead seconds of watching, so its leases are
 *    reported in use. A released delta lease (FREE) or a newer generation is conclusive at once.
 */
import { Lockspace } from '../agent/lockspace';
import { DirectFile } from '../io/directio';
import { Clock, systemClock } from '../lease/clock';
import { HostState } from '../lease/hostmonitor';
import { hostDeadSeconds, timeoutsFor } from '../lease/timeouts';
import { decodeLeader, DELTA_DISK_MAGIC, geometryFromLeader, LeaseError, namesEqual, SANLK } from '../ondisk';
import { HostView, LivenessView } from './classify';

/** The view of a joined lockspace (the daemon's). */
export function joinedView(ls: Lockspace, clock: Clock = systemClock): LivenessView {
  const monitor = ls.monitor;
  const lease = ls.lease;
  if (!monitor || !lease) throw new LeaseError(SANLK.ENOSPC, `lockspace ${ls.name} is not joined (${ls.state})`);
  const ourIo = ls.spec.ioTimeout;
  return {
    source: `lockspace ${ls.name} joined as host ${ls.spec.hostId} (generation ${lease.generation})`,
    self: { hostId: ls.spec.hostId, generation: lease.generation },
    host(hostId) {
      const s = monitor.snapshot(hostId);
      if (!s) return undefined;
      const now = clock.monotime();
      return {
        hostId, state: monitor.state(hostId, now), generation: s.ownerGeneration, name: s.ownerName,
        ageSeconds: Math.max(0, now - (s.lastLive || s.firstCheck)), deadAfter: hostDeadSeconds(s.ioTimeout, ourIo),
      };
    },
    hostLive: (hostId, generation) => monitor.hostLive(hostId, generation, clock.monotime()),
    candidates: () => monitor.known().filter((h) => h.timestamp !== 0).map((h) => h.hostId),
  };
}

interface Seen {
  ownerGeneration: number;
  timestamp: number;
  name: string;
  ioTimeout: number;
  valid: boolean;
}

/** A standalone, read-only look at the lockspace: one read, optionally a second after a pause. */
export class WatchView implements LivenessView {
  private first = new Map<number, Seen>();
  private second?: Map<number, Seen>;
  private watchedSeconds = 0;

  private constructor(readonly path: string, private readonly spaceName: string, private readonly ourIo: number) {}

  /** Read the lockspace at `path` once (read-only, O_DIRECT). */
  static async read(path: string, spaceName: string, ourIoTimeout: number): Promise<WatchView> {
    const v = new WatchView(path, spaceName, ourIoTimeout);
    v.first = await v.readAll();
    return v;
  }

  get source(): string {
    return this.second
      ? `lockspace read twice ${this.watchedSeconds} s apart (no daemon: hosts not seen renewing are UNKNOWN, never judged dead)`
      : 'lockspace read once (no daemon: held leases are not judged)';
  }

  get watched(): boolean {
    return !!this.second;
  }

  /** 2·io + 1 of the given hosts (their on-disk io_timeout): long enough to see a live host renew. */
  watchSeconds(hostIds: number[]): number {
    let io = 0;
    for (const h of hostIds) io = Math.max(io, this.first.get(h)?.ioTimeout || this.ourIo);
    return timeoutsFor(io || this.ourIo).idRenewal + 1;
  }

  /** Wait, then read again. */
  async watch(seconds: number, sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms))): Promise<void> {
    await sleep(seconds * 1000);
    this.second = await this.readAll();
    this.watchedSeconds = seconds;
  }

  private async readAll(): Promise<Map<number, Seen>> {
    const f = await DirectFile.open(this.path, { readOnly: true, timeoutMs: this.ourIo * 1000 });
    try {
      const head = await f.read(0, 4096, this.ourIo * 1000);
      const l0 = decodeLeader(head, 0);
      const g = l0.magic === DELTA_DISK_MAGIC ? geometryFromLeader(l0.sectorSize, l0.flags) : undefined;
      if (!g) throw new LeaseError(SANLK.LEADER_MAGIC, `${this.path} is not an initialised lockspace`);
      const area = await f.read(0, g.alignSize, this.ourIo * 1000);
      const out = new Map<number, Seen>();
      for (let i = 0; i < g.maxHosts; i++) {
        const off = i * g.sectorSize;
        const l = decodeLeader(area, off);
        const valid = l.magic === DELTA_DISK_MAGIC && namesEqual(l.spaceName, this.spaceName);
        if (!valid && l.magic === 0 && l.timestamp === 0) continue;
        if (valid && l.timestamp === 0 && l.ownerGeneration === 0) continue;
        out.set(i + 1, { ownerGeneration: l.ownerGeneration, timestamp: l.timestamp, name: valid ? l.resourceName : '', ioTimeout: l.ioTimeout, valid });
      }
      return out;
    } finally {
      await f.close().catch(() => undefined);
    }
  }

  private latest(hostId: number): Seen | undefined {
    return (this.second ?? this.first).get(hostId);
  }

  host(hostId: number): HostView | undefined {
    const cur = this.latest(hostId);
    const deadAfter = hostDeadSeconds(cur?.ioTimeout ?? 0, this.ourIo);
    if (!cur || (cur.valid && cur.timestamp === 0)) {
      return { hostId, state: 'FREE', generation: cur?.ownerGeneration ?? 0, name: cur?.name ?? '', ageSeconds: 0, deadAfter };
    }
    if (!cur.valid) return undefined;
    let state: HostState = 'UNKNOWN';
    let age = 0;
    const before = this.first.get(hostId);
    if (this.second) {
      const changed = !before || before.timestamp !== cur.timestamp || before.ownerGeneration !== cur.ownerGeneration;
      state = changed ? 'LIVE' : 'UNKNOWN';
      age = changed ? 0 : this.watchedSeconds;
    }
    return { hostId, state, generation: cur.ownerGeneration, name: cur.name, ageSeconds: age, deadAfter };
  }

  hostLive(hostId: number, generation: number): boolean {
    const cur = this.latest(hostId);
    if (!cur || (cur.valid && cur.timestamp === 0)) return false;
    if (!cur.valid) return true;
    return cur.ownerGeneration <= generation;
  }

  candidates(): number[] {
    return [...(this.second ?? this.first).entries()].filter(([, s]) => !s.valid || s.timestamp !== 0).map(([h]) => h);
  }
}
