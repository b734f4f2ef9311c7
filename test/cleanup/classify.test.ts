/**
 * The classifier alone: synthetic lease bytes and a scripted view of the other hosts.
 */
import {
  bytesNeeded, classifyEntry, ClassifyContext, EntryFacts, HostView, LivenessView, needsWatching, SWEEP_LOCK_NAME,
} from '../../src/cleanup/classify';
import { readFileSync } from 'fs';
import { join } from 'path';
import { formatReport, summarize } from '../../src/cleanup/report';
import { HELD_BY_OTHER } from '../../src/cleanup/sweep';
import { exitStatus } from '../../src/cli/cleanup-command';
import { SweepReport } from '../../src/control/replies';
import { HostState } from '../../src/lease/hostmonitor';
import {
  buildResourceArea, DBLOCK_FL_RELEASED, DEFAULT_GEOMETRY, encodeModeBlockInto, freshDeltaLeader, MBLOCK_SHARED, PAXOS_DISK_CLEAR,
  sealDblockInto, sealLeaderInto, decodeLeader,
} from '../../src/ondisk';

const LS = '__LIBVIRT__DISKS__';
const MD5 = 'bfa0240911bc17753e0b473688822159';
const NOW = 1_700_000_000_000;
const OLD = NOW - 7200 * 1000;

function lease(name = MD5, patch: Record<string, number> = {}, bytes = 8192): Buffer {
  const area = buildResourceArea({ spaceName: LS, resourceName: name, geometry: DEFAULT_GEOMETRY }).subarray(0, bytes);
  const buf = Buffer.from(area);
  sealLeaderInto({ ...decodeLeader(buf, 0), ...patch }, buf, 0);
  return buf;
}

function shared(buf: Buffer, hostId: number, generation: number): Buffer {
  encodeModeBlockInto({ flags: MBLOCK_SHARED, generation }, buf, (2 + hostId - 1) * 512);
  return buf;
}

function view(hosts: Record<number, Partial<HostView> & { state: HostState }>, self?: { hostId: number; generation: number }, dead: number[] = []): LivenessView {
  return {
    source: 'test',
    self,
    host: (h) => (hosts[h] ? { hostId: h, generation: 1, name: `node${h}`, ageSeconds: 1, deadAfter: 68, ...hosts[h] } : undefined),
    hostLive: (h) => !!hosts[h] && hosts[h].state !== 'FREE' && !dead.includes(h),
    candidates: () => Object.keys(hosts).map(Number).filter((h) => hosts[h].state !== 'FREE'),
  };
}

const file = (name: string, head: Buffer, mtimeMs = OLD, extra: Partial<EntryFacts['stat']> = {}): EntryFacts => ({
  name, head, stat: { kind: 'file', size: 1048576, mtimeMs, mtimeNs: `${mtimeMs}000000`, ino: '42', dev: '7', nlink: 1, ...extra },
});
const ctx = (v: LivenessView, more: Partial<ClassifyContext> = {}): ClassifyContext => ({ view: v, nowMs: NOW, minAgeSeconds: 3600, ...more });
const none = view({});

