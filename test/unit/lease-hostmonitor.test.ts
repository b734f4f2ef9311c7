import { buildLockspaceArea, DEFAULT_GEOMETRY, decodeLeader, sealLeaderInto, setBitmapHost } from '../../src/ondisk';
import fc from 'fast-check';
import { HostMonitor } from '../../src/lease/hostmonitor';

/** A lockspace area we edit by hand: one renewal's read, as the monitor sees it. */
function area(): Buffer {
  const { area: a, commitSector } = buildLockspaceArea({ spaceName: 'LS', geometry: DEFAULT_GEOMETRY, ioTimeout: 10 });
  commitSector.copy(a, 0);
  return a;
}

function setHost(a: Buffer, hostId: number, fields: { gen?: number; ts: number; io?: number; name?: string; writeGen?: number }): void {
  const off = (hostId - 1) * 512;
  const rec = decodeLeader(a, off);
  sealLeaderInto({
    ...rec, ownerId: hostId, ownerGeneration: fields.gen ?? 1, timestamp: fields.ts, ioTimeout: fields.io ?? 10,
    resourceName: fields.name ?? `host${hostId}`, writeGeneration: fields.writeGen ?? 0, writeId: fields.writeGen ? 7 : 0,
  }, a, off, 47);
}

const monitor = (io = 10) => new HostMonitor({ spaceName: 'LS', hostId: 1, sectorSize: 512, maxHosts: 2000, ioTimeout: io });

