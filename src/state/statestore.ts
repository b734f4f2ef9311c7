import Database from 'better-sqlite3';
import { mkdirSync } from 'fs';
import { dirname } from 'path';

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

export type LeaseMode = 'exclusive' | 'shared';

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

export class StateStore {
  private db: Database.Database;

  constructor(readonly path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.exec(SCHEMA);
  }

  close(): void {
    this.db.close();
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
    const r = this.stmt('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmt('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  saveLockspace(ls: LockspaceRow): void {
    this.stmt(`INSERT INTO lockspaces(name, host_id, path, offset, generation, io_timeout) VALUES (@name, @hostId, @path, @offset, @generation, @ioTimeout)
      ON CONFLICT(name) DO UPDATE SET host_id = excluded.host_id, path = excluded.path, offset = excluded.offset, generation = excluded.generation, io_timeout = excluded.io_timeout`).run(ls);
  }

  removeLockspace(name: string): void {
    this.stmt('DELETE FROM lockspaces WHERE name = ?').run(name);
  }

  lockspaces(): LockspaceRow[] {
    return this.stmt('SELECT name, host_id AS hostId, path, offset, generation, io_timeout AS ioTimeout FROM lockspaces ORDER BY name').all() as LockspaceRow[];
  }

  upsertOwner(o: { uuid: string; name: string; pid?: number | null; state?: OwnerRow['state'] }): void {
    this.stmt(`INSERT INTO owners(uuid, name, pid, state, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(uuid) DO UPDATE SET name = excluded.name, pid = COALESCE(excluded.pid, owners.pid), state = excluded.state, updated_at = excluded.updated_at`)
      .run(o.uuid, o.name, o.pid ?? null, o.state ?? 'active', Date.now());
  }

  setOwnerState(uuid: string, state: OwnerRow['state']): void {
    this.stmt('UPDATE owners SET state = ?, updated_at = ? WHERE uuid = ?').run(state, Date.now(), uuid);
  }

  removeOwner(uuid: string): void {
    this.stmt('DELETE FROM owners WHERE uuid = ?').run(uuid);
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
    return this.stmt('SELECT uuid, name, pid, state, updated_at AS updatedAt FROM owners WHERE uuid = ?').get(uuid) as OwnerRow | undefined;
  }

  owners(): OwnerRow[] {
    return this.stmt('SELECT uuid, name, pid, state, updated_at AS updatedAt FROM owners ORDER BY name').all() as OwnerRow[];
  }

  recordLease(l: Omit<LeaseRow, 'acquiredAt' | 'held'> & { held?: number }): void {
    this.stmt(`INSERT INTO leases(owner_uuid, lockspace, resource, path, offset, mode, lver, generation, held, acquired_at)
      VALUES (@ownerUuid, @lockspace, @resource, @path, @offset, @mode, @lver, @generation, @held, @acquiredAt)
      ON CONFLICT(owner_uuid, lockspace, resource) DO UPDATE SET path = excluded.path, offset = excluded.offset, mode = excluded.mode,
        lver = excluded.lver, generation = excluded.generation, held = excluded.held, acquired_at = excluded.acquired_at`)
      .run({ ...l, held: l.held ?? 1, acquiredAt: Date.now() });
  }

  /** Mark released but keep the row (and its lver) for a later resume check. */
  markLeaseReleased(ownerUuid: string, lockspace: string, resource: string): void {
    this.stmt('UPDATE leases SET held = 0 WHERE owner_uuid = ? AND lockspace = ? AND resource = ?').run(ownerUuid, lockspace, resource);
  }

  forgetLease(ownerUuid: string, lockspace: string, resource: string): void {
    this.stmt('DELETE FROM leases WHERE owner_uuid = ? AND lockspace = ? AND resource = ?').run(ownerUuid, lockspace, resource);
  }

  leases(ownerUuid?: string): LeaseRow[] {
    const sql = `SELECT owner_uuid AS ownerUuid, lockspace, resource, path, offset, mode, lver, generation, held, acquired_at AS acquiredAt FROM leases`;
    return (ownerUuid
      ? this.stmt(`${sql} WHERE owner_uuid = ? ORDER BY lockspace, resource`).all(ownerUuid)
      : this.stmt(`${sql} ORDER BY owner_uuid, lockspace, resource`).all()) as LeaseRow[];
  }

  /** Journal an operation before its first write to storage; returns the entry id. */
  beginOp(op: Omit<JournalRow, 'id' | 'startedAt'>): number {
    const r = this.stmt(`INSERT INTO journal(op, owner_uuid, lockspace, resource, path, offset, mode, started_at)
      VALUES (@op, @ownerUuid, @lockspace, @resource, @path, @offset, @mode, @startedAt)`).run({ ...op, startedAt: Date.now() });
    return Number(r.lastInsertRowid);
  }

  endOp(id: number): void {
    this.stmt('DELETE FROM journal WHERE id = ?').run(id);
  }

  pendingOps(): JournalRow[] {
    return this.stmt(`SELECT id, op, owner_uuid AS ownerUuid, lockspace, resource, path, offset, mode, started_at AS startedAt FROM journal ORDER BY id`).all() as JournalRow[];
  }

  /** Run several updates atomically. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
