/**
 * The guard binary (native/build/Release/lockagent-guard) on owners known by a pid file: a
 * domain between libvirt's `prepare` (its leases are taken) and the STARTED event (the agent
 * learns QEMU's pid) is armed as `@<pid-file-hex>/<uuid>`. At the deadline the guard reads the
 * pid from the file and kills that process only if its command line carries `-uuid <uuid>`, as
 * libvirt starts QEMU. Real guard, real processes standing in for QEMU, a unix socket in /tmp.
 */
import { ChildProcess, spawn } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { rawClient, startGuard } from '../helpers/guardbin';

const LS = 'GP_TEST';
const UUID = '6f1c1a52-3c7e-4d59-9b1e-2a9f3d8c7b10';
const OTHER = '0b7c4e2a-91d3-4f6e-8a5b-3c2d1e0f9a87';

let dir: string;
const children: ChildProcess[] = [];
const cleanups: Array<() => void> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'guardpf-'));
});

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A process with QEMU's way of naming its domain on the command line (`-name guest=… -uuid …`). */
/** A process that looks like QEMU of domain `uuid` (its command line has "-uuid <uuid>"), returned
 * once /proc shows that command line: right after spawn() the child may still be mid-exec (an empty
 * cmdline), which the guard rightly takes for "not the domain's QEMU" and logs once more. */
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

