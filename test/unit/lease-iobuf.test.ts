import { IoBufferPool, OpBuffers } from '../../src/lease/iobuf';

const tick = () => new Promise((r) => setImmediate(r));

describe('IoBufferPool turns', () => {
  it('lets maxUsers operations hold buffers at once; the next waits for one to release', async () => {
    const pool = new IoBufferPool(4, undefined, 2);
    const a = new OpBuffers(pool);
    const b = new OpBuffers(pool);
    const c = new OpBuffers(pool);
    await a.get(4096);
    await b.get(4096);
    let cGot = false;
    const cGet = c.get(4096).then(() => { cGot = true; });
    await tick();
    expect(cGot).toBe(false);
    // An operation holding its turn takes another length without waiting (no two wait for each other).
    await expect(a.get(8192)).resolves.toHaveLength(8192);
    a.release();
    await cGet;
    expect(cGot).toBe(true);
    b.release();
    c.release();
    // Every turn was handed back: two new operations get theirs at once.
    const d = new OpBuffers(pool);
    const e = new OpBuffers(pool);
    await Promise.all([d.get(512), e.get(512)]);
    d.release();
    e.release();
  });

  it('a released operation waits for a turn again; without a pool nothing waits', async () => {
    const pool = new IoBufferPool(4, undefined, 1);
    const a = new OpBuffers(pool);
    const b = new OpBuffers(pool);
    await a.get(512);
    a.release();
    await b.get(512); // a's turn passed on
    let again = false;
    const p = a.get(512).then(() => { again = true; });
    await tick();
    expect(again).toBe(false);
    b.release();
    await p;
    a.release();
    const free = new OpBuffers();
    await expect(free.get(512)).resolves.toHaveLength(512);
  });
});
