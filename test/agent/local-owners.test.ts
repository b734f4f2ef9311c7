/**
 * Two owners on one host and the same lease (two domains sharing a disk, a domain and the
 * lease-file sweeper): one host_id runs one ballot per lease at a time, as sanlock's
 * acquire_token keeps it. An exclusive lease is never held twice here, whatever the timing; a
 * shared one held by two owners stays SHARED on disk until the last of them releases it.
 * Real files, O_DIRECT, io_timeout 1; host 2 is a second agent over the same directory.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { ensureResourceFile } from '../../src/agent/resourcefile';
import { DirectFile } from '../../src/io/directio';
import { systemClock } from '../../src/lease/clock';
import { memoryLogger } from '../../src/log/logger';
import { decodeLeader, DEFAULT_GEOMETRY, SANLK } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(60000);

describe('two owners on one host and the same lease', () => {
  let dir: string;
  let a: Agent;
  let b: Agent;
  let n = 0;

  async function lease(): Promise<{ lockspace: string; resource: string; path: string; offset: number }> {
    const name = `disk${++n}`;
    const path = join(dir, name);
    await ensureResourceFile(path, LS, name, DEFAULT_GEOMETRY);
    return { lockspace: LS, resource: name, path, offset: 0 };
  }
  async function leader(path: string) {
    const f = await DirectFile.open(path);
    try {
      return decodeLeader(await f.read(0, 512, 10000), 0);
    } finally {
      await f.close();
    }
  }
  const settled = (p: Promise<unknown>) => p.then(() => 'held', (e: { rv?: number }) => e.rv);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-localowners-'));
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    const mk = (hostId: number, name: string) => {
      const x = new Agent({ clock: systemClock, log: memoryLogger(), store: new StateStore(join(dir, `state${hostId}.db`)), hostName: name, policy: { onLeaseFailure: async () => undefined } });
      x.addLockspace({ name: LS, hostId, path: join(dir, LS), offset: 0, ioTimeout: 1 });
      return x;
    };
    a = mk(1, 'node-a');
    b = mk(2, 'node-b');
    await Promise.all([a.lockspaces.get(LS)!.waitJoined(30000), b.lockspaces.get(LS)!.waitJoined(30000)]);
  });
  afterAll(async () => {
    await a.shutdown(true);
    await b.shutdown(true);
    rmSync(dir, { recursive: true, force: true });
  });

  it('exclusive, asked by two owners at once: one holds it, the other is refused (EEXIST, naming the holder); one ballot won, lver 1', async () => {
    for (let i = 0; i < 5; i++) {
      const l = await lease();
      const [x, y] = await Promise.all([
        settled(a.acquire({ uuid: `vm-x${i}`, name: `vmX${i}` }, [l])),
        settled(a.acquire({ uuid: `vm-y${i}`, name: `vmY${i}` }, [l])),
      ]);
      expect([x, y].sort()).toEqual([SANLK.EEXIST, 'held'].sort());
      const holders = [`vm-x${i}`, `vm-y${i}`].filter((u) => a.inquire(u).length);
      expect(holders).toHaveLength(1);
      const on = await leader(l.path);
      expect(on).toMatchObject({ ownerId: 1, lver: 1 });
      expect(on.timestamp).not.toBe(0);
      await a.release({ uuid: holders[0] });
    }
  });

  it('an acquire while another owner\'s release is on its way waits for it, then takes the lease (lver 2), never both at once', async () => {
    const l = await lease();
    await a.acquire({ uuid: 'vm-r1', name: 'vmR1' }, [l]);
    const rel = a.release({ uuid: 'vm-r1' });
    const got = await a.acquire({ uuid: 'vm-r2', name: 'vmR2' }, [l]);
    await rel;
    expect(got[0].token.lver).toBe(2);
    expect(a.inquire('vm-r1')).toEqual([]);
    expect(await leader(l.path)).toMatchObject({ ownerId: 1, lver: 2 });
    await a.release({ uuid: 'vm-r2' });
  });

  it('shared by two owners: released by one, still SHARED on disk (another host is refused it exclusive); free once the last releases', async () => {
    const l = { ...(await lease()), mode: 'shared' as const };
    const [x, y] = await Promise.all([settled(a.acquire({ uuid: 'vm-s1', name: 'vmS1' }, [l])), settled(a.acquire({ uuid: 'vm-s2', name: 'vmS2' }, [l]))]);
    expect([x, y]).toEqual(['held', 'held']);
    await a.release({ uuid: 'vm-s1' });
    expect(a.inquire('vm-s2')).toHaveLength(1);
    const ex = { lockspace: l.lockspace, resource: l.resource, path: l.path, offset: 0 };
    await expect(b.acquire({ uuid: 'vm-other', name: 'vmOther' }, [ex], { timeoutMs: 5000 })).rejects.toMatchObject({ rv: expect.any(Number) });
    expect(b.inquire('vm-other')).toEqual([]);
    await a.release({ uuid: 'vm-s2' });
    const got = await b.acquire({ uuid: 'vm-other', name: 'vmOther' }, [ex], { timeoutMs: 5000 });
    expect(got).toHaveLength(1);
    await b.release({ uuid: 'vm-other' });
  });

  it('a resume (acquire with its lease version) joining a shared lease held here is checked too: refused (-240) if another host held the lease since', async () => {
    const l = { ...(await lease()), mode: 'shared' as const };
    const [x] = await a.acquire({ uuid: 'vm-p1', name: 'vmP1' }, [l]);
    await a.acquire({ uuid: 'vm-p2', name: 'vmP2' }, [l]);
    const kept = x.token.lver;
    await a.release({ uuid: 'vm-p1' }, undefined, { keepRecord: true }); // paused
    await a.release({ uuid: 'vm-p2' }); // the last holder here: written
    const ex = { lockspace: l.lockspace, resource: l.resource, path: l.path, offset: 0 };
    await b.acquire({ uuid: 'vm-b', name: 'vmB' }, [ex], { timeoutMs: 5000 });
    await b.release({ uuid: 'vm-b' });
    await a.acquire({ uuid: 'vm-p2', name: 'vmP2' }, [l]); // started again, shared
    await expect(a.acquire({ uuid: 'vm-p1', name: 'vmP1' }, [{ ...l, lver: kept }])).rejects.toMatchObject({ rv: SANLK.ACQUIRE_LVER });
    expect(a.inquire('vm-p1')).toEqual([]);
    // Unchanged since (no other host in between): the same version joins.
    const now = a.inquire('vm-p2')[0].token.lver;
    expect((await a.acquire({ uuid: 'vm-p3', name: 'vmP3' }, [{ ...l, lver: now }]))[0].token.lver).toBe(now);
    await a.release({ uuid: 'vm-p3' });
    await a.release({ uuid: 'vm-p2' });
  });

  it('one request naming a lease twice: taken once in one mode; in two modes refused (EINVAL) before anything is taken', async () => {
    const l = await lease();
    const other = await lease();
    const got = await a.acquire({ uuid: 'vm-d1', name: 'vmD1' }, [{ ...l, mode: 'exclusive' }, { ...l, mode: 'exclusive' }]);
    expect(got).toHaveLength(2);
    expect(got[0]).toBe(got[1]);
    expect(a.inquire('vm-d1')).toHaveLength(1);
    await a.release({ uuid: 'vm-d1' });
    const twoModes = a.acquire({ uuid: 'vm-d2', name: 'vmD2' }, [{ ...other, mode: 'exclusive' }, { ...l, mode: 'shared' }, { ...l, mode: 'exclusive' }]);
    await expect(twoModes).rejects.toMatchObject({ rv: SANLK.EINVAL, message: expect.stringContaining('named twice in one request, shared and exclusive') });
    expect(a.inquire('vm-d2')).toEqual([]);
    // Nothing was taken: host 2 gets both at once.
    expect(await b.acquire({ uuid: 'vm-d3', name: 'vmD3' }, [{ ...other, mode: 'exclusive' }, { ...l, mode: 'exclusive' }], { timeoutMs: 5000 })).toHaveLength(2);
    await b.release({ uuid: 'vm-d3' });
  });
});
