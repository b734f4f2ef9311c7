/**
 * Argument strings of `lockagent direct` (sanlock syntax), parsed without any I/O; and the
 * options sanlock's parser gives every direct command, run in-process over an in-memory device.
 */
import { buildProgram, run } from '../../src/cli/program';
import {
  escapePath, exportPath, formatSanlockHeld, parseAioOpt, parseAlignOpt, parseByteCount, parseClearOpt, parseDumpTarget,
  parseForceModeOpt, parseGeometryOpts, parseIoTimeoutOpt, parseLockspaceArg, parseLockspaceName, parseNumHostsOpt, parsePidOpt,
  parseResourceArg, parseSectorSizeOpt, parseUnsigned, splitEscaped, UsageError,
} from '../../src/config/sanlockargs';
import { decodeLeader, hostIdOutOfRange } from '../../src/ondisk';
import { MemoryStorage, memoryContext } from '../helpers/memory-storage';

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

// sanlock_path_export and sanlock_res_to_str (sanlock src/client.c), as `sanlock client inquire`
// and `client status` print them (seen against the real daemon; test/interop/client-strings)
describe('exportPath / formatSanlockHeld: sanlock\'s printed form', () => {
  it('escapes ":" and " " in a path, passes "\\" through with the character after it', () => {
    expect(exportPath('/a:b/sp ace')).toBe('/a\\:b/sp\\ ace');
    expect(exportPath('/b\\c')).toBe('/b\\c');
    expect(exportPath('/b\\:c')).toBe('/b\\:c');
    expect(exportPath('/b\\ c')).toBe('/b\\ c');
    expect(exportPath('/end\\')).toBe('/end\\');
    expect(exportPath('/p/é')).toBe('/p/é');
  });
  it('prints names as they are, the path exported in UTF-8 bytes, then the lver or SH', () => {
    const held = { lockspace: 'L:S', resource: 'R 1', path: '/a:b/é', offset: 512, lver: 3 };
    expect(Buffer.from(formatSanlockHeld(held), 'latin1').toString('utf8')).toBe('L:S:R 1:/a\\:b/é:512:3');
    expect(formatSanlockHeld({ ...held, mode: 'exclusive' })).toBe(formatSanlockHeld(held));
    expect(formatSanlockHeld({ ...held, path: '/p', mode: 'shared' })).toBe('L:S:R 1:/p:512:SH');
  });
});

// sanlock reads its numbers with atoi/atoll/sscanf %llu (decimal) and strtoull(…, 0) (a C literal:
// -r's lver, -i, -g); what those would read only in part is refused
describe('parseUnsigned: the one reader of numbers', () => {
  it('decimal, leading zeros allowed', () => {
    expect(parseUnsigned('010', 'x')).toBe(10);
    expect(parseUnsigned('0', 'x')).toBe(0);
    for (const bad of ['0x10', '12x', ' 1', '+1', '-1', '', '1.5', '1e3']) expect(() => parseUnsigned(bad, 'x')).toThrow(/^invalid x ".*": expected a non-negative integer$/);
  });
  it('as a C literal: hex and octal as strtoull base 0 reads them', () => {
    expect(parseUnsigned('0x1f', 'x', { cLiteral: true })).toBe(31);
    expect(parseUnsigned('0X1F', 'x', { cLiteral: true })).toBe(31);
    expect(parseUnsigned('017', 'x', { cLiteral: true })).toBe(15);
    expect(parseUnsigned('0', 'x', { cLiteral: true })).toBe(0);
    expect(parseUnsigned('19', 'x', { cLiteral: true })).toBe(19);
    for (const bad of ['08', '0x', '1x', '0x1g', ' 5', '+5', '-1', '']) expect(() => parseUnsigned(bad, 'x', { cLiteral: true })).toThrow(/invalid x .*0x1f.*017/);
  });
  it('bounds: min and max, and never past 2^53 - 1', () => {
    expect(() => parseUnsigned('0', 'x', { min: 1 })).toThrow(/^invalid x "0": expected an integer of 1 or more$/);
    expect(() => parseUnsigned('11', 'x', { max: 10 })).toThrow(/^x 11 is too large \(at most 10\)$/);
    expect(parseUnsigned('9007199254740991', 'x')).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => parseUnsigned('9007199254740992', 'x')).toThrow(/too large/);
    expect(() => parseUnsigned('0x20000000000000', 'x', { cLiteral: true })).toThrow(/too large/);
  });
});

