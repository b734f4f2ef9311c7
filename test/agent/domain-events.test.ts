/**
 * DomainManager with libvirt answering through a fake DomainControl (the live XML, the state,
 * the actions it is asked for): hot-plug and unplug followed after the fact with the hook, and
 * skipped for a domain the lock-driver plugin registered; a domain whose leases cannot be planned
 * at a resync, a resume or the start-up reconcile, which must not stop the others from being
 * checked and must get its lock-failure action; a plugin domain resumed behind libvirt's back;
 * on_lockfailure=restart of a persistent and of a transient domain.
 * Real files, O_DIRECT, io_timeout 1.
 */
import { ChildProcess, spawn } from 'child_process';
import { createHash } from 'crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { defaultConfig } from '../../src/config/config';
import { systemClock } from '../../src/lease/clock';
import { DomainControl, DomainManager } from '../../src/libvirt/domains';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';
const md5 = (s: string) => createHash('md5').update(s).digest('hex');
jest.setTimeout(60000);

/** libvirt as the manager sees it: what each domain's live XML and state are, and what it was asked to do. */
class FakeLibvirt implements DomainControl {
  readonly doms = new Map<string, { name: string; xml: string; state: string; transient?: boolean }>();
  readonly calls: string[] = [];
  readonly xmlReads: string[] = [];

  private get(uuid: string) {
    const d = this.doms.get(uuid);
    if (!d) throw Object.assign(new Error(`Domain not found: no domain with matching uuid '${uuid}'`), { code: 42 });
    return d;
  }
  async listDomains() {
    return [...this.doms].map(([uuid, d]) => ({ uuid, name: d.name, state: d.state }));
  }
  /** getXML fails for these (a libvirt error) */
  readonly xmlFails = new Set<string>();
  async getXML(uuid: string, opts?: { inactive?: boolean; secure?: boolean }) {
    this.xmlReads.push(uuid);
    if (opts) this.calls.push(`getXML ${this.get(uuid).name}${opts.inactive ? ' inactive' : ''}${opts.secure ? ' secure' : ''}`);
    if (this.xmlFails.has(uuid)) throw Object.assign(new Error('internal error: test'), { code: 1 });
    return this.get(uuid).xml;
  }
  async state(uuid: string) {
    return { stateName: this.get(uuid).state };
  }
  async suspend(uuid: string) {
    this.calls.push(`suspend ${this.get(uuid).name}`);
    this.get(uuid).state = 'PAUSED';
  }
  async resume(uuid: string) {
    this.calls.push(`resume ${this.get(uuid).name}`);
    this.get(uuid).state = 'RUNNING';
  }
  async destroy(uuid: string) {
    const d = this.get(uuid);
    this.calls.push(`destroy ${d.name}`);
    d.state = 'SHUTOFF';
    if (d.transient) this.doms.delete(uuid); // libvirt forgets a transient domain once it stops
  }
  async create(uuid: string) {
    const d = this.get(uuid);
    this.calls.push(`create ${d.name}`);
    d.state = 'RUNNING';
  }
  /** what createXML was given */
  readonly created: string[] = [];
  async createXML(xml: string) {
    const uuid = /<uuid>([^<]+)<\/uuid>/.exec(xml)![1];
    const name = /<name>([^<]+)<\/name>/.exec(xml)![1];
    this.calls.push(`createXML ${name}`);
    this.created.push(xml);
    this.doms.set(uuid, { name, xml, state: 'RUNNING', transient: true });
  }
}

