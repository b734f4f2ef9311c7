/**
 * `lockagent direct acquire_id/renew_id/release_id/acquire/release` against the real
 * `sanlock direct` (3.8.5):
 *  - the same sequence run by each tool on its own copy of one file gives the same stdout, exit
 *    status and records (timestamps, the checksums covering them and default-name uuids aside);
 *  - each tool continues on the other's files (cross-tool chains);
 *  - lockagent's release (a real one, sanlock's is a no-op) leaves what the sanlock daemon would,
 *    and sanlock acquires after it with the next lver and mbal.
 * Lockspaces use -o 1, so a free acquire_id takes 2 s.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodeDblock, decodeLeader, decodeModeBlock, DELTA_DISK_MAGIC, PAXOS_DISK_MAGIC } from '../../src/ondisk';
import {
  cliEntry, copyFixture, lockagent, lockagentInProcess, makeTempDir, removeTempDir, RunResult, sanlock, sha256, sparseFile,
} from '../helpers/cli';
import { describeInterop } from '../helpers/interop';

const MiB = 1048576;
const SS = 512;
jest.setTimeout(90_000);

type Tool = 'sanlock' | 'lockagent';
type Runner = (args: string[]) => Promise<RunResult>;
const runners: Record<Tool, Runner> = {
  sanlock: (a) => sanlock(['direct', ...a]),
  // the real binary for most steps; the in-process CLI would hide start-up and exit-status bugs
  lockagent: (a) => lockagent(['direct', ...a]),
};

/** sanlock's default host name as it lands on disk: uuid + "." + the first 10 chars of the nodename. */
const DEFAULT_NAME = new RegExp(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\\.${os.hostname().slice(0, 10).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

/**
 * The lease bytes with what legitimately differs between two runs zeroed: timestamps (and the
 * checksums over them), paxos write timestamps and dblock inp3, and default-name uuids.
 */
function normalize(buf: Buffer): Buffer {
  const b = Buffer.from(buf);
  for (let area = 0; area + MiB <= b.length; area += MiB) {
    const magic = b.readUInt32LE(area);
    if (magic === DELTA_DISK_MAGIC) {
      for (let s = 0; s < 2000; s++) {
        const o = area + s * SS;
        if (b.readUInt32LE(o) !== DELTA_DISK_MAGIC) continue;
        b.fill(0, o + 152, o + 160);
        b.fill(0, o + 168, o + 172);
        const name = decodeLeader(b, o).resourceName;
        if (DEFAULT_NAME.test(name)) b.fill(0, o + 104, o + 140); // the uuid part
      }
    } else if (magic === PAXOS_DISK_MAGIC) {
      b.fill(0, area + 152, area + 160);
      b.fill(0, area + 168, area + 172);
      b.fill(0, area + 192, area + 200);
      for (let s = 2; s < 2002; s++) {
        const o = area + s * SS;
        b.fill(0, o + 32, o + 40);
        b.fill(0, o + 48, o + 52);
      }
    }
  }
  return b;
}

/** Decoded view of the non-empty records, for a readable diff when the bytes differ. */
function describeFile(buf: Buffer): unknown[] {
  const out: unknown[] = [];
  const magic = buf.readUInt32LE(0);
  if (magic === DELTA_DISK_MAGIC) {
    for (let s = 0; s < 2000; s++) {
      const l = decodeLeader(buf, s * SS);
      if (!l.ownerId && !l.ownerGeneration) continue;
      out.push({ hostId: s + 1, owner: l.ownerId, gen: l.ownerGeneration, name: DEFAULT_NAME.test(l.resourceName) ? '<uuid>.<node>' : l.resourceName, ts: l.timestamp ? 'set' : 0, io: l.ioTimeout, extra: [l.writeId, l.writeGeneration, l.writeTimestamp] });
    }
  } else if (magic === PAXOS_DISK_MAGIC) {
    const l = decodeLeader(buf, 0);
    out.push({ owner: l.ownerId, gen: l.ownerGeneration, lver: l.lver, ts: l.timestamp ? 'set' : 0, flags: l.flags, write: [l.writeId, l.writeGeneration, l.writeTimestamp ? 'set' : 0], numHosts: l.numHosts });
    for (let h = 1; h <= 2000; h++) {
      const d = decodeDblock(buf, (h + 1) * SS);
      const m = decodeModeBlock(buf, (h + 1) * SS);
      if (!d.mbal && !d.lver && !d.flags && !m.flags) continue;
      out.push({ host: h, mbal: d.mbal, bal: d.bal, inp: d.inp, inp2: d.inp2, inp3: d.inp3 ? 'set' : 0, lver: d.lver, flags: d.flags, mode: m });
    }
  }
  return out;
}

function leaderAt(file: string, off = 0) {
  return decodeLeader(fs.readFileSync(file).subarray(off, off + SS), 0);
}
function dblockOf(file: string, hostId: number) {
  const b = fs.readFileSync(file);
  return { ...decodeDblock(b, (hostId + 1) * SS), mode: decodeModeBlock(b, (hostId + 1) * SS) };
}

interface Step { args: string[]; rv: number }

/** Run steps in order with one tool; file names in args are mapped to that tool's copies. */
async function runSeq(tool: Tool, files: Record<string, string>, steps: Step[]): Promise<string[]> {
  const log: string[] = [];
  for (const st of steps) {
    const args = st.args.map((a) => a.replace(/@(\w+)/g, (_, n: string) => files[n]));
    const r = await runners[tool](args);
    log.push(`${st.args.join(' ')} -> rc ${r.code}: ${r.stdout.trim()}`);
    if (r.stdout !== `${r.stdout.split(' ')[0]} done ${st.rv}\n` || r.code !== (st.rv === 0 ? 0 : 1)) {
      throw new Error(`${tool}: direct ${args.join(' ')}: expected "done ${st.rv}", got rc ${r.code}\n${r.stdout}${r.stderr}`);
    }
    if (tool === 'lockagent' && st.rv !== 0) {
      const lines = r.stderr.split('\n').filter((l) => l && !/falling back to O_DSYNC/.test(l));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(new RegExp(`\\(sanlock ${st.rv} `));
    }
  }
  return log;
}

/** Copy `src` for each tool, run the same steps with both (concurrently), compare the results. */
async function sameSequence(dir: string, tag: string, srcs: Record<string, string>, steps: Step[]): Promise<Record<Tool, Record<string, string>>> {
  const files: Record<Tool, Record<string, string>> = { sanlock: {}, lockagent: {} };
  for (const tool of ['sanlock', 'lockagent'] as Tool[]) {
    for (const [k, src] of Object.entries(srcs)) {
      files[tool][k] = path.join(dir, `${tag}-${tool}-${k}`);
      fs.copyFileSync(src, files[tool][k]);
    }
  }
  const [s, l] = await Promise.all([runSeq('sanlock', files.sanlock, steps), runSeq('lockagent', files.lockagent, steps)]);
  expect(l).toEqual(s);
  for (const k of Object.keys(srcs)) {
    const a = fs.readFileSync(files.sanlock[k]);
    const b = fs.readFileSync(files.lockagent[k]);
    expect(describeFile(b)).toEqual(describeFile(a));
    expect(normalize(b).equals(normalize(a))).toBe(true);
  }
  return files;
}

describeInterop('lockagent direct acquire_id/renew_id/release_id/acquire/release vs sanlock 3.8.5', () => {
  let dir: string;
  let LSF: string; // lockspace LS, -o 1
  let RF: string; // resource LS:R
  const p = (n: string) => path.join(dir, n);
  const ls = (f: string, id: number, name = 'LS') => `${name}:${id}:${f}:0`;
  const rs = (f: string, res = 'R') => `LS:${res}:${f}:0`;

  beforeAll(async () => {
    cliEntry();
    dir = makeTempDir('lockagent-direct-lease');
    LSF = sparseFile(p('ls.img'), MiB);
    RF = sparseFile(p('res.img'), MiB);
    expect((await sanlock(['direct', 'init', '-s', `LS:0:${LSF}:0`, '-o', '1'])).stdout).toBe('init done 0\n');
    expect((await sanlock(['direct', 'init', '-r', `LS:R:${RF}:0`])).stdout).toBe('init done 0\n');
    sparseFile(p('n1.img'), MiB);
    expect((await sanlock(['direct', 'init', '-r', `LS:R:${p('n1.img')}:0`, '-n', '1'])).stdout).toBe('init done 0\n');
    sparseFile(p('clear.img'), MiB);
    expect((await sanlock(['direct', 'init', '-r', `LS:R:${p('clear.img')}:0`, '-z', '1'])).stdout).toBe('init done 0\n');
    sparseFile(p('zero.img'), MiB);
    copyFixture('err_db.img', dir);
    copyFixture('res_acq_g2.img', dir);
  });
  afterAll(() => removeTempDir(dir));

  it('same delta sequence, same records: acquire, renew, release, fast reacquire, never-acquired and wrong-name failures', async () => {
    const steps: Step[] = [
      { args: ['acquire_id', '-s', ls('@L', 1), '-o', '1', '-e', 'hostA'], rv: 0 },
      { args: ['renew_id', '-s', ls('@L', 1), '-o', '1'], rv: 0 },
      { args: ['acquire_id', '-s', ls('@L', 2), '-o', '1'], rv: 0 }, // default name <uuid>.<nodename>
      { args: ['release_id', '-s', ls('@L', 1)], rv: 0 },
      { args: ['renew_id', '-s', ls('@L', 2)], rv: 0 }, // no -o: io_timeout 10 is written
      { args: ['acquire_id', '-s', ls('@L', 1), '-o', '1', '-e', 'hostA'], rv: 0 }, // free again: gen 2
      { args: ['acquire_id', '-s', ls('@L', 1), '-o', '1', '-e', 'hostA'], rv: 0 }, // held, same name: gen 3 at once
      { args: ['renew_id', '-s', ls('@L', 3)], rv: -22 }, // never acquired
      { args: ['release_id', '-s', ls('@L', 3)], rv: -22 },
      { args: ['acquire_id', '-s', ls('@L', 4, 'XX'), '-o', '1'], rv: -226 },
      { args: ['acquire_id', '-s', ls('@Z', 1), '-o', '1'], rv: -1 }, // no leader at all
      { args: ['acquire_id', '-s', ls('@R', 1), '-o', '1'], rv: -223 }, // a resource, not a lockspace
    ];
    const files = await sameSequence(dir, 'dseq', { L: LSF, Z: p('zero.img'), R: RF }, steps);
    const l = files.lockagent.L;
    expect(leaderAt(l, 0)).toMatchObject({ ownerId: 1, ownerGeneration: 3, resourceName: 'hostA', ioTimeout: 1 });
    expect(leaderAt(l, 0).timestamp).toBeGreaterThan(0);
    const h2 = leaderAt(l, SS);
    expect(h2).toMatchObject({ ownerId: 2, ownerGeneration: 1, ioTimeout: 10 });
    expect(h2.resourceName).toMatch(DEFAULT_NAME);
    expect(h2.resourceName).not.toBe(leaderAt(files.sanlock.L, SS).resourceName); // a fresh uuid per run
  });

  it('same paxos sequence, same records: lver/mbal numbering, -241 while held, older generations, error codes', async () => {
    const steps: Step[] = [
      { args: ['acquire', '-r', rs('@R'), '-i', '1', '-g', '1'], rv: 0 }, // lver 1 mbal 1
      { args: ['acquire', '-r', rs('@R'), '-i', '2', '-g', '1'], rv: -241 }, // held, no lockspace
      { args: ['acquire', '-r', rs('@R'), '-i', '1', '-g', '2'], rv: 0 }, // older gen of ours: lver 2 mbal 2001
      { args: ['acquire', '-r', rs('@R'), '-i', '1', '-g', '2'], rv: 0 }, // ours: lver 3 mbal 4001
      { args: ['acquire', '-r', rs('@R'), '-i', '1', '-g', '1'], rv: -241 }, // a newer generation holds it
      { args: ['acquire', '-r', rs('@N'), '-i', '2', '-g', '1'], rv: -228 }, // num_hosts 1
      { args: ['acquire', '-r', rs('@C'), '-i', '1', '-g', '1'], rv: -1 }, // cleared (init -z 1)
      { args: ['acquire', '-r', rs('@R', 'OTHER'), '-i', '1', '-g', '1'], rv: -227 },
      { args: ['acquire', '-r', rs('@E', 'RES1'), '-i', '1', '-g', '1'], rv: -214 }, // corrupt dblock
      { args: ['acquire', '-r', rs('@L'), '-i', '1', '-g', '1'], rv: -223 }, // a lockspace, not a resource
    ];
    const files = await sameSequence(dir, 'pseq', { R: RF, N: p('n1.img'), C: p('clear.img'), E: p('err_db.img'), L: LSF }, steps);
    const l = files.lockagent.R;
    expect(leaderAt(l)).toMatchObject({ ownerId: 1, ownerGeneration: 2, lver: 3, writeId: 1, writeGeneration: 2 });
    expect(dblockOf(l, 1)).toMatchObject({ mbal: 4001, bal: 4001, inp: 1, inp2: 2, lver: 3, flags: 0 });
    expect(sha256(files.lockagent.E)).toBe(sha256(p('err_db.img')));
  });

  it('cross-tool delta chains: each tool renews, releases and re-acquires the other\'s host_id', async () => {
    const f1 = p('x1.img');
    const f2 = p('x2.img');
    fs.copyFileSync(LSF, f1);
    fs.copyFileSync(LSF, f2);
    const S = runners.sanlock;
    const L = runners.lockagent;
    const ok = async (r: Promise<RunResult>, word: string) => {
      const res = await r;
      expect({ out: res.stdout, code: res.code, err: res.code ? res.stderr : '' }).toEqual({ out: `${word} done 0\n`, code: 0, err: '' });
    };
    await Promise.all([
      (async () => {
        await ok(S(['acquire_id', '-s', ls(f1, 1), '-o', '1', '-e', 'hostA']), 'acquire_id');
        const a = leaderAt(f1);
        await new Promise((r) => setTimeout(r, 1100)); // a new second, so renewals visibly move the timestamp
        await ok(L(['renew_id', '-s', ls(f1, 1), '-o', '1']), 'rewew_id');
        const b = leaderAt(f1);
        expect(b.timestamp).toBeGreaterThan(a.timestamp);
        expect({ ...b, timestamp: 0, checksum: 0 }).toEqual({ ...a, timestamp: 0, checksum: 0 });
        await ok(S(['release_id', '-s', ls(f1, 1)]), 'release_id');
        expect(leaderAt(f1)).toMatchObject({ timestamp: 0, ownerId: 1, ownerGeneration: 1, resourceName: 'hostA', ioTimeout: 1 });
        await ok(L(['acquire_id', '-s', ls(f1, 1), '-o', '1', '-e', 'hostA']), 'acquire_id');
        expect(leaderAt(f1)).toMatchObject({ ownerGeneration: 2, resourceName: 'hostA' });
        await ok(S(['renew_id', '-s', ls(f1, 1), '-o', '1']), 'rewew_id');
        await ok(L(['release_id', '-s', ls(f1, 1)]), 'release_id');
        expect(leaderAt(f1)).toMatchObject({ timestamp: 0, ownerGeneration: 2 });
        await ok(S(['acquire_id', '-s', ls(f1, 1), '-o', '1']), 'acquire_id');
        expect(leaderAt(f1).ownerGeneration).toBe(3);
      })(),
      (async () => {
        // a host name written by one tool is "ours" for the other: fast reacquire, no 68 s wait
        await ok(L(['acquire_id', '-s', ls(f2, 2), '-o', '1', '-e', 'hostB']), 'acquire_id');
        const t0 = Date.now();
        await ok(S(['acquire_id', '-s', ls(f2, 2), '-o', '1', '-e', 'hostB']), 'acquire_id');
        expect(Date.now() - t0).toBeLessThan(10_000);
        expect(leaderAt(f2, SS)).toMatchObject({ ownerId: 2, ownerGeneration: 2, resourceName: 'hostB' });
        await ok(L(['acquire_id', '-s', ls(f2, 2), '-o', '1', '-e', 'hostB']), 'acquire_id');
        expect(leaderAt(f2, SS)).toMatchObject({ ownerGeneration: 3, timestamp: expect.any(Number) });
        // a longer name is stored as its first 47 bytes; the 47-byte name is then "ours" (a name
        // of 48 or more bytes never is, in sanlock too: strncmp over 48 bytes meets the NUL)
        await ok(S(['acquire_id', '-s', ls(f2, 3), '-o', '1', '-e', 'n'.repeat(60)]), 'acquire_id');
        expect(leaderAt(f2, 2 * SS)).toMatchObject({ ownerGeneration: 1, resourceName: 'n'.repeat(47) });
        const t1 = Date.now();
        await ok(L(['acquire_id', '-s', ls(f2, 3), '-o', '1', '-e', 'n'.repeat(47)]), 'acquire_id');
        expect(Date.now() - t1).toBeLessThan(10_000);
        expect(leaderAt(f2, 2 * SS)).toMatchObject({ ownerGeneration: 2, resourceName: 'n'.repeat(47) });
      })(),
    ]);
  });

  it('cross-tool paxos chains: next lver and mbal across tools; lockagent\'s release is the daemon\'s, and sanlock acquires after it', async () => {
    const S = runners.sanlock;
    const L = runners.lockagent;
    const done = async (r: Promise<RunResult>, word: string, rv = 0) => {
      const res = await r;
      expect(res.stdout).toBe(`${word} done ${rv}\n`);
      expect(res.code).toBe(rv ? 1 : 0);
      return res;
    };
    const a = p('pa.img');
    const b = p('pb.img');
    const c = p('pc.img');
    fs.copyFileSync(RF, a);
    fs.copyFileSync(RF, b);
    fs.copyFileSync(p('res_acq_g2.img'), c);
    await Promise.all([
      (async () => {
        await done(L(['acquire', '-r', rs(a), '-i', '1', '-g', '1']), 'acquire');
        expect(dblockOf(a, 1)).toMatchObject({ mbal: 1, lver: 1, inp: 1, inp2: 1 });
        await done(S(['acquire', '-r', rs(a), '-i', '1', '-g', '2']), 'acquire');
        expect(leaderAt(a)).toMatchObject({ lver: 2, ownerId: 1, ownerGeneration: 2, writeId: 1, writeGeneration: 2 });
        expect(dblockOf(a, 1)).toMatchObject({ mbal: 2001, bal: 2001, inp: 1, inp2: 2, lver: 2 });
        await done(S(['acquire', '-r', rs(a), '-i', '3', '-g', '1']), 'acquire', -241);
      })(),
      (async () => {
        await done(S(['acquire', '-r', rs(b), '-i', '1', '-g', '1']), 'acquire');
        const before = leaderAt(b);
        const d1 = dblockOf(b, 1);
        // not the holder: refused, nothing written
        const sum = sha256(b);
        const wrongGen = await done(L(['release', '-r', rs(b), '-i', '1', '-g', '2']), 'release', -251);
        expect(wrongGen.stderr).toMatch(/held by host 1 generation 1, not 2 .*give -g 1/);
        const wrongHost = await done(L(['release', '-r', rs(b), '-i', '2', '-g', '1']), 'release', -251);
        expect(wrongHost.stderr).toMatch(/not held by host 2 generation 1: it is held by host 1 generation 1 \(lver 1\)/);
        expect(sha256(b)).toBe(sum);
        // sanlock's own direct release changes nothing (3.8.5)
        await done(S(['release', '-r', rs(b)]), 'release');
        expect(sha256(b)).toBe(sum);

        await done(L(['release', '-r', rs(b), '-i', '1', '-g', '1']), 'release');
        const rel = leaderAt(b);
        expect(rel).toMatchObject({ timestamp: 0, ownerId: 1, ownerGeneration: 1, lver: 1, writeId: 1, writeGeneration: 1, flags: before.flags });
        expect(rel.writeTimestamp).toBeGreaterThanOrEqual(before.writeTimestamp);
        expect(dblockOf(b, 1)).toEqual({ ...d1, flags: 1 }); // same values, checksum unchanged (flags not covered)
        const freeAgain = await done(L(['release', '-r', rs(b), '-i', '1', '-g', '1']), 'release', -251);
        expect(freeAgain.stderr).toMatch(/it is free \(lver 1, last held by host 1 generation 1\)/);

        await done(S(['acquire', '-r', rs(b), '-i', '2', '-g', '1']), 'acquire');
        expect(leaderAt(b)).toMatchObject({ lver: 2, ownerId: 2, ownerGeneration: 1 });
        expect(dblockOf(b, 2)).toMatchObject({ mbal: 2002, bal: 2002, inp: 2, lver: 2, flags: 0 });
        await done(L(['release', '-r', rs(b), '-i', '2', '-g', '1']), 'release');
        await done(L(['acquire', '-r', rs(b), '-i', '3', '-g', '1']), 'acquire');
        expect(dblockOf(b, 3)).toMatchObject({ mbal: 4003, lver: 3 });
        await done(S(['acquire', '-r', rs(b), '-i', '1', '-g', '5']), 'acquire', -241);
      })(),
      (async () => {
        // docs/ondisk.md, exclusive release: a daemon-style release of res_acq_g2 (host 1 gen 2, lver 2, mbal
        // 2001), then sanlock's direct acquire by host 2 gives lver 3, mbal 4002.
        await done(L(['release', '-r', rs(c, 'RES1'), '-i', '1', '-g', '2']), 'release');
        expect(leaderAt(c)).toMatchObject({ timestamp: 0, lver: 2, writeId: 1, writeGeneration: 2 });
        expect(dblockOf(c, 1)).toMatchObject({ mbal: 2001, inp2: 2, lver: 2, flags: 1 });
        await done(S(['acquire', '-r', rs(c, 'RES1'), '-i', '2', '-g', '1']), 'acquire');
        expect(leaderAt(c)).toMatchObject({ lver: 3, ownerId: 2, ownerGeneration: 1, writeId: 2 });
        expect(dblockOf(c, 2)).toMatchObject({ mbal: 4002, bal: 4002, inp: 2, inp2: 1, lver: 3 });
        const dump = await sanlock(['direct', 'dump', c, '-f', '2']);
        expect(dump.stdout).toMatch(/dblock\[0000\] mbal 2001 bal 2001 inp 1 inp2 2 inp3 \d+ lver 2/);
        expect(dump.stdout).toMatch(/dblock\[0001\] mbal 4002 bal 4002 inp 2 inp2 1 inp3 \d+ lver 3/);
      })(),
    ]);
  });

  it('usage errors exit 2 before any I/O; a missing path gives sanlock\'s code', async () => {
    const usage = async (args: string[], re: RegExp) => {
      const r = await lockagentInProcess(['direct', ...args]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(re);
    };
    await usage(['release', '-r', rs(RF), '-i', '1'], /release needs -g GENERATION/);
    await usage(['release', '-r', rs(RF)], /release needs -i HOST_ID and -g GENERATION/);
    await usage(['acquire', '-r', `${rs(RF)}:SH`, '-i', '1'], /without :lver or :SH/);
    await usage(['acquire_id', '-s', ls(LSF, 0)], /host_id of 1 or more/);
    await usage(['renew_id', '-s', `LS:1:${LSF}:100`], /not a multiple of 1M/);
    await usage(['acquire', '-r', rs(RF), '-i', 'x'], /invalid -i "x"/);
    const missing = p('missing.img');
    for (const [args, word, rv] of [
      [['acquire_id', '-s', ls(missing, 1)], 'acquire_id', -19],
      [['acquire', '-r', rs(missing), '-i', '1', '-g', '1'], 'acquire', -2],
    ] as Array<[string[], string, number]>) {
      const [s, l] = await Promise.all([sanlock(['direct', ...args]), lockagent(['direct', ...args])]);
      expect(s.stdout).toBe(`${word} done ${rv}\n`);
      expect(l.stdout).toBe(s.stdout);
      expect(l.code).toBe(1);
      expect(l.stderr).toMatch(/does not exist; create and initialise the lease area first/);
    }
    expect(fs.existsSync(missing)).toBe(false);
  });
});
