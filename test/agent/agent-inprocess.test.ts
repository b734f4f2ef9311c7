import { mkdtempSync, readFileSync, rmSync, unlinkSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Agent, SPARE_ACQUIRES } from '../../src/agent/agent';
import { FailedOwner } from '../../src/agent/failure';
import { Housekeeping } from '../../src/agent/housekeeping';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { DirectFile } from '../../src/io/directio';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { systemClock } from '../../src/lease/clock';
import { LeaseStorage } from '../../src/lease/storage';
import { memoryLogger } from '../../src/log/logger';
import { buildResourceArea, decodeLeader, DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';

async function initResource(path: string, name: string) {
  const { writeFileSync } = await import('fs');
  writeFileSync(path, Buffer.alloc(0));
  const f = await DirectFile.open(path);
  await f.write(0, buildResourceArea({ spaceName: LS, resourceName: name, geometry: DEFAULT_GEOMETRY }), 10000);
  await f.close();
}

describe('two agents over one lease directory (real files, O_DIRECT, io_timeout 1)', () => {
  let dir: string;
  const agents: Agent[] = [];
  const failures: FailedOwner[] = [];
  const mk = (hostId: number, name: string, openStorage?: (path: string) => Promise<LeaseStorage>) => {
    const a = new Agent({
      clock: systemClock, log: memoryLogger(), store: new StateStore(join(dir, `state${hostId}.db`)), hostName: name,
      policy: { onLeaseFailure: async (o) => { failures.push(o); } }, openStorage,
    });
    a.addLockspace({ name: LS, hostId, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-agent-'));
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    await initResource(join(dir, 'disk1'), 'disk1');
  });
  afterAll(async () => {
    for (const a of agents) await a.shutdown(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('excludes the second host while the first holds the disk, and lets it in after release', async () => {
    const a = mk(1, 'node-a');
    const b = mk(2, 'node-b');
    const lease = { lockspace: LS, resource: 'disk1', path: join(dir, 'disk1'), offset: 0 };
    const held = await a.acquire({ uuid: 'vm-a', name: 'vmA' }, [lease], { timeoutMs: 20000 });
    expect(held[0].token.lver).toBe(1);
    // b must have seen a's renewals to judge it alive: wait for b to join and observe once.
    await b.lockspaces.get(LS)!.waitJoined(20000);
    await expect(b.acquire({ uuid: 'vm-b', name: 'vmB' }, [lease], { timeoutMs: 20000 }))
      .rejects.toMatchObject({ rv: -243, message: expect.stringMatching(/lease .*disk1 is leased by host 1 \(node node-a\)/) });
    expect(b.inquire('vm-b')).toEqual([]);
    await a.release({ uuid: 'vm-a' });
    const got = await b.acquire({ uuid: 'vm-b', name: 'vmB' }, [lease], { timeoutMs: 20000 });
    expect(got[0].token.lver).toBe(2);
    // Same host, another owner: refused locally without touching storage.
    await expect(b.acquire({ uuid: 'vm-c', name: 'vmC' }, [lease])).rejects.toMatchObject({ rv: -17 });
    expect(failures).toEqual([]);
  }, 60000);

  it('takes the leases of one request side by side; one held by another host: none left held, the refusal names the holder', async () => {
    const disks = Array.from({ length: 8 }, (_, i) => `multi${i}`);
    for (const d of disks) await initResource(join(dir, d), d);
    const spec = (d: string) => ({ lockspace: LS, resource: d, path: join(dir, d), offset: 0 });
    const a = mk(3, 'node-c');
    // How many lease files host 4 is opening at once.
    let opening = 0;
    let most = 0;
    const b = mk(4, 'node-d', async (path) => {
      most = Math.max(most, ++opening);
      try {
        return await FileLeaseStorage.open(path);
      } finally {
        opening--;
      }
    });
    await a.acquire({ uuid: 'vm-c', name: 'vmC' }, [spec('multi5')], { timeoutMs: 20000 });
    await b.lockspaces.get(LS)!.waitJoined(20000);
    await expect(b.acquire({ uuid: 'vm-d', name: 'vmD' }, disks.map(spec), { timeoutMs: 20000 }))
      .rejects.toMatchObject({ rv: -243, message: expect.stringMatching(/lease .*multi5 is leased by host 3 \(node node-c\)/) });
    expect(most).toBeGreaterThan(1);
    expect(b.inquire('vm-d')).toEqual([]);
    // Nothing of host 4 is left on disk either: host 3 takes the seven others at once.
    await a.release({ uuid: 'vm-c' });
    const got = await a.acquire({ uuid: 'vm-c', name: 'vmC' }, disks.map(spec), { timeoutMs: 20000 });
    expect(got.map((h) => h.spec.resource)).toEqual(disks);
    await a.release({ uuid: 'vm-c' });
    expect(failures).toEqual([]);
  }, 60000);

  it('many requests at once share the spare acquires: each request\'s first lease, plus SPARE_ACQUIRES in all', async () => {
    const owners = 4;
    const disks = Array.from({ length: owners * 8 }, (_, i) => `many${i}`);
    for (const d of disks) await initResource(join(dir, d), d);
    const spec = (d: string) => ({ lockspace: LS, resource: d, path: join(dir, d), offset: 0 });
    let opening = 0;
    let most = 0;
    const b = mk(5, 'node-e', async (path) => {
      most = Math.max(most, ++opening);
      try {
        await new Promise((r) => setTimeout(r, 100)); // a slow open: the acquires under way overlap in it
        return await FileLeaseStorage.open(path);
      } finally {
        opening--;
      }
    });
    await b.lockspaces.get(LS)!.waitJoined(20000);
    const got = await Promise.all(Array.from({ length: owners }, (_, o) =>
      b.acquire({ uuid: `vm-m${o}`, name: `vmM${o}` }, disks.slice(o * 8, o * 8 + 8).map(spec), { timeoutMs: 20000 })));
    expect(got.flat().length).toBe(owners * 8);
    expect(most).toBeGreaterThan(owners);
    expect(most).toBeLessThanOrEqual(owners + SPARE_ACQUIRES);
    for (let o = 0; o < owners; o++) await b.release({ uuid: `vm-m${o}` });
    expect(failures).toEqual([]);
  }, 60000);

  it('a release journals beside its storage request: the request goes out first, its writes wait for the journal commit', async () => {
    await initResource(join(dir, 'disk-j'), 'disk-j');
    const lease = { lockspace: LS, resource: 'disk-j', path: join(dir, 'disk-j'), offset: 0 };
    const leaderTs = () => decodeLeader(readFileSync(lease.path), 0).timestamp;
    const events: string[] = [];
    const store = new StateStore(join(dir, 'state7.db'));
    const commit = store.commit.bind(store);
    store.commit = (fn, doing, opts) => {
      const done = commit(fn, doing, opts);
      if (!doing?.startsWith('journalling the release')) return done;
      // The release's entry is committed now, but what waits for it (the write gate among them)
      // hears so only 300 ms later: a storage request that did not wait would have written by then.
      return done.then(() => new Promise<void>((r) => setTimeout(r, 300)))
        .then(() => { events.push(`journal committed, leader timestamp ${leaderTs() ? 'set' : '0'}`); });
    };
    const a = new Agent({
      clock: systemClock, log: memoryLogger(), store, hostName: 'node-g', policy: { onLeaseFailure: async (o) => { failures.push(o); } },
      openStorage: async (path) => {
        const st = await FileLeaseStorage.open(path);
        const wiu = st.writeIfUnchanged.bind(st);
        st.writeIfUnchanged = (o, e, w, t, after) => {
          events.push(`storage request${after ? ', writes after the journal' : ''}`);
          return wiu(o, e, w, t, after);
        };
        return st;
      },
    });
    a.addLockspace({ name: LS, hostId: 7, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    agents.push(a);
    await a.acquire({ uuid: 'vm-j', name: 'vmJ' }, [lease], { timeoutMs: 20000 });
    expect(leaderTs()).not.toBe(0);
    await a.release({ uuid: 'vm-j' });
    expect(events).toEqual(['storage request, writes after the journal', 'journal committed, leader timestamp set']);
    expect(leaderTs()).toBe(0);
    expect(store.pendingOps()).toEqual([]); // a read commits the release's lazy record first
    expect(failures).toEqual([]);
  }, 60000);

  it('a release\'s record, committed after its reply, never overtakes a new acquire of the lease, even with the work after replies held back', async () => {
    await initResource(join(dir, 'disk-r'), 'disk-r');
    const lease = { lockspace: LS, resource: 'disk-r', path: join(dir, 'disk-r'), offset: 0 };
    const store = new StateStore(join(dir, 'state8.db'));
    // Nothing that waits for a quiet moment runs until flush(): the release's record must not
    // depend on it (were it queued there, the re-acquire's record would go in first and the
    // release's would then mark the re-acquired lease released).
    class HeldBack extends Housekeeping {
      override duringIo(): void { /* held back */ }
    }
    const hk = new HeldBack({ idleMs: 3_600_000 });
    const a = new Agent({ clock: systemClock, log: memoryLogger(), store, hostName: 'node-h', policy: { onLeaseFailure: async (o) => { failures.push(o); } }, housekeeping: hk });
    a.addLockspace({ name: LS, hostId: 8, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    agents.push(a);
    // What another process (lockagent who, an operator's sqlite3) sees: the file, not our connection.
    const rowsOnFile = () => {
      const other = new StateStore(join(dir, 'state8.db'));
      try {
        return other.leases('vm-r').map((r) => ({ resource: r.resource, held: r.held }));
      } finally {
        other.close();
      }
    };
    const owner = { uuid: 'vm-r', name: 'vmR' };
    for (let i = 0; i < 3; i++) {
      await a.acquire(owner, [lease], { timeoutMs: 20000 });
      await a.release(owner, [lease], { keepRecord: true });
      // At once, as a client sends its next request: the release's record still waits.
      await a.acquire(owner, [lease], { timeoutMs: 20000 });
      // The work after both replies runs only now, after the re-acquire's record.
      expect(hk.pending).toBeGreaterThan(0);
      hk.flush();
      expect(rowsOnFile()).toEqual([{ resource: 'disk-r', held: 1 }]);
      expect(store.leases('vm-r')).toMatchObject([{ resource: 'disk-r', held: 1 }]);
      await a.release(owner);
    }
    hk.flush();
    expect(rowsOnFile()).toEqual([]);
    expect(store.pendingOps()).toEqual([]);
    expect(failures).toEqual([]);
  }, 60000);

  it('a release\'s record alone goes in when the loop is quiet', async () => {
    await initResource(join(dir, 'disk-q'), 'disk-q');
    const lease = { lockspace: LS, resource: 'disk-q', path: join(dir, 'disk-q'), offset: 0 };
    const a = mk(9, 'node-q');
    const owner = { uuid: 'vm-q', name: 'vmQ' };
    await a.acquire(owner, [lease], { timeoutMs: 20000 });
    await a.release(owner);
    const onFile = () => {
      const other = new StateStore(join(dir, 'state9.db'));
      try {
        return other.leases('vm-q').length;
      } finally {
        other.close();
      }
    };
    await new Promise((r) => setTimeout(r, 50));
    expect(onFile()).toBe(0);
    expect(failures).toEqual([]);
  }, 60000);

  it('refused on a lease file another host deletes meanwhile (a cleanup holds the lease while it unlinks): follows the path, creates the file again, takes it', async () => {
    const path = join(dir, 'disk-del');
    await initResource(path, 'disk-del');
    const lease = { lockspace: LS, resource: 'disk-del', path, offset: 0 };
    const sweeper = mk(10, 'node-sweep');
    const b = mk(11, 'node-start');
    await b.lockspaces.get(LS)!.waitJoined(20000);
    await sweeper.acquire({ uuid: 'cleanup:node-sweep', name: 'cleanup' }, [lease], { timeoutMs: 20000 });
    let unlinked = false;
    let recreated = 0;
    const got = await b.acquire({ uuid: 'vm-del', name: 'vmDel' }, [lease], {
      timeoutMs: 20000,
      // b has the old file open; the sweeper unlinks it now, still holding its lease
      checkFile: () => { if (!unlinked) { unlinked = true; unlinkSync(path); } },
      recreate: async () => { recreated++; await initResource(path, 'disk-del'); },
    });
    expect(unlinked).toBe(true);
    expect(recreated).toBe(1);
    expect(got[0].token.lver).toBe(1);
    expect(decodeLeader(readFileSync(path), 0)).toMatchObject({ ownerId: 11, lver: 1 });
    await b.release({ uuid: 'vm-del' });
    await sweeper.release({ uuid: 'cleanup:node-sweep' });
    expect(failures).toEqual([]);
  }, 60000);
});
