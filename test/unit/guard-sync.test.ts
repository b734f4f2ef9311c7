/**
 * The agent's guard client and the guard binary (native/build/Release/lockagent-guard) on the
 * DEADLINE message: a renewal whose owner pids the guard already has moves only the deadline;
 * the pid lists are computed when owners change, not per renewal; an older guard that does not
 * know DEADLINE gets SET as before. Real guard, real owner processes, a unix socket in /tmp.
 */
import { ChildProcess, spawn } from 'child_process';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { connect, createServer, Server, Socket } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import type { Agent } from '../../src/agent/agent';
import { GuardClient, guardSocketPath, pidStartTime } from '../../src/agent/guard';
import type { Lockspace } from '../../src/agent/lockspace';
import { systemClock } from '../../src/lease/clock';
import { LeaseError } from '../../src/ondisk';
import { memoryLogger } from '../../src/log/logger';
import { rawClient as rawClientOf, startGuard as startGuardOn, waitFor } from '../helpers/guardbin';

const LS = 'GS_TEST';

let dir: string;
const children: ChildProcess[] = [];
const cleanups: Array<() => void> = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'guardsync-'));
});

afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A process to own leases (or to be killed by the guard); `exited` tells how it ended. */
function owner(): { pid: number; start: string; exited: Promise<NodeJS.Signals | number | null>; gone: () => boolean } {
  const c = spawn('sleep', ['600'], { stdio: 'ignore' });
  children.push(c);
  const exited = new Promise<NodeJS.Signals | number | null>((r) => c.once('exit', (code, sig) => r(sig ?? code)));
  const start = pidStartTime(c.pid!);
  if (!start) throw new Error('cannot read the start time of the owner process');
  return { pid: c.pid!, start, exited, gone: () => c.exitCode !== null || c.signalCode !== null };
}

const startGuard = async (socket: string): Promise<void> => { await startGuardOn(socket, cleanups); };
const rawClient = (socket: string) => rawClientOf(socket, cleanups);

/**
 * A socket where the guard client looks for its guard (guard.sock beside the control socket) that
 * records every line the client sends. It passes them on to the real guard at `upstream`, or,
 * without one, answers as a guard from before DEADLINE did (HELLO, SET and CLEAR; anything else
 * "ERR unknown request").
 */