describe('DomainManager with libvirt: hot-plug, unplannable domains, restart', () => {
  let dir: string;
  let agent: Agent;
  let mgr: DomainManager;
  let log: ReturnType<typeof memoryLogger>;
  let store: StateStore;
  let virt: FakeLibvirt;
  let config: ReturnType<typeof defaultConfig>;
  let n = 0;
  const leasePath = (disk: string) => join(dir, 'leases', md5(disk));
  const held = (uuid: string) => agent.inquire(uuid).map((h) => h.spec.path).sort();
  const text = () => log.lines.join('\n');

  /** A domain; its XML with the file disks given (vda, vdb, ...) and whatever `extra` adds to <devices>. */
  function domain(name: string, opts: { extra?: string; onLockFailure?: string } = {}) {
    const uuid = `6d0c1f56-0f1b-4d0e-9a53-${(++n).toString(16).padStart(12, '0')}`;
    const xml = (ds: string[], extra = opts.extra ?? '') => `<domain type='kvm'><name>${name}</name><uuid>${uuid}</uuid><memory>1024</memory>` +
      `${opts.onLockFailure ? `<on_lockfailure>${opts.onLockFailure}</on_lockfailure>` : ''}<devices>` +
      // as in live XML: each disk carries the alias its device events name
      ds.map((p, i) => `<disk type='file' device='disk'><source file='${p}'/><target dev='vd${String.fromCharCode(97 + i)}' bus='virtio'/><alias name='virtio-disk${i}'/></disk>`).join('') +
      `${extra}</devices></domain>`;
    return { uuid, name, xml };
  }
  function disk(name: string): string {
    const p = join(dir, name);
    writeFileSync(p, '');
    return p;
  }
  /** libvirt lists it with this live XML and state. */
  const live = (d: { uuid: string; name: string }, xml: string, state = 'RUNNING', transient = false) => virt.doms.set(d.uuid, { name: d.name, xml, state, transient });

  beforeAll(async () => {
    dir = mkdtempSync(join('/tmp', 'la-domevents-'));
    mkdirSync(join(dir, 'leases'));
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    log = memoryLogger();
    store = new StateStore(join(dir, 'state.db'));
    config = { ...defaultConfig(), autoDiskLeases: true, hostId: 1, diskLeaseDir: join(dir, 'leases'), requireLeaseForDisks: true, ioTimeout: 1, killGraceSeconds: 1 };
    agent = new Agent({ clock: systemClock, log, store, hostName: 'node-a', policy: { onLeaseFailure: async () => undefined } });
    agent.addLockspace({ name: LS, hostId: 1, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    await agent.lockspaces.get(LS)!.waitJoined(30000);
    virt = new FakeLibvirt();
    mgr = new DomainManager({ agent, config, store, log, control: () => virt, qemuRunDir: join(dir, 'run') });
  }, 60000);
  afterAll(async () => {
    await agent.shutdown(true);
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    virt.doms.clear();
    virt.calls.length = 0;
    virt.xmlReads.length = 0;
  });

  describe('hot-plug with the hook: followed after the fact through device events', () => {
    it('an attached disk gets its lease, a detached one gives its lease up; the other disk keeps its lease throughout', async () => {
      const a = disk('hp-a.img');
      const b = disk('hp-b.img');
      const d = domain('vm-hp');
      await mgr.prepare(d.xml([a]), 20000);
      live(d, d.xml([a, b]));
      await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk1' });
      expect(held(d.uuid)).toEqual([leasePath(a), leasePath(b)].sort());
      expect(text()).toMatch(/vm-hp: device virtio-disk1 hot-plugged: took 1 lease\(s\) after the fact/);

      live(d, d.xml([a]));
      await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'removed', alias: 'virtio-disk1' });
      expect(held(d.uuid)).toEqual([leasePath(a)]);
      expect(text()).toMatch(/vm-hp: device virtio-disk1 unplugged: released 1 lease\(s\) it no longer uses/);
      expect(store.leases(d.uuid).map((r) => r.resource)).toEqual([md5(a)]);
      expect(virt.calls).toEqual([]);
      await mgr.release(d.uuid, 'test');
    });

    it('an attached disk whose lease is held elsewhere is refused after the fact: the domain\'s on_lockfailure (pause) follows, naming the holder', async () => {
      const a = disk('hpr-a.img');
      const busy = disk('hpr-busy.img');
      const other = domain('vm-holder');
      await mgr.prepare(other.xml([busy]), 20000);
      const d = domain('vm-hpr', { onLockFailure: 'pause' });
      await mgr.prepare(d.xml([a]), 20000);
      live(d, d.xml([a, busy]));
      await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk1' });
      await waitUntil(() => virt.calls.includes('suspend vm-hpr'));
      expect(text()).toMatch(/lease lost for vm-hpr \(.*\): device virtio-disk1 hot-plugged, and its lease is refused \(after the fact\): .* is already leased on this host by vm-holder .*; on_lockfailure=pause: pausing it/);
      expect(held(d.uuid)).toEqual([leasePath(a)]); // what it held before stays held (until SUSPENDED releases it)
      expect(held(other.uuid)).toEqual([leasePath(busy)]);
      await mgr.release(d.uuid, 'test');
      await mgr.release(other.uuid, 'test');
    });

    it('an attached disk whose lease cannot be planned (a volume, no resolver with the hook) is a lease failure, though the domain holds other leases', async () => {
      const a = disk('hpv-a.img');
      const d = domain('vm-hpv', { onLockFailure: 'pause' });
      await mgr.prepare(d.xml([a]), 20000);
      live(d, d.xml([a], "<disk type='volume' device='disk'><source pool='nfspool' volume='hp.qcow2'/><target dev='vdz' bus='virtio'/><alias name='virtio-disk9'/></disk>"));
      await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk9' });
      await waitUntil(() => virt.calls.includes('suspend vm-hpv'));
      expect(text()).toMatch(/lease lost for vm-hpv \(.*\): device virtio-disk9 hot-plugged, and its lease is refused \(after the fact\): .*hp\.qcow2.*; on_lockfailure=pause: pausing it/);
      await mgr.release(d.uuid, 'test');
    });

    /** A domain started with disk a, paused (its leases released at the pause); its live XML then has disk b too. */
    const pausedWithAttach = async (tag: string) => {
      const a = disk(`${tag}-a.img`);
      const b = disk(`${tag}-b.img`);
      const d = domain(`vm-${tag}`);
      await mgr.prepare(d.xml([a]), 20000);
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'SUSPENDED', detail: 'PAUSED' });
      live(d, d.xml([a, b]), 'PAUSED');
      return { a, b, d };
    };

    it('with libvirt not telling the state, a domain paused here (leases released at its pause) takes nothing at the attach', async () => {
      const { d } = await pausedWithAttach('hpu');
      const state = virt.state;
      virt.state = () => Promise.reject(new Error('libvirt timed out'));
      try {
        await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk1' });
      } finally {
        virt.state = state;
      }
      expect(held(d.uuid)).toEqual([]);
      await mgr.release(d.uuid, 'test');
    });

    it('a paused domain takes nothing at the attach (its resume takes the whole plan)', async () => {
      const { a, b, d } = await pausedWithAttach('hpp');
      await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk1' });
      expect(held(d.uuid)).toEqual([]);
      live(d, d.xml([a, b]));
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' });
      expect(held(d.uuid)).toEqual([leasePath(a), leasePath(b)].sort());
      await mgr.release(d.uuid, 'test');
    });

    it('a domain started through the lock-driver plugin is left alone: libvirt had the plugin take and release at the attach and detach', async () => {
      const a = disk('hpl-a.img');
      const b = disk('hpl-b.img');
      const d = domain('vm-hpl');
      const qemu: ChildProcess = spawn('sleep', ['60']);
      try {
        const pd = { uuid: d.uuid, name: d.name, pid: qemu.pid!, disks: [{ path: a, readonly: false, shared: false }], leases: [] };
        await mgr.lockRegister(pd);
        await mgr.lockAcquire(pd);
        live(d, d.xml([a, b]));
        await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk1' });
        live(d, d.xml([]));
        await mgr.onDevice({ uuid: d.uuid, name: d.name, action: 'removed', alias: 'virtio-disk0' });
        expect(held(d.uuid)).toEqual([leasePath(a)]);
        expect(virt.xmlReads).toEqual([]);
      } finally {
        qemu.kill('SIGKILL');
        await new Promise((r) => qemu.once('exit', r));
      }
      await mgr.release(d.uuid, 'test');
    });
  });

  describe('a domain whose leases cannot be planned', () => {
    // auto leases on and no storage-pool resolver (the hook's case): a volume that needs a lease cannot be planned
    const volume = "<disk type='volume' device='disk'><source pool='nfspool' volume='v.qcow2'/><target dev='vdz' bus='virtio'/></disk>";

    it('at a resync: the running domains after it are still checked, and it gets its lock-failure action with the reason and the remedy', async () => {
      const bad = domain('vm-bad', { extra: volume, onLockFailure: 'pause' });
      const g = disk('good.img');
      const good = domain('vm-good');
      live(bad, bad.xml([]));
      live(good, good.xml([g]));
      await mgr.onResync([{ uuid: bad.uuid, name: bad.name, state: 'RUNNING' }, { uuid: good.uuid, name: good.name, state: 'RUNNING' }]);
      expect(held(good.uuid)).toEqual([leasePath(g)]);
      await waitUntil(() => virt.calls.includes('suspend vm-bad'));
      expect(text()).toMatch(/lease lost for vm-bad \(.*\): it runs without its leases \(running at resync\): .*volume 'v\.qcow2' in pool 'nfspool' needs a lease.*; its lease plan cannot be made, so libvirt would not start it: correct its XML.*; on_lockfailure=pause: pausing it/);
      await mgr.release(good.uuid, 'test');
    });

    it('at a resume: it is paused again and its lock-failure action follows (poweroff)', async () => {
      const a = disk('res-a.img');
      const d = domain('vm-res', { onLockFailure: 'poweroff' });
      await mgr.prepare(d.xml([a]), 20000);
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'SUSPENDED', detail: 'PAUSED' });
      expect(held(d.uuid)).toEqual([]);
      // resumed with a <lease> that names no lockspace (BAD_LEASE): libvirt's driver would refuse the resume
      live(d, d.xml([a], "<lease><key>k</key><target path='/nowhere'/></lease>"));
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' });
      expect(virt.calls).toEqual(['suspend vm-res', 'destroy vm-res']);
      expect(text()).toMatch(/vm-res resumed but its leases cannot be taken: <lease> #1 \(key 'k'\) has no <lockspace>.*correct its XML.*; pausing it again/);
      expect(held(d.uuid)).toEqual([]);
      await mgr.release(d.uuid, 'test');
    });

    it('at the start-up reconcile: libvirt cannot tell (nothing is released on its word), and the log names the domain and the reason', async () => {
      const bad = domain('vm-bad2', { extra: volume });
      const g = disk('good2.img');
      const good = domain('vm-good2');
      live(good, good.xml([g]));
      expect([...(await mgr.runningLeaseOwners())!.keys()]).toEqual([`${LS}:${md5(g)}`]);
      live(bad, bad.xml([]));
      await expect(mgr.runningLeaseOwners()).resolves.toBeUndefined();
      expect(text()).toMatch(/start-up reconcile: the leases of running domain vm-bad2 \(.*\) cannot be told: .*needs a lease.*; no lease found held here is released, as it may be this domain's; its lease plan cannot be made/);
    });
  });

  describe('a domain whose XML cannot be planned here but that holds its leases (a volume libvirt resolved for the plugin)', () => {
    const volume = "<disk type='volume' device='disk'><source pool='nfspool' volume='v.qcow2'/><target dev='vda' bus='virtio'/><alias name='virtio-disk0'/></disk>";

    it('is not acted on at a resume, a resync or a hot-plug, also after an agent restart forgot the plugin registered it', async () => {
      const v = disk('plugin-vol.img'); // the path libvirt resolved the volume to, as the plugin sends it
      const d = domain('vm-pvol', { extra: volume, onLockFailure: 'poweroff' });
      const qemu: ChildProcess = spawn('sleep', ['60']);
      try {
        const pd = { uuid: d.uuid, name: d.name, pid: qemu.pid!, disks: [{ path: v, readonly: false, shared: false }], leases: [] };
        await mgr.lockRegister(pd);
        await mgr.lockAcquire(pd);
        live(d, d.xml([]));
        await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' }); // the plugin took them
        // An agent restarted: a manager that never saw the registration, over the same leases.
        const fresh = new DomainManager({ agent, config, store, log, control: () => virt, qemuRunDir: join(dir, 'run') });
        await fresh.onResync([{ uuid: d.uuid, name: d.name, state: 'RUNNING' }]);
        // a disk event, answered by the plugin inside libvirt (the restarted agent knows it from the state database)
        await fresh.onDevice({ uuid: d.uuid, name: d.name, action: 'added', alias: 'virtio-disk0' });
        await fresh.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' });
        await new Promise((r) => setTimeout(r, 200)); // a lock-failure action is started without being awaited
        expect(virt.calls).toEqual([]);
        expect(held(d.uuid)).toEqual([leasePath(v)]);
        expect(text()).toMatch(/vm-pvol \(running at resync\): its lease plan cannot be made from its XML \(.*nfspool.*\); the 1 lease\(s\) it holds stay held/);
        expect(text()).not.toMatch(/lease lost for vm-pvol/);
      } finally {
        qemu.kill('SIGKILL');
        await new Promise((r) => qemu.once('exit', r));
      }
      await mgr.release(d.uuid, 'test');
    });
  });

  it('lock-driver plugin: libvirt\'s fake reboot re-lists every registered resource without a state: nothing taken or added (a later detach releases), also after an agent restart', async () => {
    const qemu = spawn('sleep', ['60']);
    try {
      const [a, b, c] = ['fr-a.img', 'fr-b.img', 'fr-c.img'].map(disk);
      const uuid = '6d0c1f56-0f1b-4d0e-9a53-2b1c3f7a9e77';
      const dom = (disks: string[]) => ({ uuid, name: 'vm-fr', pid: qemu.pid!, disks: disks.map((p) => ({ path: p, readonly: false, shared: false })), leases: [] });
      await mgr.lockRegister(dom([a, b, c]));
      await mgr.lockAcquire(dom([a, b, c])); // the start
      await mgr.lockAcquire(dom([a, b, c])); // a fake reboot: StartCPUs with no lock state
      await mgr.lockRelease(dom([c]), false); // virsh detach-disk c
      expect(held(uuid)).toEqual([leasePath(a), leasePath(b)].sort());
      // An agent restarted: a manager that never saw the registration.
      const again = new DomainManager({ agent, config, store, log, control: () => virt, qemuRunDir: join(dir, 'run') });
      await expect(again.lockAcquire(dom([a, b]))).resolves.toMatchObject({ leases: 2 });
      expect(held(uuid)).toEqual([leasePath(a), leasePath(b)].sort());
      // One resource listed: a fake reboot and an attach of the same disk look alike. After a
      // restart it goes through (a refusal left the rebooting guest paused), and a detach then
      // releases nothing (the registered list is not known): the lease stays until it stops.
      await expect(again.lockAcquire(dom([a]))).resolves.toMatchObject({ leases: 1 });
      await again.lockRelease(dom([a]), false);
      expect(held(uuid)).toEqual([leasePath(a), leasePath(b)].sort());
      await agent.release({ uuid });
    } finally {
      qemu.kill('SIGKILL');
    }
  });

  describe('lock-driver plugin: a RESUMED libvirt made no lock call for (QEMU resumed behind its back: qemu-monitor-command cont)', () => {
    let qemu: ChildProcess;
    beforeEach(() => { qemu = spawn('sleep', ['60']); });
    afterEach(async () => {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    });

    /** A domain started through the plugin and paused by libvirt (the plugin released its lease); libvirt lists it `state` with its live XML. */
    async function pausedByPlugin(tag: string, state: string, onLockFailure?: string) {
      const a = disk(`${tag}-a.img`);
      const d = domain(`vm-${tag}`, { onLockFailure });
      const pd = { uuid: d.uuid, name: d.name, pid: qemu.pid!, disks: [{ path: a, readonly: false, shared: false }], leases: [] };
      await mgr.lockRegister(pd);
      await mgr.lockAcquire(pd);
      const lver = agent.inquire(d.uuid)[0].token.lver;
      await mgr.lockRelease(pd, true);
      expect(held(d.uuid)).toEqual([]);
      live(d, d.xml([a]), state);
      return { a, d, pd, lver };
    }
    const resumed = (d: { uuid: string; name: string }) => mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' });

    it('takes its leases after the fact when libvirt says it runs, with the lver its pause kept, watching its QEMU', async () => {
      const { a, d, lver } = await pausedByPlugin('prc', 'RUNNING');
      await resumed(d);
      expect(held(d.uuid)).toEqual([leasePath(a)]);
      expect(agent.inquire(d.uuid)[0].token.lver).toBeGreaterThan(lver);
      expect(store.ownerProcess(d.uuid)).toMatchObject({ pid: qemu.pid, watched: true });
      expect(text()).toMatch(/warning vm-prc resumed without a lock-driver call \(QEMU resumed behind libvirt's back\?\): taking its leases after the fact/);
      expect(virt.calls).toEqual([]);
      // The RESUMED of a resume libvirt made through the plugin finds them held: nothing more.
      await resumed(d);
      expect(held(d.uuid)).toEqual([leasePath(a)]);
      await mgr.release(d.uuid, 'test');
    });

    it('a stale lease (another domain had the disk since the pause) pauses it again and keeps it paused', async () => {
      const { a, d } = await pausedByPlugin('prs', 'RUNNING', 'pause');
      const other = domain('vm-prs-other');
      await mgr.prepare(other.xml([a]), 20000); // took the disk while vm-prs was paused...
      await mgr.release(other.uuid, 'test'); // ...and let it go: its lver moved on
      await resumed(d);
      expect(virt.calls).toEqual(['suspend vm-prs']);
      expect(held(d.uuid)).toEqual([]);
      expect(text()).toMatch(/vm-prs resumed but its leases cannot be taken: .*; pausing it again/);
      expect(text()).toMatch(/vm-prs stays paused: stale lease/);
      await mgr.release(d.uuid, 'test');
    });

    it('takes nothing when libvirt lists it paused again, or cannot tell its state (a late RESUMED must not undo a pause)', async () => {
      const { d } = await pausedByPlugin('prp', 'PAUSED');
      await resumed(d);
      expect(held(d.uuid)).toEqual([]);
      const state = virt.state;
      virt.state = () => Promise.reject(new Error('libvirt timed out'));
      try {
        virt.doms.get(d.uuid)!.state = 'RUNNING';
        await resumed(d);
      } finally {
        virt.state = state;
      }
      expect(held(d.uuid)).toEqual([]);
      expect(virt.calls).toEqual([]);
      await mgr.release(d.uuid, 'test');
    });

    it('after an agent restart, an XML the agent cannot plan (a volume only libvirt resolves) takes nothing and acts on nothing: a warning says so', async () => {
      const d = domain('vm-prv', { extra: "<disk type='volume' device='disk'><source pool='nfspool' volume='v.qcow2'/><target dev='vda' bus='virtio'/></disk>", onLockFailure: 'poweroff' });
      const pd = { uuid: d.uuid, name: d.name, pid: qemu.pid!, disks: [{ path: disk('prv.img'), readonly: false, shared: false }], leases: [] };
      await mgr.lockRegister(pd);
      await mgr.lockAcquire(pd);
      await mgr.lockRelease(pd, true);
      live(d, d.xml([]), 'RUNNING');
      const fresh = new DomainManager({ agent, config, store, log, control: () => virt, qemuRunDir: join(dir, 'run') });
      await fresh.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' });
      await new Promise((r) => setTimeout(r, 200)); // a lock-failure action is started without being awaited
      expect(virt.calls).toEqual([]);
      expect(held(d.uuid)).toEqual([]);
      expect(text()).toMatch(/warning vm-prv: RESUMED\/UNPAUSED: its lease plan cannot be made from its XML \(.*nfspool.*\); the 0 lease\(s\) it holds stay as they are, none is taken/);
      await mgr.release(d.uuid, 'test');
    });

    it('takes nothing when a pause call came while libvirt was telling its state (the answer "running" is older than the pause)', async () => {
      const { d, pd } = await pausedByPlugin('prr', 'RUNNING');
      let open!: () => void;
      const gate = new Promise<void>((r) => { open = r; });
      let asked!: () => void;
      const askedP = new Promise<void>((r) => { asked = r; });
      const state = virt.state.bind(virt);
      virt.state = async (u) => { const s = await state(u); asked(); await gate; return s; };
      try {
        const ev = resumed(d);
        await Promise.race([askedP, ev]);
        await mgr.lockRelease(pd, true); // libvirt pauses it (again) meanwhile
        open();
        await ev;
      } finally {
        virt.state = state;
      }
      expect(held(d.uuid)).toEqual([]);
      await mgr.release(d.uuid, 'test');
    });
  });

  describe('events newer than what they race with (a resync\'s list, a new run\'s start)', () => {
    /** getXML of `uuid` waits until the returned function is called (a slow libvirt). */
    function slowXml(uuid?: string): () => void {
      let open!: () => void;
      const gate = new Promise<void>((r) => { open = r; });
      const orig = virt.getXML.bind(virt);
      virt.getXML = async (u, o) => { if (!uuid || u === uuid) await gate; return orig(u, o); };
      return () => { virt.getXML = orig; open(); };
    }

    /** Two running domains started through the hook, each holding its disk's lease. */
    async function twoRunning(p: string) {
      const a = domain(`vm-${p}a`);
      const x = domain(`vm-${p}x`);
      for (const d of [a, x]) {
        live(d, d.xml([disk(`${p}-${d.name}.img`)]));
        await mgr.prepare(virt.doms.get(d.uuid)!.xml, 20000);
      }
      return { a, x };
    }

    it('a resync does not release a domain its list shows paused but that was resumed since (its RESUMED handled first)', async () => {
      const { a, x } = await twoRunning('r');
      virt.doms.get(a.uuid)!.state = 'PAUSED';
      virt.doms.get(x.uuid)!.state = 'PAUSED';
      const listedAt = performance.now();
      const list = (await virt.listDomains()).map((d) => ({ ...d, reason: 'USER' }));
      const open = slowXml(a.uuid); // a's RESUMED keeps the resync busy
      virt.doms.get(a.uuid)!.state = 'RUNNING';
      const evA = mgr.onLifecycle({ uuid: a.uuid, name: a.name, event: 'RESUMED', detail: 'UNPAUSED' });
      const resync = mgr.onResync(list, listedAt);
      virt.doms.get(x.uuid)!.state = 'RUNNING';
      await mgr.onLifecycle({ uuid: x.uuid, name: x.name, event: 'RESUMED', detail: 'UNPAUSED' });
      open();
      await Promise.all([evA, resync]);
      expect(agent.inquire(x.uuid)).toHaveLength(1);
      for (const d of [a, x]) await mgr.release(d.uuid, 'test over');
    });

    it('a resync does not take leases again for a domain its list shows running but that stopped since', async () => {
      const { a, x } = await twoRunning('s');
      const open = slowXml(a.uuid);
      const listedAt = performance.now();
      const resync = mgr.onResync(await virt.listDomains(), listedAt);
      virt.doms.get(x.uuid)!.state = 'SHUTOFF';
      await mgr.release(x.uuid, 'libvirt stopped it');
      await mgr.onLifecycle({ uuid: x.uuid, name: x.name, event: 'STOPPED', detail: 'SHUTDOWN' });
      open();
      await resync;
      expect(agent.inquire(x.uuid)).toEqual([]);
      await mgr.release(a.uuid, 'test over');
    });

    it('events of a run before a new start (queued behind its prepare, or received before it) leave the new run\'s leases alone', async () => {
      const d = domain('vm-old');
      live(d, d.xml([disk('old.img')]));
      const xml = virt.doms.get(d.uuid)!.xml;
      await mgr.prepare(xml, 20000);
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'SUSPENDED', detail: 'PAUSED' });
      const open = slowXml();
      const ev = [
        mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'RESUMED', detail: 'UNPAUSED' }), // its getXML is slow
        mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'SUSPENDED', detail: 'PAUSED' }),
      ];
      await mgr.release(d.uuid, 'libvirt stopped it');
      ev.push(mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'STOPPED', detail: 'DESTROYED' }));
      const receivedBefore = performance.now();
      await new Promise((r) => setTimeout(r, 20));
      await mgr.prepare(xml, 20000); // the new run
      open();
      await Promise.all(ev);
      expect(agent.inquire(d.uuid)).toHaveLength(1);
      // A STOPPED the connection held back (received before the start, delivered after it).
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'STOPPED', detail: 'DESTROYED', receivedAt: receivedBefore });
      expect(agent.inquire(d.uuid)).toHaveLength(1);
      expect(text()).toMatch(/vm-old: SUSPENDED\/PAUSED is of an earlier run; a start began since/);
      await mgr.release(d.uuid, 'test over');
    });
  });

  describe('a `migrate begin` with no start of its own (hook): a plain start just after it', () => {
    it('passes the gate as an incoming migration, but its STARTED/BOOTED takes the leases or applies on_lockfailure (pause), naming the holder', async () => {
      const a = disk('mig-a.img');
      const src = domain('vm-mig-elsewhere'); // stands for the migration's source, still running
      await mgr.prepare(src.xml([a]), 20000);
      const d = domain('vm-mig', { onLockFailure: 'pause' });
      live(d, d.xml([a]));
      await mgr.migrateBegin(d.xml([a])); // the migration then failed before its start here
      expect(await mgr.prepare(d.xml([a]), 20000)).toEqual({ leases: 1, deferred: true }); // the operator's `virsh start`
      await mgr.onLifecycle({ uuid: d.uuid, name: d.name, event: 'STARTED', detail: 'BOOTED' });
      await waitUntil(() => virt.calls.includes('suspend vm-mig'));
      expect(text()).toMatch(/vm-mig: STARTED\/BOOTED, not an incoming migration as its start gate assumed .*taking them now/);
      expect(text()).toMatch(/lease lost for vm-mig \(.*\): it runs without its leases \(STARTED\/BOOTED\): .*already leased on this host by vm-mig-elsewhere/);
      expect(held(d.uuid)).toEqual([]);
      expect(held(src.uuid)).toEqual([leasePath(a)]);
      await mgr.release(src.uuid, 'test');
      // Its next start is a start again: the gate waits for the leases.
      await mgr.release(d.uuid, 'test');
      expect(await mgr.prepare(d.xml([a]), 20000)).toEqual({ leases: 1, deferred: false });
      expect(held(d.uuid)).toEqual([leasePath(a)]);
      await mgr.release(d.uuid, 'test');
    });
  });

  describe('on_lockfailure=ignore: not supported, as by libvirt\'s sanlock driver', () => {
    it('refuses the start (hook and plugin) and an incoming migration, naming the element and what to use; nothing is taken', async () => {
      const a = disk('ign-a.img');
      const d = domain('vm-ign', { onLockFailure: 'ignore' });
      const refusal = /vm-ign: <on_lockfailure>ignore<\/on_lockfailure> is not supported .*Use pause, poweroff or restart, or remove the element/;
      await expect(mgr.prepare(d.xml([a]), 20000)).rejects.toMatchObject({ code: 'UNSUPPORTED_ACTION', message: expect.stringMatching(refusal) });
      await expect(mgr.migrateBegin(d.xml([a]))).rejects.toThrow(refusal);
      const pd = { uuid: d.uuid, name: d.name, pid: process.pid, disks: [{ path: a, readonly: false, shared: false }], leases: [], action: 'ignore' as const };
      await expect(mgr.lockRegister(pd)).rejects.toThrow(refusal);
      expect(held(d.uuid)).toEqual([]);
    });

    it('one running already with it (adopted) gets lease_failure_action at a loss, never "left running"', async () => {
      const d = domain('vm-ign-run', { onLockFailure: 'ignore' });
      live(d, d.xml([]));
      config.leaseFailureAction = 'poweroff';
      try {
        await mgr.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'ignore' });
      } finally {
        config.leaseFailureAction = 'kill';
      }
      expect(virt.calls).toEqual(['destroy vm-ign-run']);
      expect(text()).toMatch(/lease lost for vm-ign-run \(.*\): test; on_lockfailure=ignore is not honoured \(it would run on without its leases\): applying lease_failure_action = poweroff instead/);
      expect(text()).not.toMatch(/leaving it running/);
    });
  });

  describe('on_lockfailure=restart', () => {
    it('a persistent domain is destroyed and started again from its definition', async () => {
      const d = domain('vm-rs');
      live(d, d.xml([]));
      await mgr.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'restart' });
      await waitUntil(() => virt.calls.includes('create vm-rs'));
      expect(virt.calls).toEqual(['getXML vm-rs inactive secure', 'destroy vm-rs', 'create vm-rs']);
      expect(text()).toMatch(/restarted vm-rs \(/);
    });

    it('a transient domain is started again from the configuration read before its destroy, as libvirt\'s sanlock helper does', async () => {
      const d = domain('vm-rst');
      live(d, d.xml([]), 'RUNNING', true);
      await mgr.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'restart' });
      await waitUntil(() => virt.calls.includes('createXML vm-rst'));
      expect(virt.calls).toEqual(['getXML vm-rst inactive secure', 'destroy vm-rst', 'createXML vm-rst']); // create: no such domain
      expect(virt.created).toEqual([d.xml([])]);
      expect(virt.doms.get(d.uuid)).toMatchObject({ state: 'RUNNING', transient: true });
      expect(text()).toMatch(/restarted vm-rst \(.*\) from its configuration \(a transient domain\)/);
    });

    it('waits for a lockspace of its leases to join again before starting it (not in the start\'s hook), then starts it', async () => {
      const LS2 = 'LSRESTART';
      const lsFile = join(dir, LS2); // not there yet: the lockspace cannot join
      agent.addLockspace({ name: LS2, hostId: 1, path: lsFile, offset: 0, ioTimeout: 1 });
      try {
        const d = domain('vm-rsw', { extra: `<lease><lockspace>${LS2}</lockspace><key>k-rsw</key><target path='${join(dir, 'k-rsw')}' offset='0'/></lease>` });
        live(d, d.xml([]));
        // The action is done once the domain is down; its start waits apart.
        await mgr.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'restart' });
        await waitUntil(() => /restart of vm-rsw \(.*\) waits for lockspace LSRESTART to join \((joining|retrying)\) before starting it/.test(text()));
        await new Promise((r) => setTimeout(r, 300));
        expect(virt.calls).toEqual(['getXML vm-rsw inactive secure', 'destroy vm-rsw']);
        await ensureLockspaceFile(lsFile, LS2, DEFAULT_GEOMETRY, 1);
        await waitUntil(() => virt.calls.includes('create vm-rsw'), 30000);
        expect(agent.lockspaces.get(LS2)!.state).toBe('joined');
        expect(virt.calls).toEqual(['getXML vm-rsw inactive secure', 'destroy vm-rsw', 'create vm-rsw']);
      } finally {
        await agent.removeLockspace(LS2);
      }
    });

    it('gives up when a lockspace of its leases does not join within restartJoinWaitMs: shut off, and the log says what to do', async () => {
      const LS3 = 'LSNEVER';
      agent.addLockspace({ name: LS3, hostId: 1, path: join(dir, LS3), offset: 0, ioTimeout: 1 });
      try {
        const m = new DomainManager({ agent, config, store, log, control: () => virt, qemuRunDir: join(dir, 'run'), restartJoinWaitMs: 300 });
        const d = domain('vm-rsg', { extra: `<lease><lockspace>${LS3}</lockspace><key>k-rsg</key><target path='${join(dir, 'k-rsg')}' offset='0'/></lease>` });
        live(d, d.xml([]));
        await m.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'restart' });
        await waitUntil(() => /restart of vm-rsg .* did not join/.test(text()));
        expect(virt.calls).toEqual(['getXML vm-rsg inactive secure', 'destroy vm-rsg']);
        expect(text()).toMatch(/restart of vm-rsg \(.*\): lockspace LSNEVER did not join within 0.3 s \(.*\); it stays shut off\. Start it again once lockagent status shows the lockspace joined/);
      } finally {
        await agent.removeLockspace(LS3);
      }
    });

    it('not started again when the operator acted during the wait: started it, or undefined it', async () => {
      const LS4 = 'LSOPERATOR';
      const lsFile = join(dir, LS4);
      agent.addLockspace({ name: LS4, hostId: 1, path: lsFile, offset: 0, ioTimeout: 1 });
      try {
        const lease = (k: string) => `<lease><lockspace>${LS4}</lockspace><key>${k}</key><target path='${join(dir, k)}' offset='0'/></lease>`;
        const started = domain('vm-ops', { extra: lease('k-ops') });
        const undefined_ = domain('vm-opu', { extra: lease('k-opu') });
        live(started, started.xml([]));
        live(undefined_, undefined_.xml([]));
        await mgr.onLeaseFailure({ uuid: started.uuid, name: started.name, reason: 'test', action: 'restart' });
        await mgr.onLeaseFailure({ uuid: undefined_.uuid, name: undefined_.name, reason: 'test', action: 'restart' });
        await waitUntil(() => /restart of vm-opu .* waits for lockspace/.test(text()));
        // Meanwhile: the operator starts one (its hook's prepare, refused here: the lockspace is not joined)...
        await expect(mgr.prepare(started.xml([]), 200)).rejects.toBeDefined();
        // ... and undefines the other.
        virt.doms.delete(undefined_.uuid);
        await ensureLockspaceFile(lsFile, LS4, DEFAULT_GEOMETRY, 1);
        await waitUntil(() => /restart of vm-ops .*: it was started again meanwhile/.test(text()) && /restart of vm-opu .*: it was undefined meanwhile; not started again/.test(text()), 30000);
        expect(virt.calls.filter((c) => /^create/.test(c))).toEqual([]);
      } finally {
        await agent.removeLockspace(LS4);
      }
    });

    it('a transient domain whose configuration cannot be read is still destroyed; that it stays shut off is logged, with what to do', async () => {
      const d = domain('vm-rsx');
      live(d, d.xml([]), 'RUNNING', true);
      virt.xmlFails.add(d.uuid);
      await mgr.onLeaseFailure({ uuid: d.uuid, name: d.name, reason: 'test', action: 'restart' });
      expect(virt.calls).toEqual(['getXML vm-rsx inactive secure', 'destroy vm-rsx']);
      expect(virt.doms.has(d.uuid)).toBe(false);
      expect(text()).toMatch(/restart of vm-rsx \(.*\): its configuration could not be read before the destroy \(internal error: test\)/);
      expect(text()).toMatch(/restart of vm-rsx \(.*\): it is gone since the destroy \(a transient domain\) and its configuration could not be read before it: it stays shut off\. Start it again with virsh create/);
    });
  });
});

async function waitUntil(cond: () => boolean, ms = 10000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
