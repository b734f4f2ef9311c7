/**
 * lockagent and the real sanlock 3.8.5 daemon as hosts of one lockspace: hosts 1 and 2 are
 * sanlock daemons (own SANLOCK_RUN_DIR, -e names), hosts 3 and 4 lockagent daemons, all at
 * io_timeout 1 in __LIBVIRT__DISKS__ (initialised with -o 1, so joins take 2 s).
 *
 *  - each side sees the other's hosts LIVE, a crashed one FAIL and then DEAD, a cleanly
 *    released one FREE;
 *  - exclusive contention in both directions: never two holders, the refusal is -243 and
 *    lockagent names the sanlock host;
 *  - shared leases mix across tools, and an exclusive acquire from either side is refused
 *    while a shared holder lives;
 *  - takeover of a crashed host's lease in both directions (run concurrently): only after
 *    host_dead = 8·io + 60 = 68 s from its last renewal.
 */
import * as fs from 'fs';
import * as path from 'path';
import { decodeLeader } from '../../src/ondisk';
import { AgentHost, cli, startHost, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { cliEntry, lockagent, makeTempDir, readLeaderOf, removeTempDir, sanlock, Sleepers, sparseFile } from '../helpers/cli';
import {
  addLockspace, describeSanlockDaemons, getsHosts, Holder, holdWithSleep, killHolder, killSanlockDaemon, SanlockDaemon,
  sanlockClient, sanlockCommand, startSanlockDaemon, stopSanlockDaemon, waitHostState,
} from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
const HOST_DEAD = 8 * 1 + 60;
const mono = () => Number(process.hrtime.bigint()) / 1e9;
jest.setTimeout(200_000);

interface HostView { hostId: number; state: string; ownerName: string; ownerGeneration: number }

describeSanlockDaemons('lockagent and real sanlock daemons as hosts of one lockspace', () => {
  let base: string;
  let leaseDir: string;
  let lsPath: string;
  const sl: SanlockDaemon[] = [];
  const la: AgentHost[] = [];
  const holders: Holder[] = [];
  const owners = new Sleepers();
  const res = (r: string, sh = false) => `${LS}:${r}:${path.join(leaseDir, r)}:0${sh ? ':SH' : ''}`;

  const laHosts = async (h: AgentHost): Promise<HostView[]> => {
    const r = await cli(h, ['host_status', '--json']);
    if (r.code !== 0) throw new Error(`host_status: ${r.stderr}`);
    return (JSON.parse(r.stdout) as Array<{ lockspace: string; hosts: HostView[] }>).find((x) => x.lockspace === LS)?.hosts ?? [];
  };
  const laSees = (h: AgentHost, hostId: number, state: string, timeoutMs = 30_000) =>
    waitFor(`lockagent host ${h.id} to see host ${hostId} ${state}`, async () => (await laHosts(h)).find((x) => x.hostId === hostId && x.state === state), timeoutMs, 500);
  const deltaTs = (hostId: number) => {
    const b = Buffer.alloc(512);
    const fd = fs.openSync(lsPath, 'r');
    fs.readSync(fd, b, 0, 512, (hostId - 1) * 512);
    fs.closeSync(fd);
    return decodeLeader(b, 0).timestamp;
  };
  const leaderOf = (r: string) => readLeaderOf(path.join(leaseDir, r));
  const sleeper = () => owners.spawn();

  beforeAll(async () => {
    cliEntry();
    base = makeTempDir('la-sanlockd');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    lsPath = sparseFile(path.join(leaseDir, LS), 1048576);
    expect((await sanlock(['direct', 'init', '-s', `${LS}:0:${lsPath}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    for (const r of ['R1', 'R2', 'R3', 'R4', 'R5']) {
      const f = sparseFile(path.join(leaseDir, r), 1048576);
      expect((await sanlock(['direct', 'init', '-r', `${LS}:${r}:${f}:0`])).stdout).toBe('init done 0\n');
    }
    const [a, b] = await Promise.all([startSanlockDaemon(base, 'sanlockA'), startSanlockDaemon(base, 'sanlockB')]);
    sl.push(a, b);
    for (const id of [3, 4]) la.push(startHost(writeHostConfig(base, id, { leaseDir, ioTimeout: 1, hostName: `lockagent${id}` })));
    await Promise.all([
      addLockspace(a, `${LS}:1:${lsPath}:0`, 1),
      addLockspace(b, `${LS}:2:${lsPath}:0`, 1),
      ...la.map((h) => waitJoined(h, LS, 30_000)),
    ]);
  });

  afterAll(async () => {
    for (const h of holders) await killHolder(h).catch(() => undefined);
    owners.killAll();
    await Promise.all(la.map((h) => stopHost(h, 'SIGKILL').catch(() => undefined)));
    await Promise.all(sl.map((d) => stopSanlockDaemon(d).catch(() => undefined)));
    await Promise.all(sl.map((d) => killSanlockDaemon(d).catch(() => undefined)));
    removeTempDir(base);
  });

  it('each side sees the other\'s hosts LIVE, with their names', async () => {
    for (const id of [3, 4]) await waitHostState(sl[0], LS, id, 'LIVE', 30_000);
    for (const id of [3, 4]) await waitHostState(sl[1], LS, id, 'LIVE', 30_000);
    const seen1 = await laSees(la[0], 1, 'LIVE');
    const seen2 = await laSees(la[1], 2, 'LIVE');
    expect(seen1.ownerName).toBe('sanlockA');
    expect(seen2.ownerName).toBe('sanlockB');
    await laSees(la[0], 2, 'LIVE');
    await laSees(la[1], 1, 'LIVE');
    const hs = await sanlockClient(sl[0], ['host_status', '-s', LS, '-D']);
    expect(hs.stdout).toMatch(/owner_name=lockagent3/);
    expect(hs.stdout).toMatch(/owner_name=lockagent4/);
    expect(hs.stdout).toMatch(/io_timeout=1/);
  });

  it('exclusive contention both ways: -243, never two holders', async () => {
    // sanlock holds R1 -> lockagent is refused and names the sanlock host
    const h1 = await holdWithSleep(sl[0], res('R1'));
    holders.push(h1);
    const refused = await cli(la[0], ['client', 'acquire', '-r', res('R1'), '--owner', 'c-3', '--name', 'c3']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/leased by host 1 \(node sanlockA\).*sanlock -243/);
    expect(leaderOf('R1')).toMatchObject({ ownerId: 1, lver: 1 });

    // lockagent holds R2 -> sanlock is refused with -243
    const got = await cli(la[1], ['client', 'acquire', '-r', res('R2'), '--owner', 'c-4', '--name', 'c4']);
    expect(got.code).toBe(0);
    const t = Date.now();
    const s = sanlockCommand(sl[1], res('R2'), ['/bin/true']);
    holders.push(s);
    const out = await s.done;
    expect(out.output).toMatch(/acquire done -243/);
    expect(out.code).not.toBe(0);
    expect(Date.now() - t).toBeLessThan(15_000);
    expect(leaderOf('R2')).toMatchObject({ ownerId: 4 });

    // released on both sides -> the other side gets it (lver moves on)
    await killHolder(h1);
    await waitFor('sanlock to release R1', async () => leaderOf('R1').timestamp === 0 || undefined, 10_000);
    expect((await cli(la[0], ['client', 'acquire', '-r', res('R1'), '--owner', 'c-3', '--name', 'c3'])).code).toBe(0);
    expect(leaderOf('R1')).toMatchObject({ ownerId: 3, lver: 2 });
    expect((await cli(la[1], ['client', 'release', '--owner', 'c-4'])).code).toBe(0);
    const s2 = sanlockCommand(sl[1], res('R2'), ['/bin/true']);
    expect((await s2.done).code).toBe(0);
    expect(leaderOf('R2')).toMatchObject({ ownerId: 2, lver: 2 });
    // sanlock releases after it notices the holder exited
    await waitFor('sanlock to release R2', async () => leaderOf('R2').timestamp === 0 || undefined, 10_000);
    expect((await cli(la[0], ['client', 'release', '--owner', 'c-3'])).code).toBe(0);
  });

  it('shared leases mix across tools; an exclusive acquire from either side is refused while a shared holder lives', async () => {
    const shS = await holdWithSleep(sl[0], res('R3', true));
    holders.push(shS);
    const shL = await cli(la[0], ['client', 'acquire', '-r', res('R3', true), '--owner', 'sh-3', '--name', 'sh3']);
    expect(shL.stderr).toBe('');
    expect(shL.code).toBe(0);
    const dump = await sanlock(['direct', 'dump', path.join(leaseDir, 'R3'), '-f', '2']);
    expect(dump.stdout).toMatch(/^ {106}0001 0001 SH$/m);
    expect(dump.stdout).toMatch(/^ {106}0003 0001 SH$/m);

    const exL = await cli(la[1], ['client', 'acquire', '-r', res('R3'), '--owner', 'ex-4', '--name', 'ex4']);
    expect(exL.code).toBe(1);
    expect(exL.stderr).toMatch(/held shared by live hosts? 1, 3|sanlock -11/);
    const exS = sanlockCommand(sl[1], res('R3'), ['/bin/true']);
    holders.push(exS);
    const o = await exS.done;
    expect(o.output).toMatch(/acquire done -11/);
    // the shared holders are untouched
    const dump2 = await sanlock(['direct', 'dump', path.join(leaseDir, 'R3'), '-f', '2']);
    expect(dump2.stdout).toMatch(/^ {106}0001 0001 SH$/m);
    expect(dump2.stdout).toMatch(/^ {106}0003 0001 SH$/m);
    expect(leaderOf('R3').timestamp).toBe(0);

    // a second shared holder from sanlock's side coexists with lockagent's
    const shS2 = sanlockCommand(sl[1], res('R3', true), ['/bin/true']);
    expect((await shS2.done).code).toBe(0);

    // once both shared holders are gone, an exclusive acquire succeeds
    await killHolder(shS);
    expect((await cli(la[0], ['client', 'release', '--owner', 'sh-3'])).code).toBe(0);
    await waitFor('R3 shared holders gone', async () => {
      const d = await sanlock(['direct', 'dump', path.join(leaseDir, 'R3'), '-f', '2']);
      return !/ SH$/m.test(d.stdout) || undefined;
    }, 10_000, 300);
    expect((await cli(la[1], ['client', 'acquire', '-r', res('R3'), '--owner', 'ex-4', '--name', 'ex4'])).code).toBe(0);
    expect((await cli(la[1], ['client', 'release', '--owner', 'ex-4'])).code).toBe(0);
  });

  it('takeover from a crashed host, both ways at once, only after host_dead; FAIL then DEAD on both sides', async () => {
    // sanlock host 2 holds R4; lockagent host 4 holds R5
    const h4 = await holdWithSleep(sl[1], res('R4'));
    holders.push(h4);
    const pid = sleeper().pid!;
    expect((await cli(la[1], ['client', 'acquire', '-r', res('R5'), '--owner', 'tk-4', '--name', 'tk4', '--pid', String(pid)])).code).toBe(0);

    // crash both holders' hosts (daemon and lease holder) at the same moment
    const killT = mono();
    await Promise.all([killSanlockDaemon(sl[1]), killHolder(h4), stopHost(la[1], 'SIGKILL')]);
    owners.killAll();
    const last2 = deltaTs(2);
    const last4 = deltaTs(4);
    expect(killT - last2).toBeLessThan(6);
    expect(killT - last4).toBeLessThan(6);

    // lockagent host 3 takes R4 from dead sanlock host 2; sanlock host 1 takes R5 from dead lockagent
    // host 4. Right after the crash both still answer -243 (the owner renewed at their last look);
    // like any client they retry, and from then on the acquire waits until the owner is dead.
    const refusals = { la: 0, sl: 0 };
    const laTake = (async () => {
      for (;;) {
        const r = await lockagent(['client', 'acquire', '-r', res('R4'), '--owner', 'tk-3', '--name', 'tk3', '--timeout', '150', '-c', la[0].conf], { timeoutMs: 170_000 });
        if (r.code !== 0 && /sanlock -243/.test(r.stderr) && mono() - killT < 150) {
          refusals.la++;
          await new Promise((x) => setTimeout(x, 1000));
          continue;
        }
        return { r, t: mono() };
      }
    })();
    const slTake = (async () => {
      for (;;) {
        const c = sanlockCommand(sl[0], res('R5'), ['/bin/true']);
        holders.push(c);
        const r = await c.done;
        if (r.code !== 0 && /acquire done -243/.test(r.output) && mono() - killT < 150) {
          refusals.sl++;
          await new Promise((x) => setTimeout(x, 1000));
          continue;
        }
        return { r, t: mono() };
      }
    })();

    // FAIL after 8·io without renewals, on both sides; the leases are still the dead hosts'
    await laSees(la[0], 2, 'FAIL', 30_000);
    await waitHostState(sl[0], LS, 4, 'FAIL', 30_000);
    await new Promise((r) => setTimeout(r, 20_000));
    expect(leaderOf('R4')).toMatchObject({ ownerId: 2 });
    expect(leaderOf('R5')).toMatchObject({ ownerId: 4 });

    const [a, b] = await Promise.all([laTake, slTake]);
    expect({ code: a.r.code, out: a.r.stdout, err: a.r.stderr }).toMatchObject({ code: 0, err: '' });
    expect({ code: b.r.code, out: b.r.output }).toMatchObject({ code: 0 });
    expect(leaderOf('R4')).toMatchObject({ ownerId: 3, lver: 2 });
    expect(leaderOf('R5')).toMatchObject({ ownerId: 1, lver: 2 });
    const laDelay = a.t - last2;
    const slDelay = b.t - last4;
    console.log(`takeover: lockagent took R4 ${laDelay.toFixed(1)} s after sanlock host 2's last renewal (${refusals.la} early -243); ` +
      `sanlock took R5 ${slDelay.toFixed(1)} s after lockagent host 4's (${refusals.sl} early -243); host_dead ${HOST_DEAD} s`);
    expect(laDelay).toBeGreaterThanOrEqual(HOST_DEAD - 1);
    expect(slDelay).toBeGreaterThanOrEqual(HOST_DEAD - 1);
    expect(laDelay).toBeLessThan(HOST_DEAD + 20);
    expect(slDelay).toBeLessThan(HOST_DEAD + 20);

    await laSees(la[0], 2, 'DEAD', 10_000);
    await waitHostState(sl[0], LS, 4, 'DEAD', 10_000);
    expect((await cli(la[0], ['client', 'release', '--owner', 'tk-3'])).code).toBe(0);
  });

  it('a host that leaves cleanly is FREE on the other side', async () => {
    // lockagent host 3 leaves -> sanlock host 1 sees FREE
    expect((await cli(la[0], ['client', 'rem_lockspace', '-s', LS])).code).toBe(0);
    const free3 = await waitHostState(sl[0], LS, 3, 'FREE', 15_000);
    expect(free3.timestamp).toBe(0);
    // join again (same name: fast reacquire, generation + 1), then sanlock host 1 leaves
    const add = await cli(la[0], ['client', 'add_lockspace', '-s', `${LS}:3:${lsPath}:0`, '-o', '1']);
    expect(add.code).toBe(0);
    await waitFor('sanlock host 1 to see host 3 back with generation 2', async () => (await getsHosts(sl[0], LS)).find((h) => h.hostId === 3 && h.generation === 2), 15_000, 500);
    const rem = await sanlockClient(sl[0], ['rem_lockspace', '-s', `${LS}:1:${lsPath}:0`]);
    expect(rem.stdout).toMatch(/rem_lockspace done 0/);
    await laSees(la[0], 1, 'FREE', 15_000);
    expect(deltaTs(1)).toBe(0);
  });
});
