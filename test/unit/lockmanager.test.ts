/**
 * The lock-driver plugin's requests (lock_register/acquire/release/inquire): what the protocol
 * accepts and refuses, and how libvirt's resource list becomes the same lease plan the domain
 * XML gives (src/libvirt/lockmanager.ts).
 */
import { createHash } from 'crypto';
import { parseRequest, ProtocolError } from '../../src/control/protocol';
import { domainFromLockManager, formatLockState } from '../../src/libvirt/lockmanager';
import { parseDomainXml } from '../../src/libvirt/domainxml';
import { LeasePlanError, md5hex, planLeases } from '../../src/libvirt/leaseplan';
import { HeldLease } from '../../src/agent/agent';
import { mapRequestError } from '../../src/control/server';
import { SANLK } from '../../src/ondisk';

const UUID = '3e0e4b7e-2a57-4d39-9e3a-1a2b3c4d5e6f';
const line = (o: object) => JSON.stringify({ v: 1, id: 1, ...o });
const domain = { uuid: UUID, name: 'vm1', pid: 4242, disks: [{ path: '/nfs/a.qcow2', readonly: false, shared: false }], leases: [] };

describe('lock-driver requests on the wire', () => {
  it('parses each call, folding the acquire\'s action into the domain', () => {
    expect(parseRequest(line({ op: 'lock_register', domain })).req).toEqual({ op: 'lock_register', domain });
    expect(parseRequest(line({ op: 'lock_acquire', domain, action: 'pause', state: 'x', timeoutMs: 85000 })).req)
      .toEqual({ op: 'lock_acquire', domain: { ...domain, action: 'pause' }, state: 'x', timeoutMs: 85000 });
    expect(parseRequest(line({ op: 'lock_release', domain, pause: true })).req).toEqual({ op: 'lock_release', domain, pause: true });
    expect(parseRequest(line({ op: 'lock_inquire', domain })).req).toEqual({ op: 'lock_inquire', domain });
  });

  it.each([
    [{ op: 'lock_register' }, /"domain" must be an object/],
    [{ op: 'lock_register', domain: { uuid: UUID, name: 'vm1', disks: [] } }, /"disks" and "leases" arrays/],
    [{ op: 'lock_register', domain: { ...domain, disks: [{ readonly: true }] } }, /"path" must be a non-empty string/],
    [{ op: 'lock_register', domain: { ...domain, disks: [{ path: '/a', shared: 'yes' }] } }, /"shared" must be true or false/],
    [{ op: 'lock_register', domain: { ...domain, leases: [{ key: 'k', path: '/l', offset: -1 }] } }, /"offset" must be a non-negative integer/],
    [{ op: 'lock_acquire', domain, action: 'reboot' }, /"action" must be one of poweroff, restart, pause, ignore/],
    [{ op: 'lock_acquire', domain, state: 7 }, /"state" must be a string/],
    [{ op: 'lock_release', domain }, /"pause" must be true or false/],
  ])('refuses %j with a clear error', (req, msg) => {
    expect(() => parseRequest(line(req))).toThrow(ProtocolError);
    expect(() => parseRequest(line(req))).toThrow(msg);
  });
});

