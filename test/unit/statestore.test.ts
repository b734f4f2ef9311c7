import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import Database from 'better-sqlite3';
import { describeStoreError, SCHEMA_NEWER, SCHEMA_VERSION, StateStore, StateStoreError, StoreFault } from '../../src/state/statestore';
import { machineIdentity, nameFromIdentity, resolveHostName } from '../../src/agent/hostname';

describe('StateStore', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'la-state-')); });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps owners, leases, lockspaces, meta and the journal across a reopen', () => {
    const path = join(dir, 'state.db');
    const a = new StateStore(path);
    a.setMeta('host_name', 'uuid.node1');
    a.saveLockspace({ name: '__LIBVIRT__DISKS__', hostId: 3, path: '/l/__LIBVIRT__DISKS__', offset: 0, generation: 7, ioTimeout: 1 });
    a.upsertOwner({ uuid: 'u1', name: 'vm1', pid: 1234 });
    a.recordLease({ ownerUuid: 'u1', lockspace: '__LIBVIRT__DISKS__', resource: 'abc', path: '/l/abc', offset: 0, mode: 'exclusive', lver: 5, generation: 7 });
    const op = a.beginOp({ op: 'acquire', ownerUuid: 'u1', lockspace: '__LIBVIRT__DISKS__', resource: 'def', path: '/l/def', offset: 0, mode: 'shared' });
    a.close(); // no orderly shutdown needed: WAL + synchronous=FULL

    const b = new StateStore(path);
    expect(b.getMeta('host_name')).toBe('uuid.node1');
    expect(b.lockspaces()).toEqual([{ name: '__LIBVIRT__DISKS__', hostId: 3, path: '/l/__LIBVIRT__DISKS__', offset: 0, generation: 7, ioTimeout: 1 }]);
    expect(b.owner('u1')).toMatchObject({ name: 'vm1', pid: 1234, state: 'active' });
    expect(b.leases('u1')).toEqual([expect.objectContaining({ resource: 'abc', lver: 5, mode: 'exclusive', held: 1 })]);
    expect(b.pendingOps()).toEqual([expect.objectContaining({ id: op, op: 'acquire', resource: 'def', mode: 'shared' })]);
    b.endOp(op);
    expect(b.pendingOps()).toEqual([]);
    b.close();
  });

  it('remembers the lver of a lease released on suspend, and drops leases with their owner', () => {
    const s = new StateStore(':memory:');
    s.upsertOwner({ uuid: 'u1', name: 'vm1' });
    s.recordLease({ ownerUuid: 'u1', lockspace: 'LS', resource: 'r', path: '/p', offset: 0, mode: 'exclusive', lver: 9, generation: 1 });
    s.markLeaseReleased('u1', 'LS', 'r');
    s.setOwnerState('u1', 'suspended');
    expect(s.leases('u1')[0]).toMatchObject({ held: 0, lver: 9 });
    expect(s.owner('u1')?.state).toBe('suspended');
    s.upsertOwner({ uuid: 'u1', name: 'vm1-renamed' });
    expect(s.owner('u1')).toMatchObject({ name: 'vm1-renamed', state: 'active' });
    s.removeOwner('u1');
    expect(s.leases()).toEqual([]);
    s.close();
  });

  it('moves a corrupt database aside, says so with the path and the remedy, and starts empty', () => {
    const path = join(dir, 'state.db');
    writeFileSync(path, Buffer.alloc(8192, 0x41));
    const faults: StoreFault[] = [];
    const s = StateStore.open(path, { onFault: (f) => faults.push(f) });
    expect(faults).toHaveLength(1);
    expect(faults[0].code).toBe('SQLITE_NOTADB');
    expect(faults[0].message).toContain(`state database ${path} is corrupt (SQLITE_NOTADB); moved it to ${path}.corrupt-`);
    expect(s.movedAside).toMatch(/state\.db\.corrupt-/);
    expect(existsSync(s.movedAside!)).toBe(true);
    expect(s.health()).toMatchObject({ ok: true, backing: 'file' });
    expect(s.owners()).toEqual([]);
    s.close();
    expect(readdirSync(dir).filter((n) => n.startsWith('state.db.corrupt-'))).toHaveLength(1);
  });

  it('runs in memory, reported unhealthy, when the file cannot be opened at all', () => {
    const faults: StoreFault[] = [];
    writeFileSync(join(dir, 'notadir'), '');
    const path = join(dir, 'notadir', 'state.db');
    const s = StateStore.open(path, { onFault: (f) => faults.push(f) });
    expect(faults).toHaveLength(1);
    expect(s.health()).toMatchObject({ ok: false, backing: 'memory', path });
    s.upsertOwner({ uuid: 'u1', name: 'vm1' });
    expect(s.owner('u1')).toBeDefined();
    s.close();
  });

  it('names each SQLite failure in words, with the remedy and no stack', () => {
    const p = '/var/lib/lockagent/state.db';
    const full = describeStoreError(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), p, 'writing');
    expect(full.message).toBe(`state database ${p}: writing failed: the filesystem is full (SQLITE_FULL: database or disk is full); free space on /var/lib/lockagent`);
    expect(describeStoreError({ code: 'SQLITE_CORRUPT' }, p, 'reading').remedy).toMatch(/move \/var\/lib\/lockagent\/state.db away; at start the agent rebuilds its state from the lease directory/);
    expect(describeStoreError({ code: 'SQLITE_CANTOPEN' }, p, 'opening').message).toMatch(/cannot be opened \(SQLITE_CANTOPEN\); check that \/var\/lib\/lockagent exists and is writable/);
    expect(describeStoreError({ code: 'SQLITE_IOERR_WRITE' }, p, 'writing').message).toMatch(/an I\/O error/);
    expect(full.message).not.toMatch(/\n/);
  });

  it('records its schema version; a file from a newer lockagent is refused, left as it was (a downgrade)', () => {
    const p = join(dir, 'state.db');
    const s = StateStore.open(p);
    s.upsertOwner({ uuid: 'u1', name: 'vm1' });
    s.close();
    const db = new Database(p);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const faults: StoreFault[] = [];
    let err: unknown;
    try {
      StateStore.open(p, { onFault: (f) => faults.push(f) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StateStoreError);
    expect((err as StateStoreError).fault.code).toBe(SCHEMA_NEWER);
    expect((err as Error).message).toMatch(new RegExp(`schema version ${SCHEMA_VERSION + 1}, newer than the ${SCHEMA_VERSION} this lockagent knows.*refusing to use it, left unchanged`));
    // Not moved aside, not replaced: the newer agent finds its state again.
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([]);
    const again = new Database(p);
    expect(again.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION + 1);
    expect(again.prepare('SELECT uuid FROM owners').all()).toEqual([{ uuid: 'u1' }]);
    again.close();
  });

  it('takes a file written before the version was recorded (user_version 0) as version 1', () => {
    const p = join(dir, 'state.db');
    const s = new StateStore(p);
    s.upsertOwner({ uuid: 'u1', name: 'vm1' });
    s.close();
    const db = new Database(p);
    db.pragma('user_version = 0');
    db.close();
    const s2 = StateStore.open(p);
    expect(s2.owners().map((o) => o.uuid)).toEqual(['u1']);
    s2.close();
    const db2 = new Database(p);
    expect(db2.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db2.close();
  });

  it('keeps writes that fail, in order, and stores them once the database accepts writes again', () => {
    const s = new StateStore(join(dir, 'state.db'));
    const faults: StoreFault[] = [];
    const recovered: string[] = [];
    (s as unknown as { events: object }).events = { onFault: (f: StoreFault) => faults.push(f), onRecovered: (m: string) => recovered.push(m) };
    let failing = true;
    const failOnce = (fn: () => void) => () => {
      if (failing) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      fn();
    };
    s.write(failOnce(() => s.upsertOwner({ uuid: 'u1', name: 'vm1' })));
    s.write(() => s.removeOwner('u1')); // after the failed one: kept behind it
    s.write(() => s.upsertOwner({ uuid: 'u2', name: 'vm2' }));
    expect(s.health()).toMatchObject({ ok: false, queued: 3, fault: { code: 'SQLITE_FULL' } });
    expect(faults).toHaveLength(1);
    expect(s.owners()).toEqual([]);
    failing = false;
    s.flush();
    expect(s.owners().map((o) => o.uuid)).toEqual(['u2']);
    expect(s.health()).toMatchObject({ ok: true, queued: 0 });
    expect(recovered).toHaveLength(1);
    s.close();
  });
});

describe('StateStore.commit: the writes of one tick share one transaction', () => {
  it('commits them together, in order with other writes; one the database refuses is kept, the others go in', async () => {
    const s = new StateStore(':memory:');
    const db = (s as unknown as { db: Database.Database }).db;
    const inTx: boolean[] = [];
    const order: string[] = [];
    const w = (uuid: string) => () => {
      inTx.push(db.inTransaction);
      order.push(uuid);
      s.upsertOwner({ uuid, name: uuid });
    };
    const done = [s.commit(w('u1')), s.commit(w('u2')), s.commit(w('u3'))];
    expect(s.owners()).toHaveLength(3); // a read commits the group first: it sees what was asked for
    await Promise.all(done);
    expect(inTx).toEqual([true, true, true]);

    // A write outside the group goes in after those asked for before it.
    order.length = 0;
    const later = s.commit(w('u4'));
    s.write(w('u5'));
    expect(order).toEqual(['u4', 'u5']);
    await later;

    // One failing write rolls the group back; the others are then written on their own, and the
    // failing one is kept in memory (retried), not lost; every promise resolves.
    const faults: StoreFault[] = [];
    (s as unknown as { events: object }).events = { onFault: (f: StoreFault) => faults.push(f) };
    let failing = true;
    const bad = () => {
      if (failing) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      s.upsertOwner({ uuid: 'u7', name: 'u7' });
    };
    await Promise.all([s.commit(w('u6')), s.commit(bad), s.commit(w('u8'))]);
    expect(s.owners().map((o) => o.uuid)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5', 'u6']);
    expect(s.health()).toMatchObject({ ok: false, queued: 2 }); // u8 kept behind the failed one, in order
    expect(faults).toHaveLength(1);
    failing = false;
    s.flush();
    expect(s.owners().map((o) => o.uuid)).toEqual(['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8']);
    s.close();
  });
});

describe('StateStore.commit lazy: a record nothing waits for', () => {
  it('schedules no commit of its own; goes in first with the next group, a statement, or commitWaiting()', async () => {
    const s = new StateStore(':memory:');
    const db = (s as unknown as { db: Database.Database }).db;
    const order: string[] = [];
    const w = (uuid: string) => () => {
      order.push(`${uuid}${db.inTransaction ? '' : ' (own)'}`);
      s.upsertOwner({ uuid, name: uuid });
    };
    let lazyDone = false;
    void s.commit(w('lazy1'), 'writing', { lazy: true }).then(() => { lazyDone = true; });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]); // nothing committed it: no tick of its own
    expect(lazyDone).toBe(false);
    // The next request's commit carries it, before its own write, in one transaction.
    await s.commit(w('next'));
    expect(order).toEqual(['lazy1', 'next']);
    expect(lazyDone).toBe(true);

    order.length = 0;
    void s.commit(w('lazy2'), 'writing', { lazy: true });
    s.commitWaiting();
    expect(order).toEqual(['lazy2 (own)']);

    order.length = 0;
    void s.commit(w('lazy3'), 'writing', { lazy: true });
    expect(s.owners().map((o) => o.uuid)).toEqual(['lazy1', 'lazy2', 'lazy3', 'next']); // a read sees it
    void s.commit(w('lazy4'), 'writing', { lazy: true });
    s.close(); // and close does not lose it
    expect(order).toEqual(['lazy3 (own)', 'lazy4 (own)']);
  });
});

