import { bitmapHas } from '../ondisk/bitmap';
import { DELTA_DISK_MAGIC, HOSTID_BITMAP_OFFSET, NAME_ID_SIZE } from '../ondisk/constants';
import { readName } from '../ondisk/names';
import { readU64, u64FromWords } from '../ondisk/u64';
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

/** What we know of a host_id besides its watched words (HostMonitor.prev) and lastLive. */
interface Tracked {
  ownerId: number;
  ownerGeneration: number;
  ioTimeout: number;
  ownerName: string;
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
  /** The quick path of each look (quickScanJs by default; the addon has the same loop in C++). */
  quickScan?: QuickScan;
}

/**
 * The state a look's quick path reads and updates (all indexed as in HostMonitor): the area's
 * words, the watched words of the last look, and per host_id the quick flag, owner-name words,
 * io_timeout and lastLive.
 */
export interface QuickScanArgs {
  words: Uint32Array;
  hosts: number;
  /** words per sector */
  step: number;
  prev: Uint32Array;
  quick: Uint8Array;
  names: Uint32Array;
  spaceWords: Uint32Array;
  ioTimeouts: Uint16Array;
  lastLive: Float64Array;
  ourIndex: number;
  ourBitWord: number;
  ourBitMask: number;
  now: number;
  /** sector indexes left for the full path */
  slow: Int32Array;
}

/** Runs the quick path over every sector; returns how many sector indexes it wrote to `slow`. */
export type QuickScan = (a: QuickScanArgs) => number;

/**
 * Per sector we remember the 32-bit words that can change a host's status: magic, owner_id,
 * owner_generation and timestamp (bytes 0..3, 32..47, 152..159). A renewal area is 1–8 MiB
 * and is looked at every 2·io, so only these are compared. (A name or lockspace change with
 * the same owner, generation and timestamp is noticed at the host's next change.)
 */
const WATCHED_WORDS = 7;
/** Word indexes in a sector (little-endian u32): owner_id at byte 32, lockspace name 56, owner name 104, timestamp 152. */
const W_OWNER = 8;
const W_SPACE_NAME = 14;
const W_OWNER_NAME = 26;
const W_TIMESTAMP = 38;
/** The word whose upper half is the u16 io_timeout at byte 174. */
const W_IO_TIMEOUT = 43;
const NAME_WORDS = 12;

export class HostMonitor {
  readonly params: HostMonitorParams;
  private firstCheck = 0;
  private lastCheck = 0;
  /** Indexed by host_id; a host is tracked from the first look that shows it owned. */
  private readonly hosts: Array<Tracked | undefined>;
  /** The watched words of every sector at our previous look; zeros = sanlock's initial host_status. */
  private readonly prev: Uint32Array;
  /** The owner-name words of each tracked host as last decoded: the name is decoded only when they change. */
  private readonly names: Uint32Array;
  /** Our lockspace name's bytes (strncmp with the 48-byte field); undefined if no on-disk name can equal it. */
  private readonly spaceName?: Uint8Array;
  /** host_ids whose record changed at the last look (see changedAtLastLook). */
  private changed: number[] = [];
  /**
   * 1 for a tracked host whose last record was good: a look where only its timestamp moved (a
   * renewal) takes the quick path of observe(), 0 until then and after any other change.
   */
  private readonly quick: Uint8Array;
  /** Our lockspace name as the 12 words of a name field holding it (NUL-padded); see observe(). */
  private readonly spaceWords?: Uint32Array;
  /** Where our host_id's bit of a sector's bitmap is: word index in the sector, and its mask. */
  private readonly ourBitWord: number;
  private readonly ourBitMask: number;

  /** By host_id: our monotime when we last saw its (owner, generation, timestamp) change; 0 = never. */
  private readonly lastLive: Float64Array;
  /** By host_id: the io_timeout of its last good record (Tracked.ioTimeout, for the quick path). */
  private readonly ioTimeouts: Uint16Array;
  private readonly scan: QuickScanArgs;

