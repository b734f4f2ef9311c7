import { bitmapHas } from '../ondisk/bitmap';
import { DELTA_DISK_MAGIC } from '../ondisk/constants';
import { namesEqual, readName } from '../ondisk/names';
import { hostDeadSeconds, renewalFailSeconds, timeoutsFor } from './timeouts';

/**
 * How a joined host judges the other hosts of a lockspace (sanlock's check_other_leases,
 * get_host_flag, host_live). It learns only from the areas our renewals read: a host is
 * alive while its (owner, generation, timestamp) keeps changing. Pure: the caller passes each
 * renewal's area and its own monotime.
 */

export type HostState = 'FREE' | 'LIVE' | 'UNKNOWN' | 'FAIL' | 'DEAD';

/** sanlock's struct host_status for one host_id. */
export interface HostStatus {
  hostId: number;
  ownerId: number;
  ownerGeneration: number;
  timestamp: number;
  /** Its io_timeout as written in its record; our own when it never wrote one. */
  ioTimeout: number;
  ownerName: string;
  /** Our monotime of our first look at the lockspace. */
  firstCheck: number;
  /** Our monotime of our latest look. */
  lastCheck: number;
  /** Our monotime when we last saw (owner, generation, timestamp) change; 0 = never. */
  lastLive: number;
  /** The sector is not a valid delta record of this lockspace (bad magic or name). */
  leaseBad: boolean;
}

/** Another host signalling us through its bitmap (docs/ondisk.md, host bitmap). */
export interface HostSignal {
  hostId: number;
  ownerGeneration: number;
  /** write_id/gen/ts when write_generation ("event") is non-zero. */
  event?: { generation: number; event: number; data: number };
  /** True at most once per set_bitmap_seconds per sender: examine our resources' requests. */
  request: boolean;
}

interface Tracked {
  ownerId: number;
  ownerGeneration: number;
  timestamp: number;
  ioTimeout: number;
  ownerName: string;
  lastLive: number;
  leaseBad: boolean;
  lastReq: number;
}

export interface HostMonitorParams {
  spaceName: string;
  /** Our host_id: our own sector is LIVE by definition and never signals us. */
  hostId: number;
  sectorSize: number;
  maxHosts: number;
  /** Our io_timeout: used for hosts that never wrote one. */
  ioTimeout: number;
}

/** A little-endian u64 that fits a double (every sanlock counter does). */
function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x100000000;
}

