import { readFileSync } from 'fs';
import { getHeapSpaceStatistics, setFlagsFromString } from 'v8';
import { runInNewContext } from 'vm';
import { loadNative } from '../io/native';
import { MALLOC_ARENAS } from './nodeflags';

/**
 * Gives memory back after a burst of requests. Acquiring many leases at once (a host starting
 * its domains, 1,000 leases in scripts/bench idle) makes V8 grow its young generation to 2×16 MiB
 * and leaves freed 1-8 MiB lease-read buffers resident in glibc's heap; neither shrinks by itself
 * while the agent idles, so the RSS stayed ~40 MiB above what the idle agent needs (108 MiB
 * with 1,000 leases held, against 63 MiB at start). Once the agent has been quiet for `quietMs`
 * after some activity, and memory did grow, one full GC (V8 shrinks the young generation when
 * the allocation rate is low) and malloc_trim return it. Costs one full GC (~10-30 ms) per burst,
 * while idle.
 *
 * Start-up and bursts also map code and read-only data of node and the libraries that idling
 * never runs: an idle agent's RSS was two thirds pages of the node binary (39.7 of 59.7 MiB with
 * no lease, against 30.3 for a bare node). The first quiet check after start-up, and every heap
 * trim after a burst, give those back too (dropCleanFilePages: lossless, the pages stay in the
 * page cache; what renewals use comes back at the next renewal). Not after every request: a drop
 * costs 4-20 ms and the next requests fault their code back in, which for a `status` poll every
 * few seconds would cost more CPU than the idle agent's renewals.
 */
export class IdleTrimmer {
  private lastActivity = 0;
  private active = false;
  private timer?: NodeJS.Timeout;
  /** anonymous memory after the last heap trim: its growth is what a heap trim gives back */
  private anonAfterTrim = residentBytes().anon;
  /** whether start-up's file pages were given back (at the first quiet check) */
  private droppedStartup = false;
  private newSpaceAfterTrim = 0;
  private lastTrim = Date.now();

  constructor(
    private readonly quietMs = 5000,
    private readonly onTrim?: (before: number, after: number) => void,
    /** drop caches (buffer pools) before the GC */
    private readonly beforeTrim?: () => void,
    /**
     * Under sustained work there is no quiet: V8 lets the old generation fill with garbage
     * before it marks, so the RSS climbed ~3.5 KiB per acquire+release cycle (80 → 110 MiB
     * over 6,000 cycles, scripts/bench memplateau). At most this often, a busy agent whose RSS
     * grew by 16 MiB since the last trim trims too: one full GC per interval at most.
     */
    private readonly busyEveryMs = 10000,
  ) {}

  private started = false;

  /** A request came in. */
  touch(): void {
    this.lastActivity = Date.now();
    this.active = true;
    this.arm();
  }

  start(): void {
    this.started = true;
    this.arm();
  }

  stop(): void {
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * The check runs only while there was activity since the last quiet trim: an idle agent
   * keeps no timer for it (a wake-up every few seconds is most of an idle Node process's CPU).
   */
  private arm(): void {
    if (!this.started || !this.active || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.check();
      this.arm();
    }, Math.max(1000, Math.floor(this.quietMs / 2)));
    this.timer.unref();
  }

  check(now = Date.now()): boolean {
    if (!this.active) return false;
    const quiet = now - this.lastActivity >= this.quietMs;
    if (!quiet && now - this.lastTrim < this.busyEveryMs) return false;
    const before = residentBytes();
    // Quiet after a burst: 4 MiB of growth is worth one full GC (with the daemon's 1 MiB
    // semi-space the young generation never grows past 2 MiB: growth is what tells a burst).
    // Busy: 16 MiB, so sustained work pays for a full GC only now and then.
    const grown = before.anon >= this.anonAfterTrim + (quiet ? 4 : 16) * MiB;
    let heap = grown;
    if (quiet) {
      this.active = false;
      // A young generation grown past what the last trim left (started without the daemon's
      // --max-semi-space-size=1 it stays at 32 MiB even after a full GC: no trim for that)
      heap = grown || newSpaceBytes() > Math.max(4 * MiB, this.newSpaceAfterTrim);
    }
    // Code pages only when quiet (a busy agent is using them): start-up's, and a burst's (its
    // memory grew), never after every request.
    const code = quiet && (grown || !this.droppedStartup);
    if (!heap && !code) return false;
    if (heap) {
      this.beforeTrim?.();
      trimMemory();
      this.lastTrim = now;
    }
    if (code) {
      dropCleanFilePages();
      this.droppedStartup = true;
    }
    const after = residentBytes();
    if (heap) {
      this.anonAfterTrim = after.anon;
      this.newSpaceAfterTrim = newSpaceBytes();
    }
    this.onTrim?.(before.anon + before.file, after.anon + after.file);
    return true;
  }
}

const MiB = 1024 * 1024;

/** Resident anonymous and file-backed bytes (/proc/self/status RssAnon, RssFile; RssShmem counts
 * as neither); the RSS where /proc cannot be read. */
export function residentBytes(): { anon: number; file: number } {
  try {
    const status = readFileSync('/proc/self/status', 'latin1');
    const kib = (re: RegExp) => Number(re.exec(status)?.[1] ?? NaN) * 1024;
    const anon = kib(/^RssAnon:\s+(\d+) kB/m);
    const file = kib(/^RssFile:\s+(\d+) kB/m);
    if (Number.isFinite(anon) && Number.isFinite(file)) return { anon, file };
  } catch {
    // not Linux's /proc: below
  }
  return { anon: process.memoryUsage.rss(), file: 0 };
}

/** Gives back clean pages of read-only file mappings (see native/src/filepages.h); 0 when the
 * addon cannot. */
export function dropCleanFilePages(): number {
  try {
    return loadNative().dropCleanFilePages?.().bytes ?? 0;
  } catch {
    return 0; // no addon, an addon built before this call, or no /proc/self/smaps
  }
}

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

let gc: (() => void) | null | undefined;

/** One full GC (through a runtime --expose-gc, no flag needed at start), then the addon's
 * buffer cache and malloc_trim. */
export function trimMemory(): void {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
  try {
    loadNative().trimMemory?.();
  } catch {
    // an addon built before trimMemory existed: the GC alone still helps
  }
}

/** Cap glibc's malloc arenas (MALLOC_ARENAS); call before the I/O threads start. False when it could not. */
export function limitMallocArenas(n = MALLOC_ARENAS): boolean {
  try {
    return loadNative().limitMallocArenas?.(n) ?? false;
  } catch {
    return false; // no addon (or one built before this call): glibc's default
  }
}
