import { IoBufferPool, OpBuffers } from '../../src/lease/iobuf';

const tick = () => new Promise((r) => setImmediate(r));

describe('IoBufferPool turns', () => {
  it('lets maxUsers reads hold buffers at once; the next waits until one is put back, and gets that buffer', async () => {
    const pool = new IoBufferPool(4, undefined, 2);
    const a = new OpBuffers(pool);
    const b = new OpBuffers(pool);
    const c = new OpBuffers(pool);
    const ba = await a.get(4096);
    await b.get(4096);
    let cGot: Buffer | undefined;
    const cGet = c.get(4096).then((x) => { cGot = x; });
    await tick();
    expect(cGot).toBeUndefined();
    a.put(ba); // a's read is decoded: its turn and its buffer pass on
    await cGet;
    expect(cGot).toBe(ba);
    // Putting back twice, or a buffer the operation does not hold, hands over nothing.
    a.put(ba);
    b.release();
    c.release();
    // Every turn was handed back: two new operations get theirs at once.
    const d = new OpBuffers(pool);
    const e = new OpBuffers(pool);
    await Promise.all([d.get(512), e.get(512)]);
    d.release();
    e.release();
  });

  it('a poisoned buffer gives its turn back but is never handed out again; without a pool nothing waits', async () => {
    const pool = new IoBufferPool(4, undefined, 1);
    const a = new OpBuffers(pool);
    const b = new OpBuffers(pool);
    const bad = await a.get(512);
    let bGot: Buffer | undefined;
    const p = b.get(512).then((x) => { bGot = x; });
    await tick();
    expect(bGot).toBeUndefined();
    a.poison(bad); // a late completion may still write into it
    await p;
    expect(bGot).toBeDefined();
    expect(bGot).not.toBe(bad);
    b.put(bGot!);
    // release() at the end of an operation puts back what an error left held.
    const held = await a.get(512);
    expect(held).toBe(bGot);
    a.release();
    await expect(b.get(512)).resolves.toBe(held);
    b.release();
    const free = new OpBuffers();
    await expect(free.get(512)).resolves.toHaveLength(512);
  });
});
