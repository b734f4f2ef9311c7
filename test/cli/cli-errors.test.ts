/**
 * `lockagent direct` refuses bad input with one clear line on stderr and a non-zero exit, never
 * a stack trace, and leaves the file exactly as it was. Runs the real CLI as a subprocess.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import {
  asNobodyCommand, canRunAsNobody, cliEntry, copyFixture, expectOneLine, lockagent, makeTempDir, removeTempDir, run, sha256, sparseFile,
} from '../helpers/cli';

const MiB = 1048576;

describe('lockagent direct: bad input is refused cleanly and writes nothing', () => {
  let dir: string;
  let lease: string;
  let plain: string;
  const p = (n: string) => path.join(dir, n);

  beforeAll(async () => {
    cliEntry();
    dir = makeTempDir('lockagent-cli');
    lease = sparseFile(p('lease.img'), 2 * MiB);
    expect((await lockagent(['direct', 'init', '-s', `LS:0:${lease}:0`])).stdout).toBe('init done 0\n');
    plain = p('plain.txt');
    fs.writeFileSync(plain, Buffer.concat([Buffer.from('This is not a lease\n'), Buffer.alloc(MiB - 20, 0x5a)]));
  });
  afterAll(() => removeTempDir(dir));

  /** Run, and check the file's bytes did not change. */
  async function refused(args: string[], file: string, code: number) {
    const before = sha256(file);
    const r = await lockagent(['direct', ...args]);
    expect(sha256(file)).toBe(before);
    expect(r.code).toBe(code);
    return { ...r, line: expectOneLine(r.stderr) };
  }

  describe('usage errors: exit 2, nothing on stdout, nothing opened', () => {
    const cases: [string, (f: string) => string[], RegExp][] = [
      ['misaligned offset (512)', (f) => ['init', '-s', `LS:0:${f}:512`], /offset 512 is not a multiple of the align size 1M.*lockagent does/],
      ['offset not a multiple of 8M with -Z 4096 -A 8M', (f) => ['init', '-r', `LS:R:${f}:1M`, '-Z', '4096', '-A', '8M'], /offset 1048576 is not a multiple of the align size 8M/],
      ['49-byte resource name', (f) => ['init', '-r', `LS:${'R'.repeat(49)}:${f}:0`], /resource name "R{49}" is 49 bytes; at most 48/],
      ['49-byte lockspace name (sanlock silently truncates it)', (f) => ['init', '-s', `${'L'.repeat(49)}:0:${f}:0`], /lockspace name "L{49}" is 49 bytes; at most 48/],
      ['49-byte name in read_leader', (f) => ['read_leader', '-r', `LS:${'R'.repeat(49)}:${f}:0`], /49 bytes; at most 48/],
      ['multi-byte UTF-8 name over 48 bytes', (f) => ['init', '-r', `LS:${'é'.repeat(25)}:${f}:0`], /is 50 bytes; at most 48/],
      ['512/8M', (f) => ['init', '-s', `LS:0:${f}:0`, '-Z', '512', '-A', '8M'], /invalid sector\/align combination 512\/8M; use one of 512\/1M, 4096\/1M/],
      ['-Z 1024', (f) => ['init', '-s', `LS:0:${f}:0`, '-Z', '1024', '-A', '1M'], /invalid -Z "1024": the sector size is 512 or 4096/],
      ['-A 3M (sanlock ignores it silently)', (f) => ['init', '-s', `LS:0:${f}:0`, '-Z', '512', '-A', '3M'], /invalid -A "3M"/],
      ['-Z without -A', (f) => ['init', '-s', `LS:0:${f}:0`, '-Z', '4096'], /-Z and -A must be given together.*got only -Z/],
      ['-A without -Z', (f) => ['init', '-r', `LS:R:${f}:0`, '-A', '8M'], /-Z and -A must be given together.*got only -A/],
      ['-A without -Z on read_leader', (f) => ['read_leader', '-s', `LS:1:${f}:0`, '-A', '1M'], /must be given together.*got only -A/],
      ['-A without -Z on dump', (f) => ['dump', f, '-A', '1M'], /must be given together.*got only -A/],
      ['-n above max_hosts', (f) => ['init', '-r', `LS:R:${f}:0`, '-n', '3000'], /-n 3000 exceeds max_hosts 2000 of 512\/1M/],
      ['-n above max_hosts of 4096/1M', (f) => ['init', '-r', `LS:R:${f}:0`, '-Z', '4096', '-A', '1M', '-n', '251'], /exceeds max_hosts 250/],
      ['-z 2', (f) => ['init', '-r', `LS:R:${f}:0`, '-z', '2'], /invalid -z "2"/],
      ['-o not a number', (f) => ['init', '-s', `LS:0:${f}:0`, '-o', 'ten'], /invalid -o io_timeout "ten"/],
      ['-o beyond 16 bits', (f) => ['init', '-s', `LS:0:${f}:0`, '-o', '70000'], /too large \(at most 65535\)/],
      ['offset with a K suffix', (f) => ['init', '-s', `LS:0:${f}:512K`], /invalid offset in -s "512K"/],
      ['lockspace string with 2 fields', () => ['init', '-s', 'LS:0'], /must be LOCKSPACE:HOST_ID:PATH\[:OFFSET\]/],
      ['lockspace string with 5 fields (an unescaped colon)', (f) => ['init', '-s', `LS:0:${f}:0:0`], /has 5 fields; .*escape ':' in the path/],
      ['-r given twice (sanlock uses the first)', (f) => ['init', '-r', `LS:R:${f}:0`, '-r', `LS:R2:${f}:0`], /^lockagent: direct init: -r is given 2 times; .*give one -r$/],
      ['-a 2', (f) => ['dump', f, '-a', '2'], /invalid -a "2": use -a 0 or -a 1/],
      ['resource with two disks', (f) => ['init', '-r', `LS:R:${f}:0:${f}:1M`], /names 2 disks; lockagent supports one disk per resource/],
      ['empty lockspace name', (f) => ['init', '-s', `:0:${f}:0`], /lockspace name is empty/],
      ['both -s and -r', (f) => ['init', '-s', `LS:0:${f}:0`, '-r', `LS:R:${f}:0`], /either -s or -r, not both/],
      ['neither -s nor -r', () => ['init'], /needs -s LOCKSPACE or -r RESOURCE/],
      ['host_id 0 in read_leader -s', (f) => ['read_leader', '-s', `LS:0:${f}:0`], /host_id of 1 or more/],
      ['dump -f 3', (f) => ['dump', f, '-f', '3'], /invalid -f "3"/],
      ['unknown option', (f) => ['init', '-s', `LS:0:${f}:0`, '-q', '1'], /unknown option '-q'/],
      ['unknown action', () => ['write_leader'], /unknown command 'write_leader'/],
      ['trailing backslash', (f) => ['dump', `${f}\\`], /lone backslash/],
    ];
    it.concurrent.each(cases)('%s', async (_name, args, msg) => {
      const r = await refused(args(lease), lease, 2);
      expect(r.stdout).toBe('');
      expect(r.line).toMatch(/^lockagent: /);
      expect(r.line).toMatch(msg);
    });
  });

  describe('operation failures: sanlock\'s result line on stdout, exit 1, one explanation', () => {
    it('init on a missing file: -19 for a lockspace (as sanlock), with the command that creates it; nothing created', async () => {
      const f = p('missing.img');
      const r = await lockagent(['direct', 'init', '-s', `LS:0:${f}:1M`]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('init done -19\n');
      expect(expectOneLine(r.stderr)).toBe(
        `lockagent: init LS on ${f}:1048576 failed: ${f} does not exist; lockagent (like sanlock) does not create lease files: create it first, e.g. truncate -s 2M ${f}`,
      );
      expect(fs.existsSync(f)).toBe(false);
    });

    it('init -r on a missing file: -2 (ENOENT, as sanlock)', async () => {
      const f = p('missing2.img');
      const r = await lockagent(['direct', 'init', '-r', `LS:R:${f}:0`, '-Z', '4096', '-A', '8M']);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('init done -2\n');
      expect(expectOneLine(r.stderr)).toMatch(/does not exist; .*truncate -s 8M /);
      expect(fs.existsSync(f)).toBe(false);
    });

    it('read_leader and dump on a missing file', async () => {
      const f = p('missing3.img');
      const a = await lockagent(['direct', 'read_leader', '-s', `LS:1:${f}:0`]);
      expect([a.code, a.stdout]).toEqual([1, 'read_leader done -19\n']);
      expect(expectOneLine(a.stderr)).toMatch(new RegExp(`${f} does not exist; check the path`));
      const b = await lockagent(['direct', 'dump', f]);
      expect([b.code, b.stdout]).toEqual([1, `Device ${f} not found.\n`]);
      expect(expectOneLine(b.stderr)).toMatch(/does not exist/);
    });

    it('read_leader on a file that is not a lease: -223, the magic it found, the fields as sanlock prints them', async () => {
      const r = await refused(['read_leader', '-r', `LS:RES1:${plain}:0`], plain, 1);
      expect(r.stdout.split('\n')[0]).toBe('read_leader done -223');
      expect(r.stdout).toContain('magic 0x73696854\n'); // "This"
      expect(r.line).toMatch(/^lockagent: read_leader LS:RES1 on .* failed: .*\(sanlock -223 SANLK_LEADER_MAGIC\): found no lease \(magic 0x73696854\) where a resource was expected; remedy: /);
      const s = await refused(['read_leader', '-s', `LS:1:${plain}:0`], plain, 1);
      expect(s.stdout.split('\n')[0]).toBe('read_leader done -1');
      expect(s.line).toMatch(/no lockspace here: sector 0 at offset 0 holds no delta or paxos leader/);
      const d = await refused(['dump', plain], plain, 1);
      expect(d.stdout).toBe('Cannot find sector_size and align_size, set with -A and -Z.\n');
    });

    it('read_leader of a lockspace as a resource, and with the wrong lockspace name', async () => {
      const a = await refused(['read_leader', '-r', `LS:R:${lease}:0`], lease, 1);
      expect(a.line).toMatch(/found a lockspace \(delta lease\) where a resource was expected/);
      const b = await refused(['read_leader', '-s', `OTHER:1:${lease}:0`], lease, 1);
      expect(b.stdout.split('\n')[0]).toBe('read_leader done -226');
      expect(b.line).toMatch(/SANLK_LEADER_LOCKSPACE\): it belongs to lockspace "LS", not "OTHER"/);
    });

    it('a checksum error names the code and the remedy', async () => {
      const f = copyFixture('err_cs.img', dir);
      const r = await refused(['read_leader', '-r', `LS:RES1:${f}:0`], f, 1);
      expect(r.line).toBe(
        `lockagent: read_leader LS:RES1 on ${f}:0 failed: the leader record has a bad checksum (corrupt sector) (sanlock -229 SANLK_LEADER_CHECKSUM); ` +
        'remedy: inspect with lockagent direct dump; re-initialise only when no host uses it',
      );
    });

    it('a directory and a character device are refused before opening', async () => {
      const a = await lockagent(['direct', 'init', '-s', `LS:0:${dir}:0`]);
      expect([a.code, a.stdout]).toEqual([1, 'init done -19\n']);
      expect(expectOneLine(a.stderr)).toMatch(/is a directory; give a lease file or a block device/);
      const b = await lockagent(['direct', 'read_leader', '-r', 'LS:R:/dev/null:0']);
      expect(b.code).toBe(1);
      expect(expectOneLine(b.stderr)).toMatch(/neither a regular file nor a block device/);
    });

    // Files of procfs/sysfs are kernel settings: refused from stat + statfs, before any open. The
    // targets are read-only files with no write handler, so even a regression cannot change
    // anything: /proc/version (a write fails with EIO) and a 0444 sysfs attribute (kernfs refuses
    // to open it for writing).
    it.each([
      ['procfs', '/proc/version'],
      ['sysfs', '/sys/kernel/address_bits'],
    ])('a file of %s is refused before opening, like a FIFO', async (fsName, f) => {
      if (!fs.existsSync(f)) return;
      const a = await lockagent(['direct', 'init', '-r', `LS:R:${f}:0`]);
      expect([a.code, a.stdout]).toEqual([1, 'init done -19\n']);
      expect(expectOneLine(a.stderr)).toBe(
        `lockagent: init LS:R on ${f}:0 failed: ${f} is a file of ${fsName} (a kernel interface, not storage); leases live in files or on block devices`,
      );
      const b = await lockagent(['direct', 'init', '-s', `LS:0:${f}:0`]);
      expect([b.code, b.stdout]).toEqual([1, 'init done -19\n']);
      expect(expectOneLine(b.stderr)).toMatch(new RegExp(`is a file of ${fsName} \\(a kernel interface`));
      const c = await lockagent(['direct', 'read_leader', '-r', `LS:R:${f}:0`]);
      expect(c.code).toBe(1);
      expect(expectOneLine(c.stderr)).toMatch(/a kernel interface, not storage/);
    });

    it('a FIFO is refused before opening (the open would block)', async () => {
      const fifo = p('fifo');
      spawnSync('mkfifo', [fifo]);
      const r = await lockagent(['direct', 'init', '-r', `LS:R:${fifo}:0`], { timeoutMs: 20000 });
      expect(r.code).toBe(1);
      expect(expectOneLine(r.stderr)).toMatch(/neither a regular file nor a block device/);
    });

    // Also needs the CLI readable by nobody: a checkout under a private directory (mktemp -d is 0700) is not.
    (canRunAsNobody() || process.env.CI ? it : it.skip)('permission denied (run as nobody): -13 for a resource, -19 for a lockspace, remedy named', async () => {
      const pdir = makeTempDir('lockagent-perm');
      try {
        fs.chmodSync(pdir, 0o755);
        const f = copyFixture('res.img', pdir);
        fs.chmodSync(f, 0o600);
        const before = sha256(f);
        const asNobody = (args: string[]) => { const c = asNobodyCommand(['direct', ...args]); return run(c.cmd, c.args); };
        const a = await asNobody(['read_leader', '-r', `LS:RES1:${f}:0`]);
        expect([a.code, a.stdout]).toEqual([1, 'read_leader done -13\n']);
        expect(expectOneLine(a.stderr)).toMatch(/permission denied opening .* for reading; run as a user with access/);
        fs.chmodSync(f, 0o644);
        const b = await asNobody(['init', '-s', `LS:0:${f}:0`]);
        expect([b.code, b.stdout]).toEqual([1, 'init done -19\n']);
        expect(expectOneLine(b.stderr)).toMatch(/permission denied opening .* for writing/);
        expect(sha256(f)).toBe(before);
      } finally {
        removeTempDir(pdir);
      }
    });
  });

  describe('bytes that are not UTF-8 in a name or a path, as the shell passes them', () => {
    // Node turns argv byte 0xe9 into U+FFFD: written or opened, it would be other bytes than sanlock's
    const viaShell = (arg: string, ...args: string[]) => run('sh', ['-c', `exec "$0" "$1" direct ${arg}`, process.execPath, cliEntry(), ...args]);
    it.each([
      ['a resource name', 'init -r "$(printf \'LS:R\\351:%s:0\' "$2")"', /resource name in .* contains bytes that are not UTF-8; lockagent takes names and paths in UTF-8 only/],
      ['a path', 'init -s "$(printf \'LS:0:%s\\351:0\' "$2")"', /path in .* contains bytes that are not UTF-8/],
      ['a dump path', 'dump "$(printf \'%s\\351\' "$2")"', /path in .* contains bytes that are not UTF-8/],
    ])('%s: refused, exit 2, nothing written', async (_what, cmd, msg) => {
      const before = sha256(lease);
      const r = await viaShell(cmd, lease);
      expect(sha256(lease)).toBe(before);
      expect([r.code, r.stdout]).toEqual([2, '']);
      expect(expectOneLine(r.stderr)).toMatch(msg);
    });
  });

  describe('a closed stdout (`| head -1`)', () => {
    it('ends quietly with 141, as a shell reports sanlock killed by SIGPIPE, never a stack', async () => {
      const f = copyFixture('ls_bitmap.img', dir, 'epipe.img');
      const child = spawn(process.execPath, [cliEntry(), 'direct', 'dump', f, '-f', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.destroy(); // the reader is gone before the CLI has printed anything
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
      const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
      expect(code).toBe(141);
      expect(stderr.split('\n').filter((l) => l && !/falling back to O_DSYNC/.test(l))).toEqual([]);
    });
  });

  describe('paths with escapes and the happy path', () => {
    it('"\\:" and "\\ " in a path name a file with a colon and a space', async () => {
      const sub = p('a:b c');
      fs.mkdirSync(sub);
      const f = sparseFile(path.join(sub, 'x.img'), MiB);
      const esc = `${dir}/a\\:b\\ c/x.img`;
      const r = await lockagent(['direct', 'init', '-r', `LS:R:${esc}:0`]);
      expect([r.code, r.stdout, r.stderr]).toEqual([0, 'init done 0\n', '']);
      expect(fs.readFileSync(f).readUInt32LE(0)).toBe(0x06152010);
      const d = await lockagent(['direct', 'dump', esc]);
      expect(d.stdout.split('\n')[1]).toMatch(/^00000000 +LS +R 0000000000 0000 0000 0$/);
    });

    it('--help and --version exit 0', async () => {
      const h = await lockagent(['direct', 'init', '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/-Z, --sector-size/);
      const v = await lockagent(['--version']);
      expect(v.code).toBe(0);
      expect(v.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    });
  });
});

/**
 * The agent commands' exit statuses, as docs/operator-guide.md lists them: 0 done, 1 failed (also
 * an agent that does not answer in time: the request may have been carried out), 2 a refused
 * command line, 3 no agent could be reached (nothing was sent), permission denied included.
 */
describe('lockagent agent commands: exit statuses', () => {
  let dir: string;
  const servers: net.Server[] = [];
  beforeAll(() => {
    cliEntry();
    dir = makeTempDir('lockagent-exit');
    fs.chmodSync(dir, 0o755);
  });
  afterAll(() => {
    for (const s of servers) s.close();
    removeTempDir(dir);
  });
  const listen = async (name: string, mode: number) => {
    const sock = path.join(dir, name);
    const srv = net.createServer(() => undefined); // accepts, never answers
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(sock, r));
    fs.chmodSync(sock, mode);
    return sock;
  };

  it('0: done', async () => {
    const r = await lockagent(['explain', '-243']);
    expect([r.code, r.stderr]).toEqual([0, '']);
  });

  it('explain names a code as failure lines do: an errno by its name, ERROR as SANLK_ERROR, -1 as FAILED; a number nobody defines is refused', async () => {
    expect((await lockagent(['explain', '-9'])).stdout).toMatch(/^-9 EBADF\n {2}what: {3}system error EBADF/);
    expect((await lockagent(['explain', 'ERROR'])).stdout).toMatch(/^-201 SANLK_ERROR\n/);
    expect((await lockagent(['explain', '-1'])).stdout).toMatch(/^-1 FAILED\n/);
    expect((await lockagent(['explain', '-999'])).code).toBe(2);
  });

  it('1: the operation ran and failed (a missing config; an agent that does not answer in time)', async () => {
    const a = await lockagent(['status', '-c', path.join(dir, 'missing.conf')]);
    expect(a.code).toBe(1);
    expect(expectOneLine(a.stderr)).toMatch(/^lockagent: status: config file .* does not exist/);
    const mute = await listen('mute.sock', 0o600);
    const b = await lockagent(['status', '--socket', mute], { timeoutMs: 60000 });
    expect(b.code).toBe(1);
    expect(expectOneLine(b.stderr)).toMatch(/^lockagent: status: lockagent did not answer within \d+ s/);
  }, 90000);

  it('2: the command line was refused', async () => {
    const a = await lockagent(['status', '--bogus']);
    expect(a.code).toBe(2);
    expect(expectOneLine(a.stderr)).toMatch(/unknown option '--bogus'/);
    const b = await lockagent(['client', 'acquire', '-r', 'bad', '--owner', 'a', '--socket', path.join(dir, 'none.sock')]);
    expect(b.code).toBe(2);
    expect(expectOneLine(b.stderr)).toMatch(/-r "bad" must be LOCKSPACE:RESOURCE:PATH:OFFSET/);
  });

  it('3: no agent listens on the socket', async () => {
    const none = path.join(dir, 'none.sock');
    for (const args of [['status'], ['host_status'], ['client', 'release', '--owner', 'a'], ['cleanup']]) {
      const r = await lockagent([...args, '--socket', none]);
      expect([args, r.code]).toEqual([args, 3]);
      expect(expectOneLine(r.stderr)).toMatch(/lockagent is not running \(no listener on /);
    }
  });

  (canRunAsNobody() || process.env.CI ? it : it.skip)('3: permission denied on the socket (run as nobody) is unreachable too, not a failed operation', async () => {
    const sock = await listen('private.sock', 0o600);
    const asNobody = (args: string[]) => { const c = asNobodyCommand(args); return run(c.cmd, c.args); };
    for (const args of [['status'], ['cleanup']]) {
      const r = await asNobody([...args, '--socket', sock]);
      expect([args, r.code]).toEqual([args, 3]);
      expect(expectOneLine(r.stderr)).toMatch(/permission denied on .*private\.sock: run as root or as a member of socket_group/);
    }
  });
});
