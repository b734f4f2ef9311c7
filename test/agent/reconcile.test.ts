/**
 * The start-up reconcile with what runs (issue 11 item 3), through the agent's interface: real
 * files, O_DIRECT, io_timeout 1, two agents; "what runs" is a stand-in for the libvirt layer
 * (DomainManager.runningLeaseOwners), which answers the same question from libvirt's list of
 * running domains and their lease plans.
 *
 * Host 1 holds two disk leases for a domain; its agent stops without releasing them and comes back
 * with an empty state database. Reconcile finds both on disk: the one a running domain needs is
 * re-adopted for that domain, the other (nothing running needs it) is released. Host 2 is then
 * refused the first and gets the second at once.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { FailedOwner } from '../../src/agent/failure';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { DirectFile } from '../../src/io/directio';
import { systemClock } from '../../src/lease/clock';
import { memoryLogger } from '../../src/log/logger';
import { buildResourceArea, DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(60000);

async function initResource(path: string, name: string) {
  writeFileSync(path, Buffer.alloc(0));
  const f = await DirectFile.open(path);
  await f.write(0, buildResourceArea({ spaceName: LS, resourceName: name, geometry: DEFAULT_GEOMETRY }), 10000);
  await f.close();
}

describe('start-up reconcile with what runs', () => {
  let dir: string;
  const agents: Agent[] = [];
  const failures: FailedOwner[] = [];
  const mk = (hostId: number, name: string, db: string) => {
    const log = memoryLogger();
    const a = new Agent({
      clock: systemClock, log, store: new StateStore(join(dir, db)), hostName: name,
      policy: { onLeaseFailure: async (o) => { failures.push(o); } },
    });
    a.addLockspace({ name: LS, hostId, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    agents.push(a);
    return { a, log };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-reconcile-'));
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    await initResource(join(dir, 'd1'), 'd1');
    await initResource(join(dir, 'd2'), 'd2');
  });
  afterAll(async () => {
    for (const a of agents) await a.shutdown(true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('re-adopts the lease a running domain needs and releases the one nothing running needs', async () => {
    const d1 = { lockspace: LS, resource: 'd1', path: join(dir, 'd1'), offset: 0 };
    const d2 = { lockspace: LS, resource: 'd2', path: join(dir, 'd2'), offset: 0 };
    const { a: first } = mk(1, 'node-a', 'a1.db');
    await first.acquire({ uuid: 'vm-x', name: 'vmX' }, [d1, d2], { timeoutMs: 20000 });
    await first.shutdown(false); // leases stay held on disk
    const { a: b } = mk(2, 'node-b', 'b.db');
    await b.lockspaces.get(LS)!.waitJoined(20000);

    // Host 1 again, same name, empty state database.
    const { a, log } = mk(1, 'node-a', 'a2.db');
    expect(await a.recover(async () => true)).toEqual({ adopted: 0, released: 0, forgotten: 0 });
    const r = await a.reconcile([d1, d2], async () => new Map([[`${LS}:d1`, { uuid: 'vm-x', name: 'vmX' }]]));
    expect(r).toEqual({ found: 2, readopted: 1, released: 1, kept: 0 });
    expect(a.inquire('vm-x').map((h) => h.spec.resource)).toEqual(['d1']);
    expect(a.ownersList().map((o) => o.ref.uuid)).toEqual(['vm-x']);
    const text = log.lines.join('\n');
    expect(text).toMatch(/found 2 lease\(s\) of host_id 1 on disk that no owner here holds/);
    expect(text).toMatch(/d1 .*re-adopted for vmX, which runs/);
    expect(text).toMatch(/d2 .*released \(no running owner needs it\)/);

    await expect(b.acquire({ uuid: 'vm-y', name: 'vmY' }, [d1], { timeoutMs: 5000 })).rejects.toMatchObject({ rv: -243 });
    await b.acquire({ uuid: 'vm-y', name: 'vmY' }, [d2], { timeoutMs: 5000 });
    expect(failures).toEqual([]);
  });
});
