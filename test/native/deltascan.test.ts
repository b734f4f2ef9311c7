import fc from 'fast-check';

import { loadNative } from '../../src/io/native';
import { HostMonitor, QuickScan, quickScanJs } from '../../src/lease/hostmonitor';
import { DEFAULT_GEOMETRY, freshDeltaLeader, sealLeaderInto } from '../../src/ondisk';

/**
 * The host monitor's quick path in C++ (native/src/deltascan.cc) against the rule in JavaScript
 * (quickScanJs): two monitors, one with each, fed the same looks at areas where hosts renew,
 * rejoin, change name or io_timeout, go bad, and set our bitmap bit, must judge every host the
 * same way at every look.
 */
const native = loadNative().deltaQuickScan as QuickScan;
const HOSTS = 12;
const SS = 512;
const geometry = DEFAULT_GEOMETRY; // the records' sector size and flags (512-byte sectors)
const OUR_ID = 3;

type Change =
  | { kind: 'renew'; host: number }
  | { kind: 'rejoin'; host: number }
  | { kind: 'name'; host: number; name: string }
  | { kind: 'io'; host: number; io: number }
  | { kind: 'bad'; host: number }
  | { kind: 'space'; host: number }
  | { kind: 'bit'; host: number; on: boolean };

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ kind: fc.constant('renew' as const), host: fc.integer({ min: 1, max: HOSTS }) }),
  fc.record({ kind: fc.constant('renew' as const), host: fc.integer({ min: 1, max: HOSTS }) }),
  fc.record({ kind: fc.constant('rejoin' as const), host: fc.integer({ min: 1, max: HOSTS }) }),
  fc.record({ kind: fc.constant('name' as const), host: fc.integer({ min: 1, max: HOSTS }), name: fc.constantFrom('a', 'b', 'node-x') }),
  fc.record({ kind: fc.constant('io' as const), host: fc.integer({ min: 1, max: HOSTS }), io: fc.constantFrom(1, 10, 20) }),
  fc.record({ kind: fc.constant('bad' as const), host: fc.integer({ min: 1, max: HOSTS }) }),
  fc.record({ kind: fc.constant('space' as const), host: fc.integer({ min: 1, max: HOSTS }) }),
  fc.record({ kind: fc.constant('bit' as const), host: fc.integer({ min: 1, max: HOSTS }), on: fc.boolean() }),
);

interface HostRec { gen: number; ts: number; name: string; io: number; bad: boolean; space: string; bit: boolean; owned: boolean }

function write(area: Buffer, id: number, h: HostRec): void {
  const off = (id - 1) * SS;
  area.fill(0, off, off + SS);
  if (!h.owned) return;
  const rec = { ...freshDeltaLeader({ spaceName: h.space, geometry, ioTimeout: h.io }), ownerId: id, ownerGeneration: h.gen, timestamp: h.ts, ioTimeout: h.io, resourceName: h.name };
  sealLeaderInto(rec, area, off, 47);
  if (h.bad) area.writeUInt32LE(0xdeadbeef, off);
  if (h.bit) area[off + 256 + ((OUR_ID - 1) >> 3)] |= 1 << ((OUR_ID - 1) & 7);
}

describe('deltaQuickScan (C++) against quickScanJs', () => {
  it('two monitors, one with each quick path, judge every host alike at every look', () => {
    fc.assert(fc.property(fc.array(fc.array(change, { maxLength: 6 }), { minLength: 1, maxLength: 25 }), (looks) => {
      const area = Buffer.alloc(HOSTS * SS);
      const hosts: HostRec[] = [];
      for (let id = 1; id <= HOSTS; id++) {
        hosts[id] = { gen: 1, ts: 100, name: `h${id}`, io: 10, bad: false, space: 'LS', bit: false, owned: id % 4 !== 0 };
        write(area, id, hosts[id]);
      }
      const params = { spaceName: 'LS', hostId: OUR_ID, sectorSize: SS, maxHosts: HOSTS, ioTimeout: 10 };
      const js = new HostMonitor({ ...params, quickScan: quickScanJs });
      const cc = new HostMonitor({ ...params, quickScan: native });
      let now = 1000;
      for (const look of looks) {
        for (const c of look) {
          const h = hosts[c.host];
          h.owned = true;
          if (c.kind === 'renew') h.ts++;
          else if (c.kind === 'rejoin') { h.gen++; h.ts++; }
          else if (c.kind === 'name') h.name = c.name;
          else if (c.kind === 'io') h.io = c.io;
          else if (c.kind === 'bad') h.bad = !h.bad;
          else if (c.kind === 'space') h.space = h.space === 'LS' ? 'LSX' : 'LS';
          else h.bit = c.on;
          write(area, c.host, h);
        }
        now += 2;
        expect(cc.observe(Buffer.from(area), now)).toEqual(js.observe(Buffer.from(area), now));
        expect(cc.changedAtLastLook()).toEqual(js.changedAtLastLook());
        for (let id = 1; id <= HOSTS; id++) {
          expect(cc.snapshot(id)).toEqual(js.snapshot(id));
          expect(cc.state(id, now + 100)).toBe(js.state(id, now + 100));
        }
      }
    }), { numRuns: 300 });
  });

  it('takes the quick path for hosts that only renewed: nothing left for the full path', () => {
    const area = Buffer.alloc(HOSTS * SS);
    const hosts: HostRec[] = [];
    for (let id = 1; id <= HOSTS; id++) {
      hosts[id] = { gen: 1, ts: 100, name: `h${id}`, io: 10, bad: false, space: 'LS', bit: false, owned: true };
      write(area, id, hosts[id]);
    }
    let slowAtLastLook = -1;
    const counting: QuickScan = (a) => (slowAtLastLook = native(a));
    const m = new HostMonitor({ spaceName: 'LS', hostId: OUR_ID, sectorSize: SS, maxHosts: HOSTS, ioTimeout: 10, quickScan: counting });
    m.observe(Buffer.from(area), 10);
    expect(slowAtLastLook).toBe(HOSTS); // first look: every host is new
    for (let id = 1; id <= HOSTS; id++) { hosts[id].ts++; write(area, id, hosts[id]); }
    m.observe(Buffer.from(area), 12);
    expect(slowAtLastLook).toBe(0);
    expect(m.snapshot(5)).toMatchObject({ timestamp: 101, lastLive: 12 });
  });

  it('refuses arrays that do not match hosts and step, touching nothing', () => {
    const m = { words: new Uint32Array(128 * 4), hosts: 4, step: 128, prev: new Uint32Array(28), quick: new Uint8Array(5), names: new Uint32Array(60),
      spaceWords: new Uint32Array(12), ioTimeouts: new Uint16Array(5), lastLive: new Float64Array(5), ourIndex: 0, ourBitWord: 64, ourBitMask: 1, now: 1, slow: new Int32Array(4) };
    expect(native(m)).toBe(0);
    for (const bad of [{ prev: new Uint32Array(27) }, { words: new Uint32Array(10) }, { lastLive: new Uint32Array(5) }, { step: 40 }, { ourBitWord: 128 }, { hosts: -1 }]) {
      expect(() => native({ ...m, ...bad } as never)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
  });
});
