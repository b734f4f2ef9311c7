/**
 * Where lease bytes live. The engine sees only this: the real edge is the direct-I/O addon
 * (src/io), the simulation's edge an in-memory sector store with injected faults. Offsets are
 * absolute byte offsets on the path; lengths and offsets are sector multiples.
 */
export interface LeaseStorage {
  /** Stable identity (the path) used in messages and I/O accounting. */
  readonly id: string;
  /**
   * Optional: which file this storage is (st_dev, st_ino of the open fd). Lets the agent check,
   * while it holds a lease, that the lease's path still names the file it leased; storages
   * without it (the simulation's memory storage) are not checked.
   */
  readonly fileId?: { dev: bigint; ino: bigint };
  /** Optional: st_nlink of the file when it was opened (more than 1: it has another name too). */
  readonly linkCount?: number;
  /**
   * True when writeIfUnchanged honours `writesAfter` (holds its writes, not its read, until it
   * settles). A caller gives `writesAfter` only to such a storage; with any other it waits for
   * it before the whole request, so a storage that ignores the argument cannot write early.
   */
  readonly holdsWrites?: boolean;
  /** Reject with an Error (ideally LeaseError -202 on timeout) rather than wait past timeoutMs. */
  read(offset: number, length: number, timeoutMs: number): Promise<Buffer>;
  write(offset: number, data: Buffer, timeoutMs: number): Promise<void>;
  /**
   * Optional: read `target.length` bytes into a caller-owned buffer, so large areas (a renewal
   * reads the whole 1–8 MiB lockspace every 2·io) reuse one page-aligned buffer as sanlock's
   * task->iobuf does. If this rejects, the I/O may still complete later into `target`: the
   * caller must abandon that buffer, never reuse it.
   */
  readInto?(offset: number, target: Buffer, timeoutMs: number): Promise<void>;
  /**
   * Optional: a buffer of `length` bytes that readInto fills best (the addon's page-aligned
   * memory, read into in place, no copy). Without it, any Buffer.
   */
  allocBuffer?(length: number): Buffer;
  /**
   * Optional: read `expected.length` bytes at `offset`; if they are byte for byte `expected`,
   * write each of `writes`. Resolves true when all was written, else the bytes found (nothing
   * written). One request instead of one per I/O (the addon runs it on one I/O thread): a
   * release is one leader read and two writes. The writes go out together and land in any
   * order (one round trip on a filer), so they must not overlap, and a failure of one says
   * nothing of the others. Not atomic — another host may write between the read and the
   * writes, exactly as between separate requests — so a caller uses it only where it would
   * have read, compared and written anyway. With `writesAfter`, the writes (not the read) wait
   * until it settles: a step of the caller's that must precede them runs beside the read
   * instead of before the whole request.
   */
  writeIfUnchanged?(offset: number, expected: Buffer, writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number,
    writesAfter?: Promise<unknown>): Promise<true | Buffer>;
  /**
   * Optional: read `target.length` bytes at `offset` into `target` (as readInto); if
   * `expected` is found byte for byte at `target[compareAt]`, write each of `writes` (as
   * writeIfUnchanged: together, in any order).
   * Resolves true when all was written, false when the compare failed (nothing written; the
   * bytes read are in `target` either way). One request for a renewal's area read and sector
   * write. Not atomic, as writeIfUnchanged.
   */
  readCompareWrite?(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number): Promise<boolean>;
  /**
   * Optional: readCompareWrite started `at.startInMs` from now (at most SCHEDULE_SLACK_MS early), with nothing of the
   * caller's woken to start it (a lockspace's next renewal, submitted as the last one completes:
   * the agent's event loop wakes once per renewal, not twice). Its timeout counts from its
   * start. Resolves with readCompareWrite's answer (`written`) and how long it ran from its
   * start (`ms`: the caller does not see the start), or NOT_STARTED (nothing read or written)
   * when cancelScheduled() stopped it, the storage was closed, or it could not start within
   * `at.latestStartInMs`. One at a time per storage. With `stamp`, the storage stamps the first
   * write when it starts the request (the time it starts it, not a time guessed when it was
   * handed over) and resolves what it stamped.
   */
  readCompareWriteAt?(offset: number, target: Buffer, compareAt: number, expected: Buffer,
    writes: ReadonlyArray<{ offset: number; data: Buffer }>, timeoutMs: number, at: StartWindow,
    stamp?: SectorStamp): Promise<ScheduledResult | typeof NOT_STARTED>;
  /** Stops the readCompareWriteAt waiting for its start (it resolves NOT_STARTED); true when there was one. */
  cancelScheduled?(): boolean;
}

/** When a scheduled request (readCompareWriteAt) may start, in ms from the call. */
export interface StartWindow {
  startInMs: number;
  /** past this, it is not started at all */
  latestStartInMs: number;
  /**
   * Another scheduled request follows, to start this long after this one starts (a lockspace's
   * renewal cadence): the storage may keep itself ready for it then.
   */
  nextInMs?: number;
}

/**
 * How much earlier than `startInMs` a storage may start a scheduled request (its I/O thread,
 * waking by itself about then, starts it rather than sleeping again for the rest). What it
 * writes carries the time it really started (SectorStamp). The native addon's kStartSlack, which
 * it exports as `scheduleSlackMs` (test/native/directio-writeifunchanged.test.ts holds them equal).
 */
export const SCHEDULE_SLACK_MS = 2;

/** readCompareWriteAt's answer when it ran. */
export interface ScheduledResult {
  written: boolean;
  ms: number;
  /** with a stamp: the timestamp and checksum put into the first write */
  timestamp?: number;
  checksum?: number;
}

/**
 * What a storage puts into a scheduled request's first write as it starts it (byte offsets in
 * that write): its monotonic clock's whole seconds (at least 1: leaseTimestamp) as a
 * little-endian u64 at `timestampAt`, then sanlock's checksum (sanlockChecksum) of the bytes
 * before `checksumLength` as a u32 at `checksumAt`. A renewal's timestamp and leader checksum.
 */
export interface SectorStamp {
  timestampAt: number;
  checksumAt: number;
  checksumLength: number;
}

/** readCompareWriteAt's answer when it never started. */
export const NOT_STARTED = 'not-started';
