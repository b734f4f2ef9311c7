/**
 * `lockagent direct init` against the real `sanlock direct init` (3.8.5): the same command on two
 * fresh files must leave byte-identical files and print the same line; and sanlock must accept
 * every file lockagent writes (read_leader, dump, acquire_id, acquire).
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  cliEntry, lockagent, lockagentInProcess, makeTempDir, pool, removeTempDir, RunResult, sanlock, sparseFile,
} from '../helpers/cli';
import { describeInterop } from '../helpers/interop';

const MiB = 1048576;

interface Geo { args: string[]; sector: number; align: number; maxHosts: number }
const GEOMETRIES: Geo[] = [
  { args: [], sector: 512, align: MiB, maxHosts: 2000 },
  { args: ['-Z', '512', '-A', '1M'], sector: 512, align: MiB, maxHosts: 2000 },
  { args: ['-Z', '4096', '-A', '1M'], sector: 4096, align: MiB, maxHosts: 250 },
  { args: ['-Z', '4096', '-A', '2M'], sector: 4096, align: 2 * MiB, maxHosts: 500 },
  { args: ['-Z', '4096', '-A', '4M'], sector: 4096, align: 4 * MiB, maxHosts: 1000 },
  { args: ['-Z', '4096', '-A', '8M'], sector: 4096, align: 8 * MiB, maxHosts: 2000 },
];

interface Case {
  name: string;
  kind: 's' | 'r';
  geo: Geo;
  extra: string[];
  offset: number;
  /** initial file size */
  size: number;
}

function cases(): Case[] {
  const out: Case[] = [];
  for (const geo of GEOMETRIES) {
    const g = geo.args.length ? `${geo.sector}/${geo.align / MiB}M` : 'default';
    // lockspace options on three geometries (building 2000 records is the slow part)
    const lsExtras = geo.args.length === 0 || geo.align === 8 * MiB ? [[], ['-o', '5'], ['-o', '0'], ['-n', '10']]
      : geo.align === 2 * MiB ? [[], ['-o', '1']] : [[]];
    for (const extra of lsExtras) {
      out.push({ name: `lockspace ${g} ${extra.join(' ')}`, kind: 's', geo, extra, offset: 0, size: geo.align });
    }
    for (const extra of [[], ['-n', '10'], ['-n', '1'], ['-n', String(geo.maxHosts)], ['-n', '0'], ['-o', '5']]) {
      out.push({ name: `resource ${g} ${extra.join(' ')}`, kind: 'r', geo, extra, offset: 0, size: geo.align });
    }
    // a lease at the second align boundary, and files that init has to extend
    out.push({ name: `lockspace ${g} at offset 1 align`, kind: 's', geo, extra: [], offset: geo.align, size: 2 * geo.align });
    out.push({ name: `resource ${g} at offset 1 align`, kind: 'r', geo, extra: [], offset: geo.align, size: 2 * geo.align });
    out.push({ name: `lockspace ${g} extends an empty file`, kind: 's', geo, extra: [], offset: 0, size: 0 });
    out.push({ name: `resource ${g} extends a short file, offset 2 align`, kind: 'r', geo, extra: [], offset: 2 * geo.align, size: 4096 });
  }
  return out;
}

/**
 * The whole matrix runs lockagent in-process (same run() as the binary); the first case of each
 * geometry and kind also runs the real binary as a subprocess.
 */
function lockagentFor(i: number): (args: string[]) => Promise<RunResult> {
  return i % 13 === 0 ? lockagent : lockagentInProcess;
}

function spec(c: Case, file: string, offset = c.offset): string {
  return c.kind === 's' ? `LSI:0:${file}:${offset}` : `LSI:RESI:${file}:${offset}`;
}

