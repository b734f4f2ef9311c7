import Database from 'better-sqlite3';
import { existsSync, mkdirSync, renameSync } from 'fs';
import { dirname } from 'path';
import { LeaseMode } from '../lease/token';

/**
 * Durable agent state in SQLite: who owns which leases (with lver and mode), the host identity,
 * and a journal of in-flight acquires/releases. After kill -9 the agent reads this to re-adopt
 * leases of owners that still exist — without releasing them first — and to finish or undo
 * operations it was in the middle of.
 *
 * WAL + synchronous=NORMAL: every commit is in the OS before it returns, so it survives a crash or
 * kill -9 of the agent, which is what re-adoption is for. Only an OS crash or power loss can lose
 * the last commits, and then every owner died with the host and our delta lease comes back with
 * a new generation: other hosts take leases of the old generation at once, and the restarted
 * agent releases those it still lists. synchronous=FULL added an fsync (2-7 ms here, blocking
 * the event loop) to every commit, so to every acquire and release, for no such benefit
 * (docs/benchmarks.md).
 */

export interface OwnerRow {
  uuid: string;
  name: string;
  pid: number | null;
  /** 'active' while the owner should hold its leases; 'suspended' while paused (leases released, lvers kept) */
  state: 'active' | 'suspended';
  updatedAt: number;
}

export interface OwnerProcessRow {
  pid: number;
  /** /proc/PID/stat starttime at registration: tells the process from a later one with its pid */
  startTime: number;
  /** its exit releases the owner's leases (a client process); domains are left to libvirt's events */
  watched: boolean;
}

export interface LeaseRow {
  ownerUuid: string;
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode: LeaseMode;
  lver: number;
  /** our lockspace generation when acquired */
  generation: number;
  /** 1 while held on disk; 0 when released on suspend (lver remembered for resume) */
  held: number;
  acquiredAt: number;
}

export interface JournalRow {
  id: number;
  op: 'acquire' | 'release';
  ownerUuid: string;
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode: LeaseMode;
  startedAt: number;
}

