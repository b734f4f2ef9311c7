/**
 * An agent restart while another host is already waiting for one of its leases (real daemons,
 * io_timeout 1, one lease directory).
 *
 * Host 1 holds r1 for an owner process that keeps running; host 2 asks for r1 over and over.
 * While host 1 is alive host 2 is refused at once (-243, holder named). Once host 1's agent is
 * killed -9, host 2's next attempt *waits* in paxos, watching host 1's delta lease for host_dead
 * (68 s). Host 1's agent is restarted within a few seconds: it must continue its delta lease
 * (same generation, src/agent/lockspace.ts continueOwnLease) and re-adopt r1. Had it re-acquired
 * the delta lease instead, the waiting host would see a newer generation — "the owner is gone" —
 * and take r1 at once while the owner still runs. Host 2 must be refused throughout, then get
 * r1 as soon as the owner releases it.
 *
 * The second case does the same with r2 but keeps host 1's agent down for 14 s: past
 * 8 x io_timeout (8 s), far from host_dead. Up to host_dead the delta lease must still be
 * continued (an older bound acquired a new generation there, and host 2 took r2 two seconds
 * after the restart while its owner ran).
 *
 * The other side — an owner's agent that stays down past host_dead loses its leases to the
 * waiting hosts, and not earlier — is test/multihost/devcount.test.ts (second phase).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { callAgent } from '../../src/control/client';
import { LeaseError } from '../../src/ondisk';
import { lockagent, makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, waitJustRenewed, writeHostConfig } from '../helpers/agentproc';

const LS = '__LIBVIRT__DISKS__';
/** after host 1 is back, how long host 2 keeps trying (its waits watch host 1 renew every 2 s) */
const WINDOW_MS = 15000;
/** the second case: how long host 1's agent stays down (> 8 x io_timeout = 8 s, << host_dead = 68 s) */
const DOWN_MS = 14000;
jest.setTimeout(120000);