  constructor(params: HostMonitorParams) {
    this.params = params;
    this.prev = new Uint32Array(params.maxHosts * WATCHED_WORDS);
    this.names = new Uint32Array((params.maxHosts + 1) * NAME_WORDS);
    this.lastLive = new Float64Array(params.maxHosts + 1);
    this.ioTimeouts = new Uint16Array(params.maxHosts + 1);
    this.hosts = new Array<Tracked | undefined>(params.maxHosts + 1);
    const name = params.spaceName.slice(0, NAME_ID_SIZE);
    // readName stops at the first NUL, so a name containing one never matches (namesEqual).
    if (!name.includes('\0')) this.spaceName = Buffer.from(name, 'latin1');
    if (this.spaceName) {
      const padded = Buffer.alloc(NAME_ID_SIZE);
      padded.set(this.spaceName);
      this.spaceWords = new Uint32Array(NAME_WORDS);
      for (let k = 0; k < NAME_WORDS; k++) this.spaceWords[k] = padded.readUInt32LE(k * 4);
    }
    this.quick = new Uint8Array(params.maxHosts + 1);
    const bitByte = HOSTID_BITMAP_OFFSET + ((params.hostId - 1) >> 3);
    this.ourBitWord = bitByte >> 2;
    this.ourBitMask = (1 << (((bitByte & 3) << 3) + ((params.hostId - 1) & 7))) >>> 0;
    this.scan = {
      words: new Uint32Array(0), hosts: 0, step: params.sectorSize >> 2, prev: this.prev, quick: this.quick, names: this.names,
      // without a name any record could equal, no quick flag is ever set: these words are never compared
      spaceWords: this.spaceWords ?? new Uint32Array(NAME_WORDS), ioTimeouts: this.ioTimeouts, lastLive: this.lastLive,
      ourIndex: params.hostId - 1, ourBitWord: this.ourBitWord, ourBitMask: this.ourBitMask, now: 0, slow: new Int32Array(params.maxHosts),
    };
  }

  /**
   * check_other_leases over one renewal's area (sector i = host_id i+1). A host's status
   * changes only when its (owner, generation, timestamp) does, so each look compares just
   * those words (and the magic) with the previous look (the quick path, QuickScan) and decodes
   * the sectors that moved otherwise than by a good host's renewal.
   */
  observe(area: Buffer, now: number): HostSignal[] {
    const { sectorSize: ss, maxHosts } = this.params;
    const n = Math.min(maxHosts, Math.floor(area.length / ss));
    this.lastCheck = now;
    if (!this.firstCheck) this.firstCheck = now;
    this.changed = [];
    const signals: HostSignal[] = [];
    const words = (area.byteOffset & 3) === 0
      ? new Uint32Array(area.buffer, area.byteOffset, n * (ss >> 2))
      : new Uint32Array(Uint8Array.prototype.slice.call(area, 0, n * ss).buffer);
    const scan = this.scan;
    scan.words = words;
    scan.hosts = n;
    scan.now = now;
    const moved = (this.params.quickScan ?? quickScanJs)(scan);
    scan.words = EMPTY_WORDS; // not kept past the look: the area is the renewal's buffer
    const { prev, quick, spaceWords } = this;
    const slow = scan.slow;
    const step = ss >> 2;
    for (let j = 0; j < moved; j++) {
      const i = slow[j], w = i * step, p = i * WATCHED_WORDS;
      // magic, owner_id (lo, hi), owner_generation (lo, hi), timestamp (lo, hi)
      const m = words[w], o0 = words[w + W_OWNER], o1 = words[w + W_OWNER + 1], g0 = words[w + W_OWNER + 2], g1 = words[w + W_OWNER + 3];
      const t0 = words[w + W_TIMESTAMP], t1 = words[w + W_TIMESTAMP + 1];
      const before = u64FromWords(prev[p + 5], prev[p + 6]);
      prev[p] = m; prev[p + 1] = o0; prev[p + 2] = o1; prev[p + 3] = g0; prev[p + 4] = g1; prev[p + 5] = t0; prev[p + 6] = t1;
      let hs = this.hosts[i + 1];
      if (!hs) {
        // A never-owned sector (owner, generation, timestamp all 0) matches the initial status:
        // nothing to record. Skipping it matters: a fresh lockspace has 2000 of them.
        if ((o0 | o1 | g0 | g1 | t0 | t1) === 0) continue;
        hs = { ownerId: 0, ownerGeneration: 0, ioTimeout: 0, ownerName: '', leaseBad: false, lastReq: 0 };
        this.hosts[i + 1] = hs;
      }
      const sig = this.observeSector(hs, area, words, w, i + 1, m, u64FromWords(o0, o1), u64FromWords(g0, g1), u64FromWords(t0, t1), before, now);
      if (sig) signals.push(sig);
      // The next renewal alone may take the quick path when this record is good and exactly
      // our lockspace name (a record only strncmp-equal to it keeps taking the full path).
      quick[i + 1] = !hs.leaseBad && !!spaceWords && sameWords(words, w + W_SPACE_NAME, spaceWords, 0) ? 1 : 0;
    }
    return signals;
  }