describe('classifyEntry', () => {
  it('never touches the lockspace file or the sweep lock', () => {
    expect(classifyEntry({ name: LS }, ctx(none))).toMatchObject({ class: 'lockspace', deletable: false });
    const lock = classifyEntry(file(SWEEP_LOCK_NAME, lease(SWEEP_LOCK_NAME, { ownerId: 2, ownerGeneration: 1, timestamp: 5, lver: 1 })), ctx(view({ 2: { state: 'LIVE' } })));
    expect(lock).toMatchObject({ class: 'lockspace', deletable: false });
    expect(lock.detail).toMatch(/sweeper lock.*held by host 2 \(node2\)/);
  });

  it('free: never used and released leases, old enough, MD5 name', () => {
    expect(classifyEntry(file(MD5, lease()), ctx(none))).toMatchObject({ class: 'free', deletable: true, detail: 'never used', lver: 0 });
    const rel = classifyEntry(file(MD5, lease(MD5, { ownerId: 2, ownerGeneration: 1, lver: 3, timestamp: 0 })), ctx(view({ 2: { state: 'LIVE' } })));
    expect(rel).toMatchObject({ class: 'free', deletable: true, lver: 3 });
    expect(rel.detail).toMatch(/released \(lease version 3\)/);
  });

  it('too recent: free but modified within min-age', () => {
    const v = classifyEntry(file(MD5, lease(), NOW - 60_000), ctx(none));
    expect(v).toMatchObject({ class: 'too recent', deletable: false, ageSeconds: 60 });
    expect(v.detail).toMatch(/modified 60 s ago \(min age 3600 s\)/);
  });

  it('in use: an exclusive owner that is LIVE, UNKNOWN or FAIL; never guessed dead', () => {
    for (const state of ['LIVE', 'UNKNOWN', 'FAIL'] as const) {
      const v = classifyEntry(file(MD5, lease(MD5, { ownerId: 3, ownerGeneration: 2, lver: 1, timestamp: 99 })), ctx(view({ 3: { state, generation: 2 } })));
      expect(v).toMatchObject({ class: 'in use', deletable: false, holders: [{ hostId: 3, mode: 'EX', state }] });
      expect(v.detail).toMatch(new RegExp(`host 3 \\(node3\\) ${state}`));
    }
    // Nothing known about the owner: in use.
    expect(classifyEntry(file(MD5, lease(MD5, { ownerId: 9, ownerGeneration: 1, lver: 1, timestamp: 9 })), ctx(none))).toMatchObject({ class: 'in use' });
  });

  it('free when sanlock would take it over at once: owner DEAD, its delta lease FREE, or a newer generation', () => {
    const held = lease(MD5, { ownerId: 3, ownerGeneration: 2, lver: 4, timestamp: 99 });
    const dead = classifyEntry(file(MD5, held), ctx(view({ 3: { state: 'DEAD', generation: 2, ageSeconds: 70 } })));
    expect(dead).toMatchObject({ class: 'free', deletable: true });
    expect(dead.detail).toMatch(/host 3 \(node3\) is dead: not renewed for 70 s \(host_dead 68 s\)/);
    expect(classifyEntry(file(MD5, held), ctx(view({ 3: { state: 'FREE' } }))).detail).toMatch(/left the lockspace/);
    expect(classifyEntry(file(MD5, held), ctx(view({ 3: { state: 'LIVE', generation: 3 } }))).detail).toMatch(/joined again since \(generation 3 > 2\)/);
  });

  it('free when the owner released but another host wrote the leader (RELEASED dblock)', () => {
    const buf = lease(MD5, { ownerId: 2, ownerGeneration: 1, lver: 2, timestamp: 50, writeId: 3 });
    sealDblockInto({ mbal: 2, bal: 2, inp: 2, inp2: 1, inp3: 50, lver: 2, checksum: 0, flags: DBLOCK_FL_RELEASED }, buf, 3 * 512);
    expect(bytesNeeded(buf, view({ 2: { state: 'LIVE' } }))).toBeGreaterThanOrEqual(4 * 512);
    expect(classifyEntry(file(MD5, buf), ctx(view({ 2: { state: 'LIVE' } })))).toMatchObject({ class: 'free' });
  });

  it('shared holders: live ones make it in use, dead ones do not', () => {
    const buf = shared(lease(MD5, { lver: 5 }), 2, 1);
    const live = classifyEntry(file(MD5, buf), ctx(view({ 2: { state: 'LIVE' } })));
    expect(live).toMatchObject({ class: 'in use', holders: [{ hostId: 2, mode: 'SH' }] });
    expect(live.detail).toMatch(/host 2 \(node2\) LIVE.*shared/);
    const deadOne = classifyEntry(file(MD5, buf), ctx(view({ 2: { state: 'DEAD' } }, undefined, [2])));
    expect(deadOne).toMatchObject({ class: 'free', deletable: true });
    expect(deadOne.detail).toMatch(/stale shared mark of host 2/);
  });

  it('leases of this host: in use (with the local owner), unless an earlier generation no record refers to', () => {
    const self = { hostId: 1, generation: 4 };
    const mine = lease(MD5, { ownerId: 1, ownerGeneration: 4, lver: 2, timestamp: 5 });
    const v = classifyEntry(file(MD5, mine), ctx(view({ 1: { state: 'LIVE' } }, self), { localOwners: () => ['vm1'] }));
    expect(v).toMatchObject({ class: 'in use', holders: [{ state: 'THIS HOST', owners: ['vm1'] }] });
    expect(v.detail).toMatch(/this host \(host 1\), exclusive, owner vm1/);
    const old = lease(MD5, { ownerId: 1, ownerGeneration: 2, lver: 2, timestamp: 5 });
    expect(classifyEntry(file(MD5, old), ctx(view({}, self), { ownOrphan: () => false }))).toMatchObject({ class: 'in use' });
    expect(classifyEntry(file(MD5, old), ctx(view({}, self), { ownOrphan: () => true }))).toMatchObject({ class: 'free', deletable: true });
  });

  it('while the agent recovers after its restart, a lease of an earlier generation of this host is not decided, even recorded by no owner', () => {
    const self = { hostId: 1, generation: 4 };
    const old = lease(MD5, { ownerId: 1, ownerGeneration: 2, lver: 2, timestamp: 5 });
    const v = classifyEntry(file(MD5, old), ctx(view({}, self), { ownOrphan: () => true, recovering: true }));
    expect(v).toMatchObject({ class: 'in use', deletable: false, holders: [{ hostId: 1, generation: 2, state: 'THIS HOST' }] });
    expect(v.detail).toMatch(/held by an earlier generation \(2\) of this host; not decided: recovering \(the agent is still recovering the leases it held before its restart\)/);
    // the current generation's leases are in use anyway; others' leases are judged as ever
    const cur = lease(MD5, { ownerId: 1, ownerGeneration: 4, lver: 2, timestamp: 5 });
    expect(classifyEntry(file(MD5, cur), ctx(view({}, self), { recovering: true })).detail).not.toMatch(/recovering/);
    expect(classifyEntry(file(MD5, lease()), ctx(view({}, self), { recovering: true }))).toMatchObject({ class: 'free', deletable: true });
  });

  it('not a lease: garbage, zeros, short, cleared, a lockspace, other names, bad checksum', () => {
    const cases: Array<[Buffer, RegExp]> = [
      [Buffer.alloc(100, 7), /too short/],
      [Buffer.alloc(4096), /zeros/],
      [Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 37) & 0xff)), /no lease record \(magic/],
      [lease(MD5, { magic: PAXOS_DISK_CLEAR }), /cleared/],
      [(() => { const b = Buffer.alloc(4096); sealLeaderInto(freshDeltaLeader({ spaceName: LS, geometry: DEFAULT_GEOMETRY }), b, 0); return b; })(), /a lockspace/],
      [lease('someothername'), /resource "someothername"/],
      [(() => { const b = lease(); b[20] ^= 1; return b; })(), /checksum/],
    ];
    for (const [buf, why] of cases) {
      const v = classifyEntry(file(MD5, buf), ctx(none));
      expect(v).toMatchObject({ class: 'not a lease', deletable: false });
      expect(v.detail).toMatch(why);
    }
  });

  it('unknown names are kept whatever they hold; directories and symlinks too', () => {
    const v = classifyEntry(file('disk.lease', lease('disk.lease')), ctx(none));
    expect(v).toMatchObject({ class: 'unknown name', deletable: false });
    expect(v.detail).toMatch(/not an MD5 name.*free: never used/);
    expect(classifyEntry(file(MD5.toUpperCase(), lease(MD5.toUpperCase())), ctx(none))).toMatchObject({ class: 'unknown name' });
    expect(classifyEntry({ name: MD5, stat: { kind: 'directory', size: 0, mtimeMs: OLD, mtimeNs: '0', ino: '1', dev: '1', nlink: 2 } }, ctx(none)))
      .toMatchObject({ class: 'not a lease', detail: 'a directory' });
    expect(classifyEntry({ name: 'x', stat: { kind: 'symlink', size: 0, mtimeMs: OLD, mtimeNs: '0', ino: '1', dev: '1', nlink: 1 } }, ctx(none)))
      .toMatchObject({ class: 'unknown name' });
    expect(classifyEntry({ name: MD5, error: 'cannot read: EIO' }, ctx(none))).toMatchObject({ class: 'error', deletable: false });
  });

  it('leftover private names of an interrupted sweep are removable only when they hold a lease area of their resource', () => {
    const left = `.lockagent-cleanup.${MD5}`;
    expect(classifyEntry(file(left, lease(), OLD, { nlink: 2 }), ctx(none))).toMatchObject({ class: 'leftover', deletable: true, nlink: 2 });
    expect(classifyEntry(file(left, lease(), OLD, { nlink: 1 }), ctx(none))).toMatchObject({ class: 'leftover', deletable: true, nlink: 1 });
    // Someone else's file under a sweeper-style name: kept, and the report says why.
    const foreign = classifyEntry(file(left, Buffer.from('precious data\n'), OLD, { nlink: 1 }), ctx(none));
    expect(foreign).toMatchObject({ class: 'not a lease', deletable: false });
    expect(foreign.detail).toMatch(/sweeper-style name, but not a lease left by a sweep \(too short/);
    expect(classifyEntry(file(left, lease('0123456789abcdef0123456789abcdef'), OLD), ctx(none))).toMatchObject({ class: 'not a lease', deletable: false });
    expect(classifyEntry(file(left, lease(), OLD, { nlink: 3 }), ctx(none))).toMatchObject({ class: 'linked', deletable: false });
    expect(classifyEntry(file('.hidden', Buffer.alloc(0)), ctx(none))).toMatchObject({ class: 'unknown name' });
  });

  it('a lease file with another hard link is kept, whatever it holds', () => {
    const v = classifyEntry(file(MD5, lease(), OLD, { nlink: 2 }), ctx(none));
    expect(v).toMatchObject({ class: 'linked', deletable: false });
    expect(v.detail).toMatch(/^has 2 hard links: .*never writes to it or deletes it; free: never used$/);
  });

  it('a standalone dry run watches leases held by hosts it could not judge yet', () => {
    const held = lease(MD5, { ownerId: 3, ownerGeneration: 1, lver: 1, timestamp: 9 });
    expect(needsWatching(classifyEntry(file(MD5, held), ctx(view({ 3: { state: 'UNKNOWN' } }))))).toBe(true);
    expect(needsWatching(classifyEntry(file(MD5, held), ctx(view({ 3: { state: 'LIVE' } }))))).toBe(false);
  });
});