interface Attempt { start: number; end: number; ok: boolean; rv?: number; message?: string }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('agent restart while another host waits for its lease', () => {
  let base: string;
  let leaseDir: string;
  let h1: AgentHost;
  let h2: AgentHost;
  const owners: ChildProcess[] = [];

  beforeAll(async () => {
    base = makeTempDir('la-restart-waiter-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    const r1 = sparseFile(path.join(leaseDir, 'r1'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:r1:${r1}:0`])).code).toBe(0);
    const r2 = sparseFile(path.join(leaseDir, 'r2'), 1048576);
    expect((await lockagent(['direct', 'init', '-r', `${LS}:r2:${r2}:0`])).code).toBe(0);
    h1 = startHost(writeHostConfig(base, 1, { leaseDir }));
    h2 = startHost(writeHostConfig(base, 2, { leaseDir }));
    await Promise.all([waitJoined(h1), waitJoined(h2)]);
  });

  afterAll(async () => {
    for (const o of owners) o.kill('SIGKILL');
    await Promise.all([h1, h2].filter(Boolean).map((h) => stopHost(h, 'SIGKILL')));
    removeTempDir(base);
  });

  /**
   * Host 1 holds `resource` for a live owner, host 2 asks for it over and over; host 1's agent is
   * killed -9 just after a renewal, restarted `downMs` after the kill (once host 2 waits for it),
   * then left alone for WINDOW_MS before the owner releases.
   */
  async function restartScenario(resource: string, ownerUuid: string, downMs: number) {
    const res = { lockspace: LS, resource, path: path.join(leaseDir, resource), offset: 0 };
    const ownerProc = spawn('sleep', ['600']);
    owners.push(ownerProc);
    expect((await cli(h1, ['client', 'acquire', '-r', `${LS}:${resource}:${res.path}:0`, '--owner', ownerUuid, '--name', ownerUuid, '--pid', String(ownerProc.pid)])).code).toBe(0);
    const genBefore = (await status(h1)).lockspaces[0].generation!;

    // Host 2 keeps asking for the lease until it gets it (each attempt may wait up to 40 s).
    const attempts: Attempt[] = [];
    let current: Attempt | undefined;
    let stop = false;
    const contender = (async () => {
      while (!stop) {
        const a: Attempt = { start: Date.now(), end: 0, ok: false };
        current = a;
        try {
          await callAgent(h2.socket, { op: 'acquire', owner: { uuid: `${ownerUuid}-b`, name: `${ownerUuid}-b` }, leases: [res], timeoutMs: 40000 }, 60000);
          a.ok = true;
        } catch (e) {
          a.rv = (e as LeaseError).rv;
          a.message = (e as Error).message;
        }
        a.end = Date.now();
        current = undefined;
        attempts.push(a);
        if (a.ok) return;
        await sleep(100);
      }
    })();

    // Kill host 1's agent just after a renewal, so that its delta lease is as young as possible.
    await waitJustRenewed(h1);
    const logFrom = log(h1).length;
    await stopHost(h1, 'SIGKILL');
    const killedAt = Date.now();
    // Wait until host 2 has an attempt that is waiting for host 1 (no longer refused at once).
    const waiting = await waitFor('host 2 to wait for host 1', async () => (current && Date.now() - current.start >= 800 ? current : undefined), 6000, 50);
    await sleep(killedAt + downMs - Date.now());
    const restartAt = Date.now();
    startHost(h1);
    const gen = await waitJoined(h1, LS, 30000);
    // (checked by the caller, after what host 2 saw: that is the point of this test)
    const readopted = await waitFor(`${resource} re-adopted by host 1`, async () => {
      const s = await status(h1);
      return s.owners.find((o) => o.uuid === ownerUuid && o.leases.some((l) => l.resource === resource));
    }, 15000, 200).catch(() => undefined);
    const backAt = Date.now();
    await sleep(WINDOW_MS);
    const ownerAlive = ownerProc.exitCode === null && ownerProc.signalCode === null;
    const restartLog = log(h1).slice(logFrom);

    // Host 1's owner lets go of the lease.
    const releasedAt = Date.now();
    const release = await cli(h1, ['client', 'release', '--owner', ownerUuid]);
    await waitFor(`host 2 to get ${resource}`, async () => attempts.find((a) => a.ok), 20000, 200).catch(() => undefined);
    stop = true;
    await contender;

    // For a failure message: the attempts that waited or succeeded, relative to the kill.
    const summary = attempts.filter((a) => a.ok || a.end - a.start > 500)
      .map((a) => `${a.start - killedAt}..${a.end - killedAt} ms: ${a.ok ? 'acquired' : `${a.rv} ${a.message}`}`)
      .concat(`restart at ${restartAt - killedAt} ms, back at ${backAt - killedAt} ms, released at ${releasedAt - killedAt} ms; ${attempts.length} attempts`).join('\n');
    // Never acquired while host 1's owner held the lease.
    const early = attempts.filter((a) => a.ok && a.end < releasedAt);
    expect({ early, summary }).toEqual({ early: [], summary });
    // The attempt seen waiting for host 1 before the restart was still waiting at the restart,
    // and was then refused naming host 1 (how long it waited depends on the machine's load).
    const spanning = attempts.filter((a) => a.start < restartAt && a.end > restartAt);
    expect(spanning).toHaveLength(1);
    expect(spanning[0]).toBe(waiting);
    expect(spanning[0].rv).toBe(-243);
    expect(spanning[0].message).toMatch(/is leased by host 1 \(node node01\)/);
    // Refused the whole time until the release, every refusal naming host 1.
    for (const a of attempts.filter((x) => !x.ok)) expect(a.message).toMatch(/is leased by host 1 \(node node01\)/);
    expect(attempts.filter((a) => !a.ok && a.start > backAt).length).toBeGreaterThan(10);
    // Host 1 re-adopted the lease and never let go of it (nor lost its lockspace); its owner kept running.
    expect(readopted).toBeDefined();
    expect(restartLog).not.toMatch(new RegExp(`released .*${resource}`));
    expect(restartLog).not.toMatch(/lockspace \S+ lost|could not re-adopt|too close to host_dead/);
    expect(ownerAlive).toBe(true);
    // Host 1 came back with the same generation: it continued its delta lease.
    expect(gen).toBe(genBefore);
    expect(release.code).toBe(0);
    // Host 2 took it at once after the release (owner released, no wait for host_dead).
    const won = attempts.find((a) => a.ok)!;
    expect(won).toBeDefined();
    expect(won.end - releasedAt).toBeLessThan(10000);
    const dump = await lockagent(['direct', 'dump', res.path]);
    expect(dump.stdout).toMatch(new RegExp(`${resource} \\d{10} 0002 `));
    expect((await cli(h2, ['client', 'release', '--owner', `${ownerUuid}-b`])).code).toBe(0);
    return { genBefore, restartLog };
  }

  it('continues its delta lease: the waiting host is refused while the owner runs, then gets the lease after the release', async () => {
    // Restarted within a few seconds, well inside 8 x io_timeout.
    const { genBefore, restartLog } = await restartScenario('r1', 'vm-a', 0);
    // (past 8 s under heavy load: continued all the same, with a warning, up to host_dead)
    expect(restartLog).toMatch(new RegExp(`our delta lease \\(generation ${genBefore}\\) was (last )?renewed \\d+ s ago[;,] .*continuing it`));
  });

  it('continues its delta lease after more than 8 x io_timeout down (but well before host_dead)', async () => {
    // Down 14 s: past 8 x io_timeout (8 s), far from host_dead (68 s). Acquiring a new
    // generation here (the old bound) would hand r2 to the waiting host while its owner runs.
    const { genBefore, restartLog } = await restartScenario('r2', 'vm-c', DOWN_MS);
    const m = new RegExp(`our delta lease \\(generation ${genBefore}\\) was last renewed (\\d+) s ago, more than 8 x io_timeout; continuing it`).exec(restartLog);
    expect({ m: !!m, restartLog }).toEqual({ m: true, restartLog });
    expect(Number(m![1])).toBeGreaterThanOrEqual(DOWN_MS / 1000 - 1);
  }, 150000);
});
