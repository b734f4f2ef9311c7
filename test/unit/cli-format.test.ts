/**
 * sanlock's printf formats, reproduced exactly; and the direct commands driven in-process over an
 * in-memory device for cases a regular file cannot produce (4K block devices, timeouts, write
 * order, records whose u64 fields exceed 2^53).
 */
import { readFileSync } from 'fs';
import { join } from 'path';
import { run } from '../../src/cli/program';
import {
  asInt32, bitmapHostIds, formatDblockLine, formatDeltaRow, formatDumpHeader, formatLeaderFields, formatPaxosRow,
  formatRentryLine, formatRindexHeaderLine, formatSharedLine, padStr, readRawDblock, readRawLeader, readRawRequest,
  readRawRindexEntry, readRawRindexHeader, zeroPad, zeroRawLeader,
} from '../../src/cli/sanlock-format';
import { buildResourceArea, geometryFor, LEADER_CHECKSUM_LEN, LeaseError, sanlockChecksum } from '../../src/ondisk';
import { FIXTURES } from '../helpers/cli';
import { MemoryStorage, memoryContext } from '../helpers/memory-storage';

const MiB = 1048576;
const img = (n: string) => readFileSync(join(FIXTURES, n));

describe('printf emulation', () => {
  it('%Ns pads on the left and never truncates; %0N pads with zeros', () => {
    expect(padStr('LS', 6)).toBe('    LS');
    expect(padStr('x'.repeat(40), 36)).toBe('x'.repeat(40));
    expect(zeroPad(7, 4)).toBe('0007');
    expect(zeroPad(12345, 4)).toBe('12345');
    expect(zeroPad(18446744073709551615n, 10)).toBe('18446744073709551615');
    expect(asInt32(0xffffffff)).toBe('-1');
  });

  it('the dump header, with and without -f', () => {
    expect(formatDumpHeader(0)).toBe('  offset                            lockspace                                         resource  timestamp  own  gen lver\n');
    expect(formatDumpHeader(1)).toBe('  offset                            lockspace                                         resource  timestamp  own  gen lver/req/mode\n');
  });

  it('a delta row with its bitmap hosts (ls_bitmap.img)', () => {
    const b = img('ls_bitmap.img');
    expect(bitmapHostIds(b, 0, 2000)).toEqual([1, 3, 16]);
    expect(formatDeltaRow(0, readRawLeader(b), bitmapHostIds(b, 0, 2000))).toBe(
      '00000000                                   LS                                            hostB 0000000511 0001 0003 1 3 16\n',
    );
  });

  it('a paxos row, request, dblock and shared holder line (res_acq_g2.img)', () => {
    const b = img('res_acq_g2.img');
    const l = readRawLeader(b);
    expect(formatPaxosRow(0, l)).toBe('00000000                                   LS                                             RES1 0000000409 0001 0002 2\n');
    expect(formatPaxosRow(0, l, readRawRequest(b, 512))).toMatch(/ 2\/0\/0\n$/);
    expect(formatDblockLine(0, readRawDblock(b, 1024))).toBe('dblock[0000] mbal 2001 bal 2001 inp 1 inp2 2 inp3 409 lver 2 sum edf288d8\n');
    expect(formatSharedLine(3, 5n)).toBe(`${' '.repeat(106)}0003 0005 SH\n`);
  });

  it('rindex header and entry lines (rx.img)', () => {
    const b = img('rx.img');
    const h = readRawRindexHeader(b, MiB);
    expect(formatRindexHeaderLine(MiB, h)).toBe('01048576                                   LS rindex_header 0x1 512 4096 1048576\n');
    expect(formatRentryLine(MiB + 512, h.lockspaceName, readRawRindexEntry(b, MiB + 512))).toBe('01049088                                   LS rentry myres 3145728\n');
  });

  it('read_leader fields: hex without leading zeros, every u64 exact', () => {
    const zero = formatLeaderFields(zeroRawLeader(), true);
    expect(zero).toBe([
      'magic 0x0', 'version 0x0', 'flags 0x0', 'sector_size 0', 'num_hosts 0', 'max_hosts 0', 'owner_id 0', 'owner_generation 0',
      'lver 0', 'space_name ', 'resource_name ', 'timestamp 0', 'checksum 0x0', 'io_timeout 0', 'extra1 0', 'extra2 0', 'extra3 0', '',
    ].join('\n'));
    const b = Buffer.alloc(200, 0xff);
    const text = formatLeaderFields(readRawLeader(b), false);
    expect(text).toContain('num_hosts 18446744073709551615\n');
    expect(text).toContain('write_timestamp 18446744073709551615\n');
    expect(text).toContain(`space_name ${'\xff'.repeat(48)}\n`);
    expect(text).toContain('io_timeout 65535\n');
  });
});