  /** One sector whose watched words moved: what sanlock does when owner, generation or timestamp differ. */
  private observeSector(
    hs: Tracked, area: Buffer, words: Uint32Array, w: number, hostId: number,
    magic: number, ownerId: number, ownerGeneration: number, timestamp: number, before: number, now: number,
  ): HostSignal | undefined {
    const off = w << 2;
    const bad = magic !== DELTA_DISK_MAGIC || !this.isOurSpace(area, off + (W_SPACE_NAME << 2));
    hs.leaseBad = bad;
    if (!bad) this.noteOwnerName(hs, area, words, w, hostId);
    if (hs.ownerId === ownerId && hs.ownerGeneration === ownerGeneration && before === timestamp) {
      return undefined;
    }
    this.changed.push(hostId);
    // Never replace good identity with a bad record's, but keep following its timestamp: a
    // host that renews is not dead even if its record looks odd.
    if (!bad) {
      hs.ownerId = ownerId;
      hs.ownerGeneration = ownerGeneration;
      hs.ioTimeout = area[off + 174] | (area[off + 175] << 8);
      this.ioTimeouts[hostId] = hs.ioTimeout;
    }
    this.lastLive[hostId] = now;

    if (hostId === this.params.hostId || bad) return undefined;
    if (!bitmapHas(area, this.params.hostId, off)) return undefined;
    const sig: HostSignal = { hostId, ownerGeneration: hs.ownerGeneration, request: false };
    const writeGeneration = readU64(area, off + 184);
    if (writeGeneration) {
      sig.event = { generation: readU64(area, off + 176), event: writeGeneration, data: readU64(area, off + 192) };
    }
    if (now - hs.lastReq >= timeoutsFor(this.params.ioTimeout).setBitmap) {
      hs.lastReq = now;
      sig.request = true;
    }
    return sig;
  }

  /** namesEqual(readName(area, off), spaceName) without decoding the name. */
  private isOurSpace(area: Buffer, off: number): boolean {
    const want = this.spaceName;
    if (!want) return false;
    for (let k = 0; k < want.length; k++) if (area[off + k] !== want[k]) return false;
    return want.length === NAME_ID_SIZE || area[off + want.length] === 0;
  }

  /** The owner name as sanlock copies it; decoded only when its bytes changed (the moved sectors of 2,000 live hosts are every sector). */
  private noteOwnerName(hs: Tracked, area: Buffer, words: Uint32Array, w: number, hostId: number): void {
    const names = this.names;
    const base = hostId * NAME_WORDS;
    let same = true; // zero words: the '' a new host starts with
    for (let k = 0; k < NAME_WORDS; k++) {
      const x = words[w + W_OWNER_NAME + k];
      if (names[base + k] !== x) {
        names[base + k] = x;
        same = false;
      }
    }
    if (!same) hs.ownerName = readName(area, (w + W_OWNER_NAME) << 2);
  }

  /** The io_timeout a host_id's record carries, 0 when it carries none (or was never seen); no allocation. */
  recordedIoTimeout(hostId: number): number {
    return this.hosts[hostId]?.ioTimeout ?? 0;
  }

