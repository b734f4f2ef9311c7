/**
 * Races on one host around an acquire, found by an adversarial review, each with real in-process
 * agents over real files (O_DIRECT, io_timeout 1):
 * - the lockspace lost, or removed (rem_lockspace), while an acquire's ballot runs: the acquire
 *   is refused (ENOSPC), never reported held under a delta lease that is gone (sanlock's
 *   check_new_tokens_space);
 * - restart recovery with two owners sharing one lease, the one that is gone sorting first: the
 *   running one is re-adopted first, so this host's SHARED mode block is never cleared under it;
 * - an acquire waiting for another owner's acquire of the same lease keeps its own timeout (EBUSY);
 * - an all-or-nothing rollback ends before a waiting owner looks: no false EEXIST.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { StorageOpener } from '../../src/agent/types';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { ensureResourceFile } from '../../src/agent/resourcefile';
import { FileLeaseStorage } from '../../src/io/file-storage';
import { systemClock } from '../../src/lease/clock';
import { LeaseStorage } from '../../src/lease/storage';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY, LeaseError, SANLK } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(60000);

let dir: string;
const agents: Agent[] = [];
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'la-races-'));
  await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
});
afterEach(async () => {
  for (const a of agents.splice(0)) await a.shutdown(true).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

async function resource(name: string): Promise<{ lockspace: string; resource: string; path: string; offset: number }> {
  const path = join(dir, name);
  await ensureResourceFile(path, LS, name, DEFAULT_GEOMETRY);
  return { lockspace: LS, resource: name, path, offset: 0 };
}

function agent(hostId: number, name: string, o: { db?: string; failures?: string[]; openStorage?: StorageOpener } = {}): Agent {
  const a = new Agent({
    clock: systemClock, log: memoryLogger(), store: new StateStore(join(dir, o.db ?? `${name}.db`)), hostName: name,
    policy: { onLeaseFailure: async (f) => { o.failures?.push(`${f.name}: ${f.reason}`); } }, openStorage: o.openStorage,
  });
  a.addLockspace({ name: LS, hostId, path: join(dir, LS), offset: 0, ioTimeout: 1 });
  agents.push(a);
  return a;
}
const joined = (...as: Agent[]) => Promise.all(as.map((a) => a.lockspaces.get(LS)!.waitJoined(30000)));

/** Storage whose calls first wait for `before` (all but the synchronous ones). */
function gated(s: LeaseStorage, before: () => Promise<void>): LeaseStorage {
  return new Proxy(s as object, {
    get(t, prop) {
      const v = (t as Record<string | symbol, unknown>)[prop];
      if (typeof v !== 'function') return v;
      if (prop === 'cancelScheduled' || prop === 'allocBuffer' || prop === 'close') return (v as (...a: unknown[]) => unknown).bind(t);
      return async (...args: unknown[]) => { await before(); return (v as (...a: unknown[]) => unknown).apply(t, args); };
    },
  }) as LeaseStorage;
}

it('the lockspace lost while an acquire\'s ballot runs: the acquire is refused (ENOSPC) and nothing is held', async () => {
  const L = await resource('disk1');
  let failLs = false;
  let hold = false;
  const ref: { a?: Agent } = {};
  // The lease file's I/O waits until the lockspace is declared lost (8 x io_timeout).
  const waitLost = async () => {
    while (hold && ref.a!.lockspaces.get(LS)!.state !== 'lost') await new Promise((r) => setTimeout(r, 100));
    hold = false;
  };
  const a = ref.a = agent(1, 'node-a', {
    openStorage: async (p, o) => {
      const s = await FileLeaseStorage.open(p, o);
      if (p === join(dir, LS)) return gated(s, async () => { if (failLs) throw new LeaseError(SANLK.AIO_TIMEOUT, 'injected lockspace I/O failure'); });
      return p === L.path ? gated(s, waitLost) : s;
    },
  });
  await joined(a);
  hold = true;
  failLs = true; // renewals fail from now on
  await expect(a.acquire({ uuid: 'vm-1', name: 'vm1' }, [L])).rejects.toMatchObject({ rv: SANLK.ENOSPC, message: expect.stringMatching(/lockspace __LIBVIRT__DISKS__ was lost \(lost\) while __LIBVIRT__DISKS__:disk1 was being acquired: not held/) });
  expect(a.inquire('vm-1')).toEqual([]);
});

it('rem_lockspace while an acquire opens its lease file: the acquire is refused (ENOSPC); another host is not let in under a lease we think we hold', async () => {
  const L = await resource('disk1');
  let removed: string | undefined;
  const gate: { hook?: (p: string) => Promise<void> } = {};
  const a = agent(1, 'node-a', { openStorage: async (p, o) => { const s = await FileLeaseStorage.open(p, o); if (gate.hook) await gate.hook(p); return s; } });
  await joined(a);
  gate.hook = async (p) => {
    if (p !== L.path || removed) return;
    removed = await a.removeLockspace(LS).then(() => 'removed', (e: { rv: number }) => `refused ${e.rv}`);
  };
  await expect(a.acquire({ uuid: 'vm-1', name: 'vm1' }, [L], { timeoutMs: 5000 })).rejects.toMatchObject({ rv: SANLK.ENOSPC, message: expect.stringMatching(/was removed while/) });
  expect(removed).toBe('removed');
  expect(a.inquire('vm-1')).toEqual([]);
});

