/**
 * `lockagent client ...` in sanlock's syntax, run in-process against a real control server whose
 * handler answers canned replies: stdout `<action> pid PID` and `<action> done <rv>`, the lease
 * strings as sanlock prints them, the stderr line of a failure, exit statuses, `-p PID` owners,
 * the sanlock-named aliases and the checks made before connecting. test/interop/client-strings
 * compares the same output with the real sanlock's.
 */
import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { run } from '../../src/cli/program';
import { pidOwner } from '../../src/cli/agent-commands';
import { Request } from '../../src/control/protocol';
import { ControlServer } from '../../src/control/server';
import { LeaseError } from '../../src/ondisk/results';
import { MemoryStorage, memoryContext } from '../helpers/memory-storage';

const HELD = [{ lockspace: 'LS', resource: 'R', path: '/p', offset: 0, mode: 'exclusive', lver: 3 }];
const RENEWALS = { lockspace: 'LS', hostId: 1, ioTimeout: 10, renewals: [{ timestamp: 7, readMs: 1, writeMs: 2, nextTimeouts: 0, nextErrors: 0 }] };
const STATUS = { hostName: 'h1', lockspaces: [], owners: [] };

describe('lockagent client', () => {
  let dir: string;
  let sock: string;
  let server: ControlServer;
  let seen: Request[];
  /** the code every request fails with, 0 for none */
  let failWith: number;
  /** what acquire and inquire answer */
  let held: unknown[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-cli-client-'));
    sock = join(dir, 'sock');
    seen = [];
    failWith = 0;
    held = HELD;
    server = new ControlServer({
      path: sock,
      mode: 0o600,
      handler: async (req) => {
        seen.push(req);
        if (failWith) throw new LeaseError(failWith, 'disk /nfs/a.qcow2 is leased by host 3 (node03), last renewal 4 s ago');
        switch (req.op) {
          case 'acquire': case 'inquire': return held;
          case 'release': return { released: 1 };
          case 'add_lockspace': return { lockspace: req.lockspace, hostId: req.hostId, generation: 2 };
          case 'rem_lockspace': return { removed: req.lockspace };
          case 'status': return STATUS;
          case 'host_status': return [];
          case 'renewals': return RENEWALS;
          default: return null;
        }
      },
    });
    await server.listen();
  });
  afterEach(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = async (...args: string[]) => {
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: 512 }));
    const code = await run(['node', 'lockagent', ...args], ctx);
    return { code, stdout: cap.stdout, stderr: cap.stderr, json: cap.json };
  };
  const client = (...args: string[]) => cli('client', ...args, '--socket', sock);

  describe('stdout is sanlock\'s "<action> done <rv>"', () => {
    it('on success, before the lease lines of acquire and inquire', async () => {
      expect(await client('acquire', '-r', 'LS:R:/p:0', '--owner', 'o')).toEqual({ code: 0, stdout: 'acquire pid -1\nacquire done 0\nr LS:R:/p:0:3\n', stderr: [], json: [] });
      expect(await client('inquire', '--owner', 'o')).toMatchObject({ code: 0, stdout: 'inquire pid -1\ninquire done 0 res_count 1\n"LS:R:/p:0:3"\n' });
      expect(await client('release', '--owner', 'o')).toMatchObject({ code: 0, stdout: 'release pid -1\nrelease done 0\n' });
      expect(await client('add_lockspace', '-s', 'LS:1:/p:0')).toMatchObject({ code: 0, stdout: 'add_lockspace done 0\n' });
      expect(await client('rem_lockspace', '-s', 'LS')).toMatchObject({ code: 0, stdout: 'rem_lockspace done 0\n' });
    });

    // as `sanlock client inquire -p PID` prints them (3.8.5 main.c; seen against a real sanlock daemon)
    it('inquire: "inquire done 0 res_count N", then sanlock\'s state string in quotes', async () => {
      held = [...HELD, { lockspace: 'LS', resource: 'S', path: '/dir with space/s', offset: 1048576, mode: 'shared', lver: 9 }];
      expect(await client('inquire', '-p', '42')).toEqual({
        code: 0, stdout: 'inquire pid 42\ninquire done 0 res_count 2\n"LS:R:/p:0:3 LS:S:/dir\\ with\\ space/s:1048576:SH"\n', stderr: [], json: [],
      });
      held = [];
      expect(await client('inquire', '-p', '42')).toMatchObject({ code: 0, stdout: 'inquire pid 42\ninquire done 0 res_count 0\n"(null)"\n' });
      expect((await client('inquire', '-p', '42', '--json')).json).toEqual([[]]);
      const none = await cli('client', 'inquire', '-p', '42', '--socket', join(dir, 'none.sock'));
      expect([none.code, none.stdout]).toEqual([3, 'inquire pid 42\ninquire done -111 res_count 0\n']);
    });

    it('--json: stdout is only the agent\'s answer', async () => {
      expect(await client('acquire', '-r', 'LS:R:/p:0', '--owner', 'o', '--json')).toEqual({ code: 0, stdout: '', stderr: [], json: [HELD] });
      expect(await client('add_lockspace', '-s', 'LS:1:/p:0', '--json')).toEqual({ code: 0, stdout: '', stderr: [], json: [{ lockspace: 'LS', hostId: 1, generation: 2 }] });
      failWith = -243;
      expect(await client('acquire', '-r', 'LS:R:/p:0', '--owner', 'o', '--json')).toMatchObject({ code: 1, stdout: '', json: [] });
    });

    it.each([
      ['acquire', ['-r', 'LS:R:/p:0', '--owner', 'o']],
      ['release', ['--owner', 'o']],
      ['inquire', ['--owner', 'o']],
      ['add_lockspace', ['-s', 'LS:1:/p:0']],
      ['rem_lockspace', ['-s', 'LS']],
    ])('a failed %s: "done <rv>", exit 1, stderr ends with the code and its name', async (action, args) => {
      failWith = -243;
      const r = await client(action, ...args);
      expect(r).toEqual({
        code: 1,
        stdout: `${['acquire', 'release', 'inquire'].includes(action) ? `${action} pid -1\n` : ''}${action} done -243${action === 'inquire' ? ' res_count 0' : ''}\n`,
        stderr: [`lockagent: client ${action} failed: disk /nfs/a.qcow2 is leased by host 3 (node03), last renewal 4 s ago (sanlock -243 SANLK_ACQUIRE_IDLIVE)`],
        json: [],
      });
    });

    it('no agent: "done -111" and exit 3, nothing sent', async () => {
      const r = await cli('client', 'release', '--owner', 'o', '--socket', join(dir, 'none.sock'));
      expect(r.code).toBe(3);
      expect(r.stdout).toBe('release pid -1\nrelease done -111\n');
      expect(r.stderr).toEqual([expect.stringMatching(/^lockagent: client release failed: lockagent is not running \(no listener on .*; start it with: lockagent daemon \(sanlock -111 ECONNREFUSED\)$/)]);
    });
  });

  // sanlock 3.8.5 main.c do_client prints `<action> pid PID` on stdout before it calls the daemon
  // (PID -1, its default, without -p), then `<action> done <rv>`
  describe('sanlock\'s first line: "<action> pid PID"', () => {
    it('names the -p pid, -1 without -p, whatever the answer', async () => {
      expect((await client('acquire', '-r', 'LS:R:/p:0', '-p', '4242')).stdout).toBe('acquire pid 4242\nacquire done 0\nr LS:R:/p:0:3\n');
      expect((await client('acquire', '-r', 'LS:R:/p:0', '--owner', 'vm-1', '-p', '4242')).stdout).toBe('acquire pid 4242\nacquire done 0\nr LS:R:/p:0:3\n');
      expect((await client('release', '-r', 'LS:R:/p:0', '-p', '4242')).stdout).toBe('release pid 4242\nrelease done 0\n');
      failWith = -3;
      expect(await client('acquire', '-r', 'LS:R:/p:0', '-p', '4242')).toMatchObject({ code: 1, stdout: 'acquire pid 4242\nacquire done -3\n' });
      expect(await client('release', '--owner', 'o')).toMatchObject({ code: 1, stdout: 'release pid -1\nrelease done -3\n' });
    });

    it('not with --json (stdout stays one JSON document), nor when the command line is refused', async () => {
      expect(await client('acquire', '-r', 'LS:R:/p:0', '-p', '4242', '--json')).toMatchObject({ code: 0, stdout: '' });
      expect(await client('acquire', '-r', 'LS:R:/p', '-p', '4242')).toMatchObject({ code: 2, stdout: '' });
    });
  });

  // what sanlock_res_to_str (src/client.c) prints, seen in `sanlock client inquire` and `client status`:
  // names as they are, the path through sanlock_path_export (':' and ' ' escaped, an existing '\'
  // passed through with the next character), every byte as it is (UTF-8 paths print as UTF-8)
  describe('lease strings as sanlock prints them', () => {
    const TRICKY = [
      { lockspace: 'LS', resource: 'R:5', path: '/d/a:b/sp ace/b\\c/é/x', offset: 1048576, mode: 'exclusive', lver: 7 },
      { lockspace: 'L S', resource: 'S', path: '/d/é', offset: 0, mode: 'shared', lver: 2 },
    ];
    const bytes = (s: string) => Buffer.from(s, 'latin1');
    const TEXT = ['LS:R:5:/d/a\\:b/sp\\ ace/b\\c/é/x:1048576:7', 'L S:S:/d/é:0:SH'];

    it('the r lines of acquire', async () => {
      held = TRICKY;
      const r = await client('acquire', '-r', 'LS:R\\:5:/d/a\\:b/sp\\ ace/b\\\\c/é/x:1M', '-p', '9');
      expect(r.code).toBe(0);
      expect(bytes(r.stdout)).toEqual(Buffer.from(`acquire pid 9\nacquire done 0\n${TEXT.map((t) => `r ${t}\n`).join('')}`, 'utf8'));
    });

    it('the state string of inquire', async () => {
      held = TRICKY;
      const r = await client('inquire', '-p', '9');
      expect(bytes(r.stdout)).toEqual(Buffer.from(`inquire pid 9\ninquire done 0 res_count 2\n"${TEXT.join(' ')}"\n`, 'utf8'));
    });

    it('names are the on-disk bytes: a UTF-8 name prints as its bytes, once', async () => {
      held = [{ lockspace: Buffer.from('é', 'utf8').toString('latin1'), resource: 'R', path: '/p', offset: 0, mode: 'exclusive', lver: 1 }];
      expect(bytes((await client('inquire', '-p', '9')).stdout)).toEqual(Buffer.from('inquire pid 9\ninquire done 0 res_count 1\n"é:R:/p:0:1"\n', 'utf8'));
    });
  });

  // sanlock_str_to_res reads the lver with strtoull(…, 0): a C literal
  describe('-r LVER as sanlock reads it', () => {
    it.each([['0x1f', 31], ['017', 15], ['0', 0], ['31', 31]])('%s is lver %d', async (lver, n) => {
      expect((await client('acquire', '-r', `LS:R:/p:0:${lver}`, '-p', '9')).code).toBe(0);
      expect(seen[0]).toMatchObject({ op: 'acquire', leases: [{ lver: n }] });
    });

    it.each(['08', '1x', '-1', '+5'])('%s (which sanlock reads only in part) is refused before connecting', async (lver) => {
      const r = await client('acquire', '-r', `LS:R:/p:0:${lver}`, '-p', '9');
      expect(r).toMatchObject({ code: 2, stdout: '', stderr: [expect.stringMatching(/invalid lver in -r ".*": .*0x1f.*017/)] });
      expect(seen).toEqual([]);
    });
  });

  // the code's name is resultInfo's (src/ondisk/results.ts) whoever named it first: the agent's
  // reply says SANLK_ERROR for a code it does not know, EPERM for -1
  describe('the name of a result code in the stderr line', () => {
    it.each([[-9, 'EBADF'], [-1, 'FAILED'], [-999, 'UNKNOWN'], [-243, 'SANLK_ACQUIRE_IDLIVE']])('%d is %s', async (rv, name) => {
      failWith = rv;
      const r = await client('release', '--owner', 'o');
      expect(r.code).toBe(1);
      expect(r.stderr).toEqual([expect.stringMatching(new RegExp(`\\(sanlock ${rv} ${name}\\)$`))]);
    });
  });

  describe('add_lockspace -s', () => {
    it.each(['0', '2001'])('host_id %s is refused before connecting, as the agent and the config refuse it', async (id) => {
      const r = await client('add_lockspace', '-s', `LS:${id}:/p:0`);
      expect(r).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr).toEqual([`lockagent: client add_lockspace: -s "LS:${id}:/p:0": host_id ${id} is outside 1..2000; add_lockspace joins as this host's host_id in that lockspace`]);
      expect(seen).toEqual([]);
    });

    it('host_id 2000 is sent', async () => {
      expect((await client('add_lockspace', '-s', 'LS:2000:/p:0')).code).toBe(0);
      expect(seen[0]).toMatchObject({ op: 'add_lockspace', hostId: 2000 });
    });

    // sanlock_str_to_lockspace keeps the name as written and drops every '\' of the path
    it('a "\\:" stays in the name, backslash and all, and is a colon in the path', async () => {
      expect((await client('add_lockspace', '-s', 'my\\:ls:1:/p\\:q:0')).code).toBe(0);
      expect(seen[0]).toMatchObject({ op: 'add_lockspace', lockspace: 'my\\:ls', path: '/p:q' });
    });
  });

  describe('-p PID, as in sanlock', () => {
    it('alone names the owner pid:PID, the same for acquire, inquire and release', async () => {
      expect((await client('acquire', '-r', 'LS:R:/p:0', '-p', '4242')).code).toBe(0);
      expect((await client('inquire', '-p', '4242')).code).toBe(0);
      expect((await client('release', '-r', 'LS:R:/p:0', '-p', '4242')).code).toBe(0);
      const owner = { uuid: pidOwner(4242), pid: 4242 };
      expect(owner.uuid).toBe('pid:4242');
      expect(seen.map((r) => [r.op, 'owner' in r ? r.owner : undefined])).toEqual([['acquire', owner], ['inquire', owner], ['release', owner]]);
    });

    it('with --owner, names only the process', async () => {
      expect((await client('acquire', '-r', 'LS:R:/p:0', '--owner', 'vm-1', '-p', '4242')).code).toBe(0);
      expect(seen[0]).toMatchObject({ owner: { uuid: 'vm-1', pid: 4242 } });
    });

    it.each(['0', 'abc', '1.5', '12x', '0x10', ' 1'])('-p %s is refused before connecting (exit 2, naming -p)', async (pid) => {
      const r = await client('acquire', '-r', 'LS:R:/p:0', '-p', pid);
      expect(r).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr).toEqual([`lockagent: client acquire: invalid -p "${pid}": the owner pid must be a positive integer`]);
      expect(seen).toEqual([]);
    });

    it('-p beyond a pid_t is refused, saying the bound', async () => {
      const r = await client('acquire', '-r', 'LS:R:/p:0', '-p', '99999999999');
      expect(r).toMatchObject({ code: 2, stdout: '', stderr: ['lockagent: client acquire: -p 99999999999 is too large (at most 2147483647)'] });
      expect(seen).toEqual([]);
    });

    // sanlock reads -p with atoi: decimal, so "01" is pid 1 (seen: `sanlock client release -p 01` prints "release pid 1")
    it('-p 01 is pid 1, as sanlock\'s atoi reads it', async () => {
      expect(await client('release', '-p', '01')).toMatchObject({ code: 0, stdout: 'release pid 1\nrelease done 0\n' });
      expect(seen[0]).toMatchObject({ owner: { uuid: pidOwner(1), pid: 1 } });
    });

    it('neither -p nor --owner: exit 2', async () => {
      const r = await client('inquire');
      expect(r).toMatchObject({ code: 2, stdout: '', stderr: ['lockagent: client inquire: inquire needs --owner UUID or -p PID'] });
      expect(seen).toEqual([]);
    });
  });

  describe('client status, host_status and renewal: sanlock\'s names for the top-level commands', () => {
    it.each([
      [['status'], ['client', 'status', '-D']],
      [['host_status', '-s', 'LS'], ['client', 'host_status', '-s', 'LS', '-D']],
      [['renewals', '-s', 'LS'], ['client', 'renewal', '-s', 'LS', '-D']],
    ])('%j and %j send the same request and print the same', async (top, alias) => {
      const a = await cli(...top, '--socket', sock);
      const b = await cli(...alias, '--socket', sock);
      expect(a.code).toBe(0);
      expect(b).toEqual(a);
      expect(seen[1]).toEqual(seen[0]);
    });
  });

  describe('checked before connecting', () => {
    it('add_lockspace -o with the direct commands\' parser, at most 255', async () => {
      for (const bad of ['abc', '256', '1.5']) {
        const r = await client('add_lockspace', '-s', 'LS:1:/p:0', '-o', bad);
        expect(r).toMatchObject({ code: 2, stdout: '' });
        expect(r.stderr).toEqual([expect.stringMatching(/^lockagent: client add_lockspace: .*-o io_timeout/)]);
      }
      expect(seen).toEqual([]);
      expect((await client('add_lockspace', '-s', 'LS:1:/p:0', '-o', '255')).code).toBe(0);
      expect((await client('add_lockspace', '-s', 'LS:1:/p:0', '-o', '0')).code).toBe(0);
      expect(seen.map((r) => (r.op === 'add_lockspace' ? r.ioTimeout : undefined))).toEqual([255, 10]);
    });

    it('-r with an unescaped by-path device name: the message says to escape ":"', async () => {
      const r = await client('acquire', '-r', 'LS:R:/dev/disk/by-path/pci-0000:00:1f.2-ata-1:0', '--owner', 'o');
      expect(r.code).toBe(2);
      expect(r.stderr).toEqual([expect.stringMatching(/names 2 disks; .*escape ':' in the path as '\\:'/)]);
      expect(seen).toEqual([]);
    });
  });

  describe('-s of rem_lockspace, host_status and renewal: the name as add_lockspace reads it', () => {
    it.each([
      ['an escaped colon', 'my\\:ls:1:/p:0', 'my\\:ls'],
      ['a UTF-8 name', 'é:1:/p:0', 'é'],
    ])('%s', async (_what, full, name) => {
      expect((await client('add_lockspace', '-s', full)).code).toBe(0);
      const joined = (seen[0] as { lockspace: string }).lockspace;
      for (const args of [['client', 'rem_lockspace', '-s', name], ['client', 'rem_lockspace', '-s', full], ['host_status', '-s', name],
        ['client', 'host_status', '-s', full], ['renewals', '-s', name], ['client', 'renewal', '-s', full]]) {
        seen.length = 0;
        expect([args, (await cli(...args, '--socket', sock)).code]).toEqual([args, 0]);
        expect([args, (seen[0] as { lockspace: string }).lockspace]).toEqual([args, joined]);
      }
    });

    it('a name over 48 bytes is refused (exit 2)', async () => {
      const r = await client('rem_lockspace', '-s', 'L'.repeat(49));
      expect(r).toMatchObject({ code: 2, stderr: [expect.stringMatching(/lockspace name "L{49}" is 49 bytes; at most 48/)] });
      expect(seen).toEqual([]);
    });
  });
});

describe('a missing action', () => {
  let write: jest.SpyInstance;
  beforeEach(() => {
    write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  });
  afterEach(() => write.mockRestore());
  const cli = async (...args: string[]) => {
    const { ctx, cap } = memoryContext(new MemoryStorage({ size: 512 }));
    return { code: await run(['node', 'lockagent', ...args], ctx), stderr: cap.stderr.join('\n') };
  };

  it.each([['client'], ['direct'], []])('`lockagent %s` shows the usage on stderr and exits 2', async (...args) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^Usage: lockagent/);
  });

  it('--help exits 0', async () => {
    expect((await cli('client', '--help')).code).toBe(0);
    expect((await cli('--help')).code).toBe(0);
  });
});
