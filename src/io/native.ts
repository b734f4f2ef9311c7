// Loader for the lockagent_native addon (native/, built by `npm run build:native`).
import * as fs from 'fs';
import * as path from 'path';
import { QuickScan } from '../lease/hostmonitor';
import { SectorStamp } from '../lease/storage';
import { findPackageRoot } from './packageroot';

export interface IoStats {
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  timeouts: number;
  lateCompletions: number;
  /** Writes of a writeIfUnchanged/readCompareWrite submitted together (Linux AIO). */
  writesTogether: number;
}

/** A handle opened by the addon; every method settles on an I/O thread of its own. */
export interface NativeFile {
  read(offset: number, length: number, timeoutMs: number): Promise<Buffer>;
  /**
   * Reads target.length bytes and copies them into `target` when the read succeeds (never
   * after a rejection). Absent in addons built before it existed.
   */
  readInto?(offset: number, target: Uint8Array, timeoutMs: number): Promise<void>;
  write(offset: number, data: Uint8Array, timeoutMs: number): Promise<void>;
  /**
   * Reads expected.length bytes at offset; if equal to `expected`, writes each [offset, data] in
   * order; resolves true, or the bytes found (nothing written). With a gate, the writes wait
   * until it is opened (the read does not). Absent in older addons.
   */
  writeIfUnchanged?(offset: number, expected: Uint8Array, writes: Array<[number, Uint8Array]>, timeoutMs: number, gate?: NativeWriteGate): Promise<true | Buffer>;
  /**
   * With `schedule` (ms of CLOCK_MONOTONIC, process.hrtime's clock): started at startAtMs;
   * rejects ETIME unstarted past latestStartAtMs, ECANCELED when cancelled; resolves
   * { written, ms, timestamp?, checksum? } (ms: from its start; stamp: native/src/stamp.h). nextInMs:
   * the next of its series starts that long after it (its thread waits for then).
   */
  readCompareWrite?(offset: number, target: Uint8Array, compareAt: number, expected: Uint8Array, writes: Array<[number, Uint8Array]>, timeoutMs: number,
    schedule?: { startAtMs: number; latestStartAtMs?: number; nextInMs?: number; stamp?: SectorStamp }): Promise<boolean>;
  /** Stops a scheduled readCompareWrite that has not started (it rejects ECANCELED); true when there was one. Absent in older addons. */
  cancelScheduled?(): boolean;
  close(timeoutMs: number): Promise<void>;
  /** Worker threads currently alive for this handle (diagnostics/tests). */
  threadCount(): number;
}

/** Holds a writeIfUnchanged's writes until open() (native/src/io_engine.h, WriteGate). */
export interface NativeWriteGate {
  open(): void;
}

export interface NativeOpenResult {
  file: NativeFile;
  direct: boolean;
  isBlockDevice: boolean;
  size: number;
  logicalSectorSize: number;
  /** st_dev / st_ino of the opened fd (fstat right after the open) */
  dev?: bigint;
  ino?: bigint;
  /** st_nlink of the opened fd at the open */
  nlink?: number;
}

/** readHead's result: fstat of the opened file, and its first bytes when it is a regular file. */
export interface NativeHeadResult {
  /** absent when the path is not a regular file (nothing was read) */
  data?: Buffer;
  direct: boolean;
  mode: number;
  size: number;
  dev: bigint;
  ino: bigint;
  nlink: number;
  mtimeSec: number;
  mtimeNsec: number;
}

