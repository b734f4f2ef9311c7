import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Lockspace } from '../../src/agent/lockspace';
import { loadNative } from '../../src/io/native';
import { systemClock } from '../../src/lease/clock';
import { StartWindow } from '../../src/lease/storage';
import { memoryLogger } from '../../src/log/logger';
import { buildLockspaceArea, decodeLeader, DEFAULT_GEOMETRY } from '../../src/ondisk';

/**
 * Renewals handed to the lockspace file's I/O thread ahead of their time (io_timeout 1, a real
 * file through the addon): after a success the next renewal is submitted at once and started by
 * that thread at its time, so the event loop wakes once per renewal. While one waits, it is the
 * timeline check; when it hangs in storage, the warning and the loss still come at 6·io and 8·io.
 */
jest.setTimeout(40000);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-handover-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const stall = (p: string, offset: number, ms: number, count: number): void =>
  (loadNative() as unknown as { _testInjectStall(p: string, o: number, ms: number, n: number): void })._testInjectStall(p, offset, ms, count);

function lockspaceFile(name: string): string {
  const { area, commitSector } = buildLockspaceArea({ spaceName: 'HO', geometry: DEFAULT_GEOMETRY, ioTimeout: 1 });
  commitSector.copy(area, 0);
  const p = path.join(dir, name);
  fs.writeFileSync(p, area);
  return p;
}

/** Our delta lease (host_id 1) as on disk. */
const ourSector = (p: string) => {
  const fd = fs.openSync(p, 'r');
  try {
    const b = Buffer.alloc(512);
    fs.readSync(fd, b, 0, 512, 0);
    return decodeLeader(b, 0);
  } finally {
    fs.closeSync(fd);
  }
};

function lockspace(p: string, log = memoryLogger(), onLost: (reason: string) => void = () => undefined): Lockspace {
  return new Lockspace({ name: 'HO', hostId: 1, path: p, offset: 0, ioTimeout: 1, hostName: 'ho-host' }, systemClock, log,
    { onLost: (_l, reason) => onLost(reason) });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('renewals handed to the I/O thread', () => {
  it('are submitted when the last one completes and started at their time; no timer of ours runs meanwhile', async () => {
    const p = lockspaceFile('cadence');
    const ls = lockspace(p);
    const internals = ls as unknown as { renewOnce(at?: StartWindow): Promise<void>; checkTimeline(): void; checkTimer?: NodeJS.Timeout };
    const renewals = jest.spyOn(internals, 'renewOnce');
    const checks = jest.spyOn(internals, 'checkTimeline');
    ls.start();
    try {
      await ls.waitJoined(20000);
      await sleep(8000);
      const list = ls.renewals.list();
      expect(list.length).toBeGreaterThanOrEqual(3);
      // every renewal after the first was handed over (renewOnce with a start window)
      const handedOver = renewals.mock.calls.filter(([at]) => at !== undefined);
      expect(handedOver.length).toBeGreaterThanOrEqual(list.length - 1);
      for (const [at] of handedOver) expect(at).toMatchObject({ nextInMs: 2500 });
      // sanlock's cadence: 2·io + 0.5 s apart (whole seconds on disk)
      for (let i = 1; i < list.length; i++) expect(list[i].timestamp - list[i - 1].timestamp).toBeGreaterThanOrEqual(2);
      // read_ms is the I/O's own time (from its start, measured by its thread), not the 2.5-s wait
      // for it (bounded below io_timeout, so a loaded CI machine's slow read is no failure)
      expect(Math.max(...list.map((r) => r.readMs))).toBeLessThan(900);
      expect(ourSector(p).timestamp).toBe(list[list.length - 1].timestamp);
      // the timeline check: neither run nor armed while renewals succeed
      expect(checks).not.toHaveBeenCalled();
      expect(internals.checkTimer).toBeUndefined();
    } finally {
      await ls.stop(false);
    }
  });

  it('stop() cancels the one waiting for its start: nothing is written after it', async () => {
    const p = lockspaceFile('stop');
    const ls = lockspace(p);
    ls.start();
    await ls.waitJoined(20000);
    while (ls.renewals.list().length < 2) await sleep(100);
    await ls.stop(false);
    const at = ourSector(p);
    await sleep(3500); // past the next renewal's start
    expect(ourSector(p)).toEqual(at);
  });

  it('one that hangs in storage: the warning at 6·io, the loss at 8·io after the last success', async () => {
    const p = lockspaceFile('hang');
    const log = memoryLogger();
    let lostAt: number | undefined;
    let reason = '';
    const ls = lockspace(p, log, (r) => { lostAt = systemClock.monotime(); reason = r; });
    ls.start();
    try {
      await ls.waitJoined(20000);
      while (ls.renewals.list().length < 2) await sleep(100);
      // Every I/O at the lockspace's offset from now on hangs for 12 s (the renewal waiting for
      // its start too: it has not started).
      stall(p, 0, 12000, 40);
      const last = () => ls.renewals.list()[ls.renewals.list().length - 1].timestamp;
      const until = Date.now() + 20000;
      while (lostAt === undefined && Date.now() < until) await sleep(100);
      expect(lostAt).toBeDefined();
      expect(lostAt! - last()).toBeGreaterThanOrEqual(8);
      expect(lostAt! - last()).toBeLessThanOrEqual(10);
      expect(reason).toMatch(/renewals failed for [89] s/);
      expect(log.lines.some((l) => /warning lockspace HO: no successful renewal for [67] s/.test(l))).toBe(true);
      expect(ls.state).toBe('lost');
    } finally {
      await ls.stop(false);
    }
  });
});
