/**
 * `lockagent renewals -s LS` against a real agent, side by side with `sanlock client renewal` of
 * a real sanlock daemon in the same lockspace: same line format, and the same cadence (2·io and
 * half a second).
 */
import * as fs from 'fs';
import * as path from 'path';
import { makeTempDir, removeTempDir } from '../helpers/cli';
import { AgentHost, cli, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { addLockspace, describeSanlockDaemons, SanlockDaemon, sanlockClient, startSanlockDaemon, stopSanlockDaemon } from '../helpers/sanlockd';

const LS = '__LIBVIRT__DISKS__';
const LINE = /^timestamp=(\d+) read_ms=(\d+) write_ms=(\d+) next_timeouts=(\d+) next_errors=(\d+)$/;
jest.setTimeout(120000);

describeSanlockDaemons('renewal history', () => {
  let base: string;
  let h1: AgentHost;
  let sl: SanlockDaemon;

  beforeAll(async () => {
    base = makeTempDir('la-renewals-');
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    h1 = startHost(writeHostConfig(base, 1, { leaseDir }));
    await waitJoined(h1);
    sl = await startSanlockDaemon(base, 'sanlock2');
    await addLockspace(sl, `${LS}:2:${path.join(leaseDir, LS)}:0`);
  });

  afterAll(async () => {
    await stopHost(h1, 'SIGKILL');
    await stopSanlockDaemon(sl);
    removeTempDir(base);
  });

  it('lists renewals in sanlock\'s format, as sanlock does', async () => {
    const lines = await waitFor('three renewals', async () => {
      const r = await cli(h1, ['renewals', '-s', LS]);
      expect(r.code).toBe(0);
      const l = r.stdout.trim().split('\n').filter(Boolean);
      return l.length >= 3 ? l : undefined;
    }, 30000, 500);
    const parsed = lines.map((l) => { const m = LINE.exec(l); expect(m).not.toBeNull(); return m!.slice(1).map(Number); });
    for (let i = 1; i < parsed.length; i++) expect(parsed[i][0]).toBeGreaterThan(parsed[i - 1][0]);
    expect(parsed.every((p) => p[3] === 0 && p[4] === 0)).toBe(true);

    const json = JSON.parse((await cli(h1, ['renewals', '-s', LS, '--json'])).stdout) as { renewals: Array<{ timestamp: number }> };
    expect(json.renewals.length).toBeGreaterThanOrEqual(parsed.length);
    const st = (await status(h1)).lockspaces[0] as unknown as { renewals: Array<{ timestamp: number; readMs: number }> };
    expect(st.renewals.length).toBeGreaterThanOrEqual(3);

    const s = await waitFor('sanlock to list renewals', async () => {
      const r = await sanlockClient(sl, ['renewal', '-s', LS], 10000);
      const l = r.stdout.trim().split('\n').filter((x) => x.startsWith('timestamp='));
      return l.length >= 1 ? l : undefined;
    }, 30000, 500);
    for (const l of s) expect(l).toMatch(LINE);

    const unknown = await cli(h1, ['renewals', '-s', 'nosuch']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/not joined/);
  });

  it('renews at sanlock\'s cadence: 2·io and half a second apart, as the sanlock host beside it', async () => {
    /** mean seconds between the last 6 renewals' timestamps (whole seconds of monotime) */
    const meanInterval = (timestamps: number[]) => {
      const t = timestamps.slice(-7);
      return (t[t.length - 1] - t[0]) / (t.length - 1);
    };
    const ours = await waitFor('7 renewals of lockagent', async () => {
      const r = await cli(h1, ['renewals', '-s', LS]);
      const t = r.stdout.trim().split('\n').map((l) => LINE.exec(l)).filter((m) => m).map((m) => Number(m![1]));
      return t.length >= 8 ? t : undefined; // the first line is the join
    }, 60000, 1000);
    const theirs = await waitFor('7 renewals of sanlock', async () => {
      const r = await sanlockClient(sl, ['renewal', '-s', LS], 10000);
      const t = r.stdout.trim().split('\n').map((l) => LINE.exec(l)).filter((m) => m).map((m) => Number(m![1]));
      return t.length >= 8 ? t : undefined;
    }, 60000, 1000);
    const summary = `lockagent ${ours.slice(-7).join(' ')}; sanlock ${theirs.slice(-7).join(' ')}`;
    // io_timeout 1: 2.5 s on average (every 2 s would be 2.0-2.17 over 6 intervals); the upper
    // bound leaves room for timers that fire late on a loaded machine, as sanlock's sleeps do
    expect({ ours: meanInterval(ours) >= 2.25 && meanInterval(ours) <= 3.5, summary }).toEqual({ ours: true, summary });
    expect({ close: Math.abs(meanInterval(ours) - meanInterval(theirs)) <= 0.75, summary }).toEqual({ close: true, summary });
  });
});