describeInterop('lockagent direct init vs sanlock direct init', () => {
  let dir: string;
  beforeAll(() => {
    cliEntry();
    dir = makeTempDir('lockagent-init');
  });
  afterAll(() => removeTempDir(dir));

  it('writes byte-identical files for all sector/align pairs, lockspaces and resources, -o/-n, offsets and short files', async () => {
    const all = cases();
    const failures: string[] = [];
    await pool(all, 4, async (c, i) => {
      const a = sparseFile(path.join(dir, `s${i}.img`), c.size);
      const b = sparseFile(path.join(dir, `l${i}.img`), c.size);
      const ra = await sanlock(['direct', 'init', `-${c.kind}`, spec(c, a), ...c.geo.args, ...c.extra]);
      const rb = await lockagentFor(i)(['direct', 'init', `-${c.kind}`, spec(c, b), ...c.geo.args, ...c.extra]);
      const fa = fs.readFileSync(a);
      const fb = fs.readFileSync(b);
      if (ra.stdout !== 'init done 0\n') failures.push(`${c.name}: sanlock printed ${JSON.stringify(ra.stdout)}`);
      if (rb.stdout !== ra.stdout || rb.code !== ra.code) failures.push(`${c.name}: lockagent printed ${JSON.stringify(rb.stdout)} rc ${rb.code}: ${rb.stderr}`);
      if (!fa.equals(fb)) failures.push(`${c.name}: files differ (sizes ${fa.length}/${fb.length})`);
      fs.rmSync(a);
      fs.rmSync(b);
    });
    expect(failures).toEqual([]);
    expect(all.length).toBeGreaterThanOrEqual(60 - 18);
  });

  it('sanlock\'s other spellings write the same bytes: -s without OFFSET, -a 0|1, -D', async () => {
    const failures: string[] = [];
    const variants: [string, (f: string) => string[]][] = [
      ['-s without OFFSET', (f) => ['-s', `LSI:0:${f}`]],
      ['-s with -a 0 -D', (f) => ['-s', `LSI:0:${f}:0`, '-a', '0', '-D']],
      ['-r with -a 1', (f) => ['-r', `LSI:RESI:${f}:0`, '-a', '1', '-n', '10']],
    ];
    await pool(variants, 3, async ([name, args], i) => {
      const a = sparseFile(path.join(dir, `g${i}a.img`), MiB);
      const b = sparseFile(path.join(dir, `g${i}b.img`), MiB);
      const ra = await sanlock(['direct', 'init', ...args(a)]);
      const rb = await lockagentFor(i)(['direct', 'init', ...args(b)]);
      if (ra.stdout !== 'init done 0\n' || rb.stdout !== ra.stdout || rb.code !== ra.code) failures.push(`${name}: sanlock ${JSON.stringify(ra.stdout)}, lockagent ${JSON.stringify(rb.stdout)} ${rb.stderr}`);
      if (!fs.readFileSync(a).equals(fs.readFileSync(b))) failures.push(`${name}: files differ`);
    });
    expect(failures).toEqual([]);
  });

  it('-z 1 (cleared resource) matches except the monotime write_timestamp and the checksum over it', async () => {
    const failures: string[] = [];
    await pool(GEOMETRIES, 3, async (geo, i) => {
      const a = sparseFile(path.join(dir, `z${i}a.img`), geo.align);
      const b = sparseFile(path.join(dir, `z${i}b.img`), geo.align);
      const ra = await sanlock(['direct', 'init', '-r', `LSZ:RESZ:${a}:0`, ...geo.args, '-z', '1']);
      const rb = await lockagentFor(i)(['direct', 'init', '-r', `LSZ:RESZ:${b}:0`, ...geo.args, '-z', '1']);
      expect(ra.stdout).toBe('init done 0\n');
      expect(rb.stdout).toBe(ra.stdout);
      const fa = fs.readFileSync(a);
      const fb = fs.readFileSync(b);
      expect(fa.readUInt32LE(0)).toBe(0x11282016);
      const tsA = Number(fa.readBigUInt64LE(192));
      const tsB = Number(fb.readBigUInt64LE(192));
      // both are CLOCK_MONOTONIC seconds of this host, taken a moment apart
      if (Math.abs(tsA - tsB) > 5 || tsB === 0) failures.push(`${geo.args.join(' ')}: write_timestamp ${tsA} vs ${tsB}`);
      for (const buf of [fa, fb]) {
        buf.fill(0, 168, 172);
        buf.fill(0, 192, 200);
      }
      if (!fa.equals(fb)) failures.push(`${geo.args.join(' ') || 'default'}: files differ beyond write_timestamp/checksum`);
      // and sanlock treats ours as cleared, exactly as its own
      const va = await sanlock(['direct', 'read_leader', '-r', `LSZ:RESZ:${a}:0`]);
      const vb = await sanlock(['direct', 'read_leader', '-r', `LSZ:RESZ:${b}:0`]);
      expect(va.stdout.split('\n')[0]).toBe('read_leader done -223');
      expect(vb.stdout.split('\n')[0]).toBe('read_leader done -223');
    });
    expect(failures).toEqual([]);
  });

  it('-z 0 means "not cleared" (sanlock 3.8.5 clears for any -z value: documented difference)', async () => {
    const a = sparseFile(path.join(dir, 'z0a.img'), MiB);
    const b = sparseFile(path.join(dir, 'z0b.img'), MiB);
    const c = sparseFile(path.join(dir, 'z0c.img'), MiB);
    expect((await sanlock(['direct', 'init', '-r', `LS:R:${a}:0`, '-z', '0'])).stdout).toBe('init done 0\n');
    expect((await sanlock(['direct', 'init', '-r', `LS:R:${b}:0`])).stdout).toBe('init done 0\n');
    expect((await lockagent(['direct', 'init', '-r', `LS:R:${c}:0`, '-z', '0'])).stdout).toBe('init done 0\n');
    expect(fs.readFileSync(a).readUInt32LE(0)).toBe(0x11282016); // sanlock's quirk
    expect(fs.readFileSync(c).equals(fs.readFileSync(b))).toBe(true);
  });

  it('sanlock read_leader and dump accept every lease lockagent writes', async () => {
    const failures: string[] = [];
    // every geometry and kind, plain and at an offset, plus the option variants of resources
    const all = cases().filter((c) => c.kind === 'r' || c.extra.length === 0);
    await pool(all, 4, async (c, i) => {
      const f = sparseFile(path.join(dir, `v${i}.img`), c.size);
      const w = await lockagentInProcess(['direct', 'init', `-${c.kind}`, spec(c, f), ...c.geo.args, ...c.extra]);
      if (w.code !== 0) {
        failures.push(`${c.name}: init failed: ${w.stderr}`);
        return;
      }
      const hostIds = c.kind === 's' ? [1, c.geo.maxHosts] : [0];
      for (const h of hostIds) {
        const target = c.kind === 's' ? `LSI:${h}:${f}:${c.offset}` : `LSI:RESI:${f}:${c.offset}`;
        const r = await sanlock(['direct', 'read_leader', `-${c.kind}`, target]);
        if (!r.stdout.startsWith('read_leader done 0\n')) failures.push(`${c.name}: sanlock read_leader ${target}: ${r.stdout.split('\n')[0]}`);
        const ours = await lockagentInProcess(['direct', 'read_leader', `-${c.kind}`, target]);
        if (ours.stdout !== r.stdout) failures.push(`${c.name}: read_leader output differs for ${target}`);
      }
      const d = await sanlock(['direct', 'dump', `${f}:${c.offset}`, '-f', '2']);
      const lines = d.stdout.split('\n').filter(Boolean);
      if (d.code !== 0 || !lines[0].includes('lver/req/mode')) failures.push(`${c.name}: sanlock dump rc ${d.code}: ${d.stdout}`);
      if (c.kind === 'r' && !(lines[1] ?? '').includes(' RESI 0000000000 0000 0000 0/0/0')) failures.push(`${c.name}: sanlock dump row: ${lines[1]}`);
      if (c.kind === 's' && lines.length !== 1) failures.push(`${c.name}: sanlock dump shows owners in a fresh lockspace: ${d.stdout}`);
      fs.rmSync(f);
    });
    expect(failures).toEqual([]);
  });

  it('sanlock can acquire a host_id in a lockagent lockspace and a resource lockagent initialised', async () => {
    const ls = sparseFile(path.join(dir, 'acq_ls.img'), MiB);
    const ls4k = sparseFile(path.join(dir, 'acq_ls4k.img'), 8 * MiB);
    const res = sparseFile(path.join(dir, 'acq_res.img'), MiB);
    const res4k = sparseFile(path.join(dir, 'acq_res4k.img'), 2 * MiB);
    // -o 1 on disk: sanlock's acquire_id waits 2 x the io_timeout it finds in the record
    expect((await lockagent(['direct', 'init', '-s', `LSA:0:${ls}:0`, '-o', '1'])).code).toBe(0);
    expect((await lockagent(['direct', 'init', '-s', `LSA:0:${ls4k}:0`, '-Z', '4096', '-A', '8M', '-o', '1'])).code).toBe(0);
    expect((await lockagent(['direct', 'init', '-r', `LSA:RA:${res}:0`, '-n', '10'])).code).toBe(0);
    expect((await lockagent(['direct', 'init', '-r', `LSA:RA:${res4k}:0`, '-Z', '4096', '-A', '2M'])).code).toBe(0);
    const [a1, a2, p1, p2] = await Promise.all([
      sanlock(['direct', 'acquire_id', '-s', `LSA:3:${ls}:0`, '-o', '1', '-e', 'hostA']),
      sanlock(['direct', 'acquire_id', '-s', `LSA:2000:${ls4k}:0`, '-o', '1', '-e', 'hostB']),
      sanlock(['direct', 'acquire', '-r', `LSA:RA:${res}:0`, '-i', '7', '-g', '1']),
      sanlock(['direct', 'acquire', '-r', `LSA:RA:${res4k}:0`, '-i', '2', '-g', '4']),
    ]);
    expect([a1.stdout, a2.stdout, p1.stdout, p2.stdout]).toEqual([
      'acquire_id done 0\n', 'acquire_id done 0\n', 'acquire done 0\n', 'acquire done 0\n',
    ]);
    // and lockagent reads back what sanlock wrote into them exactly as sanlock does
    for (const [kind, target] of [
      ['-s', `LSA:3:${ls}:0`], ['-s', `LSA:2000:${ls4k}:0`], ['-r', `LSA:RA:${res}:0`], ['-r', `LSA:RA:${res4k}:0`],
    ]) {
      const [s, l] = await Promise.all([
        sanlock(['direct', 'read_leader', kind, target]),
        lockagent(['direct', 'read_leader', kind, target]),
      ]);
      expect(l.stdout).toBe(s.stdout);
      expect(s.stdout.startsWith('read_leader done 0\n')).toBe(true);
    }
    for (const f of [ls, ls4k, res, res4k]) {
      const [s, l] = await Promise.all([
        sanlock(['direct', 'dump', f, '-f', '2']),
        lockagent(['direct', 'dump', f, '-f', '2']),
      ]);
      expect(l.stdout).toBe(s.stdout);
      expect(s.stdout.split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(2);
    }
  });
});
