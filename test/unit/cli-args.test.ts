/** Argument strings of `lockagent direct` (sanlock syntax), parsed without any I/O. */
import {
  escapePath, parseAlignOpt, parseByteCount, parseClearOpt, parseDumpTarget, parseForceModeOpt, parseGeometryOpts,
  parseIoTimeoutOpt, parseLockspaceArg, parseLockspaceName, parseNumHostsOpt, parsePidOpt, parseResourceArg, parseSectorSizeOpt,
  splitEscaped, UsageError,
} from '../../src/config/sanlockargs';

const MiB = 1048576;

describe('splitEscaped / escapePath', () => {
  it('splits on unescaped colons and drops the escaping backslash', () => {
    expect(splitEscaped('a:b\\:c:d\\ e', 'x')).toEqual(['a', 'b:c', 'd e']);
    expect(splitEscaped('a\\\\:b', 'x')).toEqual(['a\\', 'b']);
    expect(splitEscaped('', 'x')).toEqual(['']);
  });
  it('refuses a lone trailing backslash', () => {
    expect(() => splitEscaped('a\\', 'x')).toThrow(UsageError);
  });
  it('escapePath round-trips through splitEscaped', () => {
    for (const p of ['/dev/mapper/vg-lv', '/tmp/a:b c/\\x', 'plain']) {
      expect(splitEscaped(`LS:0:${escapePath(p)}:0`, 'x')[2]).toBe(p);
    }
  });
});

describe('-s LOCKSPACE', () => {
  it('parses name, host_id, path and offset (bytes or M)', () => {
    expect(parseLockspaceArg('LS:1:/dev/sdb:0')).toEqual({ name: 'LS', hostId: 1, path: '/dev/sdb', offset: 0 });
    expect(parseLockspaceArg('LS:2000:/x\\:y:3M')).toEqual({ name: 'LS', hostId: 2000, path: '/x:y', offset: 3 * MiB });
    expect(parseLockspaceArg('LS:0:/x:1048576').offset).toBe(MiB);
  });
  it('keeps a 48-byte name and refuses 49 bytes, counting UTF-8 bytes', () => {
    expect(parseLockspaceArg(`${'L'.repeat(48)}:0:/x:0`).name).toBe('L'.repeat(48));
    expect(() => parseLockspaceArg(`${'L'.repeat(49)}:0:/x:0`)).toThrow(/49 bytes; at most 48/);
    // 24 two-byte characters = 48 bytes: fits, stored as its UTF-8 bytes
    const name = parseLockspaceArg(`${'é'.repeat(24)}:0:/x:0`).name;
    expect(Buffer.from(name, 'latin1').toString('utf8')).toBe('é'.repeat(24));
    expect(name.length).toBe(48);
    expect(() => parseLockspaceArg(`${'é'.repeat(24)}x:0:/x:0`)).toThrow(/49 bytes/);
  });
  it('refuses malformed strings', () => {
    for (const bad of ['LS:1:/x', 'LS:1:/x:0:9', ':1:/x:0', 'LS:one:/x:0', 'LS:1::0', 'LS:1:/x:-1', 'LS:1:/x:1.5M', 'LS:1:/x:1G', 'LS:1:/x:']) {
      expect(() => parseLockspaceArg(bad)).toThrow(UsageError);
    }
  });
  it('refuses a path longer than sanlock\'s 1023 bytes', () => {
    expect(() => parseLockspaceArg(`LS:1:/${'p'.repeat(1023)}:0`)).toThrow(/longer than 1023 bytes/);
    expect(parseLockspaceArg(`LS:1:/${'p'.repeat(1022)}:0`).path.length).toBe(1023);
  });
  it('the name alone (rem_lockspace, host_status, renewal) is the name the whole string gives', () => {
    for (const s of ['LS:1:/x:0', 'my\\:ls:1:/x\\:y:0', 'é:0:/x:0']) {
      expect(parseLockspaceName(s)).toBe(parseLockspaceArg(s).name);
      expect(parseLockspaceName(s.split(/(?<!\\):/)[0])).toBe(parseLockspaceArg(s).name);
    }
    expect(() => parseLockspaceName(`${'L'.repeat(49)}`)).toThrow(/49 bytes; at most 48/);
    expect(() => parseLockspaceName(':1:/x:0')).toThrow(/lockspace name is empty/);
  });
});