describe('report', () => {
  it('summarises deleted files and classes, dry run or not', () => {
    const files = [
      { name: 'a', class: 'free', detail: '', deletable: false, action: 'deleted' },
      { name: 'b', class: 'in use', detail: '', deletable: false },
      { name: 'c', class: 'not a lease', detail: '', deletable: false },
      { name: 'd', class: 'in use', detail: '', deletable: false },
    ] as const;
    expect(summarize([...files], false).line).toBe('4 files: 1 deleted, 2 in use, 1 not a lease');
    const dry = summarize([{ name: 'a', class: 'free', detail: 'never used', deletable: true }, files[1]], true);
    expect(dry.line).toBe('2 files (dry run): 1 free (would be deleted), 1 in use');
    const r: SweepReport = {
      dir: '/d', dryRun: true, minAgeSeconds: 0, status: 'done', liveness: 'test', startedAt: '', durationMs: 1,
      files: [{ name: 'a', class: 'free', detail: 'never used', deletable: true }], summary: dry.summary, summaryLine: dry.line, errors: [],
    };
    expect(formatReport(r)).toMatch(/^FILE +CLASS +DETAIL\na +free +would delete: never used\n/m);
    expect(exitStatus(r)).toBe(0);
    expect(exitStatus({ ...r, summary: summarize([{ name: 'x', class: 'error', detail: 'EIO', deletable: false }], true).summary })).toBe(1);
    expect(exitStatus({ ...r, status: 'busy', sweeper: { hostId: 2, name: 'node02', thisHost: false } })).toBe(4);
    expect(formatReport({ ...r, status: 'busy', sweeper: { hostId: 2, name: 'node02', thisHost: false } })).toBe('another host (host 2, node02) is sweeping; nothing done\n');
  });

  it('a dry run says that the second names an interrupted sweep left would be removed', () => {
    const left = `.lockagent-cleanup.${MD5}`;
    const files = [
      classifyEntry(file(left, lease(), OLD, { nlink: 1 }), ctx(none)),
      { name: 'b', class: 'in use', detail: '', deletable: false } as const,
    ];
    const dry = summarize(files, true);
    expect(dry.line).toBe('2 files (dry run): 1 in use, 1 leftover (would be removed)');
    expect(summarize(files, false).line).toBe('2 files: 0 deleted, 1 in use, 1 leftover');
    const r: SweepReport = {
      dir: '/d', dryRun: true, minAgeSeconds: 0, status: 'done', liveness: 'test', startedAt: '', durationMs: 1,
      files, summary: dry.summary, summaryLine: dry.line, errors: [],
    };
    expect(formatReport(r)).toContain(`${left}  leftover  would remove: lease file unlinked by an interrupted sweep (no longer reachable by its name)\n`);
    expect(formatReport({ ...r, dryRun: false })).not.toMatch(/would remove:/);
  });
});

describe('docs/cleanup.md', () => {
  it('lists every refusal the sweep takes for "someone holds it"', () => {
    const doc = readFileSync(join(__dirname, '../../docs/cleanup.md'), 'utf8');
    const para = doc.slice(doc.indexOf('Refused because someone holds it'), doc.indexOf('The second name is removed.', doc.indexOf('Refused because someone holds it')));
    expect(para.length).toBeGreaterThan(100);
    for (const rv of HELD_BY_OTHER) expect([rv, new RegExp(`−${-rv}(?!\\d)`).test(para)]).toEqual([rv, true]);
  });
});
