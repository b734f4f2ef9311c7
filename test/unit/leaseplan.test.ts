import { readFileSync } from 'fs';
import { join } from 'path';
import { DISKS_LOCKSPACE } from '../../src/config/config';
import { DomainInfo, parseDomainXml } from '../../src/libvirt/domainxml';
import {
  AUTO_DISK_LOCKSPACE, DEFAULT_DISK_LEASE_DIR, LEASE_REQUIRED_MESSAGE, LeaseEntry, LeasePlanError, md5hex, planLeases,
  PlanConfig, SkipReason, toSanlockResource, VolumeResolver,
} from '../../src/libvirt/leaseplan';
import { formatSanlockResource } from '../../src/config/sanlockargs';
import { parseSanlockResource } from '../helpers/resourcestring';

const FIX = join(__dirname, '..', 'fixtures', 'domains');
const fixture = (name: string) => parseDomainXml(readFileSync(join(FIX, name), 'utf8'));

const UUID = '11111111-2222-3333-4444-555555555555';
const dom = (devices: string, head = '') =>
  parseDomainXml(`<domain type='kvm'><name>t</name><uuid>${UUID}</uuid>${head}<devices>${devices}</devices></domain>`);
const disk = (attrs: string, inner: string, target = 'vda') => `<disk ${attrs}>${inner}<target dev='${target}' bus='virtio'/></disk>`;
const lease = (ls: string | undefined, key: string, path: string, offset?: string) =>
  `<lease>${ls === undefined ? '' : `<lockspace>${ls}</lockspace>`}<key>${key}</key>` +
  `<target path='${path}'${offset === undefined ? '' : ` offset='${offset}'`}/></lease>`;

const DIR = DEFAULT_DISK_LEASE_DIR;
const AUTO: PlanConfig = { autoDiskLeases: true };
const MANUAL: PlanConfig = { autoDiskLeases: false };

/** Stub pool lookup: dir/NFS pools give a file path, iSCSI gives host or direct, ceph is network. */
const resolver: VolumeResolver = (pool, volume, mode) => {
  if (pool === 'nfspool') return `/srv/nfs/pool/${volume}`;
  if (pool === 'iscsipool') return mode === 'direct' ? { type: 'network' } : { type: 'block', path: `/dev/disk/by-path/${volume}` };
  if (pool === 'cephpool') return { type: 'network' };
  return undefined;
};

function planError(domain: DomainInfo, conf: PlanConfig): LeasePlanError {
  try {
    planLeases(domain, conf);
  } catch (e) {
    expect(e).toBeInstanceOf(LeasePlanError);
    expect((e as Error).message).not.toContain('\n');
    return e as LeasePlanError;
  }
  throw new Error('expected planLeases to throw');
}

const autoEntry = (source: string, target: string, mode: 'exclusive' | 'shared' = 'exclusive', dir = DIR): LeaseEntry => ({
  lockspace: '__LIBVIRT__DISKS__', resource: md5hex(source), path: `${dir}/${md5hex(source)}`, offset: 0, mode, origin: 'disk',
  disk: { source, target },
});

