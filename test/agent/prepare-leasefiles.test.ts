/**
 * The start gate's lease files (DomainManager.prepare): a file seen initialised is not checked
 * again on the next start, and when it was removed or blanked since, the acquire fails before
 * writing and prepare checks the files and tries again (real files, O_DIRECT, io_timeout 1).
 */
import { existsSync, mkdtempSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'fs';
import { join } from 'path';
import { Agent } from '../../src/agent/agent';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { defaultConfig } from '../../src/config/config';
import { systemClock } from '../../src/lease/clock';
import { DomainManager } from '../../src/libvirt/domains';
import { planLeases } from '../../src/libvirt/leaseplan';
import { parseDomainXml } from '../../src/libvirt/domainxml';
import { memoryLogger } from '../../src/log/logger';
import { DEFAULT_GEOMETRY } from '../../src/ondisk';
import { StateStore } from '../../src/state/statestore';

const LS = '__LIBVIRT__DISKS__';

describe('prepare: automatic lease files', () => {
  let dir: string;
  let agent: Agent;
  let mgr: DomainManager;
  let xml: string;
  let leaseFile: string;

  beforeAll(async () => {
    dir = mkdtempSync(join('/tmp', 'la-prep-')); // disk-backed: O_DIRECT is real
    const leases = join(dir, 'leases');
    const { mkdirSync } = await import('fs');
    mkdirSync(leases);
    await ensureLockspaceFile(join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    const log = memoryLogger();
    const store = new StateStore(join(dir, 'state.db'));
    const config = { ...defaultConfig(), autoDiskLeases: true, hostId: 1, diskLeaseDir: leases, requireLeaseForDisks: true, ioTimeout: 1, logLevel: 'debug' as const };
    agent = new Agent({ clock: systemClock, log, store, hostName: 'node-a', policy: { onLeaseFailure: async () => undefined } });
    agent.addLockspace({ name: LS, hostId: 1, path: join(dir, LS), offset: 0, ioTimeout: 1 });
    await agent.lockspaces.get(LS)!.waitJoined(30000);
    mgr = new DomainManager({ agent, config, store, log, control: () => undefined });
    const disk = join(dir, 'vm1.qcow2');
    writeFileSync(disk, '');
    xml = `<domain type='kvm'><name>vm1</name><uuid>6d0c1f56-0f1b-4d0e-9a53-2b1c3f7a9e01</uuid><memory>1024</memory>
      <devices><disk type='file' device='disk'><source file='${disk}'/><target dev='vda' bus='virtio'/></disk></devices></domain>`;
    const plan = planLeases(parseDomainXml(xml), config);
    expect(plan.entries).toHaveLength(1);
    leaseFile = plan.entries[0].path;
  }, 60000);
  afterAll(async () => {
    await agent.shutdown(true);
    rmSync(dir, { recursive: true, force: true });
  });

  const uuid = '6d0c1f56-0f1b-4d0e-9a53-2b1c3f7a9e01';

  it('creates the file at the first start and takes the lease; later starts reuse it', async () => {
    await expect(mgr.prepare(xml, 20000)).resolves.toEqual({ leases: 1, deferred: false });
    expect(existsSync(leaseFile)).toBe(true);
    expect(agent.inquire(uuid)).toHaveLength(1);
    await mgr.release(uuid, 'test');
    await expect(mgr.prepare(xml, 20000)).resolves.toEqual({ leases: 1, deferred: false });
    expect(agent.inquire(uuid)[0].token.lver).toBe(2);
    await mgr.release(uuid, 'test');
  });

  it('a lease file removed since it was seen is created again', async () => {
    unlinkSync(leaseFile);
    await expect(mgr.prepare(xml, 20000)).resolves.toEqual({ leases: 1, deferred: false });
    expect(agent.inquire(uuid)[0].token.lver).toBe(1); // a new file
    await mgr.release(uuid, 'test');
  });

  it('a lease file blanked since it was seen is refused as never initialised, after the check (nothing written)', async () => {
    unlinkSync(leaseFile);
    writeFileSync(leaseFile, '');
    truncateSync(leaseFile, DEFAULT_GEOMETRY.alignSize);
    await expect(mgr.prepare(xml, 20000)).rejects.toMatchObject({ rv: -223, message: expect.stringContaining('exists but was never initialised') });
    expect(agent.inquire(uuid)).toEqual([]);
  }, 30000);
});