export interface LockspaceRow {
  name: string;
  hostId: number;
  path: string;
  offset: number;
  generation: number;
  ioTimeout: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lockspaces (
  name TEXT PRIMARY KEY, host_id INTEGER NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL,
  generation INTEGER NOT NULL DEFAULT 0, io_timeout INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owners (
  uuid TEXT PRIMARY KEY, name TEXT NOT NULL, pid INTEGER, state TEXT NOT NULL DEFAULT 'active',
  updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
  owner_uuid TEXT NOT NULL REFERENCES owners(uuid) ON DELETE CASCADE,
  lockspace TEXT NOT NULL, resource TEXT NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL,
  mode TEXT NOT NULL, lver INTEGER NOT NULL, generation INTEGER NOT NULL, held INTEGER NOT NULL DEFAULT 1,
  acquired_at INTEGER NOT NULL,
  PRIMARY KEY (owner_uuid, lockspace, resource));
CREATE TABLE IF NOT EXISTS owner_process (
  owner_uuid TEXT PRIMARY KEY REFERENCES owners(uuid) ON DELETE CASCADE,
  pid INTEGER NOT NULL, start_time INTEGER NOT NULL, watched INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, owner_uuid TEXT NOT NULL,
  lockspace TEXT NOT NULL, resource TEXT NOT NULL, path TEXT NOT NULL, offset INTEGER NOT NULL,
  mode TEXT NOT NULL, started_at INTEGER NOT NULL);
`;

/**
 * The layout of SCHEMA, kept in the file's PRAGMA user_version (0 = written before it was
 * recorded: the same layout as 1). Raise it with every change of SCHEMA that an older agent
 * could not read or would damage: an older agent refuses a newer file (a downgrade), it never
 * writes to it, moves it aside or starts over in memory.
 */
export const SCHEMA_VERSION = 1;

/** What went wrong with the database, in words, and what the operator should do. */
export interface StoreFault {
  /** SQLite's code, e.g. SQLITE_FULL, SQLITE_CORRUPT, SQLITE_CANTOPEN */
  code: string;
  /** one line: path, what failed, the code in words, the remedy */
  message: string;
  remedy: string;
}

export interface StoreHealth {
  path: string;
  ok: boolean;
  /** 'file', or 'memory' when the file could not be opened at all (nothing survives a restart) */
  backing: 'file' | 'memory';
  /** the current fault, while writes fail */
  fault?: StoreFault & { since: number };
  /** writes kept in memory, waiting for the database to accept them */
  queued: number;
  /** where a corrupt database found at start was moved */
  movedAside?: string;
}

export interface StoreEvents {
  /** the database started failing (or failed differently); one line, no stack trace */
  onFault?(f: StoreFault): void;
  /** queued writes reached the database again */
  onRecovered?(msg: string): void;
}

/** A database error, with the path and the remedy in its message (no SQLite stack). */
export class StateStoreError extends Error {
  constructor(readonly fault: StoreFault) {
    super(fault.message);
    this.name = 'StateStoreError';
  }
}

function codeWords(code: string): string {
  if (code === 'SQLITE_FULL') return 'the filesystem is full';
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') return 'the database file is corrupt';
  if (code.startsWith('SQLITE_CANTOPEN')) return 'the database file cannot be opened';
  if (code.startsWith('SQLITE_READONLY')) return 'the database is read-only';
  if (code.startsWith('SQLITE_IOERR')) return 'an I/O error';
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return 'the database is locked by another process';
  if (code === 'SQLITE_PERM' || code === 'EACCES') return 'permission denied';
  return 'an error';
}

function codeRemedy(code: string, path: string): string {
  const dir = dirname(path);
  if (code === 'SQLITE_FULL') return `free space on ${dir}`;
  if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') {
    return `stop the agent and move ${path} away; at start the agent rebuilds its state from the lease directory`;
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code === 'SQLITE_PERM' || code === 'EACCES') return `check that ${dir} exists and is writable by the agent`;
  if (code.startsWith('SQLITE_READONLY')) return `make ${path} and ${dir} writable (is the filesystem mounted read-only?)`;
  if (code.startsWith('SQLITE_IOERR')) return `check the filesystem of ${dir} and its disk (dmesg)`;
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return `make sure only one agent uses ${path} (state_path)`;
  return `check ${path} and the filesystem of ${dir}`;
}

/** Turn a SQLite (or file system) error into a fault with the path, the code in words and the remedy. */
export function describeStoreError(e: unknown, path: string, doing: string): StoreFault {
  const err = e as { code?: string; message?: string };
  const code = typeof err?.code === 'string' ? err.code : 'SQLITE_ERROR';
  const remedy = codeRemedy(code, path);
  const detail = err?.message ? `: ${err.message}` : '';
  return { code, remedy, message: `state database ${path}: ${doing} failed: ${codeWords(code)} (${code}${detail}); ${remedy}` };
}

/** The code of a database written by a newer lockagent (schema version above SCHEMA_VERSION). */
export const SCHEMA_NEWER = 'LOCKAGENT_SCHEMA_NEWER';

const isCorrupt = (code: string) => code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';

/** How often writes kept in memory are tried again. */
const RETRY_MS = 5000;

export class StateStore {
  private db: Database.Database;
  private fault?: StoreFault & { since: number };
  /** writes that failed (and every later one, to keep their order), replayed by flush() */
  private readonly queue: Array<() => void> = [];
  private retryTimer?: NodeJS.Timeout;
  private events: StoreEvents = {};
  backing: 'file' | 'memory' = 'file';
  movedAside?: string;

  constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = StateStore.openDb(path);
  }

  private static openDb(path: string): Database.Database {
    const db = new Database(path);
    try {
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION) {
        const remedy = `run the lockagent version that wrote it (or a newer one); to go back to this version, stop the agent and move ${path} away: ` +
          'at start the agent rebuilds its state from the lease directory';
        throw Object.assign(new Error(`state database ${path} has schema version ${version}, newer than the ${SCHEMA_VERSION} this lockagent knows ` +
          `(written by a newer lockagent): refusing to use it, left unchanged; ${remedy}`), { code: SCHEMA_NEWER, remedy });
      }
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.exec(SCHEMA);
      if (version < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
      // A damaged page elsewhere would fail some later write, in the middle of a lease operation.
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw Object.assign(new Error(`integrity check: ${String(check)}`), { code: 'SQLITE_CORRUPT' });
    } catch (e) {
      try { db.close(); } catch { /* already unusable */ }
      throw e;
    }
    return db;
  }

  /**
   * The daemon's way to open its state. A corrupt file is moved aside to <path>.corrupt-<time>
   * and an empty database takes its place: the agent must run to keep renewing the leases of
   * running domains, and it rebuilds what it holds from the lease directory (Agent.reconcile).
   * A file that cannot be opened at all (no space, read-only, permissions) gives a store in
   * memory, reported unhealthy: lease protection goes on, nothing survives a restart.
   */
  static open(path: string, events: StoreEvents = {}): StateStore {
    let firstFault: StoreFault | undefined;
    try {
      const s = new StateStore(path);
      s.events = events;
      return s;
    } catch (e) {
      // A newer agent's database: neither moved aside nor replaced by one in memory (a later
      // upgrade must find it as it was); the agent does not start, and says why.
      if ((e as { code?: string }).code === SCHEMA_NEWER) {
        const err = e as Error & { remedy: string };
        throw new StateStoreError({ code: SCHEMA_NEWER, message: err.message, remedy: err.remedy });
      }
      firstFault = describeStoreError(e, path, 'opening');
      if (!isCorrupt(firstFault.code) || !existsSync(path)) {
        events.onFault?.({ ...firstFault, message: `${firstFault.message}; running with the state in memory only until the agent is restarted` });
        const s = new StateStore(':memory:');
        Object.defineProperty(s, 'path', { value: path });
        s.backing = 'memory';
        s.events = events;
        s.fault = { ...firstFault, since: Date.now() };
        return s;
      }
    }
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const moved = `${path}.corrupt-${stamp}`;
    renameSync(path, moved);
    for (const ext of ['-wal', '-shm']) {
      if (existsSync(path + ext)) renameSync(path + ext, moved + ext);
    }
    events.onFault?.({ ...firstFault, message: `state database ${path} is corrupt (${firstFault.code}); moved it to ${moved} and started with an empty one: ` +
      'the agent rebuilds its leases from the lease directory; see the warnings that follow for what it found' });
    const s = new StateStore(path);
    s.events = events;
    s.movedAside = moved;
    return s;
  }

  close(): void {
    clearTimeout(this.retryTimer);
    this.commitWaiting();
    try {
      this.flush();
    } catch { /* reported by flush */ }
    try {
      this.db.close();
    } catch (e) {
      this.events.onFault?.(describeStoreError(e, this.path, 'closing'));
    }
  }

  health(): StoreHealth {
    return { path: this.path, ok: !this.fault && this.backing === 'file', backing: this.backing, fault: this.fault, queued: this.queue.length, movedAside: this.movedAside };
  }

  /** Note a failing operation: logged when the store starts failing or fails differently. */
  private noteFault(e: unknown, doing: string): StateStoreError {
    if (e instanceof StateStoreError) return e;
    const f = describeStoreError(e, this.path, doing);
    if (!this.fault || this.fault.code !== f.code) this.events.onFault?.(f);
    this.fault = { ...f, since: this.fault?.since ?? Date.now() };
    return new StateStoreError(f);
  }

  /**
   * A write that records what already happened on disk: it must not fail the operation. Done
   * now when it can be; else kept in memory (with every later write, in order) and retried
   * every few seconds, so the database ends up telling what the disk tells.
   */
  write(fn: () => void, doing = 'writing'): void {
    this.commitWaiting(); // writes reach the database in the order they were asked for
    if (!this.queue.length) {
      try {
        fn();
        return;
      } catch (e) {
        this.noteFault(e, doing);
      }
    }
    this.queue.push(fn);
    this.scheduleRetry();
  }

  /** writes of commit() waiting for the group's transaction (at the end of this tick) */
  private group: Array<{ fn: () => void; doing: string; done: () => void }> = [];

  /**
   * write() for a request that must not go on before its write is in: the writes of the
   * requests that arrive in the same tick of the event loop share one transaction, committed
   * once the tick's callbacks have run (setImmediate), and each promise resolves after that
   * commit. Every commit costs a WAL write on the event loop; with concurrent clients one commit
   * now serves them all. As with write(), a write the database refuses is kept in memory and
   * retried: the promise resolves all the same (the operation goes on, degraded), never rejects.
   *
   * `lazy`: a record nothing waits for (a release's, after its reply) schedules no commit of
   * its own: it goes in, in order, with the next group, with the next statement, or at
   * commitWaiting(). A client that sends its next request at once then pays one transaction
   * for both.
   */
  commit(fn: () => void, doing = 'writing', opts: { lazy?: boolean } = {}): Promise<void> {
    return new Promise((done) => {
      this.group.push({ fn, doing, done });
      if (!opts.lazy && !this.groupArmed) {
        this.groupArmed = true;
        setImmediate(() => {
          this.groupArmed = false;
          this.commitWaiting();
        });
      }
    });
  }

  /** A commit of the group is scheduled (setImmediate). */
  private groupArmed = false;

  /** Commits the writes of commit() waiting so far, lazy ones included (no-op when none). */
  commitWaiting(): void {
    if (!this.group.length) return;
    const g = this.group;
    this.group = [];
    if (!this.queue.length && g.length > 1) {
      let ok = false;
      this.depth++;
      try {
        this.db.transaction(() => {
          for (const x of g) x.fn();
        })();
        ok = true;
      } catch {
        // rolled back as a whole: each is written on its own below, so one failing write
        // (noted and kept there) does not hold back the others
      } finally {
        this.depth--;
      }
      if (ok) {
        this.noteWritten();
        for (const x of g) x.done();
        return;
      }
    }
    for (const x of g) {
      this.write(x.fn, x.doing);
      x.done();
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      try {
        this.flush();
      } catch { /* noted */ }
      if (this.queue.length) this.scheduleRetry();
    }, RETRY_MS);
    this.retryTimer.unref();
  }

  /** Replay kept writes in order; stops at the first that fails again. */
  flush(): void {
    const n = this.queue.length;
    while (this.queue.length) {
      try {
        this.queue[0]();
      } catch (e) {
        throw this.noteFault(e, 'writing');
      }
      this.queue.shift();
    }
    if (this.fault && this.backing === 'file') {
      this.fault = undefined;
      this.events.onRecovered?.(`state database ${this.path} accepts writes again${n ? ` (${n} kept write(s) stored)` : ''}`);
    }
  }

  /** nesting of guard(): a transaction's statements run inside it */
  private depth = 0;
  /** Run a statement, turning its failure into a StateStoreError that names the path and the remedy. */
  private guard<T>(fn: () => T, doing = 'writing'): T {
    // A statement outside the group sees (and follows) the writes already asked for.
    if (this.depth === 0) this.commitWaiting();
    this.depth++;
    try {
      const r = fn();
      if (this.depth === 1 && doing !== 'reading') this.noteWritten();
      return r;
    } catch (e) {
      throw this.noteFault(e, doing);
    } finally {
      this.depth--;
    }
  }

  /** A write went in: a fault noted before is over (unless writes are still kept in memory). */
  private noteWritten(): void {
    if (this.fault && !this.queue.length && this.backing === 'file') {
      this.fault = undefined;
      this.events.onRecovered?.(`state database ${this.path} accepts writes again`);
    }
  }

  /** Prepared once per SQL text: preparing on every call cost ~0.4 ms per acquire+release. */
  private readonly stmts = new Map<string, Database.Statement>();
  private stmt(sql: string): Database.Statement {
    let st = this.stmts.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.stmts.set(sql, st);
    }
    return st;
  }

  getMeta(key: string): string | undefined {
    return this.guard(() => {
      const r = this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
      return r?.value;
    }, 'reading');
  }

  setMeta(key: string, value: string): void {
    this.guard(() => {
      this.stmt('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
    }, 'writing');
  }

  saveLockspace(ls: LockspaceRow): void {
    this.guard(() => {
      this.stmt(`INSERT INTO lockspaces(name, host_id, path, offset, generation, io_timeout) VALUES (@name, @hostId, @path, @offset, @generation, @ioTimeout)
        ON CONFLICT(name) DO UPDATE SET host_id = excluded.host_id, path = excluded.path, offset = excluded.offset, generation = excluded.generation, io_timeout = excluded.io_timeout`).run(ls);
    }, 'writing');
  }

  removeLockspace(name: string): void {
    this.guard(() => {
      this.stmt('DELETE FROM lockspaces WHERE name = ?').run(name);
    }, 'writing');
  }

  lockspaces(): LockspaceRow[] {
    return this.guard(() => {
      return this.stmt('SELECT name, host_id AS hostId, path, offset, generation, io_timeout AS ioTimeout FROM lockspaces ORDER BY name').all() as LockspaceRow[];
    }, 'reading');
  }

  upsertOwner(o: { uuid: string; name: string; pid?: number | null; state?: OwnerRow['state'] }): void {
    this.guard(() => {
      this.stmt(`INSERT INTO owners(uuid, name, pid, state, updated_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, pid = COALESCE(excluded.pid, owners.pid), state = excluded.state, updated_at = excluded.updated_at`)
        .run(o.uuid, o.name, o.pid ?? null, o.state ?? 'active', Date.now());
    }, 'writing');
  }

  setOwnerState(uuid: string, state: OwnerRow['state']): void {
    this.guard(() => {
      this.stmt('UPDATE owners SET state = ?, updated_at = ? WHERE uuid = ?').run(state, Date.now(), uuid);
    }, 'writing');
  }

  removeOwner(uuid: string): void {
    this.guard(() => {
      this.stmt('DELETE FROM owners WHERE uuid = ?').run(uuid);
    }, 'writing');
  }

  /**
   * The process an owner registered (pid + start time, src/agent/process.ts), and whether its
   * exit releases the owner's leases. A table of its own, removed with the owner.
   */
  setOwnerProcess(uuid: string, p: OwnerProcessRow): void {
    this.stmt(`INSERT INTO owner_process(owner_uuid, pid, start_time, watched) VALUES (?, ?, ?, ?)
      ON CONFLICT(owner_uuid) DO UPDATE SET pid = excluded.pid, start_time = excluded.start_time, watched = excluded.watched`)
      .run(uuid, p.pid, p.startTime, p.watched ? 1 : 0);
  }

  ownerProcess(uuid: string): OwnerProcessRow | undefined {
    const r = this.stmt('SELECT pid, start_time AS startTime, watched FROM owner_process WHERE owner_uuid = ?').get(uuid) as
      { pid: number; startTime: number; watched: number } | undefined;
    return r ? { pid: r.pid, startTime: r.startTime, watched: r.watched === 1 } : undefined;
  }

  owner(uuid: string): OwnerRow | undefined {
    return this.guard(() => {
      return this.stmt('SELECT uuid, name, pid, state, updated_at AS updatedAt FROM owners WHERE uuid = ?').get(uuid) as OwnerRow | undefined;
    }, 'reading');
  }

  owners(): OwnerRow[] {
    return this.guard(() => {
      return this.stmt('SELECT uuid, name, pid, state, updated_at AS updatedAt FROM owners ORDER BY name').all() as OwnerRow[];
    }, 'reading');
  }

  recordLease(l: Omit<LeaseRow, 'acquiredAt' | 'held'> & { held?: number }): void {
    this.guard(() => {
      this.stmt(`INSERT INTO leases(owner_uuid, lockspace, resource, path, offset, mode, lver, generation, held, acquired_at)
        VALUES (@ownerUuid, @lockspace, @resource, @path, @offset, @mode, @lver, @generation, @held, @acquiredAt)
        ON CONFLICT(owner_uuid, lockspace, resource) DO UPDATE SET path = excluded.path, offset = excluded.offset, mode = excluded.mode,
          lver = excluded.lver, generation = excluded.generation, held = excluded.held, acquired_at = excluded.acquired_at`)
        .run({ ...l, held: l.held ?? 1, acquiredAt: Date.now() });
    }, 'writing');
  }

  /** Mark released but keep the row (and its lver) for a later resume check. */
  markLeaseReleased(ownerUuid: string, lockspace: string, resource: string): void {
    this.guard(() => {
      this.stmt('UPDATE leases SET held = 0 WHERE owner_uuid = ? AND lockspace = ? AND resource = ?').run(ownerUuid, lockspace, resource);
    }, 'writing');
  }

  forgetLease(ownerUuid: string, lockspace: string, resource: string): void {
    this.guard(() => {
      this.stmt('DELETE FROM leases WHERE owner_uuid = ? AND lockspace = ? AND resource = ?').run(ownerUuid, lockspace, resource);
    }, 'writing');
  }

  leases(ownerUuid?: string): LeaseRow[] {
    return this.guard(() => {
      const sql = `SELECT owner_uuid AS ownerUuid, lockspace, resource, path, offset, mode, lver, generation, held, acquired_at AS acquiredAt FROM leases`;
      return (ownerUuid
        ? this.stmt(`${sql} WHERE owner_uuid = ? ORDER BY lockspace, resource`).all(ownerUuid)
        : this.stmt(`${sql} ORDER BY owner_uuid, lockspace, resource`).all()) as LeaseRow[];
    }, 'reading');
  }

  /** Journal an operation before its first write to storage; returns the entry id. */
  beginOp(op: Omit<JournalRow, 'id' | 'startedAt'>): number {
    return this.guard(() => {
      const r = this.stmt(`INSERT INTO journal(op, owner_uuid, lockspace, resource, path, offset, mode, started_at)
        VALUES (@op, @ownerUuid, @lockspace, @resource, @path, @offset, @mode, @startedAt)`).run({ ...op, startedAt: Date.now() });
      return Number(r.lastInsertRowid);
    }, 'writing');
  }

  endOp(id: number): void {
    this.guard(() => {
      this.stmt('DELETE FROM journal WHERE id = ?').run(id);
    }, 'writing');
  }

  pendingOps(): JournalRow[] {
    return this.guard(() => {
      return this.stmt(`SELECT id, op, owner_uuid AS ownerUuid, lockspace, resource, path, offset, mode, started_at AS startedAt FROM journal ORDER BY id`).all() as JournalRow[];
    }, 'reading');
  }

  /** Run several updates atomically. */
  transaction<T>(fn: () => T): T {
    return this.guard(() => this.db.transaction(fn)());
  }
}