function isZero(b: Buffer, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Per sector we remember the 32-bit words that can change a host's status: magic, owner_id,
 * owner_generation and timestamp (bytes 0..3, 32..47, 152..159). A renewal area is 1–8 MiB
 * and is looked at every 2·io, so only these are compared. (A name or lockspace change with
 * the same owner, generation and timestamp is noticed at the host's next change.)
 */
const WATCHED_WORDS = 7;

export class HostMonitor {
  readonly params: HostMonitorParams;
  private firstCheck = 0;
  private lastCheck = 0;
  private readonly hosts = new Map<number, Tracked>();
  /** The watched words of every sector at our previous look; zeros = sanlock's initial host_status. */
  private readonly prev: Uint32Array;

  constructor(params: HostMonitorParams) {
    this.params = params;
    this.prev = new Uint32Array(params.maxHosts * WATCHED_WORDS);
  }

  /**
   * check_other_leases over one renewal's area (sector i = host_id i+1). A host's status
   * changes only when its (owner, generation, timestamp) does, so each look compares just
   * those words (and the magic) with the previous look and decodes the sectors that moved.
   */
  observe(area: Buffer, now: number): HostSignal[] {
    const { sectorSize: ss, maxHosts } = this.params;
    const n = Math.min(maxHosts, Math.floor(area.length / ss));
    this.lastCheck = now;
    if (!this.firstCheck) this.firstCheck = now;
    const signals: HostSignal[] = [];
    const words = (area.byteOffset & 3) === 0
      ? new Uint32Array(area.buffer, area.byteOffset, n * (ss >> 2))
      : new Uint32Array(Uint8Array.prototype.slice.call(area, 0, n * ss).buffer);
    const prev = this.prev;
    const step = ss >> 2;
    for (let i = 0, w = 0, p = 0; i < n; i++, w += step, p += 7) {
      // magic, owner_id (lo, hi), owner_generation (lo, hi), timestamp (lo, hi)
      const m = words[w], o0 = words[w + 8], o1 = words[w + 9], g0 = words[w + 10], g1 = words[w + 11];
      const t0 = words[w + 38], t1 = words[w + 39];
      if (m === prev[p] && o0 === prev[p + 1] && o1 === prev[p + 2] && g0 === prev[p + 3] && g1 === prev[p + 4] &&
          t0 === prev[p + 5] && t1 === prev[p + 6]) continue;
      prev[p] = m; prev[p + 1] = o0; prev[p + 2] = o1; prev[p + 3] = g0; prev[p + 4] = g1; prev[p + 5] = t0; prev[p + 6] = t1;
      const sig = this.observeSector(area, i * ss, i + 1, now);
      if (sig) signals.push(sig);
    }
    return signals;
  }

  private observeSector(area: Buffer, off: number, hostId: number, now: number): HostSignal | undefined {
    let hs = this.hosts.get(hostId);
    // A never-owned sector (owner, generation, timestamp all 0) matches the initial status:
    // nothing to record. Skipping the decode matters: a fresh lockspace has 2000 of them.
    if (!hs && isZero(area, off + 32, 16) && isZero(area, off + 152, 8)) return undefined;
    // Only the fields the status needs; names are read only when the record is good.
    const magic = area.readUInt32LE(off);
    const ownerId = u64(area, off + 32);
    const ownerGeneration = u64(area, off + 40);
    const timestamp = u64(area, off + 152);
    if (!hs) {
      hs = { ownerId: 0, ownerGeneration: 0, timestamp: 0, ioTimeout: 0, ownerName: '', lastLive: 0, leaseBad: false, lastReq: 0 };
      this.hosts.set(hostId, hs);
    }
    const bad = magic !== DELTA_DISK_MAGIC || !namesEqual(readName(area, off + 56), this.params.spaceName);
    hs.leaseBad = bad;
    if (!bad) hs.ownerName = readName(area, off + 104);
    if (hs.ownerId === ownerId && hs.ownerGeneration === ownerGeneration && hs.timestamp === timestamp) {
      return undefined;
    }
    // Never replace good identity with a bad record's, but keep following its timestamp: a
    // host that renews is not dead even if its record looks odd.
    if (!bad) {
      hs.ownerId = ownerId;
      hs.ownerGeneration = ownerGeneration;
      hs.ioTimeout = area.readUInt16LE(off + 174);
    }
    hs.timestamp = timestamp;
    hs.lastLive = now;

    if (hostId === this.params.hostId || bad) return undefined;
    if (!bitmapHas(area, this.params.hostId, off)) return undefined;
    const sig: HostSignal = { hostId, ownerGeneration: hs.ownerGeneration, request: false };
    const writeGeneration = u64(area, off + 184);
    if (writeGeneration) {
      sig.event = { generation: u64(area, off + 176), event: writeGeneration, data: u64(area, off + 192) };
    }
    if (now - hs.lastReq >= timeoutsFor(this.params.ioTimeout).setBitmap) {
      hs.lastReq = now;
      sig.request = true;
    }
    return sig;
  }

  /** True once at least one area has been observed. */
  get checked(): boolean {
    return this.lastCheck !== 0;
  }

  /** host_info: our knowledge of a host_id, or undefined before our first look. */
  snapshot(hostId: number): HostStatus | undefined {
    if (!this.lastCheck || hostId < 1 || hostId > this.params.maxHosts) return undefined;
    const hs = this.hosts.get(hostId);
    return {
      hostId,
      ownerId: hs?.ownerId ?? 0,
      ownerGeneration: hs?.ownerGeneration ?? 0,
      timestamp: hs?.timestamp ?? 0,
      ioTimeout: hs?.ioTimeout || this.params.ioTimeout,
      ownerName: hs?.ownerName ?? '',
      firstCheck: this.firstCheck,
      lastCheck: this.lastCheck,
      lastLive: hs?.lastLive ?? 0,
      leaseBad: hs?.leaseBad ?? false,
    };
  }

  /**
   * get_host_flag. Limits use the host's own io_timeout: FAIL after 8·io without a change,
   * DEAD after 8·io + 60. UNKNOWN until we have seen its timestamp change once.
   */
  state(hostId: number, now: number): HostState {
    const hs = this.snapshot(hostId);
    if (!hs || !hs.timestamp) return 'FREE';
    const last = hs.lastLive || hs.firstCheck;
    if (hs.ownerId === this.params.hostId) return 'LIVE';
    const fail = renewalFailSeconds(hs.ioTimeout);
    const dead = hostDeadSeconds(hs.ioTimeout, this.params.ioTimeout);
    if (now - last <= fail && hs.firstCheck === hs.lastLive) return 'UNKNOWN';
    if (now - last <= fail) return 'LIVE';
    if (now - last > dead) return 'DEAD';
    return 'FAIL';
  }

  /**
   * host_live(host_id, gen) for shared holders: not alive if its delta lease is free, a newer
   * generation owns the host_id, or it has not changed for host_dead seconds. Without
   * knowledge, assume alive: a wrong "dead" would let us clear a live holder.
   *
   * One addition to sanlock 3.8.5: if our last look shows an *older* generation than the
   * holder's, the holder joined after that look, so everything we know predates it. sanlock
   * would call it dead when that older record was free (ts 0), letting an exclusive acquirer
   * clear the shared lease of a host that had just rejoined (found by the simulation).
   */
  hostLive(hostId: number, generation: number, now: number): boolean {
    const hs = this.snapshot(hostId);
    if (!hs || !hs.lastCheck) return true;
    if (hs.ownerGeneration < generation) return true;
    if (!hs.timestamp) return false;
    if (hs.ownerGeneration > generation) return false;
    const dead = hostDeadSeconds(hs.ioTimeout, this.params.ioTimeout);
    if (!hs.lastLive && now - hs.firstCheck > dead) return false;
    if (hs.lastLive && now - hs.lastLive > dead) return false;
    return true;
  }

  /** Every host_id whose sector has ever shown an owner, with its status. */
  known(): HostStatus[] {
    const out: HostStatus[] = [];
    for (const id of [...this.hosts.keys()].sort((a, b) => a - b)) {
      const s = this.snapshot(id);
      if (s && (s.ownerId || s.ownerGeneration || s.timestamp)) out.push(s);
    }
    return out;
  }
}