describe('host monitor (check_other_leases / get_host_flag / host_live)', () => {
  it('FREE; UNKNOWN when first seen at our first look; LIVE once seen changing', () => {
    const m = monitor();
    const a = area();
    m.observe(a, 100);
    expect(m.state(2, 100)).toBe('FREE');
    const b = area();
    setHost(b, 2, { ts: 5000 });
    const m2 = monitor();
    m2.observe(b, 120); // first look: we have not seen it change yet
    expect(m2.state(2, 120)).toBe('UNKNOWN');
    expect(m2.snapshot(2)).toMatchObject({ ownerId: 2, ownerGeneration: 1, timestamp: 5000, lastLive: 120, firstCheck: 120, lastCheck: 120, ownerName: 'host2' });
    setHost(b, 2, { ts: 5020 });
    m2.observe(b, 140);
    expect(m2.state(2, 140)).toBe('LIVE');
    // A host that appears after our first look was seen changing (from free): LIVE at once.
    setHost(a, 3, { ts: 7 });
    m.observe(a, 150);
    expect(m.state(3, 150)).toBe('LIVE');
  });

  it('our own host_id is LIVE', () => {
    const m = monitor();
    const a = area();
    setHost(a, 1, { ts: 77 });
    m.observe(a, 10);
    expect(m.state(1, 10)).toBe('LIVE');
  });

  it('FAIL after 8·io without change, DEAD after 8·io + 60 — using each host\'s own io_timeout', () => {
    const m = monitor(10);
    const a = area();
    m.observe(a, 1000);
    setHost(a, 2, { ts: 1, io: 10 });
    setHost(a, 3, { ts: 1, io: 1 });
    m.observe(a, 1010);
    setHost(a, 2, { ts: 2, io: 10 });
    setHost(a, 3, { ts: 2, io: 1 });
    m.observe(a, 1020); // both LIVE, last_live 1020
    expect(m.state(3, 1028)).toBe('LIVE');
    expect(m.state(3, 1029)).toBe('FAIL'); // 8·1
    expect(m.state(3, 1088)).toBe('FAIL');
    expect(m.state(3, 1089)).toBe('DEAD'); // 8·1 + 60
    expect(m.state(2, 1100)).toBe('LIVE'); // 80
    expect(m.state(2, 1101)).toBe('FAIL');
    expect(m.state(2, 1160)).toBe('FAIL');
    expect(m.state(2, 1161)).toBe('DEAD'); // 140
    expect(m.hostLive(3, 1, 1088)).toBe(true);
    expect(m.hostLive(3, 1, 1089)).toBe(false);
    expect(m.hostLive(2, 1, 1160)).toBe(true);
    expect(m.hostLive(2, 1, 1161)).toBe(false);
  });

  it('host_live: free delta lease or a newer generation means not alive; no knowledge means alive', () => {
    const m = monitor();
    expect(m.hostLive(2, 1, 0)).toBe(true);
    const a = area();
    setHost(a, 2, { gen: 3, ts: 50 });
    m.observe(a, 10);
    expect(m.hostLive(2, 3, 11)).toBe(true);
    expect(m.hostLive(2, 2, 11)).toBe(false); // gen 2 holder: host_id moved on to gen 3
    setHost(a, 2, { gen: 3, ts: 0 });
    m.observe(a, 20);
    expect(m.hostLive(2, 3, 21)).toBe(false);
  });

  it('host_live: a holder newer than our last look is alive even if that look saw the host_id free', () => {
    const m = monitor();
    const a = area();
    setHost(a, 2, { gen: 4, ts: 0 }); // left cleanly as generation 4
    m.observe(a, 10);
    // It rejoined as generation 5 and took a shared lease before our next renewal read.
    expect(m.hostLive(2, 5, 12)).toBe(true);
    expect(m.hostLive(2, 4, 12)).toBe(false);
  });

  it('never-changing host (first_check == last_live) turns DEAD after host_dead from first sight', () => {
    const m = monitor();
    const a = area();
    setHost(a, 5, { ts: 999 });
    m.observe(a, 100);
    expect(m.state(5, 180)).toBe('UNKNOWN');
    expect(m.state(5, 181)).toBe('FAIL');
    expect(m.state(5, 241)).toBe('DEAD');
    expect(m.hostLive(5, 1, 240)).toBe(true);
    expect(m.hostLive(5, 1, 241)).toBe(false);
  });

  it('reports bitmap requests and host events addressed to us, requests rate-limited', () => {
    const m = monitor();
    const a = area();
    m.observe(a, 1000);
    setHost(a, 4, { ts: 10, writeGen: 9 });
    setBitmapHost(a, 1, true, 3 * 512);
    let sig = m.observe(a, 1002);
    expect(sig).toEqual([{ hostId: 4, ownerGeneration: 1, request: true, event: { generation: 7, event: 9, data: 0 } }]);
    setHost(a, 4, { ts: 11 });
    setBitmapHost(a, 1, true, 3 * 512);
    sig = m.observe(a, 1010);
    expect(sig).toEqual([{ hostId: 4, ownerGeneration: 1, request: false }]); // within set_bitmap_seconds (60)
    setHost(a, 4, { ts: 12 });
    setBitmapHost(a, 1, true, 3 * 512);
    expect(m.observe(a, 1062)[0].request).toBe(true);
  });

  it('keeps a good identity when a sector turns bad, but follows its timestamp', () => {
    const m = monitor();
    const a = area();
    setHost(a, 2, { ts: 10, name: 'good' });
    m.observe(a, 1);
    const off = 512;
    a.writeUInt32LE(0xdeadbeef, off); // bad magic
    a.writeBigUInt64LE(11n, off + 152);
    m.observe(a, 2);
    expect(m.snapshot(2)).toMatchObject({ ownerName: 'good', timestamp: 11, leaseBad: true, lastLive: 2 });
  });
  it('reads names as strncmp does: lockspace name up to its NUL, owner name renamed only with a change', () => {
    const m = monitor();
    const a = area();
    setHost(a, 2, { ts: 10, name: 'first' });
    setHost(a, 3, { ts: 10 });
    setHost(a, 4, { ts: 10 });
    // host 3: our lockspace name with a longer tail ("LSX") is another lockspace: bad
    a.write('X', 2 * 512 + 56 + 2, 'latin1');
    // host 4: our name, NUL, then garbage in the rest of the field: still ours
    a.write('junk', 3 * 512 + 56 + 10, 'latin1');
    m.observe(a, 1);
    expect(m.snapshot(3)?.leaseBad).toBe(true);
    expect(m.snapshot(4)?.leaseBad).toBe(false);
    expect(m.snapshot(2)?.ownerName).toBe('first');
    setHost(a, 2, { ts: 11, name: 'second' });
    m.observe(a, 3);
    expect(m.snapshot(2)).toMatchObject({ ownerName: 'second', timestamp: 11, lastLive: 3 });
    setHost(a, 2, { ts: 12, name: 'second' });
    m.observe(a, 5);
    expect(m.snapshot(2)).toMatchObject({ ownerName: 'second', timestamp: 12, lastLive: 5 });
  });

  it('tells which hosts\' records changed at the last look (not those that only renewed), and reads an area at any byte offset alike', () => {
    const m = monitor();
    const a = area();
    setHost(a, 2, { ts: 10 });
    setHost(a, 3, { ts: 10 });
    m.observe(a, 1);
    expect([...m.changedAtLastLook()]).toEqual([2, 3]);
    setHost(a, 3, { ts: 12, io: 1 });
    setHost(a, 2, { ts: 12 });
    m.observe(a, 3);
    expect([...m.changedAtLastLook()]).toEqual([3]);
    expect(m.snapshot(2)).toMatchObject({ timestamp: 12, lastLive: 3 });
    setHost(a, 2, { ts: 14, gen: 2 });
    m.observe(a, 4);
    expect([...m.changedAtLastLook()]).toEqual([2]);
    m.observe(a, 5);
    expect([...m.changedAtLastLook()]).toEqual([]);
    // the same area one byte into a larger buffer (not 4-byte aligned)
    const shifted = Buffer.alloc(a.length + 1);
    a.copy(shifted, 1);
    const m2 = monitor();
    m2.observe(shifted.subarray(1), 5);
    expect(m2.snapshot(3)).toMatchObject({ ownerId: 3, timestamp: 12, ioTimeout: 1, ownerName: 'host3', leaseBad: false });
    expect(m2.known().map((h) => h.hostId)).toEqual([2, 3]);
  });

  it('a renewal that takes the quick path leaves the monitor as the full path would (random records, names, bitmaps, damage)', () => {
    // Hosts 1 (us), 2..6 and 40 (its bitmap bit for us is in another word than host 2's).
    const ids = [1, 2, 3, 4, 5, 6, 40];
    const change = fc.record({
      host: fc.constantFrom(...ids),
      kind: fc.constantFrom('renew', 'renew', 'renew', 'gen', 'name', 'io', 'space', 'spaceTail', 'magic', 'signal', 'unsignal', 'free'),
    });
    fc.assert(fc.property(fc.array(fc.array(change, { maxLength: 6 }), { minLength: 1, maxLength: 12 }), (looks) => {
      const quick = monitor();
      const full = monitor();
      // The full path always: the quick path is taken only for hosts flagged in this array.
      const fullQuick = (full as unknown as { quick: Uint8Array }).quick;
      const a = area();
      const st = new Map(ids.map((h) => [h, { gen: 1, ts: 1, io: 10, name: `host${h}` }]));
      for (const h of ids) setHost(a, h, st.get(h)!);
      let now = 10;
      for (const look of looks) {
        for (const { host, kind } of look) {
          const h = st.get(host)!;
          const off = (host - 1) * 512;
          h.ts++;
          if (kind === 'gen') h.gen++;
          if (kind === 'name') h.name = `${h.name.slice(0, 20)}x`;
          if (kind === 'io') h.io = h.io === 10 ? 1 : 10;
          if (kind === 'free') h.ts = 0;
          if (kind !== 'magic' && kind !== 'space' && kind !== 'spaceTail' && kind !== 'signal' && kind !== 'unsignal') setHost(a, host, h);
          // damage or odd records: another lockspace name, a name equal only up to its NUL, a bad magic
          if (kind === 'space') a.write('LT', off + 56, 'latin1');
          if (kind === 'spaceTail') a[off + 56 + 10] = 0x41;
          if (kind === 'magic') a[off] ^= 0xff;
          if (kind === 'signal' || kind === 'unsignal') {
            setBitmapHost(a, 1, kind === 'signal', off);
            a.writeUInt32LE(h.ts, off + 152); // the bitmap rides on a renewal
          }
        }
        now += 1 + (looks.length % 3);
        fullQuick.fill(0);
        const sq = quick.observe(a, now);
        fullQuick.fill(0);
        const sf = full.observe(a, now);
        expect(sq).toEqual(sf);
        for (const h of ids) {
          expect(quick.snapshot(h)).toEqual(full.snapshot(h));
          expect(quick.state(h, now)).toBe(full.state(h, now));
        }
        // Listed as changed: the full path's movers, less those that only renewed.
        expect(full.changedAtLastLook()).toEqual(expect.arrayContaining([...quick.changedAtLastLook()]));
      }
    }), { numRuns: 300 });
  });
});