export interface NativeBinding {
  open(path: string, readOnly: boolean, timeoutMs: number, keepThreadMs?: number): Promise<NativeOpenResult>;
  /**
   * One-shot open (read-only, no symlink followed, never blocking on a FIFO) + fstat + read of
   * the first `length` bytes + close, on a shared pool of I/O threads. Absent in addons built
   * before it existed.
   */
  readHead?(path: string, length: number, timeoutMs: number): Promise<NativeHeadResult>;
  /**
   * A Buffer of `length` bytes (a multiple of 512) in page-aligned memory that readInto fills in
   * place, without a buffer and a copy of its own. Absent in addons built before it existed.
   */
  allocAligned?(length: number): Buffer;
  /** A gate for writeIfUnchanged. Absent in addons built before it existed. */
  WriteGate?: new () => NativeWriteGate;
  ioStats(path?: string): IoStats;
  resetIoStats(): void;
  /** Test hook: pretend every filesystem refuses O_DIRECT. */
  _testForceDirectEinval(on: boolean): void;
  /** Test hook: the next `count` reads/writes at `offset` on `path` sleep `ms` first. */
  _testInjectStall(path: string, offset: number, ms: number, count: number): void;
  /** Test hook: how many times the I/O engine's deadline watchdog thread has woken up. */
  _testWatchdogWakeups?(): number;
  /** How early a scheduled request may start (io_engine's kStartSlack; SCHEDULE_SLACK_MS restates it). */
  scheduleSlackMs?: number;
  /** Test hook: handle threads created so far, and spare ones parked now (io_engine's ThreadPark). */
  _testIoThreads?(): { created: number; parked: number; aioContexts: number };
  /**
   * Test hook: the AIO context pool's next `count` io_setup calls fail with `errno`; a failure then
   * waits `retryMs` (0: the production minute) before the pool tries again. Returns the failures
   * the last call asked for that were still to come.
   */
  _testFailAioSetup?(count: number, errno: number, retryMs: number): number;
  /** Test hook: destroys the AIO context pool's free contexts; returns how many. */
  _testDropFreeAioContexts?(): number;
  /** One datagram to systemd's $NOTIFY_SOCKET (path or @abstract); `fd` goes along as SCM_RIGHTS. */
  sdNotify?(socketPath: string, text: string, fd?: number): boolean;
  /** libwdmd (loaded at run time): connect, register `name`, set the refcount; returns the connection fd. */
  wdmdConnect?(name: string): number;
  wdmdStatus?(fd: number): { testInterval: number; fireTimeout: number; lastKeepalive: number };
  /** Monotonic seconds; (0, 0) disarms the test. */
  wdmdTestLive?(fd: number, renewal: number, expire: number): void;
  wdmdClose?(fd: number, clearRefcount: boolean): void;
  /** Drops the cached aligned I/O buffers and calls malloc_trim(0); whether memory was released. */
  trimMemory?(): boolean;
  /** mallopt(M_ARENA_MAX, n); whether glibc took it. */
  limitMallocArenas?(n: number): boolean;
  /** Gives back clean pages of read-only file mappings (native/src/filepages.h); throws when /proc/self/smaps cannot be read. */
  dropCleanFilePages?(): { mappings: number; bytes: number };
  /** Test hook: the mappings dropCleanFilePages would give back for this smaps text, as [start, end, rssBytes]. */
  _testDroppableMappings?(smaps: string): number[][];
  /** The host monitor's quick path in C++ (native/src/deltascan.h; the rule: quickScanJs). Absent in older addons. */
  deltaQuickScan?: QuickScan;
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'lockagent_native.node');

let cached: NativeBinding | undefined;

/**
 * Loads the addon once; throws an actionable error if it has not been built.
 * $LOCKAGENT_NATIVE_ADDON names another build of it (scripts/bench uses a private build, so a
 * concurrent `npm run build:native` cannot swap the addon under a running measurement).
 */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  const file = process.env.LOCKAGENT_NATIVE_ADDON || path.join(findPackageRoot(), ADDON_RELATIVE);
  if (!fs.existsSync(file)) {
    throw new Error(
      `lockagent: native addon not found at ${file}; run \`npm run build:native\` ` +
        '(needs g++, make and the Node.js headers)',
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached = require(file) as NativeBinding;
  return cached;
}

/** The host monitor's quick path from the addon, or undefined (no addon, or one built before it: quickScanJs then). */
export function nativeQuickScan(): QuickScan | undefined {
  try {
    return loadNative().deltaQuickScan;
  } catch {
    return undefined;
  }
}
