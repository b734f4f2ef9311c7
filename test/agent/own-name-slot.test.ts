/**
 * A slot under our own host name, whose writer may still be alive but slow (a renewal that
 * falls outside the 2·io + 2 s watch: slow storage, a failed renewal retried), is taken at once
 * only when this machine's own record says it acquired that very generation. A clone (config
 * and state database copied: another boot, another machine identity) and an agent without a
 * record wait for the writer to prove dead (host_dead), as for a foreign name; the writer
 * renewing meanwhile keeps the slot its own. Our own earlier boot (the same machine identity)
 * reacquires at once, as sanlock does.
 * And a slot another host held before we acquired it: the start-up reconcile does not take that
 * host's leases "back" as ours.
 * In-process agents, real files, O_DIRECT, io_timeout 1 (host_dead 68 s). The "writer" is a
 * delta record written by the test, renewed by hand.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { systemClock } from '../../src/lease/clock';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';
import { initLease, patchLeader, writeDeltaRecord } from '../cleanup/helpers';

const LS = '__LIBVIRT__DISKS__';
jest.setTimeout(90000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a slot carrying our own host name, its writer slow but maybe alive', () => {
  let dir: string;
  const agents: Agent[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'la-ownname-'));
  });
  afterAll(async () => {
    for (const a of agents) await a.shutdown(true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A lockspace whose host_id 1 was written by "node-x" at generation 4; an agent named node-x joining it with `record` in its state database. */
  async function join1(name: string, record: Record<string, unknown> | undefined, identity: string) {
    const path = join(dir, `${name}.ls`);
    await ensureLockspaceFile(path, LS, DEFAULT_GEOMETRY, 1);
    // The writer's clock is another machine's: a timestamp far below ours looks plausibly recent.
    await writeDeltaRecord(path, 1, { ownerGeneration: 4, timestamp: 1000, resourceName: 'node-x', ioTimeout: 1 });
    const store = new StateStore(join(dir, `${name}.db`));
    if (record) store.setMeta(`delta:${LS}`, JSON.stringify(record));
    const log = memoryLogger();
    const a = new Agent({ clock: systemClock, log, store, hostName: 'node-x', machineIdentity: () => identity, policy: { onLeaseFailure: async () => undefined } });
    agents.push(a);
    const ls = a.addLockspace({ name: LS, hostId: 1, path, offset: 0, ioTimeout: 1 });
    return { path, ls, log };
  }

  it('a clone (copied database: another boot and machine identity) waits host_dead, and is refused when the writer renews meanwhile', async () => {
    const { path, ls, log } = await join1('clone', { bootId: 'boot-of-the-original', generation: 4, hostId: 1, identity: 'machine-original' }, 'machine-clone');
    await sleep(12000); // past the 2·io + 2 s watch and a fast reacquire's 2·io check
    expect(ls.state).not.toBe('joined');
    expect(log.lines.join('\n')).toMatch(/waiting 68 s for host "node-x" \(generation 4, timestamp 1000\) to prove dead/);
    // The original renews (late, but alive): at the end of the wait the slot is busy.
    await writeDeltaRecord(path, 1, { ownerGeneration: 4, timestamp: 1060, resourceName: 'node-x', ioTimeout: 1 });
    for (const until = Date.now() + 75000; Date.now() < until && !log.lines.some((l) => /renewed it during our 68 s wait/.test(l));) await sleep(500);
    expect(log.lines.join('\n')).toMatch(/cannot join lockspace __LIBVIRT__DISKS__ as host_id 1 .*host_id 1 of lockspace __LIBVIRT__DISKS__ is in use: host "node-x" \(generation 4, timestamp 1060\) renewed it during our 68 s wait/);
    expect(ls.state).not.toBe('joined');
  });

  it('our own earlier boot (the same machine identity, the generation we recorded) reacquires at once', async () => {
    const { ls, log } = await join1('reboot', { bootId: 'an-earlier-boot', generation: 4, hostId: 1, identity: 'machine-same' }, 'machine-same');
    const lease = await ls.waitJoined(20000);
    expect(lease.generation).toBe(5);
    expect(log.lines.join('\n')).not.toMatch(/to prove dead/);
  });

  it('the same machine, but a generation we did not record (someone under our name acquired since): waits host_dead', async () => {
    const { ls, log } = await join1('other-gen', { bootId: 'an-earlier-boot', generation: 3, hostId: 1, identity: 'machine-same' }, 'machine-same');
    await sleep(9000);
    expect(ls.state).not.toBe('joined');
    expect(log.lines.join('\n')).toMatch(/to prove dead/);
  });
});

describe('a slot another host held before us: its leases are not ours to take back', () => {
  let dir: string;
  let a: Agent;
  afterAll(async () => {
    await a?.shutdown(true).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the start-up reconcile takes back only generations of ours, never the previous host\'s', async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-prevhost-'));
    const path = join(dir, LS);
    await ensureLockspaceFile(path, LS, DEFAULT_GEOMETRY, 1);
    // host_id 1 was node-dead's (generation 3), released (or taken over once it was dead).
    await writeDeltaRecord(path, 1, { ownerGeneration: 3, timestamp: 0, resourceName: 'node-dead', ioTimeout: 1 });
    const log = memoryLogger();
    a = new Agent({ clock: systemClock, log, store: new StateStore(join(dir, 'state.db')), hostName: 'node-a', policy: { onLeaseFailure: async () => undefined } });
    const lease = await a.addLockspace({ name: LS, hostId: 1, path, offset: 0, ioTimeout: 1 }).waitJoined(30000);
    expect(lease.generation).toBe(4);
    const theirs = join(dir, 'theirs');
    const ours = join(dir, 'ours');
    for (const f of [theirs, ours]) await initLease(f);
    await patchLeader(theirs, { ownerId: 1, ownerGeneration: 3, timestamp: 500, lver: 1, writeId: 1, writeGeneration: 3 });
    await patchLeader(ours, { ownerId: 1, ownerGeneration: 4, timestamp: 500, lver: 1, writeId: 1, writeGeneration: 4 });
    const c = (f: string) => ({ lockspace: LS, resource: f === theirs ? 'theirs' : 'ours', path: f, offset: 0 });
    const r = await a.reconcile([c(theirs), c(ours)]);
    expect(r).toMatchObject({ found: 1, kept: 1 });
    expect(log.lines.join('\n')).toMatch(/found 1 lease\(s\) of host_id 1 on disk that no owner here holds .*: __LIBVIRT__DISKS__:ours /);
    expect(a.inquire('unknown-owner:__LIBVIRT__DISKS__:theirs')).toEqual([]);
    // The agent restarted (its record kept): the slot's lease is ours now, but not node-dead's generations.
    await a.shutdown(true);
    a = new Agent({ clock: systemClock, log, store: new StateStore(join(dir, 'state.db')), hostName: 'node-a', policy: { onLeaseFailure: async () => undefined } });
    expect((await a.addLockspace({ name: LS, hostId: 1, path, offset: 0, ioTimeout: 1 }).waitJoined(30000)).generation).toBe(5);
    expect(await a.reconcile([c(theirs)])).toMatchObject({ found: 0 });
  });
});
