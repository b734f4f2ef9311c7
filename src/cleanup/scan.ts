/**
 * Gathering the facts about the lease directory for the classifier: lstat of every entry and
 * the first sectors of every regular file, read-only through the O_DIRECT addon (as sanlock
 * reads leases: the page cache of an NFS client may be stale). Nothing here writes.
 */
import { BigIntStats, Dirent, promises as fsp } from 'fs';
import { join } from 'path';
import { canReadFileHead, DirectFile, FileHead, readFileHead } from '../io/directio';
import {
  bytesNeeded, classifyEntry, ClassifyContext, EntryFacts, EntryStat, LivenessView, SWEEP_LOCK_NAME,
} from './classify';
import { Verdict } from '../control/replies';

export interface ScanOptions {
  /** I/O deadline per read, ms */
  ioTimeoutMs: number;
  /** files examined at a time (default 32) */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
  /** once aborted, no further entry is examined (those in hand finish); the result is shorter */
  signal?: AbortSignal;
}

function toEntryStat(s: BigIntStats): EntryStat {
  const kind: EntryStat['kind'] = s.isFile() ? 'file' : s.isDirectory() ? 'directory' : s.isSymbolicLink() ? 'symlink' : 'other';
  return {
    kind, size: Number(s.size), mtimeMs: Number(s.mtimeMs), mtimeNs: s.mtimeNs.toString(), ino: s.ino.toString(), dev: s.dev.toString(),
    nlink: Number(s.nlink),
  };
}

export async function statEntry(path: string): Promise<EntryStat> {
  return toEntryStat(await fsp.lstat(path, { bigint: true }));
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err && err.code === 'ENOENT') return 'vanished while scanning (deleted by someone else)';
  if (err && err.code === 'EACCES') return 'permission denied';
  return err instanceof Error ? err.message : String(e);
}

/** Read what the classifier needs from one lease file (one read, two when more dblocks matter). */
async function readHead(path: string, view: LivenessView, ioTimeoutMs: number): Promise<Buffer> {
  const f = await DirectFile.open(path, { readOnly: true, timeoutMs: ioTimeoutMs });
  try {
    let head = await f.read(0, 4096, ioTimeoutMs);
    const need = bytesNeeded(head, view);
    if (need > head.length) head = await f.read(0, Math.ceil(need / 4096) * 4096, ioTimeoutMs);
    return head;
  } finally {
    await f.close().catch(() => undefined);
  }
}

/** The facts about one entry; errors end up in `error`. */
export async function inspect(dir: string, name: string, view: LivenessView, ioTimeoutMs: number): Promise<EntryFacts> {
  const path = join(dir, name);
  let stat: EntryStat;
  try {
    stat = await statEntry(path);
  } catch (e) {
    return { name, error: `cannot stat: ${errText(e)}` };
  }
  if (stat.kind !== 'file') return { name, stat };
  try {
    // A regular file: its size may be anything; past EOF reads as zeros.
    return { name, stat, head: stat.size > 0 ? await readHead(path, view, ioTimeoutMs) : Buffer.alloc(0) };
  } catch (e) {
    return readFailed(name, stat, e);
  }
}

function readFailed(name: string, stat: EntryStat, e: unknown): EntryFacts {
  if (name === SWEEP_LOCK_NAME) return { name, stat };
  return { name, stat, error: `cannot read: ${errText(e)}` };
}

function headStat(h: FileHead): EntryStat {
  return {
    kind: 'file', size: h.size, mtimeMs: Number(h.mtimeNs / 1000000n), mtimeNs: h.mtimeNs.toString(), ino: h.ino.toString(), dev: h.dev.toString(),
    nlink: h.nlink,
  };
}

const isTimeout = (e: unknown) => (e as NodeJS.ErrnoException)?.code === 'ETIMEDOUT';

/**
 * inspect() for an entry readdir calls a regular file, in one request (readFileHead): the
 * stat comes from the fd the head was read through. Anything unusual — an error, or no longer a
 * regular file — goes the way of inspect() (lstat, then open), which says what it is, except a
 * timeout: that is reported at once rather than waited for twice.
 */
async function inspectFile(dir: string, name: string, view: LivenessView, ioTimeoutMs: number): Promise<EntryFacts> {
  const path = join(dir, name);
  let h: FileHead;
  try {
    h = await readFileHead(path, 4096, ioTimeoutMs);
    if (h.data && h.size > 0) {
      const need = bytesNeeded(h.data, view);
      if (need > h.data.length) {
        // More dblocks matter: read them; the file must still be the one just read.
        const more = await readFileHead(path, Math.ceil(need / 4096) * 4096, ioTimeoutMs);
        h = more.ino === h.ino && more.dev === h.dev ? more : { ...h, data: undefined };
      }
    }
  } catch (e) {
    if (!isTimeout(e)) return inspect(dir, name, view, ioTimeoutMs);
    let stat: EntryStat;
    try {
      stat = await statEntry(path);
    } catch (e2) {
      return { name, error: `cannot stat: ${errText(e2)}` };
    }
    return readFailed(name, stat, e);
  }
  if (!h.data) return inspect(dir, name, view, ioTimeoutMs);
  const stat = headStat(h);
  return { name, stat, head: stat.size > 0 ? h.data : Buffer.alloc(0) };
}

/** The directory's entries (hidden names included), sorted by name; the type is readdir's. */
export async function listDir(dir: string): Promise<Dirent[]> {
  return (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Files examined at a time: each is one O_DIRECT open/fstat/read/close on the addon's shared
 * pool of I/O threads (readFileHead), so the reads of different files overlap. On a loaded
 * 2-CPU machine with local ext4, 32 was a little faster than 8 and no slower than 64; NFS
 * latency favours more.
 */
const DEFAULT_CONCURRENCY = 32;
/**
 * Entries per batch: between batches the scan yields to the event loop (setImmediate), so a
 * sweep inside the daemon never holds up a renewal's timer or I/O callback for long.
 */
const BATCH = 256;

/**
 * Classify every entry of `dir`, `concurrency` files at a time, in batches that yield. Once
 * `o.signal` is aborted no further entry is started: the verdicts of the entries examined are
 * returned, in order (fewer than `entries`).
 */
export async function scanDirectory(dir: string, entries: Dirent[], ctx: () => ClassifyContext, o: ScanOptions): Promise<Verdict[]> {
  const out: Verdict[] = new Array(entries.length);
  const fast = canReadFileHead();
  const concurrency = Math.max(1, o.concurrency ?? DEFAULT_CONCURRENCY);
  const stopped = () => o.signal?.aborted === true;
  let done = 0;
  for (let from = 0; from < entries.length && !stopped(); from += BATCH) {
    if (from) await new Promise<void>((r) => setImmediate(r));
    const to = Math.min(entries.length, from + BATCH);
    const c = ctx();
    let next = from;
    const worker = async () => {
      for (let i = next++; i < to && !stopped(); i = next++) {
        const e = entries[i];
        const facts = fast && e.isFile() ? await inspectFile(dir, e.name, c.view, o.ioTimeoutMs) : await inspect(dir, e.name, c.view, o.ioTimeoutMs);
        out[i] = classifyEntry(facts, { ...c, nowMs: Date.now() });
        done++;
        o.onProgress?.(done, entries.length);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, to - from) }, worker));
  }
  return done === entries.length ? out : out.filter((v) => v !== undefined);
}
