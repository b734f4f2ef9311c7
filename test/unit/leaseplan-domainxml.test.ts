import { readFileSync } from 'fs';
import { join } from 'path';
import { DomainXmlError, parseDomainXml } from '../../src/libvirt/domainxml';

const FIX = join(__dirname, '..', 'fixtures', 'domains');
const fixture = (name: string) => readFileSync(join(FIX, name), 'utf8');

const UUID = '11111111-2222-3333-4444-555555555555';
const dom = (devices: string, head = '') =>
  `<domain type='kvm'><name>t</name><uuid>${UUID}</uuid>${head}<devices>${devices}</devices></domain>`;
const disk = (inner: string, attrs = "type='file' device='disk'") => `<disk ${attrs}>${inner}<target dev='vda' bus='virtio'/></disk>`;

/** The error thrown by parseDomainXml, checked to be a one-line DomainXmlError. */
function parseError(input: string | Uint8Array, opts?: Parameters<typeof parseDomainXml>[1]): DomainXmlError {
  try {
    parseDomainXml(input, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(DomainXmlError);
    const err = e as DomainXmlError;
    expect(err.message).toMatch(/^domain XML: /);
    expect(err.message).not.toContain('\n');
    return err;
  }
  throw new Error('expected parseDomainXml to throw');
}

describe('parseDomainXml: realistic domains', () => {
  it('web01: every disk kind, a lease, on_lockfailure, hostdev ignored', () => {
    const d = parseDomainXml(fixture('web01.xml'));
    expect(d).toEqual({
      name: 'web01',
      uuid: '6f1c3f0e-4d7a-4b8e-9a51-0c2d9b7e3a11',
      type: 'kvm',
      onLockFailure: 'pause',
      disks: [
        { index: 1, type: 'file', device: 'disk', target: 'vda', bus: 'virtio', readonly: false, shareable: false, transient: false,
          source: { type: 'file', path: '/srv/nfs/images/web01.qcow2' } },
        { index: 2, type: 'block', device: 'disk', target: 'vdb', bus: 'virtio', readonly: false, shareable: true, transient: false,
          source: { type: 'block', path: '/dev/disk/by-id/dm-uuid-mpath-3600a098038303053453f463045727a41' } },
        { index: 3, type: 'network', device: 'disk', target: 'vdc', bus: 'virtio', readonly: false, shareable: false, transient: false,
          source: { type: 'network', protocol: 'rbd', name: 'vms/web01-data',
            hosts: [{ name: 'ceph-mon1.example.net', port: '6789' }, { name: 'ceph-mon2.example.net', port: '6789' }] } },
        { index: 4, type: 'volume', device: 'disk', target: 'vdd', bus: 'virtio', readonly: false, shareable: false, transient: false,
          source: { type: 'volume', pool: 'nfspool', volume: 'web01-logs.img' } },
        { index: 5, type: 'file', device: 'cdrom', target: 'sda', bus: 'sata', readonly: true, shareable: false, transient: false },
      ],
      leases: [
        { index: 1, lockspace: '__LIBVIRT__DISKS__', key: 'web01-config', path: '/var/lib/libvirt/sanlock/web01-config', offset: 0 },
      ],
    });
  });

  it('db02 (live XML): id, canonical uuid, top image only (backingStore and mirror ignored), filesystem/hostdev ignored', () => {
    const d = parseDomainXml(fixture('db02-running.xml'));
    expect(d.id).toBe(7);
    expect(d.uuid).toBe('a3d9c0b2-1e47-4f08-9c6b-7d2e5f4a1b90');
    expect(d.onLockFailure).toBe('poweroff');
    expect(d.disks.map((x) => [x.target, x.device, x.source])).toEqual([
      ['vda', 'disk', { type: 'file', path: '/srv/nfs/images/db02-snap2.qcow2' }],
      ['sda', 'lun', { type: 'block', path: '/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2003-01.org.example:db-lun-1' }],
      ['vdb', 'disk', { type: 'file', path: '/srv/nfs/images/db02-wal.raw' }],
    ]);
    expect(d.leases).toEqual([]);
  });

  it('exotic: nvme, vhost-user, vhost-vdpa, transient, empty floppy, cdrom forced read-only, on_lockfailure ignore', () => {
    const d = parseDomainXml(fixture('exotic.xml'));
    expect(d.onLockFailure).toBe('ignore');
    expect(d.disks.map((x) => ({ t: x.target, type: x.type, src: x.source, ro: x.readonly, tr: x.transient }))).toEqual([
      { t: 'vda', type: 'nvme', src: { type: 'nvme' }, ro: false, tr: false },
      { t: 'vdb', type: 'vhostuser', src: { type: 'vhostuser', endpoint: '/var/run/vhost-user-blk.sock' }, ro: false, tr: false },
      { t: 'vdc', type: 'vhostvdpa', src: { type: 'vhostvdpa', endpoint: '/dev/vhost-vdpa-0' }, ro: false, tr: false },
      { t: 'vdd', type: 'file', src: { type: 'file', path: '/srv/nfs/images/golden.qcow2' }, ro: false, tr: true },
      { t: 'fda', type: 'file', src: undefined, ro: false, tr: false },
      { t: 'sdc', type: 'block', src: { type: 'block', path: '/dev/sr0' }, ro: true, tr: false },
    ]);
  });

  it('network disks: rbd, iscsi, nbd without a name, https', () => {
    const d = parseDomainXml(fixture('network-disks.xml'));
    expect(d.disks.map((x) => x.source)).toEqual([
      { type: 'network', protocol: 'rbd', name: 'rbdpool/netstore-root', hosts: [{ name: '10.1.0.11', port: '6789' }] },
      { type: 'network', protocol: 'iscsi', name: 'iqn.2013-07.com.example:iscsi-nopool/2', hosts: [{ name: 'iscsi.example.com', port: '3260' }] },
      { type: 'network', protocol: 'nbd', hosts: [{ transport: 'unix', socket: '/var/run/nbdsock' }] },
      { type: 'network', protocol: 'https', name: '/isos/debian-12.iso', hosts: [{ name: 'mirror.example.org', port: '443' }] },
    ]);
  });

  it('volumes: pool, volume and mode', () => {
    const d = parseDomainXml(fixture('volumes.xml'));
    expect(d.disks.map((x) => x.source)).toEqual([
      { type: 'volume', pool: 'nfspool', volume: 'pooled-root.qcow2' },
      { type: 'volume', pool: 'iscsipool', volume: 'unit:0:0:1', mode: 'host' },
      { type: 'volume', pool: 'iscsipool', volume: 'unit:0:0:2', mode: 'direct' },
      { type: 'volume', pool: 'cephpool', volume: 'pooled-data' },
      { type: 'volume', pool: 'isos', volume: 'debian-12.iso' },
    ]);
  });

  it('odd paths: spaces, colons, UTF-8, entities and character references decoded exactly', () => {
    const d = parseDomainXml(fixture('odd-paths.xml'));
    expect(d.name).toBe('odd&paths');
    expect(d.uuid).toBe('9d8c7b6a-5f4e-3d2c-1b0a-998877665544');
    expect(d.disks.map((x) => (x.source as { path: string }).path)).toEqual([
      '/srv/nfs/images/with space/vm disk.img',
      '/dev/disk/by-path/pci-0000:00:1f.2-ata-1',
      '/srv/nfs/images/réseau/données-été.qcow2',
      `/srv/nfs/images/日本/R&D's "disk".img`,
      '/srv/nfs/images/fat-dir/',
      '../relative//not-normalised/./x.img',
    ]);
  });

  it('leases: offset defaults to 0, explicit offset kept', () => {
    expect(parseDomainXml(fixture('leases-manual.xml')).leases).toEqual([
      { index: 1, lockspace: 'vmspace', key: 'manual01-root', path: '/srv/nfs/leases/vmspace-leases', offset: 0 },
      { index: 2, lockspace: 'vmspace', key: 'manual01-data', path: '/srv/nfs/leases/vmspace-leases', offset: 3145728 },
    ]);
  });

  it('accepts the same XML as UTF-8 bytes (hook stdin)', () => {
    const buf = readFileSync(join(FIX, 'odd-paths.xml'));
    expect(parseDomainXml(buf)).toEqual(parseDomainXml(buf.toString('utf8')));
  });
});

describe('parseDomainXml: libvirt parsing rules', () => {
  it('disk type defaults to file and device to disk', () => {
    const d = parseDomainXml(dom(`<disk><source file='/a.img'/><target dev='vda'/></disk>`));
    expect(d.disks[0]).toMatchObject({ type: 'file', device: 'disk', source: { type: 'file', path: '/a.img' } });
  });

  it.each([
    ['file', "<source file='/i/a'/>", { type: 'file', path: '/i/a' }],
    ['block', "<source dev='/dev/sdb'/>", { type: 'block', path: '/dev/sdb' }],
    ['dir', "<source dir='/srv/d'/>", { type: 'dir', path: '/srv/d' }],
    ['file', "<source dev='/wrong-attribute'/>", undefined],
    ['block', "<source file='/wrong-attribute'/>", undefined],
  ])('type=%s reads %s', (type, src, want) => {
    const d = parseDomainXml(dom(disk(src, `type='${type}' device='cdrom'`)));
    expect(d.disks[0].source).toEqual(want);
  });

  it("an empty path is no medium (libvirt's compatibility rule), allowed for cdrom, floppy and lun", () => {
    for (const device of ['cdrom', 'floppy', 'lun']) {
      const d = parseDomainXml(dom(disk("<source file=''/>", `type='file' device='${device}'`)));
      expect(d.disks[0].source).toBeUndefined();
    }
    expect(parseError(dom(disk("<source file=''/>"))).message)
      .toBe("domain XML: <disk> #1 (target vda) has type='file' but no <source file=...>");
  });

  it('only the first <source> of a disk counts', () => {
    const d = parseDomainXml(dom(disk("<source file='/first'/><source file='/second'/>")));
    expect(d.disks[0].source).toEqual({ type: 'file', path: '/first' });
  });

  it('every <devices> element contributes disks and leases, numbered across them', () => {
    const xml = `<domain><name>t</name><uuid>${UUID}</uuid><devices>${disk("<source file='/a'/>")}</devices>` +
      `<devices><disk type='block'><source dev='/dev/b'/><target dev='vdb'/></disk>` +
      `<lease><lockspace>L</lockspace><key>K</key><target path='/l'/></lease></devices></domain>`;
    const d = parseDomainXml(xml);
    expect(d.disks.map((x) => [x.index, x.target])).toEqual([[1, 'vda'], [2, 'vdb']]);
    expect(d.leases).toHaveLength(1);
  });

  it('disks outside <devices> are not disks', () => {
    const xml = `<domain><name>t</name><uuid>${UUID}</uuid><metadata><disk><source file='/x'/></disk></metadata></domain>`;
    expect(parseDomainXml(xml).disks).toEqual([]);
  });

  it.each([
    [' 12', 12],
    ['+5', 5],
    ['0', 0],
    ['1073741824', 1073741824],
  ])('lease offset %j → %d', (off, want) => {
    const d = parseDomainXml(dom(`<lease><lockspace>L</lockspace><key>K</key><target path='/l' offset='${off}'/></lease>`));
    expect(d.leases[0].offset).toBe(want);
  });

  it.each(['-1', '0x10', '1.5', '', '12 ', '99999999999999999999', '1M'])('lease offset %j is malformed', (off) => {
    const e = parseError(dom(`<lease><lockspace>L</lockspace><key>K</key><target path='/l' offset='${off}'/></lease>`));
    expect(e.message).toContain(`<lease> #1 (key 'K') has malformed offset='${off}'`);
  });

  it('lease key and lockspace are element content, untrimmed; CDATA counts; first element wins', () => {
    const d = parseDomainXml(dom(
      `<lease><key>k<![CDATA[<1>]]></key><key>ignored</key><lockspace> ls </lockspace><target path='/l'/></lease>`));
    expect(d.leases[0]).toEqual({ index: 1, lockspace: ' ls ', key: 'k<1>', path: '/l', offset: 0 });
  });

  it('lease lockspace is optional at parse time', () => {
    const d = parseDomainXml(dom(`<lease><key>K</key><target path='/l'/></lease>`));
    expect(d.leases[0].lockspace).toBeUndefined();
  });

  it.each([
    [`<lease><lockspace>L</lockspace><target path='/l'/></lease>`, "domain XML: <lease> #1 has no <key>"],
    [`<lease><lockspace>L</lockspace><key>K</key></lease>`, "domain XML: <lease> #1 (key 'K') has no <target path=...>"],
    [`<lease><lockspace>L</lockspace><key>K</key><target offset='0'/></lease>`, "domain XML: <lease> #1 (key 'K') has no <target path=...>"],
  ])('bad lease %s', (xml, msg) => {
    expect(parseError(dom(xml)).message).toBe(msg);
  });

  it.each([
    ['poweroff', 'poweroff'],
    ['restart', 'restart'],
    ['pause', 'pause'],
    ['ignore', 'ignore'],
    ['default', undefined],
    ['', undefined],
  ])('<on_lockfailure>%s</on_lockfailure> → %s', (v, want) => {
    expect(parseDomainXml(dom('', `<on_lockfailure>${v}</on_lockfailure>`)).onLockFailure).toBe(want);
  });

  it('absent <on_lockfailure> → undefined; unknown action → error', () => {
    expect(parseDomainXml(dom('')).onLockFailure).toBeUndefined();
    expect(parseError(dom('', '<on_lockfailure>reboot</on_lockfailure>')).message)
      .toBe("domain XML: <on_lockfailure> has unknown action 'reboot' (expected poweroff, restart, pause or ignore)");
  });

  it.each([
    ['11111111-2222-3333-4444-555555555555', '11111111-2222-3333-4444-555555555555'],
    ['AABBCCDDEEFF00112233445566778899', 'aabbccdd-eeff-0011-2233-445566778899'],
    ['  aabbccdd eeff 0011 2233 445566778899\n', 'aabbccdd-eeff-0011-2233-445566778899'],
    ['aa-bb-cc-dd-ee-ff-00-11-22-33-44-55-66-77-88-99', 'aabbccdd-eeff-0011-2233-445566778899'],
  ])('uuid %j → %s (virUUIDParse)', (text, want) => {
    const xml = `<domain><name>t</name><uuid>${text}</uuid></domain>`;
    expect(parseDomainXml(xml).uuid).toBe(want);
  });

  it.each(['1234', 'zz111111-2222-3333-4444-555555555555', '11111111-2222-3333-4444-5555555555556', 'a-abbccddeeff00112233445566778899'])(
    'malformed uuid %j', (text) => {
      expect(parseError(`<domain><name>t</name><uuid>${text}</uuid></domain>`).message).toContain('has malformed <uuid>');
    });

  it('id: present when running, -1 means not running, garbage is an error', () => {
    const at = (id: string) => `<domain type='kvm' id='${id}'><name>t</name><uuid>${UUID}</uuid></domain>`;
    expect(parseDomainXml(at('3')).id).toBe(3);
    expect(parseDomainXml(at('-1')).id).toBeUndefined();
    expect(parseDomainXml(dom('')).id).toBeUndefined();
    expect(parseError(at('three')).message).toBe("domain XML: <domain> 't' has malformed id='three'");
  });

  it.each([
    ["<disk type='floppy-disk'><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has unknown type='floppy-disk'"],
    ["<disk device='tape'><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has unknown device='tape'"],
    ["<disk type='file'><source file='/a'/></disk>", 'domain XML: <disk> #1 has no <target dev=...>'],
    ["<disk type='block'><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='block' but no <source dev=...>"],
    ["<disk type='dir'><source/><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='dir' but no <source dir=...>"],
    ["<disk type='volume'><source pool='p'/><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='volume' but <source> gives only one of pool= and volume="],
    ["<disk type='volume'><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='volume' but no <source pool=... volume=...>"],
    ["<disk type='volume'><source pool='p' volume='v' mode='remote'/><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has unknown volume mode='remote'"],
    ["<disk type='network'><source name='x'/><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='network' but no <source protocol=...>"],
    ["<disk type='network'><source protocol='rbd'/><target dev='vda'/></disk>", "domain XML: <disk> #1 (target vda) has type='network' protocol='rbd' but no <source name=...>"],
  ])('disk error: %s', (xml, msg) => {
    expect(parseError(dom(xml)).message).toBe(msg);
  });

  it('names the disk by position: "<disk> #2"', () => {
    expect(parseError(fixture('hostile/disk-without-source.xml')).message)
      .toBe("domain XML: <disk> #2 (target vdb) has type='file' but no <source file=...>");
  });
});

describe('parseDomainXml: text decoding like libxml2', () => {
  it('predefined entities and numeric references in attributes and text', () => {
    const d = parseDomainXml(dom(disk(`<source file='/a&amp;b&#47;c&#x2F;&lt;&gt;&quot;&apos;'/>`), '').replace('<name>t</name>', '<name>a&lt;b&#x263A;</name>'));
    expect(d.name).toBe('a<b☺');
    expect(d.disks[0].source).toEqual({ type: 'file', path: `/a&b/c/<>"'` });
  });

  it('attribute-value normalisation: a literal tab or newline becomes a space, a referenced one is kept', () => {
    const d = parseDomainXml(dom(disk(`<source file='/a\tb\nc&#9;d&#10;e'/>`)));
    expect(d.disks[0].source).toEqual({ type: 'file', path: '/a b c\td\ne' });
  });

  it('CRLF line ends are normalised before anything else', () => {
    const d = parseDomainXml(dom(disk(`<source file='/x'/>`)).replace('<name>t</name>', '<name>a\r\nb\rc</name>'));
    expect(d.name).toBe('a\nb\nc');
  });

  it('a byte-order mark is skipped', () => {
    expect(parseDomainXml('\uFEFF' + dom('')).name).toBe('t');
  });

  it('namespaced metadata and qemu:commandline do not disturb parsing', () => {
    expect(parseDomainXml(fixture('db02-running.xml')).name).toBe('db02');
  });
});

describe('parseDomainXml: hostile and non-domain input', () => {
  // CPU time of this process, not wall time: what matters is that the parser does no blowup
  // (quadratic or exponential work), and wall time mostly measures other load on the machine.
  const timed = <T>(f: () => T): T => {
    const t = process.cpuUsage();
    const r = f();
    const used = process.cpuUsage(t);
    expect((used.user + used.system) / 1000).toBeLessThan(5000);
    return r;
  };

  it('billion laughs (DOCTYPE entities) is refused before any expansion', () => {
    const e = timed(() => parseError(fixture('hostile/billion-laughs.xml')));
    expect(e.message).toBe('domain XML: DOCTYPE declarations are not allowed (entity definitions are refused) at line 2, column 1');
    expect(e.line).toBe(2);
  });

  it('external entity (XXE) is refused', () => {
    expect(parseError(fixture('hostile/xxe.xml')).message).toMatch(/DOCTYPE declarations are not allowed/);
  });

  it('any DOCTYPE is refused, even without entities, in any case', () => {
    expect(parseError(`<!DOCTYPE domain>\n${dom('')}`).message).toMatch(/DOCTYPE/);
    expect(parseError(`<!doctype domain>${dom('')}`).message).toMatch(/DOCTYPE/);
  });

  it('an undefined entity is an error (libxml2 refuses it too)', () => {
    expect(parseError(fixture('hostile/undefined-entity.xml')).message).toBe(
      "domain XML: undefined entity or stray '&' ('&secret;.img'); only &lt; &gt; &amp; &quot; &apos; and numeric references are allowed at line 6, column 26");
    expect(parseError(dom('').replace('<name>t', '<name>a & b')).message).toMatch(/stray '&'/);
  });

  it.each(['&#0;', '&#x1;', '&#xD800;', '&#x110000;', '&#xFFFE;'])('character reference %s to an illegal character', (ref) => {
    expect(parseError(dom('').replace('<name>t', `<name>${ref}`)).message).toMatch(/is not a legal XML character/);
  });

  it('5 MiB input is refused by size, as a string and as bytes, quickly', () => {
    const big = dom(disk(`<source file='/a'/>`)).replace('<name>t</name>', `<name>${'x'.repeat(5 * 1024 * 1024)}</name>`);
    expect(timed(() => parseError(big)).message).toBe('domain XML: input is larger than 4194304 bytes');
    expect(timed(() => parseError(Buffer.from(big))).message).toBe('domain XML: input is larger than 4194304 bytes');
  });

  it('size counts UTF-8 bytes, not characters', () => {
    const xml = dom('').replace('<name>t</name>', `<name>${'é'.repeat(600)}</name>`);
    expect(parseError(xml, { maxBytes: 1000 }).message).toBe('domain XML: input is larger than 1000 bytes');
    expect(parseDomainXml(xml, { maxBytes: 2000 }).name).toHaveLength(600);
  });

  it('a wide document (a million elements or attributes) is refused quickly', () => {
    const many = `<disk type='network'><source protocol='nbd'/><target dev='vdz'/></disk>`;
    const n = Math.floor((4 * 1024 * 1024 - 200) / many.length);
    expect(timed(() => parseError(dom(many.repeat(n)))).message).toMatch(/^domain XML: more than 200000 elements and attributes at line 1, column \d+$/);
    const attrs = Array.from({ length: 300_000 }, (_, i) => `a${i}='1'`).join(' ');
    expect(timed(() => parseError(`<domain ${attrs}/>`)).message).toMatch(/more than 200000 elements and attributes/);
  });

  it('a large but plausible domain (2000 disks) parses in bounded time', () => {
    const disks = Array.from({ length: 2000 }, (_, i) => `<disk type='file' device='disk'><driver name='qemu' type='raw'/>` +
      `<source file='/srv/img/${i}.img'/><target dev='vd${i}' bus='virtio'/></disk>`).join('');
    expect(timed(() => parseDomainXml(dom(disks))).disks).toHaveLength(2000);
  });

  it('the worst text-heavy input under the size limit still finishes in bounded time', () => {
    const refs = dom('').replace('<name>t</name>', `<name>${'&#x1F600;'.repeat(400_000)}</name>`);
    expect(timed(() => parseDomainXml(refs)).name).toHaveLength(800_000);
  });

  it('deep nesting (500 000 levels) is refused quickly', () => {
    const deep = `<domain>${'<a>'.repeat(500_000)}${'</a>'.repeat(500_000)}</domain>`;
    expect(timed(() => parseError(deep)).message).toBe('domain XML: elements are nested more than 512 deep at line 1, column 1542');
    expect(timed(() => parseError('<a>'.repeat(1_300_000))).message).toMatch(/nested more than 512 deep/);
  });

  it('error messages quote input briefly and on one line', () => {
    const key = `${'k'.repeat(100)}\nsecond line`;
    const e = parseError(dom(`<lease><lockspace>L</lockspace><key>${key}</key></lease>`));
    expect(e.message).toBe(`domain XML: <lease> #1 (key '${'k'.repeat(64)}…') has no <target path=...>`);
    expect(parseError(`<domain>${'</' + 'x'.repeat(10_000) + '>'}`).message.length).toBeLessThan(200);
  });

  it('a 300-image backingStore chain (deep but legitimate) parses', () => {
    let chain = '<backingStore/>';
    for (let i = 1; i <= 300; i++) chain = `<backingStore type='file' index='${i}'><format type='qcow2'/><source file='/img/${i}'/>${chain}</backingStore>`;
    const d = parseDomainXml(dom(disk(`<source file='/img/top'/>${chain}`)));
    expect(d.disks[0].source).toEqual({ type: 'file', path: '/img/top' });
  });

  it.each([
    ['', 'domain XML: input is empty'],
    ['   \n', 'domain XML: input is empty'],
    ['hello world', 'domain XML: text outside the root element at line 1, column 1'],
    ['{"name": "web01"}', 'domain XML: text outside the root element at line 1, column 1'],
    ['<domain><name>t</name>', 'domain XML: input ends inside <domain> (unclosed: domain)'],
    ['<domain><name>t</domain>', 'domain XML: end tag </domain> does not match <name> (opened at line 1) at line 1, column 16'],
    ['<domain/><domain/>', 'domain XML: more than one root element at line 1, column 10'],
    ['<domain/>trailing', 'domain XML: text outside the root element at line 1, column 10'],
    ["<domain a='<'/>", "domain XML: '<' is not allowed in an attribute value at line 1, column 12"],
    ["<domain a='1' a='2'/>", "domain XML: not well-formed: Attribute 'a' is repeated at line 1, column 15"],
    ['<domain a/>', "domain XML: not well-formed: boolean attribute 'a' is not allowed at line 1, column 9"],
    ['<domain><!-- open', 'domain XML: comment is not closed at line 1, column 9'],
    ['<domain><![CDATA[x', 'domain XML: CDATA section is not closed at line 1, column 9'],
    ['<domain\u0001/>', 'domain XML: character U+0001 is not allowed in XML at line 1, column 8'],
    ['<domain>\uD800</domain>', 'domain XML: character U+D800 is not allowed in XML at line 1, column 9'],
    ['<domain><!ENTITY x "y"></domain>', "domain XML: markup declaration '<!ENTITY' is not allowed at line 1, column 9"],
    ['</domain>', 'domain XML: end tag </domain> has no start tag at line 1, column 1'],
  ])('not well-formed: %j', (xml, msg) => {
    expect(parseError(xml).message).toBe(msg);
  });

  it('truncated domain XML names the unclosed elements', () => {
    expect(parseError(fixture('hostile/truncated.xml')).message)
      .toBe('domain XML: input ends inside <disk> (unclosed: domain > devices > disk)');
  });

  it('binary garbage and invalid UTF-8', () => {
    expect(parseError(Buffer.from([0xff, 0xfe, 0x00, 0x3c])).message).toBe('domain XML: input is not valid UTF-8');
    expect(parseError(Buffer.from([0x3c, 0x61, 0x00, 0x3e])).message).toMatch(/character U\+0000 is not allowed/);
  });

  it('XML that is not a domain', () => {
    expect(parseError(fixture('hostile/not-domain.xml')).message).toBe('domain XML: root element is <network>, expected <domain>');
    expect(parseError(`<domstatus><domain><name>t</name><uuid>${UUID}</uuid></domain></domstatus>`).message)
      .toBe('domain XML: root element is <domstatus>, expected <domain>');
    expect(parseError(`<x:domain xmlns:x='urn:x'/>`).message).toBe('domain XML: root element is <x:domain>, expected <domain>');
  });

  it('missing uuid or name', () => {
    expect(parseError(fixture('hostile/missing-uuid.xml')).message).toBe("domain XML: <domain> 'nouuid' has no <uuid>");
    expect(parseError(`<domain><uuid>${UUID}</uuid></domain>`).message).toBe('domain XML: <domain> has no <name>');
    expect(parseError(`<domain><name></name><uuid>${UUID}</uuid></domain>`).message).toBe('domain XML: <domain> has no <name>');
  });

  it('prototype-pollution names are refused without touching Object.prototype', () => {
    for (const xml of [dom('<__proto__><polluted>1</polluted></__proto__>'), dom('<constructor/>'), `<domain __proto__='x'/>`]) {
      expect(parseError(xml).message).toMatch(/^domain XML: could not be parsed: /);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('maxDepth and maxNodes are configurable', () => {
    // domain > devices > disk (source and target are empty elements)
    expect(parseError(dom(disk("<source file='/a'/>")), { maxDepth: 2 }).message).toMatch(/nested more than 2 deep/);
    expect(parseDomainXml(dom(disk("<source file='/a'/>")), { maxDepth: 3 }).disks).toHaveLength(1);
    expect(parseError(dom(disk("<source file='/a'/>")), { maxNodes: 10 }).message).toMatch(/more than 10 elements and attributes/);
  });
});
