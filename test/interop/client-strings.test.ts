/**
 * sanlock's strings, read and printed, against the real sanlock 3.8.5:
 *
 *  - `-s` and `-r` are read as sanlock reads them: sanlock logs what its parser made of them
 *    (`sanlock client inquire -D -s|-r STRING`, main.c parse_arg_lockspace/parse_arg_resource,
 *    with no daemon to answer), and lockagent's parser gives the same fields, or refuses a string
 *    sanlock would read only in part;
 *  - `direct init -s` with a '\' in the name writes the bytes sanlock writes (the name keeps it);
 *  - `direct acquire -i/-g` read as C literals, as sanlock's strtoull(…, 0);
 *  - with a sanlock daemon (root): `client inquire -p PID` prints the bytes sanlock prints for the
 *    same leases (`:` in a path, a UTF-8 path, a backslash in a path, a `:` in a name), the
 *    `r` lines of `client acquire` are sanlock's `client status` lines, and `client acquire` and
 *    `release` print `<action> pid PID` first, as sanlock's do_client.
 *
 * lockagent's side of the client commands talks to a control server answering as the agent would
 * for those leases: what is compared is the CLI's output, byte for byte.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { parseLockspaceArg, parseResourceArg, UsageError } from '../../src/config/sanlockargs';
import { Request } from '../../src/control/protocol';
import { ControlServer } from '../../src/control/server';
import { decodeLeader, LeaseError } from '../../src/ondisk';
import {
  cliEntry, lockagent, lockagentInProcess, makeTempDir, removeTempDir, run, SANLOCK, sanlock, sparseFile,
} from '../helpers/cli';
import { describeInterop } from '../helpers/interop';
import { addLockspace, describeSanlockDaemons, SanlockDaemon, sanlockClient, startSanlockDaemon, stopSanlockDaemon, killSanlockDaemon } from '../helpers/sanlockd';

const MiB = 1048576;
jest.setTimeout(120_000);

const utf8 = (latin1: string) => Buffer.from(latin1, 'latin1').toString('utf8');

/**
 * A temp dir whose path holds no 'M': sanlock's M-suffix code (parse_arg_lockspace/_resource)
 * splits at every ':', escaped or not, and takes an 'M' anywhere after the third one as the end
 * of an offset in MiB, so a string with an escaped ':' misreads a path holding an 'M'.
 */
function tempDirWithoutM(prefix: string): string {
  for (;;) {
    const d = makeTempDir(prefix);
    if (!d.includes('M')) return d;
    removeTempDir(d);
  }
}