it('recovery with two owners sharing a lease, the one that is gone sorting first: the running one is re-adopted first; another host never gets it exclusive', async () => {
  const L = { ...(await resource('disk1')), mode: 'shared' as const };
  const failures: string[] = [];
  const gate: { hook?: (p: string) => Promise<void> } = {};
  const opener: StorageOpener = async (p, o) => { const s = await FileLeaseStorage.open(p, o); if (gate.hook) await gate.hook(p); return s; };
  const a1 = agent(1, 'node-a', { db: 'a.db', failures, openStorage: opener });
  const b = agent(2, 'node-b');
  await joined(a1, b);
  await a1.acquire({ uuid: 'vm-gone', name: 'aaa-gone' }, [L]);
  await a1.acquire({ uuid: 'vm-run', name: 'zzz-running' }, [L]);
  expect(a1.inquire('vm-run')[0].token).toBe(a1.inquire('vm-gone')[0].token); // one acquisition
  await a1.shutdown(false); // as if killed: the leases stay on disk, the database keeps both rows
  agents.splice(agents.indexOf(a1), 1);

  const a2 = agent(1, 'node-a', { db: 'a.db', failures, openStorage: opener });
  await joined(a2);
  const tries: string[] = [];
  // Each time recovery opens the lease file, host 2 tries to take it exclusive.
  gate.hook = async (p) => {
    if (p !== L.path) return;
    tries.push(await b.acquire({ uuid: 'vm-elsewhere', name: 'vmElsewhere' }, [{ ...L, mode: 'exclusive' }], { timeoutMs: 3000 })
      .then(() => 'acquired', (e: { rv: number }) => `refused ${e.rv}`));
  };
  const r = await a2.recover(async (o) => o.name === 'zzz-running');
  gate.hook = undefined;
  expect(r).toMatchObject({ adopted: 1, released: 1 }); // the gone owner's share, let go without a write
  expect(tries.length).toBeGreaterThan(0);
  expect(tries.filter((t) => t === 'acquired')).toEqual([]);
  expect(a2.inquire('vm-run')).toHaveLength(1);
  await expect(b.acquire({ uuid: 'vm-elsewhere', name: 'vmElsewhere' }, [{ ...L, mode: 'exclusive' }], { timeoutMs: 3000 })).rejects.toMatchObject({ rv: expect.any(Number) });
  expect(failures).toEqual([]);
});

it('an acquire waiting for another owner\'s acquire of the same lease keeps its own timeout: EBUSY at it, naming that owner', async () => {
  const L = await resource('disk1');
  const a = agent(1, 'node-a');
  const b = agent(2, 'node-b');
  await joined(a, b);
  await b.acquire({ uuid: 'vm-b', name: 'vmB' }, [L]);
  await b.shutdown(false); // host 2 stops renewing; its lease stays on disk
  agents.splice(agents.indexOf(b), 1);
  await new Promise((r) => setTimeout(r, 7000)); // no renewal seen for a while: host 1's acquire waits for host_dead
  const x = a.acquire({ uuid: 'vm-x', name: 'vmX' }, [L], { timeoutMs: 6000 }).then(() => 'held', (e: { rv: number }) => `refused ${e.rv}`);
  await new Promise((r) => setImmediate(r));
  const t0 = Date.now();
  await expect(a.acquire({ uuid: 'vm-y', name: 'vmY' }, [L], { timeoutMs: 1500 })).rejects.toMatchObject({ rv: SANLK.EBUSY, message: expect.stringMatching(/still being acquired on this host by vmX \(vm-x\)/) });
  expect(Date.now() - t0).toBeLessThan(4000);
  await x;
});

it('a request refused as a whole gives back what it took before a waiting owner looks: no false EEXIST', async () => {
  const L = await resource('L');
  const M = await resource('M');
  const a = agent(1, 'node-a');
  const b = agent(2, 'node-b');
  await joined(a, b);
  await b.acquire({ uuid: 'vm-b', name: 'vmB' }, [M]);
  await new Promise((r) => setTimeout(r, 3000)); // host 2 seen alive
  for (let i = 0; i < 3; i++) {
    const x = a.acquire({ uuid: `vm-x${i}`, name: 'vmX' }, [L, M]).then(() => 'held', (e: { rv: number }) => e.rv);
    await new Promise((r) => setImmediate(r));
    const y = a.acquire({ uuid: `vm-y${i}`, name: 'vmY' }, [L]).then(() => 'held', (e: { rv: number; message: string }) => `${e.rv} ${e.message}`);
    expect(await x).toBe(SANLK.ACQUIRE_IDLIVE);
    expect(await y).toBe('held');
    expect(a.inquire(`vm-x${i}`)).toEqual([]);
    await a.release({ uuid: `vm-y${i}` });
  }
});