async function fakeQemu(uuid: string): Promise<{ pid: number; exited: Promise<NodeJS.Signals | number | null>; gone: () => boolean }> {
  // The interpreter itself: through a wrapper on PATH (pyenv's shims exec bash, then pyenv, then
  // python, each with these arguments) the command line is briefly unreadable between two execs
  // after it first shows the uuid, and the guard may look just then.
  const c = spawn(PYTHON, ['-c', 'import time; time.sleep(600)', '-name', 'guest=vm-pf,debug-threads=on', '-uuid', uuid], { stdio: 'ignore' });
  children.push(c);
  const exited = new Promise<NodeJS.Signals | number | null>((r) => c.once('exit', (code, sig) => r(sig ?? code)));
  const pid = c.pid!;
  for (let i = 0; !readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes(uuid); i++) {
    if (i >= 500) throw new Error(`fake QEMU ${pid} did not exec within 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return { pid, exited, gone: () => c.exitCode !== null || c.signalCode !== null };
}

/** A real guard on its own socket and a client registered with it (HELLO answered up to END). */
async function registered(mode: 'enforce' | 'log') {
  const sock = join(dir, 'g.sock');
  const g = await startGuard(sock, cleanups, mode);
  const c = await rawClient(sock, cleanups);
  c.send(`HELLO ${process.pid} ${mode}`);
  await c.next(/^END$/);
  return { g, c, sock };
}

const token = (pidfile: string, uuid: string): string => `@${Buffer.from(pidfile).toString('hex')}/${uuid}`;
const monoMs = (): number => Math.floor(Number(process.hrtime.bigint()) / 1e6);

describe('guard: owners known by a pid file', () => {
  it('says it knows them at HELLO, and at the deadline kills the process the pid file names when it is the domain\'s', async () => {
    const { g, c, sock } = await registered('enforce');
    expect(c.got.find((l) => l.startsWith('HELLO '))).toMatch(/^HELLO \d+ enforce pidfile$/);

    const q = await fakeQemu(UUID);
    const pidfile = join(dir, 'vm pf.pid'); // a domain name may hold spaces: the path is hex-encoded
    // No pid file yet (QEMU not started): armed all the same.
    const from = c.got.length;
    c.send(`SET ${LS} ${monoMs() + 60_000} ${token(pidfile, UUID)}`);
    expect(await c.next(/^(OK|ERR) /, from)).toBe(`OK ${LS} -1`);
    // HELLO from a second client lists the lockspace as armed with one owner.
    const c2 = await rawClient(sock, cleanups);
    c2.send(`HELLO ${process.pid} enforce`);
    expect(await c2.next(/^ARMED /)).toMatch(new RegExp(`^ARMED ${LS} \\d+ 1$`));
    c2.send(`CLEAR NOPE`);

    // QEMU writes its pid file; a renewal moves the deadline (DEADLINE keeps the owners).
    writeFileSync(pidfile, `${q.pid}\n`);
    const from2 = c.got.length;
    c.send(`DEADLINE ${LS} ${monoMs() + 400}`);
    expect(await c.next(/^(OK|ERR) /, from2)).toMatch(new RegExp(`^OK ${LS} `));
    expect(await Promise.race([q.exited, new Promise((r) => setTimeout(() => r('alive'), 5000).unref())])).toBe('SIGKILL');
    expect(await c.next(new RegExp(`^KILLED ${LS} ${q.pid} 0 `))).toBeTruthy();
    expect(g.log()).toMatch(new RegExp(`SIGKILL pid ${q.pid} \\(QEMU of domain ${UUID}, from ${pidfile.replace(/[.]/g, '\\.')}\\)`));
  });

  it('kills nothing when the pid file is missing or names another process, and refuses a malformed owner', async () => {
    const { g, c } = await registered('enforce');

    const other = await fakeQemu(OTHER); // another domain's QEMU: a stale pid file must not get it killed
    const stale = join(dir, 'stale.pid');
    writeFileSync(stale, `${other.pid}\n`);
    const missing = join(dir, 'missing.pid');
    let from = c.got.length;
    c.send(`SET ${LS} ${monoMs() + 300} ${token(stale, UUID)} ${token(missing, UUID)}`);
    expect(await c.next(/^(OK|ERR) /, from)).toBe(`OK ${LS} -1`);
    await c.next(new RegExp(`^KILLED ${LS} ${other.pid} 2 `));
    await c.next(new RegExp(`^KILLED ${LS} 0 2 `));
    expect(other.gone()).toBe(false);
    expect(g.log()).toMatch(new RegExp(`pid ${other.pid} in ${stale.replace(/[.]/g, '\\.')} is not domain ${UUID}'s QEMU`));
    expect(g.log()).toMatch(/no process in .*missing\.pid yet/);

    // Malformed: not hex, a relative path, a short uuid. Each SET is refused as a whole.
    for (const bad of [`@zz/${UUID}`, `${token('rel.pid', UUID)}`, `@${Buffer.from('/x.pid').toString('hex')}/1234`]) {
      from = c.got.length;
      c.send(`SET ${LS} ${monoMs() + 60_000} ${bad}`);
      expect(await c.next(/^(OK|ERR) /, from)).toMatch(/^ERR lockspace GP_TEST: an owner without a pid must be/);
    }
  });

  it('keeps looking after the deadline: a QEMU that appears later (libvirt\'s child becoming QEMU) is killed then', async () => {
    const { g, c } = await registered('enforce');
    const pidfile = join(dir, 'late.pid');
    c.send(`SET ${LS} ${monoMs() + 100} ${token(pidfile, UUID)}`);
    await c.next(new RegExp(`^KILLED ${LS} 0 2 `)); // the deadline passed with no process yet
    // libvirt's forked child names itself in the pid file before it execs QEMU: not QEMU yet
    const child = await fakeQemu(OTHER);
    writeFileSync(pidfile, `${child.pid}\n`);
    await new Promise((r) => setTimeout(r, 600));
    expect(child.gone()).toBe(false);
    // then QEMU runs under that name
    const q = await fakeQemu(UUID);
    writeFileSync(pidfile, `${q.pid}\n`);
    expect(await Promise.race([q.exited, new Promise((r) => setTimeout(() => r('alive'), 5000).unref())])).toBe('SIGKILL');
    await c.next(new RegExp(`^KILLED ${LS} ${q.pid} 0 `));
    expect(child.gone()).toBe(false);
    // why nothing was killed is logged once per reason (and pid), not at every look: the child
    // once; QEMU's pid at most once more (a look that caught its command line unreadable, as
    // between two execs, is a reason of its own), never a line per look
    expect(g.log().match(/no process in .*late\.pid yet/g)).toHaveLength(1);
    const notQemu = (g.log().match(/pid \d+ in \S+ is not domain/g) ?? []).map((l) => Number(l.split(' ')[1]));
    expect(notQemu.filter((p) => p === child.pid)).toHaveLength(1);
    expect(notQemu.filter((p) => p !== child.pid)).toEqual(notQemu.length > 1 ? [q.pid] : []);
    // the agent back (a new SET) ends the watch: no more looking for a later process
    const from = c.got.length;
    c.send(`SET ${LS} ${monoMs() + 60_000} ${token(pidfile, UUID)}`);
    expect(await c.next(/^(OK|ERR) /, from)).toBe(`OK ${LS} -1`);
  });

  it('in log mode names the process it would kill and leaves it running', async () => {
    const { g, c } = await registered('log');
    const q = await fakeQemu(UUID);
    const pidfile = join(dir, 'vm.pid');
    writeFileSync(pidfile, `${q.pid}\n`);
    c.send(`SET ${LS} ${monoMs() + 200} ${token(pidfile, UUID)}`);
    await c.next(new RegExp(`^KILLED ${LS} ${q.pid} 1 `));
    expect(q.gone()).toBe(false);
    expect(g.log()).toMatch(new RegExp(`would SIGKILL pid ${q.pid} \\(QEMU of domain ${UUID}`));
  });
});