describeInterop('sanlock\'s -s and -r strings, read as sanlock reads them', () => {
  let dir: string;
  let runDir: string;
  beforeAll(() => {
    cliEntry();
    dir = tempDirWithoutM('la-strings');
    runDir = path.join(dir, 'run');
    fs.mkdirSync(runDir);
  });
  afterAll(() => removeTempDir(dir));

  /** What sanlock's parser made of the argument: its -D debug lines (no daemon listens in runDir). */
  const sanlockParse = async (opt: '-s' | '-r', arg: string): Promise<string> => {
    const r = await run(SANLOCK, ['client', 'inquire', '-D', '-p', '1', opt, arg], { env: { ...process.env, SANLOCK_RUN_DIR: runDir }, timeoutMs: 10_000 });
    return r.stderr;
  };

  it.each([
    'LS:1:/dev/sdb:0',
    'LS:7:/dev/sdb',
    'LS:01:/p:010',
    'LS:1:/p:1M',
    'my\\:ls:1:/x\\:y:1048576',
    'a\\ b\\\\c:2000:/sp\\ ace/\\q:0',
    'é:3:/p/é:0',
  ])('-s %s', async (arg) => {
    const log = await sanlockParse('-s', arg);
    const m = /\]: lockspace (.*) host_id (\d+) path (.*) offset (\d+)$/m.exec(log);
    expect(m).not.toBeNull();
    const ours = parseLockspaceArg(arg);
    expect([utf8(ours.name), String(ours.hostId), ours.path, String(ours.offset)]).toEqual([m![1], m![2], m![3], m![4]]);
  });

  it.each([
    'LS:R:/p:0',
    'LS:R:/p:2M',
    'LS:R:/p:010',
    'LS:R:/p:0:7',
    'LS:R:/p:0:0x1f',
    'LS:R:/p:0:017',
    'LS:R:/p:0:0',
    'LS:R:/p:1M:5',
    'LS:R:/p:0:SH',
    'L\\:S:R\\ 1:/a\\:b\\\\c:512:9',
    'é:é:/p/é:0',
  ])('-r %s', async (arg) => {
    const log = await sanlockParse('-r', arg);
    const res = /\]: resource (.*) num_disks (\d+) flags ([0-9a-f]+) lver (\d+)$/m.exec(log);
    const disk = /\]: resource disk (.*) (\d+)$/m.exec(log);
    expect([res, disk]).not.toContain(null);
    const ours = parseResourceArg(arg);
    const flags = parseInt(res![3], 16);
    expect({
      names: `${utf8(ours.lockspace)} ${utf8(ours.resource)}`, disks: 1, shared: !!ours.shared, lver: ours.lver ?? 0, hasLver: ours.lver !== undefined,
      path: ours.path, offset: ours.offset,
    }).toEqual({
      names: res![1], disks: Number(res![2]), shared: (flags & 0x4) !== 0, lver: Number(res![4]), hasLver: (flags & 0x1) !== 0,
      path: disk![1], offset: Number(disk![2]),
    });
  });

  // what sanlock reads only in part (strtoull/atoll stop at the first character they cannot
  // take, sanlock_path_import drops both backslashes of "\\"): refused, never read otherwise
  it.each([
    ['-r', 'LS:R:/p:0:08', /lver 0$/m],
    ['-r', 'LS:R:/p:0:1x', /lver 1$/m],
    ['-r', 'LS:R:/p:0x10', /resource disk \/p 0$/m],
    ['-s', 'LS:0x1:/p:0', / host_id 0 path /],
    ['-s', 'LS:1:/a\\\\b:0', / path \/ab offset /],
  ])('%s %s, which sanlock reads only in part (%s), is refused', async (opt, arg, reads) => {
    expect(await sanlockParse(opt as '-s' | '-r', arg as string)).toMatch(reads);
    expect(() => (opt === '-s' ? parseLockspaceArg(arg as string) : parseResourceArg(arg as string))).toThrow(UsageError);
  });

  // the quirk tempDirWithoutM avoids: lockagent reads what was written (docs/cli.md, differences)
  it.each([
    ['-r', 'LS:R\\:5:/tmp/xMy/r:0', /resource disk 0 0$/m, '/tmp/xMy/r'],
    ['-r', 'LS:R:/a\\:b/r:1M', /resource disk \/a:0 1$/m, '/a:b/r'],
    ['-s', 'my\\:ls:1:/tmp/xMy/p:0', / path 0 offset 0$/m, '/tmp/xMy/p'],
  ])('%s %s: sanlock misreads an escaped ":" followed by an "M"; lockagent reads the path as written', async (opt, arg, theirs, want) => {
    expect(await sanlockParse(opt as '-s' | '-r', arg as string)).toMatch(theirs);
    expect((opt === '-s' ? parseLockspaceArg(arg as string) : parseResourceArg(arg as string)).path).toBe(want);
  });

  // sanlock_str_to_lockspace copies the name as written: `my\:ls` is a 6-byte name on disk
  it('direct init -s with a backslash in the name writes sanlock\'s bytes', async () => {
    fs.mkdirSync(path.join(dir, 'a:b'));
    for (const [name, file] of [['my\\:ls', 'a\\:b/ls1'], ['a\\ b', 'ls2']]) {
      const files = ['sanlock', 'lockagent'].map((t) => sparseFile(path.join(dir, `${file.replace('\\:', ':')}.${t}`), MiB));
      const arg = (t: string) => `${name}:0:${path.join(dir, `${file}.${t}`)}:0`;
      expect((await sanlock(['direct', 'init', '-s', arg('sanlock')])).stdout).toBe('init done 0\n');
      expect((await lockagentInProcess(['direct', 'init', '-s', arg('lockagent')])).stdout).toBe('init done 0\n');
      const [a, b] = files.map((f) => fs.readFileSync(f));
      expect(decodeLeader(a, 0).spaceName).toBe(name);
      expect(b.equals(a)).toBe(true);
    }
  });

  // -i and -g are strtoull(…, 0): 0x2 is host 2, 010 is generation 8
  it('direct acquire -i 0x2 -g 010 takes the lease for host 2, generation 8, in both', async () => {
    for (const [tool, go] of [['sanlock', sanlock], ['lockagent', lockagent]] as const) {
      const f = sparseFile(path.join(dir, `res.${tool}`), MiB);
      expect((await go(['direct', 'init', '-r', `LS:R:${f}:0`])).stdout).toBe('init done 0\n');
      expect((await go(['direct', 'acquire', '-r', `LS:R:${f}:0`, '-i', '0x2', '-g', '010'])).stdout).toBe('acquire done 0\n');
      expect([tool, decodeLeader(fs.readFileSync(f), 0)]).toEqual([tool, expect.objectContaining({ ownerId: 2, ownerGeneration: 8, lver: 1 })]);
    }
  });
});