describe('libvirt\'s resources → the lease plan', () => {
  const conf = { autoDiskLeases: true, diskLeaseDir: '/var/lib/libvirt/sanlock' };

  it('gives the plan the domain XML gives: disk leases by path, <lease>s, read-only and shared disks', () => {
    const xml = `<domain type='kvm'><name>vm1</name><uuid>${UUID.toUpperCase()}</uuid><on_lockfailure>pause</on_lockfailure><devices>
      <disk type='file' device='disk'><source file='/nfs/a.qcow2'/><target dev='vda'/></disk>
      <disk type='block' device='disk'><source dev='/dev/sdb'/><target dev='vdb'/><shareable/></disk>
      <disk type='file' device='disk'><source file='/nfs/base.img'/><target dev='vdc'/><readonly/></disk>
      <lease><lockspace>LS</lockspace><key>k1</key><target path='/nfs/leases' offset='1048576'/></lease>
    </devices></domain>`;
    const fromXml = planLeases(parseDomainXml(xml), conf);
    const fromLibvirt = planLeases(domainFromLockManager({
      uuid: UUID.toUpperCase(), name: 'vm1', action: 'pause',
      disks: [{ path: '/nfs/a.qcow2', readonly: false, shared: false }, { path: '/dev/sdb', readonly: false, shared: true }, { path: '/nfs/base.img', readonly: true, shared: false }],
      leases: [{ lockspace: 'LS', key: 'k1', path: '/nfs/leases', offset: 1048576 }],
    }), conf);
    const strip = (p: typeof fromXml) => p.entries.map(({ disk, ...e }) => ({ ...e, source: disk?.source }));
    expect(strip(fromLibvirt)).toEqual(strip(fromXml));
    expect(fromLibvirt.entries.map((e) => e.resource)).toEqual(['k1', md5hex('/nfs/a.qcow2'), md5hex('/dev/sdb')]);
    expect(fromLibvirt.entries.map((e) => e.mode)).toEqual(['exclusive', 'exclusive', 'shared']);
    expect(fromLibvirt.domain).toEqual({ name: 'vm1', uuid: UUID });
    expect(fromLibvirt.onLockFailure).toBe('pause');
  });

  it('refuses a disk path that is not UTF-8 (libvirt\'s raw bytes, decoded as the server decodes them), naming the disk and the remedy', () => {
    // '/nfs/caf\xe9.qcow2' in latin1: libvirt's sanlock driver names its lease MD5 of those bytes
    const raw = Buffer.concat([Buffer.from(`{"v":1,"id":1,"op":"lock_register","domain":{"uuid":"${UUID}","name":"vm1","disks":[{"path":"/nfs/caf`),
      Buffer.from([0xe9]), Buffer.from('.qcow2","readonly":false,"shared":false}],"leases":[]}}')]);
    const { req } = parseRequest(raw.toString('utf8'));
    let err: unknown;
    try {
      domainFromLockManager((req as { domain: Parameters<typeof domainFromLockManager>[0] }).domain);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).toMatch(/^vm1: disk path "\/nfs\/caf\uFFFD\.qcow2" contains bytes that are not UTF-8; .*rename the file .*to a UTF-8 path/);
    // answered as a refusal of the request, with its sentence, not as a fault of the agent
    expect(mapRequestError(err)).toMatchObject({ kind: 'policy', body: { rv: SANLK.EINVAL } });
  });

  it.each([
    ['lockspace', { lockspace: 'LS\uFFFD', key: 'k', path: '/l', offset: 0 }, /^vm1: <lease> lockspace "LS\uFFFD" \(key "k"\) contains bytes that are not UTF-8/],
    ['key', { lockspace: 'LS', key: 'k\uFFFD', path: '/l', offset: 0 }, /^vm1: <lease> key "k\uFFFD" contains bytes that are not UTF-8/],
    ['path', { lockspace: 'LS', key: 'k', path: '/l\uFFFD', offset: 0 }, /^vm1: <lease> path "\/l\uFFFD" \(key "k"\) contains bytes that are not UTF-8/],
  ])('refuses a <lease> %s that is not UTF-8', (_, lease, msg) => {
    expect(() => domainFromLockManager({ ...domain, leases: [lease] })).toThrow(msg);
  });

  it('a read-only disk that is not UTF-8 gets no lease, so it is not refused; a release checks nothing', () => {
    const iso = { path: '/isos/caf\uFFFD.iso', readonly: true, shared: false };
    expect(planLeases(domainFromLockManager({ ...domain, disks: [iso] }), conf).entries).toEqual([]);
    const disk = { path: '/nfs/caf\uFFFD.qcow2', readonly: false, shared: false };
    expect(() => domainFromLockManager({ ...domain, disks: [disk] })).toThrow(/not UTF-8/);
    expect(domainFromLockManager({ ...domain, disks: [disk] }, { checkUtf8: false }).disks).toHaveLength(1);
  });

  it('takes a UTF-8 path that is not ASCII: its lease is MD5 of its bytes, as libvirt\'s sanlock driver names it', () => {
    const path = '/nfs/café.qcow2';
    const plan = planLeases(domainFromLockManager({ ...domain, disks: [{ path, readonly: false, shared: false }] }), conf);
    expect(plan.entries.map((e) => e.resource)).toEqual([createHash('md5').update(Buffer.from(path, 'utf8')).digest('hex')]);
  });

  it('refuses a <lease> without a lockspace, as the XML path does', () => {
    expect(() => planLeases(domainFromLockManager({ ...domain, leases: [{ key: 'k', path: '/l', offset: 0 }] }), conf)).toThrow(LeasePlanError);
  });

  it('writes the lock state in sanlock\'s form, LOCKSPACE:RESOURCE:PATH:OFFSET:LVER per lease, safe inside libvirt\'s XML', () => {
    const h = (resource: string, path: string, lver: number) => ({ spec: { lockspace: 'LS', resource, path, offset: 0, mode: 'exclusive' }, token: { lver } }) as unknown as HeldLease;
    expect(formatLockState([h('r1', '/nfs/a', 3), h('r2', '/nfs/b:c d', 9)])).toBe('LS:r1:/nfs/a:0:3 LS:r2:/nfs/b\\:c\\ d:0:9');
    expect(formatLockState([h('r3', "/nfs/<a&b>'%\"", 1)])).toBe('LS:r3:/nfs/%3Ca%26b%3E%27%25%22:0:1');
    expect(formatLockState([])).toBe('');
  });
});
