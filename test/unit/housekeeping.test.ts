import { Housekeeping } from '../../src/agent/housekeeping';

const tick = () => new Promise((r) => setImmediate(r));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Housekeeping: work after a reply waits for a quiet moment', () => {
  it('runs nothing at once; runs what waits, in order, while a storage request is in flight', async () => {
    const hk = new Housekeeping({ idleMs: 10_000 });
    const ran: number[] = [];
    hk.later(() => ran.push(1));
    hk.later(() => ran.push(2));
    await tick();
    expect(ran).toEqual([]);
    hk.duringIo();
    expect(ran).toEqual([]); // not inside the caller's own tick
    await tick();
    expect(ran).toEqual([1, 2]);
    expect(hk.pending).toBe(0);
  });

  it('runs what waits once nothing else came for idleMs', async () => {
    const hk = new Housekeeping({ idleMs: 5 });
    const ran: string[] = [];
    hk.later(() => ran.push('log line'));
    await tick();
    expect(ran).toEqual([]);
    await sleep(30);
    expect(ran).toEqual(['log line']);
  });

  it('stops after its slice and runs the rest at the next chance', async () => {
    const hk = new Housekeeping({ idleMs: 5, sliceMs: 1 });
    const ran: number[] = [];
    const busy = (i: number) => () => {
      const t = performance.now();
      while (performance.now() - t < 2) { /* a task longer than the slice */ }
      ran.push(i);
    };
    for (let i = 0; i < 3; i++) hk.later(busy(i));
    hk.duringIo();
    await tick();
    expect(ran).toEqual([0]);
    await sleep(40);
    expect(ran).toEqual([0, 1, 2]);
  });

  it('a task that throws is reported and the others run; flush runs everything now', () => {
    const errors: unknown[] = [];
    const hk = new Housekeeping({ idleMs: 10_000, onError: (e) => errors.push(e) });
    const ran: number[] = [];
    hk.later(() => ran.push(1));
    hk.later(() => { throw new Error('boom'); });
    hk.later(() => ran.push(3));
    hk.flush();
    expect(ran).toEqual([1, 3]);
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe('boom');
  });
});