describe('hostIdOutOfRange: the host_ids a host joins as', () => {
  it('1..2000', () => {
    for (const ok of [1, 2000]) expect(hostIdOutOfRange(ok)).toBeUndefined();
    for (const bad of [0, 2001, 1.5, -1, NaN]) expect(hostIdOutOfRange(bad)).toBe(`host_id ${bad} is outside 1..2000`);
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
    for (const bad of ['LS:1', 'LS:1:/x:0:9', ':1:/x:0', 'LS:one:/x:0', 'LS:1x:/x:0', 'LS:1::0', 'LS:1:/x:-1', 'LS:1:/x:1.5M', 'LS:1:/x:1G', 'LS:1:/x:']) {
      expect(() => parseLockspaceArg(bad)).toThrow(UsageError);
    }
  });
  it('without OFFSET the offset is 0, as in sanlock; a fifth field (an unescaped ":" in the path) is refused', () => {
    expect(parseLockspaceArg('LS:1:/dev/sdb')).toEqual({ name: 'LS', hostId: 1, path: '/dev/sdb', offset: 0 });
    expect(parseLockspaceArg('LS:1:/a\\:b')).toEqual({ name: 'LS', hostId: 1, path: '/a:b', offset: 0 });
    // sanlock would open /a at offset atoll("b:0") = 0
    expect(() => parseLockspaceArg('LS:1:/a:b:0')).toThrow(/has 5 fields; .*escape ':' in the path as '\\:'/);
  });
  it('refuses a path longer than sanlock\'s 1023 bytes', () => {
    expect(() => parseLockspaceArg(`LS:1:/${'p'.repeat(1023)}:0`)).toThrow(/longer than 1023 bytes/);
    expect(parseLockspaceArg(`LS:1:/${'p'.repeat(1022)}:0`).path.length).toBe(1023);
  });
  // sanlock_str_to_lockspace: the name is copied as written, the path through sanlock_path_import
  // (every backslash dropped); seen with `sanlock direct init -s 'my\:ls:0:…'` (space_name my\:ls)
  it('keeps a backslash in the name and drops every backslash of the path, as sanlock', () => {
    expect(parseLockspaceArg('my\\:ls:1:/x\\:y:0')).toEqual({ name: 'my\\:ls', hostId: 1, path: '/x:y', offset: 0 });
    expect(parseLockspaceArg('a\\ b\\\\c:1:/sp\\ ace/\\q:0')).toEqual({ name: 'a\\ b\\\\c', hostId: 1, path: '/sp ace/q', offset: 0 });
    expect(parseLockspaceName('my\\:ls')).toBe('my\\:ls');
    // sanlock would drop both backslashes and open /ab
    expect(() => parseLockspaceArg('LS:1:/a\\\\b:0')).toThrow(/path in -s .* holds "\\\\": sanlock drops every backslash/);
    expect(() => parseDumpTarget('/a\\\\b')).toThrow(/path in dump .* holds "\\\\"/);
    expect(parseDumpTarget('/a\\ b\\:c:1M').path).toBe('/a b:c');
  });
  it('reads host_id and offset as decimal, as atoll', () => {
    expect(parseLockspaceArg('LS:01:/x:010')).toMatchObject({ hostId: 1, offset: 10 });
    for (const bad of ['LS:0x1:/x:0', 'LS:1:/x:0x10']) expect(() => parseLockspaceArg(bad)).toThrow(UsageError);
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
  // sanlock_str_to_res: `\x` is `x` in every field, the offset is sscanf %llu (decimal), the lver
  // strtoull(…, 0) (seen: `sanlock client inquire -D -r LS:R:/p:0:017` logs lver 15)
  it('unescapes every field, reads the offset as decimal and the lver as a C literal', () => {
    expect(parseResourceArg('L\\:S:R\\ 1:/a\\:b\\\\c:010:0x1f')).toEqual({ lockspace: 'L:S', resource: 'R 1', path: '/a:b\\c', offset: 10, lver: 31 });
    expect(parseResourceArg('LS:R:/p:0:017').lver).toBe(15);
    expect(parseResourceArg('LS:R:/p:0:0').lver).toBe(0);
    for (const bad of ['LS:R:/p:0x10', 'LS:R:/p:0:08', 'LS:R:/p:0:1x', 'LS:R:/p:0:-1', 'LS:R:/p:0:SHX']) expect(() => parseResourceArg(bad)).toThrow(UsageError);
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

describe('names and paths that are not UTF-8', () => {
  // what Node makes of argv byte 0xe9 (latin1 "é"): a name or path sanlock would take as that byte
  const BAD = '\uFFFD';
  it('are refused in every name and path, naming the field', () => {
    expect(() => parseLockspaceArg(`L${BAD}:1:/x:0`)).toThrow(/^lockspace name in ".*" contains bytes that are not UTF-8; lockagent takes names and paths in UTF-8 only/);
    expect(() => parseLockspaceArg(`LS:1:/x${BAD}:0`)).toThrow(/^path in ".*" contains bytes that are not UTF-8/);
    expect(() => parseResourceArg(`LS:R${BAD}:/p:0`)).toThrow(/^resource name in ".*" contains bytes that are not UTF-8/);
    expect(() => parseResourceArg(`L${BAD}:R:/p:0`)).toThrow(/^lockspace name/);
    expect(() => parseResourceArg(`LS:R:/p${BAD}:0`)).toThrow(/^path in/);
    expect(() => parseDumpTarget(`/p${BAD}`)).toThrow(/^path in .*not UTF-8/);
    expect(() => parseLockspaceName(`L${BAD}`)).toThrow(/not UTF-8/);
  });
  it('UTF-8 names and paths still pass', () => {
    expect(parseResourceArg('LS:é:/p/é:0').path).toBe('/p/é');
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
  it('-p: a positive pid, decimal as sanlock\'s atoi reads it', () => {
    expect(parsePidOpt('1')).toBe(1);
    expect(parsePidOpt('01')).toBe(1);
    expect(parsePidOpt('4194304')).toBe(4194304);
    expect(parsePidOpt('2147483647')).toBe(2147483647);
    for (const bad of ['0', '-1', 'abc', '1.5', '', '0x10']) expect(() => parsePidOpt(bad)).toThrow(/invalid -p .*positive integer/);
    expect(() => parsePidOpt('2147483648')).toThrow(/^-p 2147483648 is too large \(at most 2147483647\)$/);
  });
  it('-a 0|1 (sanlock\'s use-aio switch, ignored)', () => {
    expect(() => parseAioOpt('0')).not.toThrow();
    expect(() => parseAioOpt('1')).not.toThrow();
    for (const bad of ['2', 'x', '', '01']) expect(() => parseAioOpt(bad)).toThrow(/invalid -a .*use -a 0 or -a 1/);
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

describe('sanlock\'s options on every direct command', () => {
  const A = 'LS:R:/m:0';
  const B = 'LS:R2:/other:0';
  const direct = async (storage: MemoryStorage, ...args: string[]) => {
    const { ctx, cap } = memoryContext(storage);
    const code = await run(['node', 'lockagent', 'direct', ...args], ctx);
    return { code, stdout: cap.stdout, stderr: cap.stderr };
  };
  /** A 1 MiB device with resource LS:R (512/1M) at 0. */
  const resource = async (size = MiB) => {
    const m = new MemoryStorage({ size });
    expect((await direct(m, 'init', '-r', A)).code).toBe(0);
    m.writes.length = 0;
    return m;
  };

  it.each([
    [['init', '-r', A, '-r', B]],
    [['read_leader', '-r', A, '-r', B]],
    [['acquire', '-r', A, '-r', B, '-i', '1']],
    [['release', '-r', A, '-r', B, '-i', '1', '-g', '1']],
    [['init', '-r', A, '-r', B, '-r', A]],
  ])('a repeated -r is refused (sanlock uses the first, commander would keep the last): %j', async (args) => {
    const m = await resource();
    const r = await direct(m, ...args);
    const n = args.filter((a) => a === '-r').length;
    expect(r).toEqual({
      code: 2, stdout: '',
      stderr: [`lockagent: direct ${args[0]}: -r is given ${n} times; sanlock direct acts on the first and ignores the others, lockagent refuses to guess: give one -r`],
    });
    expect(m.writes).toEqual([]);
  });

  it('a repeated -s: the last one counts, as in sanlock', async () => {
    const m = new MemoryStorage({ size: MiB });
    expect((await direct(m, 'init', '-s', 'FIRST:0:/m:0', '-s', 'LAST:0:/m:0')).code).toBe(0);
    expect(decodeLeader(m.data, 0).spaceName).toBe('LAST');
  });

  it('-s without OFFSET writes what the same -s with :0 writes', async () => {
    const a = new MemoryStorage({ size: MiB });
    const b = new MemoryStorage({ size: MiB });
    expect(await direct(a, 'init', '-s', 'LS:0:/m')).toMatchObject({ code: 0, stdout: 'init done 0\n' });
    expect((await direct(b, 'init', '-s', 'LS:0:/m:0')).code).toBe(0);
    expect(a.data.equals(b.data)).toBe(true);
    expect(await direct(a, 'read_leader', '-s', 'LS:1:/m')).toEqual(await direct(b, 'read_leader', '-s', 'LS:1:/m:0'));
  });

  it('-a 0|1 and -D are accepted on every direct command and change nothing', async () => {
    const ls = new MemoryStorage({ size: MiB });
    expect((await direct(ls, 'init', '-s', 'LS:0:/l:0')).code).toBe(0);
    const cmds: [MemoryStorage | (() => Promise<MemoryStorage>), string[]][] = [
      [resource, ['init', '-r', A, '-n', '5']],
      [resource, ['read_leader', '-r', A]],
      [ls, ['read_leader', '-s', 'LS:1:/l:0']],
      [resource, ['dump', '/m', '-f', '2']],
      [resource, ['acquire', '-r', A, '-i', '1', '-g', '1']],
      [resource, ['release', '-r', A, '-i', '1', '-g', '1']],
      // never acquired: -22 at once (acquire_id waits 2 x io_timeout; its options are the same)
      [ls, ['renew_id', '-s', 'LS:1:/l:0']],
      [ls, ['release_id', '-s', 'LS:1:/l:0']],
    ];
    for (const [dev, args] of cmds) {
      const plain = await direct(typeof dev === 'function' ? await dev() : dev, ...args);
      for (const extra of [['-a', '0'], ['-a', '1', '-D'], ['-D']]) {
        const r = await direct(typeof dev === 'function' ? await dev() : dev, ...args, ...extra);
        expect([args, extra, r]).toEqual([args, extra, plain]);
      }
    }
    const directCmd = buildProgram(memoryContext(ls).ctx, () => undefined).commands.find((c) => c.name() === 'direct')!;
    expect(directCmd.commands.map((c) => c.name()).sort()).toEqual(['acquire', 'acquire_id', 'dump', 'init', 'read_leader', 'release', 'release_id', 'renew_id']);
    for (const c of directCmd.commands) expect([c.name(), c.options.filter((o) => o.short === '-a' || o.short === '-D').length]).toEqual([c.name(), 2]);
  });

  it('-a other than 0 or 1 is refused before any I/O', async () => {
    const m = await resource();
    expect(await direct(m, 'init', '-r', A, '-a', '2')).toEqual({
      code: 2, stdout: '',
      stderr: ['lockagent: direct init: invalid -a "2": use -a 0 or -a 1 (sanlock\'s use-aio switch; lockagent accepts it and always uses its own I/O engine)'],
    });
    expect(m.writes).toEqual([]);
  });

  it('-Z without -A: read_leader -r reads sector 0 with it, -s and dump ignore it, init refuses it (as sanlock)', async () => {
    // a resource in a file shorter than 4096 bytes: sanlock reads it only with -Z 512
    const short = await resource(2048);
    const r4k = await direct(short, 'read_leader', '-r', A);
    expect(r4k.stdout).toBe('read_leader done -90\n');
    expect((await direct(short, 'read_leader', '-r', A, '-Z', '512')).stdout).toMatch(/^read_leader done 0\nmagic 0x6152010\n/);
    expect((await direct(short, 'read_leader', '-r', A, '-Z', '1024')).code).toBe(2);
    const ls = new MemoryStorage({ size: MiB });
    expect((await direct(ls, 'init', '-s', 'LS:0:/l:0')).code).toBe(0);
    const plain = await direct(ls, 'read_leader', '-s', 'LS:1:/l:0');
    expect(plain.stdout).toMatch(/^read_leader done 0\n/);
    expect(await direct(ls, 'read_leader', '-s', 'LS:1:/l:0', '-Z', '4096')).toEqual(plain);
    // a 4096/8M lockspace: a lone -Z 512 still reads host 2 at 4096; with -A the sizes are taken as given
    const ls4k = new MemoryStorage({ size: 8 * MiB });
    expect((await direct(ls4k, 'init', '-s', 'L4:0:/l:0', '-Z', '4096', '-A', '8M')).code).toBe(0);
    const host2 = await direct(ls4k, 'read_leader', '-s', 'L4:2:/l:0');
    expect(host2.stdout).toMatch(/^read_leader done 0\n/);
    expect(await direct(ls4k, 'read_leader', '-s', 'L4:2:/l:0', '-Z', '512')).toEqual(host2);
    expect((await direct(ls4k, 'read_leader', '-s', 'L4:2:/l:0', '-Z', '512', '-A', '1M')).stdout).toMatch(/^read_leader done -223\n/);
    const dump = await direct(ls, 'dump', '/l');
    expect(await direct(ls, 'dump', '/l', '-Z', '4096')).toEqual(dump);
    expect((await direct(ls, 'dump', '/l', '-Z', '1024')).code).toBe(2);
    expect(await direct(new MemoryStorage({ size: MiB }), 'init', '-s', 'LS:0:/l:0', '-Z', '512')).toMatchObject({ code: 2, stderr: [expect.stringMatching(/-Z and -A must be given together/)] });
  });

  it('a short read names the host_id only where one places the record (-s)', async () => {
    const short = await resource(2048);
    const r = await direct(short, 'read_leader', '-r', A);
    expect(r.stderr).toEqual([expect.stringMatching(/\(sanlock -90 EMSGSIZE\).*; remedy: check the offset against the size of the lease file or device$/)]);
    const ls = new MemoryStorage({ size: MiB });
    expect((await direct(ls, 'init', '-s', 'LS:0:/l:0')).code).toBe(0);
    const s = await direct(ls, 'read_leader', '-s', 'LS:2049:/l:0');
    expect(s.stdout.split('\n')[0]).toBe('read_leader done -90');
    expect(s.stderr).toEqual([expect.stringMatching(/remedy: check the host_id and the offset .*host_id N is the record in sector N-1/)]);
  });

  it('a name or path that is not UTF-8 is refused before anything is written', async () => {
    const m = new MemoryStorage({ size: MiB });
    const r = await direct(m, 'init', '-r', 'LS:R\uFFFD:/m:0');
    expect(r).toMatchObject({ code: 2, stdout: '', stderr: [expect.stringMatching(/^lockagent: direct init: resource name in .* contains bytes that are not UTF-8/)] });
    expect(m.writes).toEqual([]);
    expect((await direct(m, 'acquire_id', '-s', 'LS:1:/m:0', '-e', 'h\uFFFD')).stderr).toEqual([expect.stringMatching(/-e host name .* contains bytes that are not UTF-8/)]);
  });
});