describe('direct commands over an in-memory device', () => {
  it('init -s writes the area with sector 0 uncommitted, then the commit sector, like sanlock', async () => {
    const dev = new MemoryStorage({ size: MiB });
    const { ctx, cap } = memoryContext(dev);
    expect(await run(['node', 'lockagent', 'direct', 'init', '-s', 'LS:0:/dev/x:0'], ctx)).toBe(0);
    expect(cap.stdout).toBe('init done 0\n');
    expect(dev.writes.map((w) => [w.offset, w.data.length])).toEqual([[0, MiB], [0, 512]]);
    expect(dev.writes[0].data.readUInt32LE(0)).toBe(0);
    expect(dev.writes[1].data.readUInt32LE(0)).toBe(0x12212010);
    expect(dev.data.equals(img('ls.img'))).toBe(true);
    expect(dev.closed).toBe(true);
  });

  it('block devices: 4K logical sectors default to 4096/8M; -Z 512 on them is refused; too small a device fails with -28', async () => {
    const dev = new MemoryStorage({ size: 16 * MiB, isBlockDevice: true, logicalSectorSize: 4096 });
    const a = memoryContext(dev);
    expect(await run(['node', 'l', 'direct', 'init', '-r', 'LS:R:/dev/sdz:8M'], a.ctx)).toBe(0);
    expect(dev.data.subarray(8 * MiB).equals(buildResourceArea({ spaceName: 'LS', resourceName: 'R', geometry: geometryFor(4096, 8 * MiB) }))).toBe(true);

    const b = memoryContext(new MemoryStorage({ size: 16 * MiB, isBlockDevice: true, logicalSectorSize: 4096 }));
    expect(await run(['node', 'l', 'direct', 'init', '-s', 'LS:0:/dev/sdz:0', '-Z', '512', '-A', '1M'], b.ctx)).toBe(2);
    expect(b.cap.stderr).toEqual([expect.stringMatching(/4096-byte logical sectors; -Z 512 cannot be used on it/)]);

    const small = new MemoryStorage({ size: MiB + 4096, isBlockDevice: true });
    const c = memoryContext(small);
    expect(await run(['node', 'l', 'direct', 'init', '-s', 'LS:0:/dev/sdy:1M'], c.ctx)).toBe(1);
    expect(c.cap.stdout).toBe('init done -28\n');
    expect(c.cap.stderr[0]).toMatch(/the device is 1052672 bytes, the lease area needs 2097152/);
    expect(small.writes).toEqual([]);

    const odd = memoryContext(new MemoryStorage({ size: 16 * MiB, isBlockDevice: true, logicalSectorSize: 2048 }));
    expect(await run(['node', 'l', 'direct', 'init', '-s', 'LS:0:/dev/sdx:0'], odd.ctx)).toBe(2);
    expect(odd.cap.stderr[0]).toMatch(/2048-byte logical sectors.*give -Z and -A/);
  });

  it('-z 1 stamps write_timestamp with the monotonic clock', async () => {
    const dev = new MemoryStorage({ size: MiB });
    const { ctx } = memoryContext(dev, 677);
    expect(await run(['node', 'l', 'direct', 'init', '-r', 'LS:RES1:/f:0', '-z', '1'], ctx)).toBe(0);
    expect(dev.data.equals(img('res_clear.img'))).toBe(true);
  });

  it('an I/O timeout is reported as -202 with its meaning', async () => {
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: MiB, timeout: true }));
    expect(await run(['node', 'l', 'direct', 'read_leader', '-r', 'LS:R:/f:0'], ctx)).toBe(1);
    expect(cap.stdout).toBe('read_leader done -202\n');
    expect(cap.stderr).toEqual([expect.stringMatching(/did not complete within io_timeout \(sanlock -202 SANLK_AIO_TIMEOUT\)/)]);
    const w = memoryContext(new MemoryStorage({ size: MiB, timeout: true }));
    expect(await run(['node', 'l', 'direct', 'init', '-r', 'LS:R:/f:0'], w.ctx)).toBe(1);
    expect(w.cap.stdout).toBe('init done -202\n');
    expect(w.cap.stderr[0]).toMatch(/half-written/);
  });

  it('an open that times out (hung NFS) is one line naming the storage, not a crash', async () => {
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: MiB }));
    ctx.openStorage = async () => {
      throw new LeaseError(-202, 'opening /nfs/lease did not complete within 10000 ms');
    };
    expect(await run(['node', 'l', 'direct', 'read_leader', '-s', 'LS:1:/nfs/lease:0'], ctx)).toBe(1);
    expect(cap.stdout).toBe('read_leader done -19\n');
    expect(cap.stderr).toEqual([expect.stringMatching(/did not complete within 10000 ms; the storage is not responding/)]);
  });

  it('dump --json: u64 beyond 2^53 become strings; a num_hosts past the area stops at the area end', async () => {
    const area = buildResourceArea({ spaceName: 'LS', resourceName: 'BIG', geometry: geometryFor(512, MiB) });
    area.writeBigUInt64LE(0xffffffffffffffffn, 16); // num_hosts
    area.writeBigUInt64LE(2n ** 60n, 152); // timestamp
    area.writeUInt32LE(sanlockChecksum(area, 0, LEADER_CHECKSUM_LEN), 168);
    for (let i = 0; i < 2046; i++) area.writeBigUInt64LE(BigInt(i + 1), (2 + i) * 512); // every dblock's mbal
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: MiB }, area));
    expect(await run(['node', 'l', 'direct', 'dump', '/f', '-f', '2'], ctx)).toBe(0);
    const lines = cap.stdout.split('\n').filter(Boolean);
    expect(lines[1]).toBe(`00000000 ${padStr('LS', 36)} ${padStr('BIG', 48)} 1152921504606846976 0000 0000 0/0/0`);
    expect(lines.length).toBe(2 + 2046); // header, leader, then dblocks up to the end of the 1M area
    expect(lines[lines.length - 1]).toMatch(/^dblock\[2045\] mbal 2046 /);

    const j = memoryContext(new MemoryStorage({ size: MiB }, area));
    expect(await run(['node', 'l', 'direct', 'dump', '/f', '--json'], j.ctx)).toBe(0);
    const out = j.cap.json[0] as { areas: { leader: { numHosts: unknown; timestamp: unknown }; verdict: { rv: number } }[] };
    expect(out.areas[0].leader.numHosts).toBe('18446744073709551615');
    expect(out.areas[0].leader.timestamp).toBe('1152921504606846976');
    expect(out.areas[0].verdict.rv).toBe(-214); // mbal without a checksum: dblocks do not verify
  });

  it('read_leader --json carries the verdict, its name and sentence', async () => {
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: MiB }, img('err_cs.img')));
    expect(await run(['node', 'l', 'direct', 'read_leader', '-r', 'LS:RES1:/f:0', '--json'], ctx)).toBe(1);
    expect(cap.stdout).toBe('');
    expect(cap.json[0]).toMatchObject({
      action: 'read_leader', rv: -229,
      result: { rv: -229, name: 'SANLK_LEADER_CHECKSUM', meaning: expect.stringMatching(/bad checksum/) },
      target: { kind: 'resource', lockspace: 'LS', resource: 'RES1', path: '/f', offset: 0 },
      leader: { magic: '0x06152010', checksum: '0xe0217f4c', numHosts: 2000, resourceName: 'RES1' },
    });
    expect(cap.stderr).toHaveLength(1);
  });
});
