/**
 * The watchdog layers with real agent processes: systemd's notify protocol against a real
 * datagram socket (no systemd needed), use_watchdog = 1 refusing to start without wdmd, and —
 * where /dev/watchdog exists — the wdmd client against a real wdmd.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { lockagent, makeTempDir, removeTempDir } from '../helpers/cli';
import { AgentHost, cli, log, startHost, status, stopHost, waitFor, waitJoined, writeHostConfig } from '../helpers/agentproc';
import { NotifySocket, startNotifySocket } from '../helpers/sdnotify';
import { WDMD_SOCKET } from '../../src/agent/wdmd';

jest.setTimeout(120000);

describe('systemd notify and the wdmd client, real agent processes', () => {
  let base: string;
  let leaseDir: string;
  const hosts: AgentHost[] = [];
  let ns: NotifySocket | undefined;

  beforeAll(() => {
    base = makeTempDir('la-hostwatch-');
    leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
  });

  afterAll(async () => {
    await Promise.all(hosts.map((h) => stopHost(h, 'SIGKILL')));
    await ns?.close();
    removeTempDir(base);
  });

  it('Type=notify: READY=1 only once the control socket serves, STATUS= with the join state, WATCHDOG=1 pings, STOPPING=1', async () => {
    const h = writeHostConfig(base, 1, { leaseDir });
    hosts.push(h);
    ns = await startNotifySocket(path.join(base, 'notify.sock'), h.socket);
    // WatchdogSec=2 → a ping every second (no WATCHDOG_PID: systemd may leave it out).
    startHost(h, { env: { NOTIFY_SOCKET: ns.path, WATCHDOG_USEC: '2000000' } });
    await waitJoined(h);
    const ready = await waitFor('READY=1', async () => ns!.records.find((r) => r.msg.split('\n').includes('READY=1')));
    expect(ready.controlServing).toBe(true);
    expect(ready.msg).toMatch(new RegExp(`^MAINPID=${h.proc!.pid}$`, 'm'));
    await waitFor('STATUS= with the lockspace joined', async () => ns!.records.some((r) => /^STATUS=__LIBVIRT__DISKS__ joined$/m.test(r.msg)));
    const pings = await waitFor('three WATCHDOG=1 pings', async () => {
      const p = ns!.records.filter((r) => r.msg === 'WATCHDOG=1');
      return p.length >= 3 ? p : undefined;
    }, 20000);
    // Every ping came after READY=1.
    expect(pings.every((p) => p.t >= ready.t)).toBe(true);

    const st = JSON.parse((await cli(h, ['status', '--json'])).stdout) as { fencing: { wdmd: string; systemdWatchdog: string } };
    expect(st.fencing.systemdWatchdog).toBe('on');
    expect(st.fencing.wdmd).toBe(fs.existsSync(WDMD_SOCKET) ? 'connected' : 'absent');
    expect((await cli(h, ['status'])).stdout).toMatch(/^fencing: wdmd \S+.*systemd watchdog on$/m);

    await stopHost(h, 'SIGTERM');
    expect(ns.records.some((r) => r.msg.split('\n').includes('STOPPING=1'))).toBe(true);
  });

  it('WATCHDOG_PID naming another process: no pings, status says the systemd watchdog is off', async () => {
    const h = writeHostConfig(base, 2, { leaseDir });
    hosts.push(h);
    const ns2 = await startNotifySocket(path.join(base, 'notify2.sock'), h.socket);
    try {
      startHost(h, { env: { NOTIFY_SOCKET: ns2.path, WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1' } });
      await waitJoined(h);
      await waitFor('READY=1', async () => ns2.records.some((r) => r.msg.includes('READY=1')));
      await new Promise((r) => setTimeout(r, 1500));
      expect(ns2.records.filter((r) => r.msg === 'WATCHDOG=1')).toHaveLength(0);
      expect(((await status(h)) as unknown as { fencing: { systemdWatchdog: string } }).fencing.systemdWatchdog).toBe('off');
    } finally {
      await stopHost(h);
      await ns2.close();
    }
  });

  const haveWdmd = fs.existsSync(WDMD_SOCKET);

  (haveWdmd ? it.skip : it)('use_watchdog = 1 without wdmd: the agent refuses to start and says why', async () => {
    const h = writeHostConfig(base, 3, { leaseDir, extra: 'use_watchdog = 1' });
    const r = await lockagent(['daemon', '-c', h.conf], { timeoutMs: 20000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/use_watchdog = 1 but wdmd cannot be used: \/run\/wdmd\/wdmd\.sock does not exist: start wdmd/);
    // Refused before joining: our host_id was never taken.
    expect(r.stderr).not.toMatch(/joined lockspace/);
    expect(fs.existsSync(h.socket)).toBe(false);
  });

  // A real wdmd needs a watchdog device. Where there is none (CI, containers) this says so and
  // skips; where there is one, wdmd (already running, or started here) must see our test armed
  // at last renewal + 8 x io_timeout, and disarmed after a clean stop.
  const wdmdBin = ['/usr/sbin/wdmd', '/sbin/wdmd'].find((p) => fs.existsSync(p));
  const realWdmd = fs.existsSync('/dev/watchdog') && !!wdmdBin && (haveWdmd || process.getuid?.() === 0);
  if (!realWdmd) {
    console.info(`hostwatch.test: real wdmd test skipped: ${!fs.existsSync('/dev/watchdog') ? 'no /dev/watchdog on this machine' : !wdmdBin ? 'wdmd is not installed' : 'not root, and wdmd is not running'}`);
  }
  (realWdmd ? it : it.skip)('real wdmd: the agent registers, arms its test at renewal + 8·io, disarms on a clean stop', async () => {
    let started: ReturnType<typeof spawn> | undefined;
    if (!fs.existsSync(WDMD_SOCKET)) {
      started = spawn(wdmdBin!, ['-D', '-H', '0'], { stdio: 'ignore' });
      await waitFor('wdmd socket', async () => fs.existsSync(WDMD_SOCKET), 10000);
    }
    const dump = () => execFileSync(wdmdBin!, ['-d'], { encoding: 'utf8' });
    const h = writeHostConfig(base, 4, { leaseDir, extra: 'use_watchdog = 1' });
    hosts.push(h);
    try {
      startHost(h);
      await waitJoined(h);
      const line = await waitFor('our armed wdmd client', async () => dump().split('\n')
        .find((l) => l.includes(`name lockagent:${h.proc!.pid} `) && !/expire 0$/.test(l.trim())));
      const m = /renewal (\d+) expire (\d+)/.exec(line)!;
      expect(Number(m[2]) - Number(m[1])).toBe(8 * 1);
      expect(((await status(h)) as unknown as { fencing: { wdmd: string } }).fencing.wdmd).toBe('connected');
      await stopHost(h, 'SIGTERM');
      expect(dump().split('\n').filter((l) => l.includes(`name lockagent:${h.proc!.pid} `) && !/expire 0$/.test(l.trim()))).toHaveLength(0);
      expect(log(h)).toMatch(/wdmd test disarmed and closed/);
    } finally {
      // Never SIGKILL an agent with an armed test: wdmd would keep it and reset this machine.
      await stopHost(h, 'SIGTERM');
      if (started) {
        started.kill('SIGTERM');
        await new Promise((r) => started!.once('exit', r));
      }
    }
  });
});