describe('-r RESOURCE', () => {
  it('parses one disk, with an optional lver or SH', () => {
    expect(parseResourceArg('LS:RES:/p:1M')).toEqual({ lockspace: 'LS', resource: 'RES', path: '/p', offset: MiB });
    expect(parseResourceArg('LS:RES:/p:0:7')).toMatchObject({ lver: 7 });
    expect(parseResourceArg('LS:RES:/p:0:SH')).toMatchObject({ shared: true });
  });
  it('refuses more than one disk, names over 48 bytes, and a bad lver', () => {
    expect(() => parseResourceArg('LS:RES:/p:0:/q:0')).toThrow(/one disk per resource/);
    // by-path names hold colons: the refusal says how to write them
    expect(() => parseResourceArg('LS:R:/dev/disk/by-path/pci-0000:00:1f.2-ata-1:0')).toThrow(/names 2 disks; .*escape ':' in the path as '\\:'/);
    expect(parseResourceArg('LS:R:/dev/disk/by-path/pci-0000\\:00\\:1f.2-ata-1:0').path).toBe('/dev/disk/by-path/pci-0000:00:1f.2-ata-1');
    expect(() => parseResourceArg(`LS:${'R'.repeat(49)}:/p:0`)).toThrow(/resource name .* 49 bytes/);
    expect(() => parseResourceArg(`${'L'.repeat(49)}:R:/p:0`)).toThrow(/lockspace name .* 49 bytes/);
    expect(() => parseResourceArg('LS:RES:/p:0:x')).toThrow(UsageError);
    expect(() => parseResourceArg('LS:RES:/p')).toThrow(UsageError);
  });
});

describe('dump target PATH[:OFFSET[:SIZE]]', () => {
  it('parses path, offset and size', () => {
    expect(parseDumpTarget('/p')).toEqual({ path: '/p', offset: 0, size: 0 });
    expect(parseDumpTarget('/p:1M')).toEqual({ path: '/p', offset: MiB, size: 0 });
    expect(parseDumpTarget('/a\\:b:512:2M')).toEqual({ path: '/a:b', offset: 512, size: 2 * MiB });
    expect(() => parseDumpTarget('/p:0:1M:x')).toThrow(UsageError);
    expect(() => parseDumpTarget(':0')).toThrow(/path is empty/);
  });
});

describe('options', () => {
  it('-Z/-A must come together and be one of the five pairs', () => {
    expect(parseGeometryOpts(undefined, undefined)).toBeUndefined();
    expect(parseGeometryOpts('512', '1M')).toMatchObject({ sectorSize: 512, alignSize: MiB, maxHosts: 2000 });
    expect(parseGeometryOpts('4096', '1M')).toMatchObject({ maxHosts: 250 });
    expect(parseGeometryOpts('4096', '2M')).toMatchObject({ maxHosts: 500 });
    expect(parseGeometryOpts('4096', '4M')).toMatchObject({ maxHosts: 1000 });
    expect(parseGeometryOpts('4096', '8M')).toMatchObject({ maxHosts: 2000, alignFlag: 0x80 });
    expect(() => parseGeometryOpts('4096', undefined)).toThrow(/together.*only -Z/);
    expect(() => parseGeometryOpts(undefined, '1M')).toThrow(/together.*only -A/);
    for (const [z, a] of [['512', '2M'], ['512', '4M'], ['512', '8M']]) {
      expect(() => parseGeometryOpts(z, a)).toThrow(/invalid sector\/align combination/);
    }
    expect(() => parseSectorSizeOpt('1024')).toThrow(UsageError);
    for (const bad of ['3M', '1m', '1048576', '16M', 'M']) expect(() => parseAlignOpt(bad)).toThrow(UsageError);
  });
  it('-o: 0 means the default 10; 16 bits at most', () => {
    expect(parseIoTimeoutOpt('0')).toBe(10);
    expect(parseIoTimeoutOpt('5')).toBe(5);
    expect(parseIoTimeoutOpt('65535')).toBe(65535);
    expect(() => parseIoTimeoutOpt('65536')).toThrow(UsageError);
    expect(() => parseIoTimeoutOpt('-1')).toThrow(UsageError);
    // add_lockspace: the agent's one-byte bound
    expect(parseIoTimeoutOpt('255', 255)).toBe(255);
    expect(() => parseIoTimeoutOpt('256', 255)).toThrow(/-o io_timeout 256 is too large \(at most 255\)/);
  });
  it('-p: a positive pid', () => {
    expect(parsePidOpt('1')).toBe(1);
    expect(parsePidOpt('4194304')).toBe(4194304);
    for (const bad of ['0', '-1', '01', 'abc', '1.5', '', '2147483648']) expect(() => parsePidOpt(bad)).toThrow(/invalid -p .*positive integer/);
  });
  it('-n, -z, -f', () => {
    expect(parseNumHostsOpt('0')).toBe(0);
    expect(parseNumHostsOpt('10')).toBe(10);
    expect(() => parseNumHostsOpt('-5')).toThrow(UsageError);
    expect(parseClearOpt('1')).toBe(true);
    expect(parseClearOpt('0')).toBe(false);
    expect(() => parseClearOpt('yes')).toThrow(UsageError);
    expect(parseForceModeOpt('2')).toBe(2);
    expect(() => parseForceModeOpt('3')).toThrow(UsageError);
  });
  it('byte counts are exact integers', () => {
    expect(parseByteCount('8M', 'x')).toBe(8 * MiB);
    expect(() => parseByteCount('99999999999999999999', 'x')).toThrow(/too large/);
    expect(() => parseByteCount(' 1', 'x')).toThrow(UsageError);
  });
});
