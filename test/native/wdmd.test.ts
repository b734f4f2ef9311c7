/**
 * The wdmd test's expiry arithmetic against sanlock's timeouts (timeouts.c / the timeouts table
 * in lease-timeouts.test.ts), and the client's calls — through a recording stand-in for the
 * libwdmd binding, since a real wdmd needs /dev/watchdog (test/agent/hostwatch.test.ts runs the
 * real one where it exists).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { systemdWatchdogFromEnv } from '../../src/daemon/sdnotify';
import { WdmdClient, WdmdRefusal, WdmdSource, wdmdTest } from '../../src/agent/wdmd';
import { NativeBinding } from '../../src/io/native';
import { timeoutsFor, WATCHDOG_FIRE_TIMEOUT } from '../../src/lease/timeouts';
import { Logger } from '../../src/log/logger';

const quiet: Logger = { error: () => undefined, warning: () => undefined, info: () => undefined, debug: () => undefined, close: async () => undefined };

describe('wdmd expiry = last renewal + id_renewal_fail_seconds (sanlock update_watchdog)', () => {
  // sanlock 3.8.5, io_timeout → id_renewal_fail_seconds (8·io) and host_dead (8·io + 60).
  it.each([
    [1, 8, 68],
    [5, 40, 100],
    [10, 80, 140],
    [20, 160, 220],
  ])('io_timeout %d: expires %d s after the renewal; the watchdog fires before host_dead %d', (io, fail, dead) => {
    const t = wdmdTest([{ lockspace: 'LS', lastSuccess: 5000, ioTimeout: io }]);
    expect(t).toEqual({ renewal: 5000, expire: 5000 + fail, lockspace: 'LS' });
    expect(t.expire - t.renewal).toBe(timeoutsFor(io).idRenewalFail);
    // wdmd stops petting at expire (at the latest) and the device fires WATCHDOG_FIRE_TIMEOUT
    // later: no later than the moment other hosts may take our leases.
    expect(t.expire + WATCHDOG_FIRE_TIMEOUT).toBeLessThanOrEqual(t.renewal + dead);
    expect(timeoutsFor(io).hostDead).toBe(dead);
  });

  it('one test for several lockspaces: the earliest of their expiries; none = disarmed (0, 0)', () => {
    const ls: WdmdSource[] = [
      { lockspace: 'A', lastSuccess: 1000, ioTimeout: 10 }, // expires 1080
      { lockspace: 'B', lastSuccess: 1030, ioTimeout: 1 }, // expires 1038
      { lockspace: 'C', lastSuccess: 1020, ioTimeout: 5 }, // expires 1060
    ];
    expect(wdmdTest(ls)).toEqual({ renewal: 1030, expire: 1038, lockspace: 'B' });
    expect(wdmdTest([])).toEqual({ renewal: 0, expire: 0 });
  });
});

describe('WdmdClient', () => {
  let dir: string;
  let sock: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-wdmd-'));
    sock = path.join(dir, 'wdmd.sock');
    fs.writeFileSync(sock, '');
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function fake(fireTimeout = 60) {
    const calls: string[] = [];
    const native = {
      wdmdConnect: (name: string) => { calls.push(`connect ${name}`); return 42; },
      wdmdStatus: () => ({ testInterval: 10, fireTimeout, lastKeepalive: 0 }),
      wdmdTestLive: (fd: number, r: number, e: number) => { calls.push(`test_live ${fd} ${r} ${e}`); },
      wdmdClose: (fd: number, clear: boolean) => { calls.push(`close ${fd} ${clear}`); },
    } as unknown as NativeBinding;
    return { calls, native };
  }

  it('arms at the earliest renewal + 8·io, re-arms only when it moves, disarms and closes on stop', () => {
    const { calls, native } = fake();
    let sources: WdmdSource[] = [];
    const c = new WdmdClient({ log: quiet, required: true, sources: () => sources, native, socketPath: sock, name: 'lockagent:1' });
    c.start();
    expect(calls).toEqual(['connect lockagent:1']); // nothing joined: nothing armed
    sources = [{ lockspace: 'LS', lastSuccess: 700, ioTimeout: 1 }];
    c.tick();
    c.tick();
    sources = [{ lockspace: 'LS', lastSuccess: 702, ioTimeout: 1 }];
    c.tick();
    expect(c.status()).toBe('connected');
    c.stop();
    expect(calls).toEqual(['connect lockagent:1', 'test_live 42 700 708', 'test_live 42 702 710', 'test_live 42 0 0', 'close 42 true']);
    expect(c.status()).toBe('closed');
  });

  it('use_watchdog = 1: no wdmd socket, or a fire timeout other than 60 s, refuses with the reason', () => {
    const { native } = fake();
    expect(() => new WdmdClient({ log: quiet, required: true, sources: () => [], native, socketPath: path.join(dir, 'none') }).start())
      .toThrow(WdmdRefusal);
    const odd = fake(30);
    expect(() => new WdmdClient({ log: quiet, required: true, sources: () => [], native: odd.native, socketPath: sock }).start())
      .toThrow(/fire timeout is 30 s, not the 60 s/);
    expect(odd.calls).toContain('close 42 true');
  });

  it('use_watchdog = 0: absent when wdmd does not run; a wdmd that cannot be used is an error in status, not a refusal', () => {
    const { native } = fake(30);
    const absent = new WdmdClient({ log: quiet, required: false, sources: () => [], native, socketPath: path.join(dir, 'none') });
    absent.start();
    expect(absent.status()).toBe('absent');
    const odd = new WdmdClient({ log: quiet, required: false, sources: () => [], native, socketPath: sock });
    odd.start();
    expect(odd.status()).toMatch(/^error: wdmd's watchdog fire timeout is 30 s/);
  });
});

describe('systemd watchdog from the environment (sd_watchdog_enabled)', () => {
  it('pings every WATCHDOG_USEC/2, only for the process WATCHDOG_PID names', () => {
    expect(systemdWatchdogFromEnv({ WATCHDOG_USEC: '30000000' }, 10)).toEqual({ on: true, intervalMs: 15000 });
    expect(systemdWatchdogFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '10' }, 10)).toEqual({ on: true, intervalMs: 15000 });
    expect(systemdWatchdogFromEnv({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '11' }, 10)).toEqual({ on: false });
    expect(systemdWatchdogFromEnv({}, 10)).toEqual({ on: false });
    expect(systemdWatchdogFromEnv({ WATCHDOG_USEC: 'x' }, 10)).toEqual({ on: false });
  });
});