describeSanlockDaemons('lockagent client output against a sanlock daemon', () => {
  let base: string;
  let d: SanlockDaemon | undefined;
  let holder: ChildProcess | undefined;
  let server: ControlServer | undefined;
  let sock: string;
  /** what the fake agent answers, and the code it fails with (0: none) */
  let answer: unknown = [];
  let failWith = 0;
  const seen: Request[] = [];
  let RES: string[] = [];

  beforeAll(async () => {
    cliEntry();
    base = tempDirWithoutM('la-strings-d');
    const leases = path.join(base, 'leases');
    for (const sub of ['a:b', 'é', 'b\\c']) fs.mkdirSync(path.join(leases, sub), { recursive: true });
    const ls = sparseFile(path.join(leases, 'LS'), MiB);
    expect((await sanlock(['direct', 'init', '-s', `LS:0:${ls}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    // a ':' in a path, a ':' in a name with a UTF-8 path, a backslash in a path
    for (const [name, sub] of [['R1', 'a:b'], ['R:5', 'é'], ['R6', 'b\\c']]) sparseFile(path.join(leases, sub, name), MiB);
    RES = [
      `LS:R1:${path.join(leases, 'a\\:b', 'R1')}:0`,
      `LS:R\\:5:${path.join(leases, 'é', 'R\\:5')}:0`,
      `LS:R6:${path.join(leases, 'b\\\\c', 'R6')}:0`,
    ];
    for (const r of RES) expect([r, (await sanlock(['direct', 'init', '-r', r])).stdout]).toEqual([r, 'init done 0\n']);
    d = await startSanlockDaemon(base, 'strings');
    await addLockspace(d, `LS:1:${ls}:0`, 1);

    sock = path.join(base, 'agent.sock');
    server = new ControlServer({
      path: sock,
      mode: 0o600,
      handler: async (req) => {
        seen.push(req);
        if (failWith) throw new LeaseError(failWith, 'as the sanlock daemon answered');
        return answer;
      },
    });
    await server.listen();
  });

  afterAll(async () => {
    if (holder?.pid) {
      try { process.kill(-holder.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    await server?.close();
    await stopSanlockDaemon(d).catch(() => undefined);
    await killSanlockDaemon(d).catch(() => undefined);
    removeTempDir(base);
  });

  /** The leases of RES as the agent answers them: acquired at lver 1, as sanlock's fresh acquires. */
  const heldOf = (res: string[]) => res.map((r) => {
    const p = parseResourceArg(r);
    return { lockspace: p.lockspace, resource: p.resource, path: p.path, offset: p.offset, mode: 'exclusive', lver: 1 };
  });

  it('inquire prints sanlock\'s bytes; acquire\'s r lines are sanlock\'s status lines', async () => {
    holder = spawn(SANLOCK, ['client', 'command', ...RES.flatMap((r) => ['-r', r]), '-c', '/bin/sleep', '600'], { env: d!.env, stdio: 'ignore', detached: true });
    const pid = holder.pid!;
    let status = '';
    for (let i = 0; i < 150 && (status.match(new RegExp(` p ${pid}$`, 'gm')) ?? []).length < RES.length; i++) {
      await new Promise((r) => setTimeout(r, 200));
      status = (await sanlockClient(d!, ['status'], 5000)).stdout;
    }
    const theirs = await sanlockClient(d!, ['inquire', '-p', String(pid)]);
    expect(theirs.stdout).toMatch(/^inquire pid \d+\ninquire done 0 res_count 3\n/);

    answer = heldOf(RES);
    const ours = await lockagentInProcess(['client', 'inquire', '-p', String(pid), '--socket', sock]);
    expect(ours.code).toBe(0);
    expect(ours.stdoutBuf.toString('latin1')).toBe(theirs.stdoutBuf.toString('latin1'));

    const acquired = await lockagentInProcess(['client', 'acquire', ...RES.flatMap((r) => ['-r', r]), '-p', String(pid), '--socket', sock]);
    const rLines = (s: string) => s.split('\n').filter((l) => l.startsWith('r ')).map((l) => l.replace(/ p \d+$/, '')).sort();
    expect(rLines(acquired.stdout)).toEqual(rLines(status));
    expect(acquired.stdout.split('\n').slice(0, 2)).toEqual([`acquire pid ${pid}`, 'acquire done 0']);
  });

  it('acquire and release print sanlock\'s "<action> pid PID" before "<action> done <rv>"', async () => {
    const pid = String(process.pid); // never registered with the daemon: -3 (ESRCH)
    failWith = -3;
    for (const args of [['acquire', '-r', RES[0], '-p', pid], ['release', '-r', RES[0], '-p', pid], ['release', '-p', `0${pid}`]]) {
      const theirs = await sanlockClient(d!, args);
      const ours = await lockagentInProcess(['client', ...args, '--socket', sock]);
      expect([args, ours.stdoutBuf.toString('latin1')]).toEqual([args, theirs.stdoutBuf.toString('latin1')]);
      expect(ours.code).toBe(theirs.code);
    }
    failWith = 0;
  });
});