describe('md5hex: libvirt disk lease names', () => {
  it('matches the documented example', () => {
    expect(md5hex('/var/lib/libvirt/images/demo.img')).toBe('bfa0240911bc17753e0b473688822159');
  });

  // expected values computed with coreutils md5sum over the UTF-8 bytes, independently of node:crypto
  it.each([
    ['/srv/nfs/images/web01.qcow2', '97f40ccdb8629628b0b2b64c372550f9'],
    ['/srv/nfs/images/with space/vm disk.img', 'bfe4d384fd682a387b1e29f52b6d288f'],
    ['/dev/disk/by-path/pci-0000:00:1f.2-ata-1', 'fb6cf87036219ce18025b6feaccc906e'],
    ['/srv/nfs/images/réseau/données-été.qcow2', 'b480ea13571f2f74fd16dafdbe57f4dd'],
    [`/srv/nfs/images/日本/R&D's "disk".img`, '196feecf52212891c09bc0a8c7e1bfd1'],
    ['/srv/nfs/images/fat-dir/', '17062eed1c7fa57bfcc1b72812e3c607'],
    ['/srv/nfs/images/fat-dir', 'b1371ccc20e57d65ba9f15cb18f4ae96'],
    ['../relative//not-normalised/./x.img', '816ad99e57036c386da8898a3ef004f5'],
  ])('%s → %s (bytes as written, no normalisation)', (path, want) => {
    expect(md5hex(path)).toBe(want);
  });

  it('hashes UTF-8, not Latin-1', () => {
    // md5 of the Latin-1 encoding of the same path (iconv -t latin1 | md5sum)
    expect(md5hex('/srv/nfs/images/réseau/données-été.qcow2')).not.toBe('65ef34037f37e5e9769e2034921cd4b9');
  });

  it('is 32 lower-case hex digits', () => {
    expect(md5hex('')).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('planLeases: which disks get an automatic lease', () => {
  type Want = { lease: 'exclusive' | 'shared'; path: string } | { skip: SkipReason } | { error: string };
  const rows: [string, string, Want][] = [
    ['file', disk("type='file' device='disk'", "<source file='/img/a.qcow2'/>"), { lease: 'exclusive', path: '/img/a.qcow2' }],
    ['block', disk("type='block' device='disk'", "<source dev='/dev/mapper/vg-lv'/>"), { lease: 'exclusive', path: '/dev/mapper/vg-lv' }],
    ['dir', disk("type='dir' device='disk'", "<source dir='/srv/fat'/>"), { lease: 'exclusive', path: '/srv/fat' }],
    ['block lun', disk("type='block' device='lun'", "<source dev='/dev/sdx'/>"), { lease: 'exclusive', path: '/dev/sdx' }],
    ['no type attribute (file)', disk('', "<source file='/img/d'/>"), { lease: 'exclusive', path: '/img/d' }],
    ['shareable file', disk("type='file'", "<source file='/img/s'/><shareable/>"), { lease: 'shared', path: '/img/s' }],
    ['shareable block', disk("type='block'", "<source dev='/dev/s'/><shareable/>"), { lease: 'shared', path: '/dev/s' }],
    ['transient (original path)', disk("type='file'", "<source file='/img/golden'/><transient/>"), { lease: 'exclusive', path: '/img/golden' }],
    ['top image only', disk("type='file'", "<source file='/img/top'/><backingStore type='file'><format type='qcow2'/><source file='/img/base'/></backingStore>"),
      { lease: 'exclusive', path: '/img/top' }],
    ['read-only file', disk("type='file'", "<source file='/img/ro'/><readonly/>"), { skip: 'readonly' }],
    ['read-only shareable', disk("type='file'", "<source file='/img/ro'/><readonly/><shareable/>"), { skip: 'readonly' }],
    ['cdrom with medium (forced read-only)', disk("type='file' device='cdrom'", "<source file='/iso/x.iso'/>"), { skip: 'readonly' }],
    ['empty cdrom', disk("type='file' device='cdrom'", '<readonly/>'), { skip: 'no-source' }],
    ["cdrom with file=''", disk("type='file' device='cdrom'", "<source file=''/>"), { skip: 'no-source' }],
    ['empty floppy', disk("type='file' device='floppy'", ''), { skip: 'no-source' }],
    ['network rbd', disk("type='network'", "<source protocol='rbd' name='pool/img'><host name='mon'/></source>"), { skip: 'network' }],
    ['network iscsi', disk("type='network' device='lun'", "<source protocol='iscsi' name='iqn.2013-07.com.example:t/1'/>"), { skip: 'network' }],
    ['network nbd', disk("type='network'", "<source protocol='nbd'><host name='nbd.example' port='10809'/></source>"), { skip: 'network' }],
    ['network gluster', disk("type='network'", "<source protocol='gluster' name='vol/img'/>"), { skip: 'network' }],
    ['nvme', disk("type='nvme'", "<source type='pci' managed='yes' namespace='1'><address domain='0' bus='1' slot='0' function='0'/></source>"), { skip: 'not-lockable' }],
    ['vhostuser', disk("type='vhostuser'", "<source type='unix' path='/run/vhost.sock'/>"), { skip: 'not-lockable' }],
    ['vhostvdpa', disk("type='vhostvdpa'", "<source dev='/dev/vhost-vdpa-0'/>"), { skip: 'not-lockable' }],
    ['volume in a file pool', disk("type='volume'", "<source pool='nfspool' volume='v.qcow2'/>"), { lease: 'exclusive', path: '/srv/nfs/pool/v.qcow2' }],
    ['volume in an iSCSI pool, mode=host', disk("type='volume'", "<source pool='iscsipool' volume='lun1' mode='host'/>"), { lease: 'exclusive', path: '/dev/disk/by-path/lun1' }],
    ['shareable volume', disk("type='volume'", "<source pool='nfspool' volume='sh'/><shareable/>"), { lease: 'shared', path: '/srv/nfs/pool/sh' }],
    ['volume in an iSCSI pool, mode=direct', disk("type='volume'", "<source pool='iscsipool' volume='lun2' mode='direct'/>"), { skip: 'volume-network' }],
    ['volume in a ceph pool', disk("type='volume'", "<source pool='cephpool' volume='x'/>"), { skip: 'volume-network' }],
    ['read-only volume, unresolvable', disk("type='volume'", "<source pool='nowhere' volume='x'/><readonly/>"), { skip: 'readonly' }],
    ['empty volume cdrom', disk("type='volume' device='cdrom'", ''), { skip: 'no-source' }],
    ['unresolved volume', disk("type='volume'", "<source pool='nowhere' volume='lost.img'/>"),
      { error: "disk vda (<disk> #1): volume 'lost.img' in pool 'nowhere' could not be resolved to a path" }],
  ];

  it.each(rows)('%s', (_name, xml, want) => {
    const d = dom(xml);
    const conf = { ...AUTO, resolveVolume: resolver };
    if ('error' in want) {
      const e = planError(d, conf);
      expect(e.code).toBe('VOLUME_UNRESOLVED');
      expect(e.message).toBe(want.error);
      return;
    }
    const p = planLeases(d, conf);
    if ('skip' in want) {
      expect(p.entries).toEqual([]);
      expect(p.skipped).toEqual([{ index: 1, target: 'vda', reason: want.skip }]);
    } else {
      expect(p.skipped).toEqual([]);
      expect(p.entries).toHaveLength(1);
      const e = p.entries[0];
      expect(e).toMatchObject({ lockspace: '__LIBVIRT__DISKS__', resource: md5hex(want.path), path: `${DIR}/${md5hex(want.path)}`,
        offset: 0, mode: want.lease, origin: 'disk' });
      expect(e.disk?.source).toBe(want.path);
      expect(e.disk?.target).toBe('vda');
    }
  });

  it('a volume entry records the pool and volume it came from', () => {
    const p = planLeases(dom(disk("type='volume'", "<source pool='nfspool' volume='v.qcow2'/>")), { ...AUTO, resolveVolume: resolver });
    expect(p.entries[0].disk).toEqual({ source: '/srv/nfs/pool/v.qcow2', target: 'vda', pool: 'nfspool', volume: 'v.qcow2' });
  });

  it('a volume that must be locked needs a resolver; the hook has none, the error names the plugin', () => {
    const e = planError(dom(disk("type='volume'", "<source pool='nfspool' volume='v'/>")), AUTO);
    expect(e.code).toBe('VOLUME_UNRESOLVED');
    expect(e.message).toBe("disk vda (<disk> #1): volume 'v' in pool 'nfspool' needs a lease, and the hook cannot resolve a storage pool " +
      '(it must not call libvirt); use the lock-driver plugin (lock_manager = "lockagent"), to which libvirt hands the volume\'s path');
  });

  it("an iSCSI volume with mode='direct' is a network disk: no lease and no lookup, also without a resolver (the hook's case)", () => {
    const noLookup: VolumeResolver = () => {
      throw new Error('a direct-mode volume must not be looked up');
    };
    const d = dom(disk("type='volume'", "<source pool='iscsipool' volume='lun2' mode='direct'/>") +
      disk("type='volume'", "<source pool='nowhere' volume='lun3' mode='direct'/>", 'vdb'));
    for (const conf of [AUTO, { ...AUTO, resolveVolume: noLookup }, { ...MANUAL, resolveVolume: noLookup }]) {
      const p = planLeases(d, conf);
      expect(p.entries).toEqual([]);
      expect(p.skipped).toEqual([{ index: 1, target: 'vda', reason: 'volume-network' }, { index: 2, target: 'vdb', reason: 'volume-network' }]);
    }
  });

  it('the resolver gets pool, volume and mode; bad answers are errors', () => {
    const calls: unknown[] = [];
    const xml = disk("type='volume'", "<source pool='p' volume='v' mode='host'/>");
    planLeases(dom(xml), { ...AUTO, resolveVolume: (...a) => { calls.push(a); return '/x'; } });
    expect(calls).toEqual([['p', 'v', 'host']]);
    expect(planError(dom(xml), { ...AUTO, resolveVolume: () => '' }).message).toMatch(/resolved to an empty path/);
  });

  it('entry shape and resource string for a plain file disk', () => {
    const p = planLeases(dom(disk("type='file'", "<source file='/var/lib/libvirt/images/demo.img'/>")), AUTO);
    expect(p.entries).toEqual([{
      lockspace: '__LIBVIRT__DISKS__',
      resource: 'bfa0240911bc17753e0b473688822159',
      path: '/var/lib/libvirt/sanlock/bfa0240911bc17753e0b473688822159',
      offset: 0,
      mode: 'exclusive',
      origin: 'disk',
      disk: { source: '/var/lib/libvirt/images/demo.img', target: 'vda' },
    }]);
    expect(toSanlockResource(p.entries[0]))
      .toBe('__LIBVIRT__DISKS__:bfa0240911bc17753e0b473688822159:/var/lib/libvirt/sanlock/bfa0240911bc17753e0b473688822159:0');
    expect(p.autoLockspace).toEqual({ name: '__LIBVIRT__DISKS__', path: '/var/lib/libvirt/sanlock/__LIBVIRT__DISKS__', offset: 0 });
    expect(p.lockspaces).toEqual(['__LIBVIRT__DISKS__']);
  });

  it('disk_lease_dir is joined with "/" as given (no normalisation), like g_strdup_printf("%s/%s")', () => {
    const d = dom(disk("type='file'", "<source file='/i/a'/>"));
    expect(planLeases(d, { ...AUTO, diskLeaseDir: '/mnt/leases' }).entries[0].path).toBe(`/mnt/leases/${md5hex('/i/a')}`);
    expect(planLeases(d, { ...AUTO, diskLeaseDir: '/mnt/leases/' }).entries[0].path).toBe(`/mnt/leases//${md5hex('/i/a')}`);
    expect(planLeases(d, { ...AUTO, diskLeaseDir: '/mnt/leases' }).autoLockspace?.path).toBe('/mnt/leases/__LIBVIRT__DISKS__');
  });

  it('the lockspace name is the one config.ts uses', () => {
    expect(AUTO_DISK_LOCKSPACE).toBe('__LIBVIRT__DISKS__');
    expect(AUTO_DISK_LOCKSPACE).toBe(DISKS_LOCKSPACE);
  });
});

describe('planLeases: <lease> elements', () => {
  it('become exclusive leases in their own lockspace, key, path and offset (default 0), before the disks', () => {
    const d = dom(disk("type='file'", "<source file='/i/a'/>") + lease('vmspace', 'k1', '/leases/file') + lease('vmspace', 'k2', '/leases/file', '1048576'));
    const p = planLeases(d, AUTO);
    expect(p.entries).toEqual([
      { lockspace: 'vmspace', resource: 'k1', path: '/leases/file', offset: 0, mode: 'exclusive', origin: 'lease' },
      { lockspace: 'vmspace', resource: 'k2', path: '/leases/file', offset: 1048576, mode: 'exclusive', origin: 'lease' },
      autoEntry('/i/a', 'vda'),
    ]);
    expect(p.lockspaces).toEqual(['vmspace', '__LIBVIRT__DISKS__']);
    expect(p.entries.map(toSanlockResource).slice(0, 2)).toEqual(['vmspace:k1:/leases/file:0', 'vmspace:k2:/leases/file:1048576']);
  });

  it('leases-manual fixture with auto leases off: only the two leases, no refusal', () => {
    const p = planLeases(fixture('leases-manual.xml'), MANUAL);
    expect(p.entries.map(toSanlockResource)).toEqual([
      'vmspace:manual01-root:/srv/nfs/leases/vmspace-leases:0',
      'vmspace:manual01-data:/srv/nfs/leases/vmspace-leases:3145728',
    ]);
    expect(p.skipped).toEqual([{ index: 1, target: 'vda', reason: 'auto-leases-off' }]);
    expect(p.autoLockspace).toBeUndefined();
  });

  it('a <lease> in __LIBVIRT__DISKS__ with auto leases off does not claim the automatic lockspace file', () => {
    const p = planLeases(dom(lease('__LIBVIRT__DISKS__', 'k', '/l')), MANUAL);
    expect(p.lockspaces).toEqual(['__LIBVIRT__DISKS__']);
    expect(p.autoLockspace).toBeUndefined();
  });

  it.each([
    [lease(undefined, 'k', '/l'), 'BAD_LEASE', "<lease> #1 (key 'k') has no <lockspace>; libvirt would hand sanlock an empty lockspace name and the acquire would fail"],
    [lease('', 'k', '/l'), 'BAD_LEASE', "<lease> #1 (key 'k') has no <lockspace>; libvirt would hand sanlock an empty lockspace name and the acquire would fail"],
    [lease('L', '', '/l'), 'BAD_LEASE', '<lease> #1 has an empty <key>'],
    [lease('L', 'k'.repeat(48), '/l'), 'NAME_TOO_LONG', `<lease> #1 (key '${'k'.repeat(48)}'): key '${'k'.repeat(48)}' is 48 bytes; libvirt's sanlock driver allows at most 47`],
    [lease('L', 'é'.repeat(24), '/l'), 'NAME_TOO_LONG', `<lease> #1 (key '${'é'.repeat(24)}'): key '${'é'.repeat(24)}' is 48 bytes; libvirt's sanlock driver allows at most 47`],
    [lease('s'.repeat(48), 'k', '/l'), 'NAME_TOO_LONG', `<lease> #1 (key 'k'): lockspace '${'s'.repeat(48)}' is 48 bytes; libvirt's sanlock driver allows at most 47`],
    [lease('L', 'k', '/' + 'p'.repeat(1023)), 'PATH_TOO_LONG', "<lease> #1 (key 'k'): lease path is 1024 bytes; libvirt's sanlock driver allows at most 1023"],
  ])('refused: %s', (xml, code, msg) => {
    const e = planError(dom(xml), AUTO);
    expect(e.code).toBe(code);
    expect(e.message).toBe(msg);
  });

  it('names of 47 bytes and paths of 1023 bytes are accepted', () => {
    const p = planLeases(dom(lease('s'.repeat(47), 'k'.repeat(47), '/' + 'p'.repeat(1022))), AUTO);
    expect(p.entries).toHaveLength(1);
  });

  it('an automatic lease path longer than 1023 bytes is refused', () => {
    const e = planError(dom(disk("type='file'", "<source file='/i/a'/>")), { ...AUTO, diskLeaseDir: '/' + 'd'.repeat(990) });
    expect(e.code).toBe('PATH_TOO_LONG');
    expect(e.message).toBe("disk vda (<disk> #1): lease path is 1024 bytes; libvirt's sanlock driver allows at most 1023");
  });
});

describe('planLeases: require_lease_for_disks', () => {
  const rw = disk("type='file'", "<source file='/i/rw'/>");
  const shared = disk("type='file'", "<source file='/i/sh'/><shareable/>", 'vdb');
  const ro = disk("type='file'", "<source file='/i/ro'/><readonly/>", 'vdc');
  const net = disk("type='network'", "<source protocol='rbd' name='p/i'/>", 'vdd');
  const vol = (pool: string) => disk("type='volume'", `<source pool='${pool}' volume='v'/>`, 'vde');
  const lz = lease('vmspace', 'k', '/l');
  const noLookup: VolumeResolver = () => {
    throw new Error('this volume must not be looked up');
  };

  type Row = [string, string, PlanConfig, 'refuse' | number, 'VOLUME_UNRESOLVED' | null];
  const rows: Row[] = [
    ['default (auto off → require on): r/w disk, no <lease>', rw, MANUAL, 'refuse', null],
    ['require on explicitly', rw, { autoDiskLeases: false, requireLeaseForDisks: true }, 'refuse', null],
    ['require off', rw, { autoDiskLeases: false, requireLeaseForDisks: false }, 0, null],
    ['require on, a <lease> present', rw + lz, MANUAL, 1, null],
    ['require on, only a shareable disk', shared, MANUAL, 0, null],
    ['require on, only read-only and network disks', ro + net, MANUAL, 0, null],
    ['require on, r/w disk among others', shared + ro + net + rw, MANUAL, 'refuse', null],
    ['require on, r/w volume resolving to a path', vol('nfspool'), { ...MANUAL, resolveVolume: resolver }, 'refuse', null],
    ['require on, volume resolving to network', vol('cephpool'), { ...MANUAL, resolveVolume: resolver }, 0, null],
    ['require on, unresolvable volume', vol('nowhere'), { ...MANUAL, resolveVolume: resolver }, 0, 'VOLUME_UNRESOLVED'],
    ['require off: a volume is never looked up', vol('nowhere'), { autoDiskLeases: false, requireLeaseForDisks: false, resolveVolume: noLookup }, 0, null],
    ['require on, <lease> present: a volume is not looked up', vol('nowhere') + lz, { ...MANUAL, resolveVolume: noLookup }, 1, null],
    ['require on, shareable volume: not looked up', disk("type='volume'", "<source pool='p' volume='v'/><shareable/>"), { ...MANUAL, resolveVolume: noLookup }, 0, null],
    ['auto on: never refused (leases exist)', rw, AUTO, 1, null],
    ['auto on, require on, only network disks', net, { autoDiskLeases: true, requireLeaseForDisks: true }, 0, null],
    ['no disks at all', '', MANUAL, 0, null],
  ];

  it.each(rows)('%s', (_n, xml, conf, want, errCode) => {
    const d = dom(xml);
    if (errCode) {
      expect(planError(d, conf).code).toBe(errCode);
    } else if (want === 'refuse') {
      const e = planError(d, conf);
      expect(e.code).toBe('LEASE_REQUIRED');
      expect(e.message).toBe('Read/write, exclusive access, disks were present, but no leases specified');
      expect(e.message).toBe(LEASE_REQUIRED_MESSAGE);
    } else {
      expect(planLeases(d, conf).entries).toHaveLength(want);
    }
  });

  it('with auto leases off, unleased disks are reported as skipped and noted', () => {
    const p = planLeases(dom(rw + shared), { autoDiskLeases: false, requireLeaseForDisks: false });
    expect(p.skipped).toEqual([
      { index: 1, target: 'vda', reason: 'auto-leases-off' },
      { index: 2, target: 'vdb', reason: 'auto-leases-off' },
    ]);
    expect(p.notes).toEqual(['disk vda gets no lease: auto_disk_leases is off', 'disk vdb gets no lease: auto_disk_leases is off']);
  });

  it('an AgentConfig-shaped object works as PlanConfig', () => {
    const agentLike = { autoDiskLeases: true, diskLeaseDir: '/mnt/l', hostId: 1, requireLeaseForDisks: false, ioTimeout: 10 };
    expect(planLeases(dom(rw), agentLike).entries[0].path).toBe(`/mnt/l/${md5hex('/i/rw')}`);
  });
});

describe('planLeases: no 8-resource cap', () => {
  it('many-disks fixture: 11 read/write disks get 11 leases; the read-only 12th none', () => {
    const p = planLeases(fixture('many-disks.xml'), AUTO);
    expect(p.entries).toHaveLength(11);
    expect(p.entries.map((e) => e.disk?.target)).toEqual(['vda', 'vdb', 'vdc', 'vdd', 'vde', 'vdf', 'vdg', 'vdh', 'vdi', 'vdj', 'vdk']);
    expect(p.skipped).toEqual([{ index: 12, target: 'vdl', reason: 'readonly' }]);
    expect(p.exceedsLibvirtLimit).toBe(true);
    expect(p.notes).toContain("11 leases: more than libvirt's sanlock driver allows (8); a libvirt host could not start this domain");
  });

  it('exactly 8 leases is within libvirt\'s limit; 9 is not', () => {
    const n = (k: number) => Array.from({ length: k }, (_, i) => disk("type='file'", `<source file='/i/${i}'/>`, `vd${i}`)).join('');
    expect(planLeases(dom(n(8)), AUTO).exceedsLibvirtLimit).toBe(false);
    expect(planLeases(dom(n(9)), AUTO).exceedsLibvirtLimit).toBe(true);
    expect(planLeases(dom(n(40)), AUTO).entries).toHaveLength(40);
  });
});

describe('planLeases: duplicates', () => {
  const f = (target: string, extra = '') => disk("type='file'", `<source file='/i/dup'/>${extra}`, target);

  it('the same disk listed twice → one lease', () => {
    const p = planLeases(dom(f('vda') + f('vdb')), AUTO);
    expect(p.entries).toEqual([autoEntry('/i/dup', 'vda')]);
    expect(p.notes).toEqual([`disk vdb (/i/dup) duplicates __LIBVIRT__DISKS__:${md5hex('/i/dup')}; taking it once`]);
  });

  it('the same shareable disk twice → one shared lease', () => {
    expect(planLeases(dom(f('vda', '<shareable/>') + f('vdb', '<shareable/>')), AUTO).entries).toEqual([autoEntry('/i/dup', 'vda', 'shared')]);
  });

  it.each([
    ['shared then exclusive', f('vda', '<shareable/>') + f('vdb')],
    ['exclusive then shared', f('vda') + f('vdb', '<shareable/>')],
  ])('%s → one exclusive lease, noted', (_n, xml) => {
    const p = planLeases(dom(xml), AUTO);
    expect(p.entries).toEqual([autoEntry('/i/dup', 'vda', 'exclusive')]);
    expect(p.notes[0]).toMatch(/is wanted both shared and exclusive as __LIBVIRT__DISKS__:[0-9a-f]{32}; taking it exclusive$/);
  });

  it('a read-only duplicate of a writable disk changes nothing', () => {
    expect(planLeases(dom(f('vda') + f('vdb', '<readonly/>')), AUTO).entries).toEqual([autoEntry('/i/dup', 'vda')]);
  });

  it('a <lease> that names the same sanlock resource as an automatic disk lease is merged into it', () => {
    const h = md5hex('/i/dup');
    const p = planLeases(dom(f('vda', '<shareable/>') + lease('__LIBVIRT__DISKS__', h, `${DIR}/${h}`)), AUTO);
    expect(p.entries).toEqual([{ lockspace: '__LIBVIRT__DISKS__', resource: h, path: `${DIR}/${h}`, offset: 0, mode: 'exclusive', origin: 'lease' }]);
  });

  it('the same lockspace and key at two different places is a conflict', () => {
    const e = planError(dom(lease('L', 'k', '/a') + lease('L', 'k', '/a', '1048576')), AUTO);
    expect(e.code).toBe('CONFLICT');
    expect(e.message).toBe('resource L:k is listed at /a:0 and at /a:1048576');
  });

  it('the same key in different lockspaces is two leases', () => {
    expect(planLeases(dom(lease('A', 'k', '/a') + lease('B', 'k', '/a')), AUTO).entries).toHaveLength(2);
  });
});

describe('planLeases: odd paths', () => {
  it('paths with spaces, colons, UTF-8 and entities are hashed exactly as written', () => {
    const p = planLeases(fixture('odd-paths.xml'), AUTO);
    expect(p.entries.map((e) => [e.disk?.target, e.resource])).toEqual([
      ['vda', 'bfe4d384fd682a387b1e29f52b6d288f'],
      ['vdb', 'fb6cf87036219ce18025b6feaccc906e'],
      ['vdc', 'b480ea13571f2f74fd16dafdbe57f4dd'],
      ['vdd', '196feecf52212891c09bc0a8c7e1bfd1'],
      ['vde', '17062eed1c7fa57bfcc1b72812e3c607'],
      ['vdf', '816ad99e57036c386da8898a3ef004f5'],
    ]);
  });

  it('lease paths with ":" and spaces are escaped in the resource string and parse back', () => {
    const p = planLeases(dom(lease('vm space', 'k:1', '/mnt/a b:c/leases', '2048')), AUTO);
    const s = toSanlockResource(p.entries[0]);
    expect(s).toBe('vm\\ space:k\\:1:/mnt/a\\ b\\:c/leases:2048');
    expect(parseSanlockResource(s)).toEqual({ lockspace: 'vm space', resource: 'k:1', path: '/mnt/a b:c/leases', offset: 2048, mode: 'exclusive' });
  });

  it('automatic lease under a disk_lease_dir with a space and a colon', () => {
    const p = planLeases(dom(disk("type='file'", "<source file='/i/a'/><shareable/>")), { ...AUTO, diskLeaseDir: '/mnt/san lock:1' });
    expect(toSanlockResource(p.entries[0])).toBe(`__LIBVIRT__DISKS__:${md5hex('/i/a')}:/mnt/san\\ lock\\:1/${md5hex('/i/a')}:0:SH`);
  });
});

describe('sanlock resource strings', () => {
  it.each([
    [{ lockspace: 'LS', resource: 'R', path: '/p', offset: 0, mode: 'exclusive' as const }, 'LS:R:/p:0'],
    [{ lockspace: 'LS', resource: 'R', path: '/p', offset: 1048576, mode: 'shared' as const }, 'LS:R:/p:1048576:SH'],
    [{ lockspace: 'LS', resource: 'R', path: '/a:b c', offset: 0, mode: 'exclusive' as const }, 'LS:R:/a\\:b\\ c:0'],
    [{ lockspace: 'LS', resource: 'R', path: '/back\\slash', offset: 0, mode: 'exclusive' as const }, 'LS:R:/back\\\\slash:0'],
    [{ lockspace: 'LS', resource: 'R', path: '/données/日本', offset: 0, mode: 'exclusive' as const }, 'LS:R:/données/日本:0'],
  ])('%j ⇄ %s', (fields, str) => {
    expect(formatSanlockResource(fields)).toBe(str);
    expect(parseSanlockResource(str)).toEqual(fields);
  });

  it('parses a lease-version suffix as sanlock client status prints it', () => {
    expect(parseSanlockResource('__LIBVIRT__DISKS__:abc:/var/lib/libvirt/sanlock/abc:0:7')).toEqual(
      { lockspace: '__LIBVIRT__DISKS__', resource: 'abc', path: '/var/lib/libvirt/sanlock/abc', offset: 0, mode: 'exclusive' });
  });

  it.each(['LS:R:/p', 'LS:R:/p:x', 'LS:R:/p:0:XX', 'LS::/p:0', 'LS:R:/p:0\\', 'a:b:c:1:d:2'])('rejects %s', (s) => {
    expect(() => parseSanlockResource(s)).toThrow(RangeError);
  });

  it('refuses a negative or fractional offset', () => {
    expect(() => formatSanlockResource({ lockspace: 'L', resource: 'R', path: '/p', offset: -1, mode: 'exclusive' })).toThrow(RangeError);
    expect(() => formatSanlockResource({ lockspace: 'L', resource: 'R', path: '/p', offset: 1.5, mode: 'exclusive' })).toThrow(RangeError);
  });
});

describe('planLeases: realistic domains end to end', () => {
  it('web01: lease first, then file (exclusive), block (shared), volume; network and empty cdrom skipped', () => {
    const p = planLeases(fixture('web01.xml'), { ...AUTO, resolveVolume: resolver });
    expect(p.domain).toEqual({ name: 'web01', uuid: '6f1c3f0e-4d7a-4b8e-9a51-0c2d9b7e3a11' });
    expect(p.onLockFailure).toBe('pause');
    expect(p.entries.map(toSanlockResource)).toEqual([
      '__LIBVIRT__DISKS__:web01-config:/var/lib/libvirt/sanlock/web01-config:0',
      '__LIBVIRT__DISKS__:97f40ccdb8629628b0b2b64c372550f9:/var/lib/libvirt/sanlock/97f40ccdb8629628b0b2b64c372550f9:0',
      '__LIBVIRT__DISKS__:9c6bb7d1121bf1bdcfe3e09c960020f5:/var/lib/libvirt/sanlock/9c6bb7d1121bf1bdcfe3e09c960020f5:0:SH',
      `__LIBVIRT__DISKS__:${md5hex('/srv/nfs/pool/web01-logs.img')}:/var/lib/libvirt/sanlock/${md5hex('/srv/nfs/pool/web01-logs.img')}:0`,
    ]);
    expect(p.skipped).toEqual([
      { index: 3, target: 'vdc', reason: 'network' },
      { index: 5, target: 'sda', reason: 'no-source' },
    ]);
    expect(p.exceedsLibvirtLimit).toBe(false);
    expect(p.notes).toEqual([]);
  });

  it('web01 with libvirt defaults (auto off, require on): the <lease> satisfies require_lease_for_disks', () => {
    const p = planLeases(fixture('web01.xml'), MANUAL);
    expect(p.entries.map((e) => e.resource)).toEqual(['web01-config']);
  });

  it('db02 (live XML): the top image of each disk, never the backing chain or the block-copy mirror', () => {
    const p = planLeases(fixture('db02-running.xml'), AUTO);
    expect(p.entries.map((e) => e.disk?.source)).toEqual([
      '/srv/nfs/images/db02-snap2.qcow2',
      '/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2003-01.org.example:db-lun-1',
      '/srv/nfs/images/db02-wal.raw',
    ]);
    expect(p.onLockFailure).toBe('poweroff');
  });

  it('exotic: only the transient file disk is leased', () => {
    const p = planLeases(fixture('exotic.xml'), AUTO);
    expect(p.entries).toEqual([autoEntry('/srv/nfs/images/golden.qcow2', 'vdd')]);
    expect(p.skipped.map((s) => [s.target, s.reason])).toEqual([
      ['vda', 'not-lockable'], ['vdb', 'not-lockable'], ['vdc', 'not-lockable'], ['fda', 'no-source'], ['sdc', 'readonly'],
    ]);
    expect(p.onLockFailure).toBe('ignore');
  });

  it('volumes fixture', () => {
    const p = planLeases(fixture('volumes.xml'), { ...AUTO, resolveVolume: resolver });
    expect(p.entries.map((e) => e.disk)).toEqual([
      { source: '/srv/nfs/pool/pooled-root.qcow2', target: 'vda', pool: 'nfspool', volume: 'pooled-root.qcow2' },
      { source: '/dev/disk/by-path/unit:0:0:1', target: 'vdb', pool: 'iscsipool', volume: 'unit:0:0:1' },
    ]);
    expect(p.skipped.map((s) => s.reason)).toEqual(['volume-network', 'volume-network', 'readonly']);
  });

  it('network-disks fixture: nothing to lock', () => {
    const p = planLeases(fixture('network-disks.xml'), AUTO);
    expect(p.entries).toEqual([]);
    expect(p.lockspaces).toEqual([]);
    expect(p.autoLockspace).toBeUndefined();
    expect(p.skipped.every((s) => s.reason === 'network')).toBe(true);
  });

  it('the plan does not mutate the parsed domain and is deterministic', () => {
    const d = fixture('web01.xml');
    const before = JSON.stringify(d);
    const a = planLeases(d, { ...AUTO, resolveVolume: resolver });
    const b = planLeases(d, { ...AUTO, resolveVolume: resolver });
    expect(a).toEqual(b);
    expect(JSON.stringify(d)).toBe(before);
  });
});