describe('default host name', () => {
  const id = (m: string, p?: string) => machineIdentity((f) => {
    if (f === '/etc/machine-id') return `${m}\n`;
    if (f.endsWith('product_uuid') && p) return p;
    throw new Error('ENOENT');
  });

  it('is derived from the machine identity: stable, 47 bytes at most, different on a clone', () => {
    const a = nameFromIdentity(id('m1', 'P1')!, 'a-very-long-node-name.example.com');
    expect(a).toBe(nameFromIdentity(id('m1', 'P1')!, 'a-very-long-node-name.example.com'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.a-very-lon$/);
    expect(Buffer.byteLength(a)).toBe(47);
    // a clone: machine-id copied, new product UUID
    expect(nameFromIdentity(id('m1', 'P2')!, 'a-very-long-node-name.example.com')).not.toBe(a);
    expect(id('m1')).not.toBe(id('m1', 'P1'));
  });

  it('survives a lost state database; a database copied from another machine is not trusted', () => {
    const s1 = new StateStore(':memory:');
    const r1 = resolveHostName(s1, undefined, () => id('m1', 'P1'), 'node1');
    expect(r1).toMatchObject({ source: 'machine identity', warning: undefined });
    expect(resolveHostName(new StateStore(':memory:'), undefined, () => id('m1', 'P1'), 'node1').name).toBe(r1.name);
    // the same database on a clone (other product UUID): derive anew, warn
    const r2 = resolveHostName(s1, undefined, () => id('m1', 'P2'), 'node1');
    expect(r2.name).not.toBe(r1.name);
    expect(r2.warning).toMatch(/recorded on another machine/);
  });

  it('keeps a name recorded by an older version on the same machine; host_name in the config wins', () => {
    const s = new StateStore(':memory:');
    s.setMeta('host_name', 'old-random-uuid.node1');
    expect(resolveHostName(s, undefined, () => id('m1'), 'node1')).toMatchObject({ name: 'old-random-uuid.node1', source: 'state database' });
    expect(s.getMeta('host_identity')).toBe(id('m1'));
    expect(resolveHostName(s, 'configured', () => id('m1'), 'node1')).toMatchObject({ name: 'configured', source: 'config' });
  });

  it('falls back to a random name kept in the state database, with a warning, when nothing identifies the machine', () => {
    const s = new StateStore(':memory:');
    const r = resolveHostName(s, undefined, () => undefined, 'node1');
    expect(r).toMatchObject({ source: 'random', warning: expect.stringMatching(/set host_name in lockagent.conf/) });
    expect(resolveHostName(s, undefined, () => undefined, 'node1').name).toBe(r.name);
  });
});