  /**
   * The host_ids whose record changed at the last look: seen for the first time, a new owner or
   * generation, a record gone bad or good again, a new owner name, or a bitmap signalling us. A
   * host that only renewed (its timestamp alone moved) is not listed: its io_timeout and name
   * are those of its last listed record.
   */
  changedAtLastLook(): readonly number[] {
    return this.changed;
  }

  /** True once at least one area has been observed. */
  get checked(): boolean {
    return this.lastCheck !== 0;
  }

  /** host_info: our knowledge of a host_id, or undefined before our first look. */
  snapshot(hostId: number): HostStatus | undefined {
    if (!this.lastCheck || hostId < 1 || hostId > this.params.maxHosts) return undefined;
    const hs = this.hosts[hostId];
    const p = (hostId - 1) * WATCHED_WORDS;
    return {
      hostId,
      ownerId: hs?.ownerId ?? 0,
      ownerGeneration: hs?.ownerGeneration ?? 0,
      timestamp: hs ? u64FromWords(this.prev[p + 5], this.prev[p + 6]) : 0,
      ioTimeout: hs?.ioTimeout || this.params.ioTimeout,
      ownerName: hs?.ownerName ?? '',
      firstCheck: this.firstCheck,
      lastCheck: this.lastCheck,
      lastLive: hs ? this.lastLive[hostId] : 0,
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
    for (let id = 1; id < this.hosts.length; id++) {
      if (!this.hosts[id]) continue;
      const s = this.snapshot(id);
      if (s && (s.ownerId || s.ownerGeneration || s.timestamp)) out.push(s);
    }
    return out;
  }
}

const EMPTY_WORDS = new Uint32Array(0);

/**
 * The quick path of a look (the rule; native/src/deltascan.cc is the same loop in C++, checked
 * against this one in test/unit/hostscan.test.ts). For each sector whose watched words moved: a
 * good host that only renewed (with 2,000 live hosts, every sector at every look) — its lockspace
 * name, owner name and io_timeout those of its last good record, not signalling us — gets its new
 * timestamp words and lastLive, which is all the full path would change for it, without decoding
 * anything. Every other moved sector is listed in `slow` for the full path.
 */
export function quickScanJs(a: QuickScanArgs): number {
  const { words, hosts, step, prev, quick, names, spaceWords, ioTimeouts, lastLive, ourIndex, ourBitWord, ourBitMask, now, slow } = a;
  let k = 0;
  for (let i = 0, w = 0, p = 0; i < hosts; i++, w += step, p += WATCHED_WORDS) {
    const t0 = words[w + W_TIMESTAMP], t1 = words[w + W_TIMESTAMP + 1];
    const sameRecord = words[w] === prev[p] && words[w + W_OWNER] === prev[p + 1] && words[w + W_OWNER + 1] === prev[p + 2] &&
      words[w + W_OWNER + 2] === prev[p + 3] && words[w + W_OWNER + 3] === prev[p + 4];
    if (sameRecord && t0 === prev[p + 5] && t1 === prev[p + 6]) continue;
    if (sameRecord && quick[i + 1] === 1 && (i === ourIndex || (words[w + ourBitWord] & ourBitMask) === 0) &&
        sameWords(words, w + W_SPACE_NAME, spaceWords, 0) && sameWords(words, w + W_OWNER_NAME, names, (i + 1) * NAME_WORDS) &&
        words[w + W_IO_TIMEOUT] >>> 16 === ioTimeouts[i + 1]) {
      prev[p + 5] = t0;
      prev[p + 6] = t1;
      lastLive[i + 1] = now;
      continue;
    }
    slow[k++] = i;
  }
  return k;
}

/** words[at..at+12) equal want[from..from+12) (a 48-byte name field, as 12 words). */
function sameWords(words: Uint32Array, at: number, want: Uint32Array, from: number): boolean {
  for (let k = 0; k < NAME_WORDS; k++) if (words[at + k] !== want[from + k]) return false;
  return true;
}
