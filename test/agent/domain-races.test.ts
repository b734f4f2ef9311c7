/**
 * What must not release a starting or restarted domain's leases (DomainManager): a resync whose
 * list shows the domain paused while it starts up (libvirt sets PAUSED/STARTING_UP before the
 * `prepare` hook), a resync whose list predates the start, and a STOPPED event of the domain's
 * previous run when the lock-driver plugin registered a QEMU that still runs, nor the start's
 * acquire taken for an attach while that run's leases are still held, nor a late SUSPENDED of a
 * plugin domain resumed since, nor a detach whose disk's lease another disk may use (an attach
 * to a domain holding no lease, a detach after an agent restart). And what must: a resync
 * listing it shut off after the start. Real files, O_DIRECT, io_timeout 1.
 */
import { ChildProcess, spawn } from 'child_process';
import { createHash } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { defaultConfig } from '../../src/config/config';
import { systemClock } from '../../src/lease/clock';
import { DomainManager } from '../../src/libvirt/domains';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY, SANLK } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';
const UUID = '6d0c1f56-0f1b-4d0e-9a53-2b1c3f7a9e02';

describe('DomainManager: late events and resyncs leave a new start\'s leases alone', () => {
  let dir: string;
  let agent: Agent;
  let mgr: DomainManager;
  let xml: string;
  let disk: string;
  let log: ReturnType<typeof memoryLogger>;
  let store: StateStore;
  let planPath: (disk: string) => string;
  let config: ReturnType<typeof defaultConfig>;
  const held = () => agent.inquire(UUID).length;

  beforeAll(async () => {
    dir = mkdtempSync(join('/tmp', 'la-races-'));
    mkdirSync(join(dir, 'leases'));
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    log = memoryLogger();
    store = new StateStore(join(dir, 'state.db'));
    config = { ...defaultConfig(), autoDiskLeases: true, hostId: 1, diskLeaseDir: join(dir, 'leases'), requireLeaseForDisks: true, ioTimeout: 1 };
    agent = new Agent({ clock: systemClock, log, store, hostName: 'node-a', policy: { onLeaseFailure: async () => undefined } });
    agent.addLockspace({ name: LS, hostId: 1, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    await agent.lockspaces.get(LS)!.waitJoined(30000);
    mgr = new DomainManager({ agent, config, store, log, control: () => undefined });
    planPath = (p) => join(config.diskLeaseDir, createHash('md5').update(p).digest('hex'));
    disk = join(dir, 'vm2.qcow2');
    writeFileSync(disk, '');
    xml = `<domain type='kvm'><name>vm2</name><uuid>${UUID}</uuid><memory>1024</memory>
      <devices><disk type='file' device='disk'><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
  }, 60000);
  afterAll(async () => {
    await agent.shutdown(true);
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await mgr.release(UUID, 'test');
  });

  it('a resync listing the domain paused while starting up keeps its leases; paused by a user releases them', async () => {
    await mgr.prepare(xml, 20000);
    await mgr.onResync([{ uuid: UUID, name: 'vm2', state: 'PAUSED', reason: 'STARTING_UP' }]);
    expect(held()).toBe(1);
    await mgr.onResync([{ uuid: UUID, name: 'vm2', state: 'PAUSED', reason: 'USER' }]);
    expect(held()).toBe(0);
  });

  it('a resync whose list predates the start keeps its leases; one listing it shut off after the start releases them', async () => {
    const listedAt = performance.now();
    await mgr.prepare(xml, 20000);
    await mgr.onResync([{ uuid: UUID, name: 'vm2', state: 'SHUTOFF', reason: 'DESTROYED' }], listedAt);
    expect(held()).toBe(1);
    await mgr.onResync([{ uuid: UUID, name: 'vm2', state: 'SHUTOFF', reason: 'DESTROYED' }], performance.now());
    expect(held()).toBe(0);
  });

  describe('lock-driver plugin calls', () => {
    let qemu: ChildProcess;
    let other: string;
    const dom = (disks: string[], pid = qemu.pid!) => ({ uuid: UUID, name: 'vm2', pid, disks: disks.map((p) => ({ path: p, readonly: false, shared: false })), leases: [] });
    const leases = () => agent.inquire(UUID).map((h) => h.spec.path).sort();
    beforeAll(() => {
      other = join(dir, 'vm2-b.img');
      writeFileSync(other, '');
    });
    beforeEach(() => { qemu = spawn('sleep', ['60']); });
    afterEach(async () => {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    });

    it('an attach of a disk the domain has already, then undone by libvirt (a detach), keeps the lease the first one uses', async () => {
      await mgr.lockRegister(dom([disk]));
      await mgr.lockAcquire(dom([disk]));
      await mgr.lockAcquire(dom([disk])); // attach: the same disk again
      await mgr.lockRelease(dom([disk]), false); // libvirt undoes the failed attach
      expect(held()).toBe(1);
      await mgr.lockRelease(dom([disk]), false); // the real detach
      expect(held()).toBe(0);
    });

    it('a resume without the lock state (libvirt\'s pause call failed on its side) is still checked against the lvers the pause kept', async () => {
      await mgr.lockRegister(dom([disk]));
      await mgr.lockAcquire(dom([disk]));
      await mgr.lockRelease(dom([disk]), true); // the agent released; libvirt kept no state
      // Meanwhile the disk was used elsewhere: its lease version moved on.
      const spec = { lockspace: LS, resource: createHash('md5').update(disk).digest('hex'), path: planPath(disk), offset: 0 };
      await agent.acquire({ uuid: 'vm-elsewhere', name: 'vm-elsewhere' }, [spec]);
      await agent.release({ uuid: 'vm-elsewhere' });
      await expect(mgr.lockAcquire(dom([disk]))).rejects.toMatchObject({ rv: SANLK.ACQUIRE_LVER });
      expect(held()).toBe(0);
    });

    it('a disk attached while paused with the path of a paused disk is an attach, not a resume: libvirt\'s undo of it leaves the first disk\'s lease', async () => {
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      const { state } = await mgr.lockRelease(dom([disk, other]), true);
      await mgr.lockAcquire(dom([disk])); // the same image attached again while paused (its lease taken, lver checked)
      await mgr.lockRelease(dom([disk]), false); // libvirt undoes the attach
      expect(leases()).toEqual([planPath(disk)]);
      await mgr.lockAcquire(dom([disk, other]), state); // the resume
      expect(leases()).toEqual([planPath(disk), planPath(other)].sort());
    });

    it('a detach while paused keeps the lvers of the other leases for the resume check', async () => {
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      const { state } = await mgr.lockRelease(dom([disk, other]), true);
      expect(state).toMatch(/^__LIBVIRT__DISKS__:\S+:\S+:0:\d+ __LIBVIRT__DISKS__:/);
      await mgr.lockRelease(dom([other]), false);
      expect(store.leases(UUID).filter((r) => !r.held).map((r) => r.resource)).toHaveLength(1);
      await mgr.lockAcquire(dom([disk]), state);
      expect(leases()).toEqual([planPath(disk)]);
    });

    it('a second pause call (libvirt\'s stop, then QEMU\'s STOP event) keeps the first one\'s state, also from an agent restarted in between', async () => {
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      const { state } = await mgr.lockRelease(dom([disk, other]), true);
      expect(state).toMatch(/^__LIBVIRT__DISKS__:\S+:\S+:0:\d+ __LIBVIRT__DISKS__:\S+:\S+:0:\d+$/);
      expect(await mgr.lockRelease(dom([disk, other]), true)).toEqual({ released: 0, state });
      // A restarted agent has only its records (their lvers) to give libvirt, which keeps the last state.
      const restarted = new DomainManager({ agent, config, store, log, control: () => undefined });
      const again = await restarted.lockRelease(dom([disk, other]), true);
      expect(again.released).toBe(0);
      expect(again.state.split(' ').sort()).toEqual(state.split(' ').sort());
      await restarted.lockAcquire(dom([disk, other]), again.state);
      expect(leases()).toEqual([planPath(disk), planPath(other)].sort());
      await restarted.release(UUID, 'test');
    });

    it('a start while the last run\'s leases are still held is no attach: a detach after it releases the detached disk\'s lease', async () => {
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      // the next run, before the last run's STOPPED event: its leases are still held at the start's acquire
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      await mgr.lockRelease(dom([other]), false); // `other` hot-unplugged
      expect(leases()).toEqual([planPath(disk)]);
      // and a real attach after the start still is one: the disk attached again shares the lease
      await mgr.lockAcquire(dom([other]));
      await mgr.lockAcquire(dom([other]));
      await mgr.lockRelease(dom([other]), false); // libvirt undoes the second attach
      expect(leases()).toEqual([planPath(disk), planPath(other)].sort());
    });

    it('a disk attached to a domain that holds no lease, attached again and that undone by libvirt, keeps the lease the first one uses', async () => {
      const ro = { uuid: UUID, name: 'vm2', pid: qemu.pid!, disks: [{ path: other, readonly: true, shared: false }], leases: [] };
      await mgr.lockRegister(ro); // only a read-only disk: no lease
      await mgr.lockAcquire(ro);
      expect(held()).toBe(0);
      await mgr.lockAcquire(dom([disk])); // virsh attach-disk
      await mgr.lockAcquire(dom([disk])); // the same disk again, under another target
      await mgr.lockRelease(dom([disk]), false); // libvirt undoes the second attach
      expect(leases()).toEqual([planPath(disk)]);
      await mgr.lockRelease(dom([disk]), false); // the real detach
      expect(held()).toBe(0);
    });

    it('a detach after an agent restart releases nothing: another disk of the domain may use the lease, and the log says so', async () => {
      await mgr.lockRegister(dom([disk]));
      await mgr.lockAcquire(dom([disk]));
      await mgr.lockAcquire(dom([disk])); // the same disk attached again, under another target
      const restarted = new DomainManager({ agent, config, store, log, control: () => undefined });
      await expect(restarted.lockRelease(dom([disk]), false)).resolves.toEqual({ released: 0, state: '' });
      expect(leases()).toEqual([planPath(disk)]);
      expect(log.lines.join('\n')).toMatch(/info vm2: detach of .*vm2\.qcow2: its lease\(s\) stay held until the domain stops \(its registered disk list is not known after an agent restart/);
    });

    it('a SUSPENDED event handled after a quick pause and resume (both through the plugin) releases nothing', async () => {
      await mgr.lockRegister(dom([disk]));
      await mgr.lockAcquire(dom([disk]));
      const { state } = await mgr.lockRelease(dom([disk]), true); // virsh suspend
      await mgr.lockAcquire(dom([disk]), state); // virsh resume, before the SUSPENDED event is handled
      await mgr.onLifecycle({ uuid: UUID, name: 'vm2', event: 'SUSPENDED', detail: 'PAUSED' });
      expect(leases()).toEqual([planPath(disk)]);
      expect(log.lines.join('\n')).toMatch(/debug vm2: SUSPENDED\/PAUSED: nothing to release, libvirt had the lock-driver plugin release its leases at the pause/);
    });

    it('a start with --paused takes no lease at its STARTED event (the plugin takes them when the CPUs start)', async () => {
      await mgr.lockRegister(dom([disk]));
      await mgr.onLifecycle({ uuid: UUID, name: 'vm2', event: 'STARTED', detail: 'BOOTED' });
      expect(held()).toBe(0);
    });

    it('a new run\'s registration releases what the last run held and this one does not use, and forgets its pause', async () => {
      await mgr.lockRegister(dom([disk, other]));
      await mgr.lockAcquire(dom([disk, other]));
      await mgr.lockRelease(dom([disk]), true);
      // the next run, without `other`, before the last run's STOPPED event
      await mgr.lockRegister(dom([disk]));
      expect(held()).toBe(0);
      expect(store.leases(UUID).filter((r) => !r.held)).toEqual([]);
      await mgr.lockAcquire(dom([disk]));
      expect(leases()).toEqual([planPath(disk)]);
    });
  });

  it('lock-driver plugin: a STOPPED event while the registered QEMU still runs is of an earlier run; after its exit it releases', async () => {
    const qemu: ChildProcess = spawn('sleep', ['60']);
    try {
      const domain = { uuid: UUID, name: 'vm2', pid: qemu.pid!, disks: [{ path: disk, readonly: false, shared: false }], leases: [] };
      await mgr.lockRegister(domain);
      await mgr.lockAcquire(domain);
      expect(held()).toBe(1);
      await mgr.onLifecycle({ uuid: UUID, name: 'vm2', event: 'STOPPED', detail: 'DESTROYED' });
      expect(held()).toBe(1);
      expect(log.lines.join('\n')).toMatch(/vm2: STOPPED\/DESTROYED is of an earlier run; it starts or runs again \(QEMU pid \d+\)/);
    } finally {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    }
    await mgr.onLifecycle({ uuid: UUID, name: 'vm2', event: 'STOPPED', detail: 'DESTROYED' });
    expect(held()).toBe(0);
  });
});