async function recordingGuard(at: string, upstream?: string): Promise<{ lines: string[]; answers: string[] }> {
  const lines: string[] = [];
  const answers: string[] = [];
  const server: Server = createServer((c: Socket) => {
    const up = upstream ? connect(upstream) : undefined;
    c.setEncoding('utf8');
    up?.setEncoding('utf8');
    up?.on('data', (d: string) => { answers.push(...d.split('\n').filter(Boolean)); c.write(d); });
    up?.on('close', () => c.destroy());
    c.on('close', () => up?.destroy());
    // a side that goes away (a test's end, the client's reconnect) may reset the other: not a failure here
    up?.on('error', () => c.destroy());
    c.on('error', () => up?.destroy());
    let buf = '';
    c.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        if (up) { up.write(line + '\n'); continue; }
        const f = line.split(' ');
        const answer = f[0] === 'HELLO' ? `HELLO ${process.pid} enforce\nEND` : f[0] === 'SET' || f[0] === 'CLEAR' ? `OK ${f[1]} -1` : 'ERR unknown request';
        answers.push(...answer.split('\n'));
        c.write(answer + '\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(at, r));
  cleanups.push(() => server.close());
  return { lines, answers };
}

/** The agent as the guard client sees it: lockspaces, and owners with their leases (ownersList calls counted). */
function fakeAgent() {
  const lease = { lastSuccess: systemClock.monotime() };
  const ls = { name: LS, state: 'joined', spec: { ioTimeout: 1 }, lease } as unknown as Lockspace;
  const owners: Array<{ ref: { uuid: string; name: string; pid?: number }; leases: Array<{ spec: { lockspace: string } }> }> = [];
  const calls = { ownersList: 0 };
  const agent = {
    lockspaces: new Map([[LS, ls]]),
    ownersList: () => { calls.ownersList++; return owners.map((o) => ({ ref: o.ref, leases: [...o.leases] })); },
  } as unknown as Agent;
  const add = (pid: number) => owners.push({ ref: { uuid: `u${pid}`, name: `vm${pid}`, pid }, leases: [{ spec: { lockspace: LS } }, { spec: { lockspace: LS } }] });
  return { agent, ls, lease, owners, add, calls };
}

function guardClient(agent: Agent, log: ReturnType<typeof memoryLogger>): GuardClient {
  const g = new GuardClient({
    agent, clock: systemClock, log, fencing: 'guard', mode: 'enforce', controlSocket: join(dir, 'control.sock'), killGraceSeconds: 0,
    binary: join(dir, 'no-such-guard'), // never started here: the test's socket answers
  });
  cleanups.push(() => g.stop());
  return g;
}

const deadlineOf = (lastSuccess: number) => (lastSuccess + 8 + 60 - 5) * 1000;

describe('guard sync: DEADLINE when the pids are unchanged', () => {
  it('renewals with unchanged owners send DEADLINE without walking the owners; a change sends SET with the new pids', async () => {
    const real = join(dir, 'real-guard.sock');
    await startGuard(real);
    const rec = await recordingGuard(guardSocketPath(join(dir, 'control.sock')), real);
    const a = fakeAgent();
    const o1 = owner();
    const o2 = owner();
    a.add(o1.pid);
    a.add(o2.pid);
    const log = memoryLogger();
    const g = guardClient(a.agent, log);
    await g.start();
    g.setRecovered();
    const answered = (n: number) => waitFor(`${n} answers of the guard`, () => rec.answers.filter((l) => /^(OK|ERR) /.test(l)).length >= n);
    await answered(1);
    expect(rec.lines.slice(1)).toEqual([`SET ${LS} ${deadlineOf(a.lease.lastSuccess)} ${o1.pid}:${o1.start} ${o2.pid}:${o2.start}`]);

    // (a) three renewals: only the deadline moves, and the owners are not walked again
    const walks = a.calls.ownersList;
    for (let i = 0; i < 3; i++) {
      a.lease.lastSuccess += 2;
      g.renewed(a.ls);
      await answered(2 + i);
    }
    expect(a.calls.ownersList).toBe(walks);
    expect(rec.lines.slice(2)).toEqual([2, 4, 6].map((d) => `DEADLINE ${LS} ${deadlineOf(a.lease.lastSuccess - 6 + d)}`));
    expect(rec.answers.filter((l) => l.startsWith('ERR'))).toEqual([]);
    // the real guard moved the deadline and kept both pids
    const peek = await rawClient(real);
    peek.send('HELLO 1 enforce');
    const armed = (await peek.next(/^ARMED /)).split(' ');
    expect(armed[1]).toBe(LS);
    expect(Number(armed[3])).toBe(2);
    expect(Number(armed[2])).toBeGreaterThan(deadlineOf(a.lease.lastSuccess - 2) - systemClock.nowMs());

    // (b) an owner comes: SET with the new pid set, once; the next renewal is a DEADLINE again
    const o3 = owner();
    a.add(o3.pid);
    g.changed();
    await answered(5);
    expect(rec.lines[5]).toBe(`SET ${LS} ${deadlineOf(a.lease.lastSuccess)} ${o1.pid}:${o1.start} ${o2.pid}:${o2.start} ${o3.pid}:${o3.start}`);
    const walks2 = a.calls.ownersList;
    a.lease.lastSuccess += 2;
    g.renewed(a.ls);
    await answered(6);
    expect(rec.lines[6]).toBe(`DEADLINE ${LS} ${deadlineOf(a.lease.lastSuccess)}`);
    expect(a.calls.ownersList).toBe(walks2);
    expect(g.status().guard.lockspaces).toEqual([expect.objectContaining({ lockspace: LS, deadlineMs: deadlineOf(a.lease.lastSuccess), pids: [o1.pid, o2.pid, o3.pid] })]);
    expect(log.lines.filter((l) => l.startsWith('error'))).toEqual([]);
  });

  it('against a guard that answers DEADLINE with "ERR unknown request" (an older guard) it sends SET, then only SET', async () => {
    const rec = await recordingGuard(guardSocketPath(join(dir, 'control.sock')));
    const a = fakeAgent();
    const o1 = owner();
    a.add(o1.pid);
    const log = memoryLogger();
    const g = guardClient(a.agent, log);
    await g.start();
    g.setRecovered();
    const set = (ls: number) => `SET ${LS} ${deadlineOf(ls)} ${o1.pid}:${o1.start}`;
    const first = a.lease.lastSuccess;
    a.lease.lastSuccess += 2;
    g.renewed(a.ls);
    await waitFor('SET after the refused DEADLINE', () => rec.lines.length >= 4);
    a.lease.lastSuccess += 2;
    g.renewed(a.ls);
    a.lease.lastSuccess += 2;
    g.renewed(a.ls);
    await waitFor('two more updates', () => rec.lines.length >= 6);
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.lines.slice(1)).toEqual([set(first), `DEADLINE ${LS} ${deadlineOf(first + 2)}`, set(first + 2), set(first + 4), set(first + 6)]);
    expect(log.lines.filter((l) => l.startsWith('error'))).toEqual([]);
    expect(log.lines.some((l) => /predates the DEADLINE message/.test(l))).toBe(true);
  });
});

describe('lockagent-guard: DEADLINE', () => {
  it('moves the deadline of the pids the last SET gave, and kills them at the moved deadline, not before', async () => {
    const sock = join(dir, 'guard.sock');
    await startGuard(sock);
    const c = await rawClient(sock);
    c.send('HELLO 1 enforce');
    await c.next(/^END$/);
    // a lockspace the guard has no pids for: an error, so the agent sends SET
    c.send(`DEADLINE ${LS} ${systemClock.nowMs() + 60_000}`);
    expect(await c.next(/^(OK|ERR) /)).toMatch(/^ERR lockspace GS_TEST has no pids here/);

    const o = owner();
    const first = systemClock.nowMs() + 1500;
    c.send(`SET ${LS} ${first} ${o.pid}:${o.start}`);
    await c.next(/^OK GS_TEST -1$/);
    const moved = systemClock.nowMs() + 4000;
    let n = c.got.length;
    c.send(`DEADLINE ${LS} ${moved}`);
    // the previous deadline still had time left: that is the margin the guard reports
    expect(Number((await c.next(/^(OK|ERR) /, n)).split(' ')[2])).toBeGreaterThan(0);

    await waitFor('the first deadline to pass', () => systemClock.nowMs() > first + 1000);
    expect(o.gone()).toBe(false);
    n = c.got.length;
    expect(await c.next(new RegExp(`^KILLED ${LS} ${o.pid} 0 `), n)).toBeTruthy();
    expect(await o.exited).toBe('SIGKILL');
    expect(systemClock.nowMs()).toBeGreaterThanOrEqual(moved);
  });
});

/** Pids no process can have (above pid_max): the guard finds them gone at a kill, never kills one. */
function fakePids(n: number): string[] {
  const max = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  return Array.from({ length: n }, (_, i) => `${max + 1 + i}:${1000 + i}`);
}

describe('lockagent-guard: capacity', () => {
  // The guard checks only the form <pid>:<starttime> at SET (the start time is compared at a
  // kill), so entries of pids that do not exist are registered like real ones.
  it('registers 5,000 owner pids in one lockspace and moves their deadline', async () => {
    const sock = join(dir, 'guard.sock');
    await startGuard(sock);
    const c = await rawClient(sock);
    c.send('HELLO 1 enforce');
    await c.next(/^END$/);
    const o = owner();
    c.send(`SET ${LS} ${systemClock.nowMs() + 60_000} ${[...fakePids(4999), `${o.pid}:${o.start}`].join(' ')}`);
    expect(await c.next(/^(OK|ERR) /)).toBe(`OK ${LS} -1`);
    let n = c.got.length;
    c.send(`DEADLINE ${LS} ${systemClock.nowMs() + 120_000}`);
    expect(await c.next(/^(OK|ERR) /, n)).toMatch(new RegExp(`^OK ${LS} \\d+$`));
    n = c.got.length;
    c.send('HELLO 1 enforce');
    const armed = (await c.next(/^ARMED /, n)).split(' ');
    expect(armed[1]).toBe(LS);
    expect(Number(armed[3])).toBe(5000);
    expect(Number(armed[2])).toBeGreaterThan(60_000);
    expect(o.gone()).toBe(false);
  });

  it('answers an over-long or over-cap SET with ERR, disarms that lockspace, and keeps the connection', async () => {
    const sock = join(dir, 'guard.sock');
    await startGuard(sock);
    const c = await rawClient(sock);
    c.send('HELLO 1 enforce');
    await c.next(/^END$/);
    const dl = systemClock.nowMs() + 60_000;
    c.send(`SET ${LS} ${dl} ${fakePids(1).join(' ')}`);
    c.send(`SET OTHER ${dl} ${fakePids(1).join(' ')}`);
    await c.next(/^OK OTHER /);

    // 65,537 pids: the line fits the buffer, the table may not have them
    let n = c.got.length;
    c.send(`SET ${LS} ${dl} ${fakePids(65_537).join(' ')}`);
    expect(await c.next(/^(OK|ERR) /, n)).toBe(`ERR lockspace ${LS}: too many pids in one lockspace (more than 65536)`);
    // the same connection answers the next request; the refused lockspace has no pids left
    n = c.got.length;
    c.send(`DEADLINE ${LS} ${dl}`);
    expect(await c.next(/^(OK|ERR) /, n)).toMatch(new RegExp(`^ERR lockspace ${LS} has no pids here`));

    // a line longer than any request may be (3 MiB): read to its end, discarded, ERR
    n = c.got.length;
    c.send(`SET ${LS} ${dl} ${Array.from({ length: 100_000 }, (_, i) => `${4_000_000 + (i % 100)}:12345678901234567890`).join(' ')}`);
    expect(await c.next(/^(OK|ERR) /, n)).toMatch(new RegExp(`^ERR lockspace ${LS}: request line of \\d+ bytes or more`));
    n = c.got.length;
    c.send(`DEADLINE OTHER ${dl + 1000}`);
    expect(await c.next(/^(OK|ERR) /, n)).toMatch(/^OK OTHER \d+$/);
    n = c.got.length;
    c.send(`SET ${LS} ${dl} ${fakePids(2).join(' ')}`);
    expect(await c.next(/^(OK|ERR) /, n)).toBe(`OK ${LS} -1`);
  });
});

describe('guard client: a refused SET', () => {
  it('logs it once, shows it in status, refuses acquires for pid owners of that lockspace, and does not resend the same pids', async () => {
    const real = join(dir, 'real-guard.sock');
    await startGuard(real);
    const rec = await recordingGuard(guardSocketPath(join(dir, 'control.sock')), real);
    const a = fakeAgent();
    // 65,537 owners (the guard takes 65,536 per lockspace), all on one real process
    const o = owner();
    for (let i = 0; i <= 65_536; i++) a.owners.push({ ref: { uuid: `u${i}`, name: `vm${i}`, pid: o.pid }, leases: [{ spec: { lockspace: LS } }] });
    const log = memoryLogger();
    const g = guardClient(a.agent, log);
    await g.start();
    g.setRecovered();
    const answers = (n: number) => waitFor(`${n} answers of the guard`, () => rec.answers.filter((l) => /^(OK|ERR) /.test(l)).length >= n, 30_000);
    await answers(1);
    expect(rec.answers.filter((l) => /^(OK|ERR) /.test(l))).toEqual([`ERR lockspace ${LS}: too many pids in one lockspace (more than 65536)`]);
    // the proxy has passed the ERR on; the client reads it a moment later
    await waitFor('the client to record the refusal', () => !!g.status().guard.lockspaces?.some((l) => l.refused));

    const newcomer = { uuid: 'new', name: 'vm-new', pid: o.pid };
    expect(() => g.admit(newcomer, [LS])).toThrow(LeaseError);
    expect(() => g.admit(newcomer, [LS])).toThrow(/refused the owner pids of lockspace GS_TEST \(lockspace GS_TEST: too many pids/);
    // owners without a pid, and other lockspaces, are not concerned
    expect(() => g.admit({ uuid: 'nopid', name: 'x' }, [LS])).not.toThrow();
    expect(() => g.admit(newcomer, ['OTHER'])).not.toThrow();
    const st = g.status();
    expect(st.protected).toBe(false);
    expect(st.guard.lockspaces?.[0]).toEqual(expect.objectContaining({ lockspace: LS, refused: expect.stringMatching(/too many pids/) }));

    // renewals with the same owners send nothing (not 65,537 pids again), and log nothing more
    const sentLines = rec.lines.length;
    for (let i = 0; i < 3; i++) {
      a.lease.lastSuccess += 2;
      g.renewed(a.ls);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(rec.lines.length).toBe(sentLines);
    expect(log.lines.filter((l) => l.startsWith('error'))).toEqual([
      expect.stringMatching(/^error fencing guard refused the 65537 owner pids of lockspace GS_TEST: .*NOT fenced.*acquires for owners with a pid in GS_TEST are refused/),
    ]);

    // owners leave: the guard takes the pids, acquires are admitted again
    a.owners.splice(1);
    g.changed();
    await answers(2);
    expect(rec.answers.filter((l) => /^(OK|ERR) /.test(l))[1]).toBe(`OK ${LS} -1`);
    expect(() => g.admit(newcomer, [LS])).not.toThrow();
    expect(g.status().protected).toBe(true);
    expect(log.lines.some((l) => /^warning fencing guard took the owner pids of lockspace GS_TEST \(1\)/.test(l))).toBe(true);
  }, 60_000);
});

describe('guard client: domains known by their pid file (no pid yet)', () => {
  const uuidOf = (i: number) => `6f1c1a52-3c7e-4d59-9b1e-${String(i).padStart(12, '0')}`;
  const addPending = (a: ReturnType<typeof fakeAgent>, n: number) => {
    for (let i = 0; i < n; i++) {
      a.owners.push({ ref: { uuid: uuidOf(i), name: `vm${i}`, pidFile: `/run/libvirt/qemu/vm${i}.pid` } as { uuid: string; name: string }, leases: [{ spec: { lockspace: LS } }] });
    }
  };
  const token = (i: number) => `@${Buffer.from(`/run/libvirt/qemu/vm${i}.pid`).toString('hex')}/${uuidOf(i)}`;
  /** One pid owner and `pending` domains known by their pid file, synced to the guard at `upstream` (none: an older guard's answers). */
  const synced = async (pending: number, upstream?: string) => {
    const rec = await recordingGuard(guardSocketPath(join(dir, 'control.sock')), upstream);
    const a = fakeAgent();
    const o1 = owner();
    a.add(o1.pid);
    addPending(a, pending);
    const log = memoryLogger();
    const g = guardClient(a.agent, log);
    await g.start();
    g.setRecovered();
    return { rec, a, o1, log, g };
  };

  it('sends them to a guard that says "pidfile", at most 1,024 per lockspace (warned once), beside the pid owners', async () => {
    const real = join(dir, 'real-guard.sock');
    await startGuard(real);
    const { rec, a, o1, log, g } = await synced(1025, real);
    await waitFor('the SET answered', () => rec.answers.some((l) => /^(OK|ERR) /.test(l)));
    expect(rec.answers.find((l) => /^(OK|ERR) /.test(l))).toBe(`OK ${LS} -1`);
    const set = rec.lines[1].split(' ');
    expect(set.slice(0, 4)).toEqual(['SET', LS, String(deadlineOf(a.lease.lastSuccess)), `${o1.pid}:${o1.start}`]);
    expect(set.slice(4)).toEqual(Array.from({ length: 1024 }, (_, i) => token(i)));
    const st = g.status().guard.lockspaces![0];
    expect(st.pids).toEqual([o1.pid]);
    expect(st.pending).toHaveLength(1024);
    expect(st.pending![0]).toBe(uuidOf(0));
    // the owners walked again (the same ones: nothing more to send): still one warning
    g.changed();
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.lines).toHaveLength(2);
    expect(log.lines.filter((l) => /more than 1024 domains between prepare/.test(l))).toHaveLength(1);
  });

  it('sends only the pid owners to a guard that does not say "pidfile" (an older guard), and says so once', async () => {
    const { rec, a, o1, log } = await synced(2); // the stand-in answers as an older guard
    await waitFor('the SET', () => rec.lines.length >= 2);
    expect(rec.lines[1]).toBe(`SET ${LS} ${deadlineOf(a.lease.lastSuccess)} ${o1.pid}:${o1.start}`);
    expect(log.lines.filter((l) => /predates owners known by a pid file/.test(l))).toHaveLength(1);
  });
});
