/**
 * `lockagent direct dump` and `read_leader` against the real `sanlock direct dump/read_leader`
 * (3.8.5) on files sanlock wrote: the sample files (copied to a temp dir), a patched shared mode
 * block, corrupted records, and leases acquired live with `sanlock direct acquire_id/acquire`.
 * stdout must be byte-identical and the exit status the same.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  cliEntry, copyFixture, FIXTURES, lockagent, lockagentInProcess, makeTempDir, patchFile, pool, removeTempDir,
  RunResult, sanlock, sparseFile,
} from '../helpers/cli';
import { describeInterop } from '../helpers/interop';

const MiB = 1048576;
const R48 = 'R'.repeat(48);

type Runner = (args: string[]) => Promise<RunResult>;

interface Compared { args: string[]; s: RunResult; l: RunResult }

/** Run the same `direct ...` command with both tools. */
async function both(args: string[], via: Runner = lockagentInProcess): Promise<Compared> {
  const [s, l] = await Promise.all([sanlock(['direct', ...args]), via(['direct', ...args])]);
  return { args, s, l };
}

function mismatch(c: Compared): string | undefined {
  if (c.s.stdout === c.l.stdout && c.s.code === c.l.code) return undefined;
  return `direct ${c.args.join(' ')}\n--- sanlock (rc ${c.s.code})\n${c.s.stdout}--- lockagent (rc ${c.l.code})\n${c.l.stdout}${c.l.stderr}`;
}

/** Compare many commands; returns the mismatches (so one test reports all of them). */
async function compareAll(cmds: string[][], limit = 4): Promise<string[]> {
  const res = await pool(cmds, limit, (args, i) => both(args, i % 9 === 0 ? lockagent : lockagentInProcess));
  return res.map(mismatch).filter((m): m is string => !!m);
}

/** A small deterministic PRNG (mulberry32) for reproducible corruptions. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describeInterop('lockagent direct dump/read_leader vs sanlock on sanlock-written files', () => {
  let dir: string;
  const p = (name: string) => path.join(dir, name);

  beforeAll(() => {
    cliEntry();
    dir = makeTempDir('lockagent-read');
    for (const f of fs.readdirSync(FIXTURES).filter((n) => n.endsWith('.img'))) copyFixture(f, dir);
  });
  afterAll(() => removeTempDir(dir));

  it('dump prints the same as sanlock for every sample file, -f 0/1/2', async () => {
    const files = fs.readdirSync(FIXTURES).filter((n) => n.endsWith('.img')).sort();
    expect(files.length).toBe(29);
    const cmds = files.flatMap((f) => ['0', '1', '2'].map((m) => ['dump', p(f), '-f', m]));
    expect(await compareAll(cmds)).toEqual([]);
  });

  it('dump with offsets, sizes, -Z/-A and escaped paths prints the same as sanlock', async () => {
    const odd = path.join(dir, 'dir:with space');
    fs.mkdirSync(odd);
    fs.copyFileSync(p('ls_bitmap.img'), path.join(odd, 'l s.img'));
    const esc = `${dir}/dir\\:with\\ space/l\\ s.img`;
    const cmds = [
      ['dump', `${p('ls_o5.img')}:1M`], ['dump', `${p('ls_o5.img')}:1048576`, '-f', '1'],
      ['dump', `${p('ls_o5_acq.img')}:1M`, '-f', '1'], ['dump', `${p('ls_o5_acq.img')}:0:3M`],
      ['dump', `${p('ls_o5_acq.img')}:0:1M`], ['dump', `${p('ls_o5_acq.img')}:1M:1M`, '-f', '2'],
      ['dump', `${p('rx.img')}:1M`, '-f', '1'], ['dump', `${p('rx.img')}:2M:1M`, '-f', '2'],
      ['dump', `${p('rx.img')}:0:1`, '-f', '1'], ['dump', `${p('rx.img')}:0:2M`, '-f', '1'],
      ['dump', `${p('rx.img')}:1M:512`, '-f', '1'], ['dump', `${p('rx.img')}:4M`],
      ['dump', `${p('ls_acq.img')}:512`], ['dump', `${p('ls_acq.img')}:100`], ['dump', `${p('ls_acq.img')}:0:100M`],
      ['dump', p('res_clear.img'), '-Z', '512', '-A', '1M'], ['dump', p('ls_acq.img'), '-Z', '4096', '-A', '8M'],
      ['dump', p('ls4k_8M.img'), '-Z', '512', '-A', '1M'], ['dump', p('res4k_2M.img'), '-Z', '4096', '-A', '2M', '-f', '2'],
      ['dump', esc, '-f', '1'],
    ];
    expect(await compareAll(cmds)).toEqual([]);
  });

  it('read_leader prints the same as sanlock (result code and every field) for the sample files', async () => {
    const s = (f: string, ls: string, h: number, off: number | string = 0) => ['read_leader', '-s', `${ls}:${h}:${p(f)}:${off}`];
    const r = (f: string, ls: string, res: string, off: number | string = 0) => ['read_leader', '-r', `${ls}:${res}:${p(f)}:${off}`];
    const cmds: string[][] = [];
    for (const f of ['ls.img', 'ls_acq.img', 'ls_acq2.img', 'ls_takeover.img', 'ls_busy.img', 'ls_released.img', 'ls_bitmap.img', 'ls_longname.img']) {
      cmds.push(s(f, 'LS', 1), s(f, 'LS', 2), s(f, 'LS', 2000), s(f, 'XX', 1));
    }
    cmds.push(s('ls.img', 'LS', 2001), s('ls.img', 'LS', 2048), s('ls.img', 'LS', 2049), s('res.img', 'LS', 1), s('rx.img', 'LS', 1));
    for (const a of ['1M', '2M', '4M', '8M']) {
      cmds.push(s(`ls4k_${a}.img`, 'LS4K', 1), s(`ls4k_${a}.img`, 'LS4K', 250), s(`ls4k_${a}.img`, 'LS4K', 251));
      cmds.push(r(`res4k_${a}.img`, 'LS4K', 'RES4K'), r(`res4k_${a}.img`, 'LS4K', 'RES4'));
    }
    cmds.push(s('ls_o5.img', 'LSO5', 1, '1M'), s('ls_o5.img', 'LSO5', 7, 1048576), s('ls_o5.img', 'LSO5', 1, 0));
    cmds.push(s('ls_o5_acq.img', 'LSO5', 7, '1M'), s('ls_o5_acq.img', 'LSO5', 8, '1M'));
    for (const f of ['res.img', 'res_acq.img', 'res_acq_g2.img', 'res_acq_h2.img', 'res_rel.img', 'res_clear.img', 'err_cs.img', 'err_db.img']) {
      cmds.push(r(f, 'LS', 'RES1'), r(f, 'LS', 'WRONG'), r(f, 'XX', 'RES1'));
    }
    cmds.push(r('res_n10.img', 'LS', 'RESN10'), r('res_name48.img', 'LS', R48), r('res_name48.img', 'LS', 'R'.repeat(47)));
    cmds.push(r('ls.img', 'LS', 'RES1'), r('rx.img', 'LS', 'rindex_lease', '2M'), r('rx.img', 'LS', 'myres', 3 * MiB));
    cmds.push(['read_leader', '-s', `LS:1:${p('ls_acq.img')}:0`, '-Z', '512', '-A', '1M']);
    cmds.push(['read_leader', '-r', `LS:RES1:${p('res.img')}:0`, '-Z', '512', '-A', '1M']);
    expect(cmds.length).toBeGreaterThan(80);
    expect(await compareAll(cmds)).toEqual([]);
  });

  it('missing, empty and short files: same result codes (and same text wherever sanlock prints initialised memory)', async () => {
    const zero = sparseFile(p('zero.img'), MiB);
    const small = sparseFile(p('small.img'), 2048);
    const missing = p('missing.img');
    // identical output
    expect(await compareAll([
      ['read_leader', '-s', `LS:1:${zero}:0`], ['read_leader', '-r', `LS:RES1:${zero}:0`], ['dump', zero],
      ['read_leader', '-s', `LS:1:${small}:0`], ['dump', small], ['dump', missing], ['dump', dir],
    ])).toEqual([]);
    // sanlock prints uninitialised stack memory after these result lines; lockagent prints only the line
    for (const args of [
      ['read_leader', '-s', `LS:1:${missing}:0`], ['read_leader', '-r', `LS:RES1:${missing}:0`], ['read_leader', '-r', `LS:RES1:${small}:0`],
    ]) {
      const c = await both(args, lockagent);
      expect(c.l.stdout).toBe(c.s.stdout.split('\n')[0] + '\n');
      expect(c.l.code).toBe(c.s.code);
      expect(c.l.code).toBe(1);
    }
  });

  it('sanlock\'s other spellings print the same: -s without OFFSET, -Z without -A, -a 0|1 and -D', async () => {
    // a 512-byte-sector resource in a file shorter than 4096 bytes: only -Z 512 reads it
    const short = p('res_short.img');
    fs.writeFileSync(short, fs.readFileSync(p('res.img')).subarray(0, 2048));
    expect(await compareAll([
      ['read_leader', '-s', `LS:1:${p('ls_acq.img')}`], ['read_leader', '-s', `LSO5:7:${p('ls_o5_acq.img')}`],
      ['read_leader', '-r', `LS:RES1:${short}:0`, '-Z', '512'], ['read_leader', '-r', `LS:RES1:${p('res.img')}:0`, '-Z', '4096'],
      ['read_leader', '-s', `LS:1:${p('ls_acq.img')}:0`, '-Z', '4096'], ['read_leader', '-s', `LS4K:1:${p('ls4k_8M.img')}:0`, '-Z', '512'],
      ['dump', p('ls_acq.img'), '-Z', '4096'], ['dump', p('res4k_2M.img'), '-Z', '512', '-f', '2'],
      ['read_leader', '-r', `LS:RES1:${p('res_acq.img')}:0`, '-a', '0', '-D'], ['read_leader', '-s', `LS:1:${p('ls_acq.img')}:0`, '-a', '1'],
      ['dump', p('rx.img'), '-f', '1', '-D', '-a', '0'],
    ])).toEqual([]);
  });

  it('a shared mode block (flags=1 at 128, generation=5 at 136 of host 3\'s dblock sector) prints the same SH line', async () => {
    const f = copyFixture('res_acq_g2.img', dir, 'shared.img');
    const sector = (2 + 3 - 1) * 512;
    patchFile(f, sector + 128, [1, 0, 0, 0]);
    patchFile(f, sector + 136, [5, 0, 0, 0, 0, 0, 0, 0]);
    expect(await compareAll([['dump', f], ['dump', f, '-f', '1'], ['dump', f, '-f', '2'], ['read_leader', '-r', `LS:RES1:${f}:0`]])).toEqual([]);
    const l = await lockagent(['direct', 'dump', f, '-f', '2']);
    expect(l.stdout.split('\n')[3]).toBe(`${' '.repeat(106)}0003 0005 SH`);
  });

  it('corrupted leaders: the same result code and fields as sanlock, for random single-byte damage', async () => {
    const rnd = prng(0x5a11c0c);
    const cmds: string[][] = [];
    const hugeNumHosts: string[] = [];
    for (let i = 0; i < 40; i++) {
      const lockspaceCase = i % 2 === 0;
      const src = lockspaceCase ? 'ls_acq.img' : 'res_acq.img';
      const f = copyFixture(src, dir, `bad${i}.img`);
      // mostly the checked fields (magic, version, names, checksum), sometimes anywhere in the record
      const hot = [0, 1, 4, 6, 7, 12, 16, 24, 56, 57, 104, 105, 152, 168, 171, 174, 176];
      const off = rnd() < 0.5 ? hot[Math.floor(rnd() * hot.length)] : Math.floor(rnd() * 200);
      const orig = fs.readFileSync(f)[off];
      patchFile(f, off, [(orig ^ (1 + Math.floor(rnd() * 255))) & 0xff]);
      cmds.push(lockspaceCase ? ['read_leader', '-s', `LS:1:${f}:0`] : ['read_leader', '-r', `LS:RES1:${f}:0`]);
      // a damaged num_hosts makes sanlock's dump read (and print) past its buffer, or crash:
      // lockagent stops at the end of the area there (documented), so only compare other damage
      if (lockspaceCase || off < 16 || off >= 24) cmds.push(['dump', f, '-f', '2']);
      else hugeNumHosts.push(f);
    }
    const results = await pool(cmds, 4, (a) => both(a));
    expect(results.map(mismatch).filter(Boolean)).toEqual([]);
    for (const f of hugeNumHosts) {
      const l = await lockagentInProcess(['direct', 'dump', f, '-f', '2']);
      expect(l.code).toBe(0);
      expect(l.stdout.split('\n')[1]).toMatch(/^00000000 +LS +RES1 /);
    }
    // the damage really produced a spread of verdicts
    const codes = new Set(results.filter((r) => r.args[0] === 'read_leader').map((r) => r.s.stdout.split('\n')[0]));
    expect(codes.size).toBeGreaterThanOrEqual(4);
  });

  it('dump --json verdicts agree with sanlock: -229 (err_cs), -214 (err_db, sanlock acquire), -223 (cleared)', async () => {
    const cs = JSON.parse((await lockagent(['direct', 'dump', p('err_cs.img'), '--json'])).stdout) as { areas: { verdict: { rv: number; name: string } }[] };
    expect(cs.areas[0].verdict).toMatchObject({ rv: -229, name: 'SANLK_LEADER_CHECKSUM' });
    expect((await sanlock(['direct', 'read_leader', '-r', `LS:RES1:${p('err_cs.img')}:0`])).stdout.split('\n')[0]).toBe('read_leader done -229');

    const db = JSON.parse((await lockagent(['direct', 'dump', p('err_db.img'), '-f', '2', '--json'])).stdout) as { areas: { verdict: { rv: number } }[] };
    expect(db.areas[0].verdict.rv).toBe(-214);
    const copy = copyFixture('err_db.img', dir, 'err_db_acq.img');
    expect((await sanlock(['direct', 'acquire', '-r', `LS:RES1:${copy}:0`, '-i', '1', '-g', '1'])).stdout).toBe('acquire done -214\n');

    const rl = JSON.parse((await lockagent(['direct', 'read_leader', '-r', `LS:RES1:${p('res_clear.img')}:0`, '--json'])).stdout) as { rv: number; result: { name: string } };
    expect(rl.rv).toBe(-223);
    expect(rl.result.name).toBe('SANLK_LEADER_MAGIC');
  });

  it('leases acquired live by sanlock (acquire_id -o 1, acquire -i/-g) read back the same', async () => {
    const ls = sparseFile(p('live_ls.img'), MiB);
    const ls4k = sparseFile(p('live_ls4k.img'), 16 * MiB);
    const res = sparseFile(p('live_res.img'), MiB);
    const res4k = sparseFile(p('live_res4k.img'), 2 * MiB);
    const mixed = sparseFile(p('live_mixed.img'), 3 * MiB);
    const init = async (args: string[]) => expect((await sanlock(['direct', 'init', ...args])).stdout).toBe('init done 0\n');
    await init(['-s', `LS:0:${ls}:0`, '-o', '1']);
    await init(['-s', `LS4K:0:${ls4k}:8M`, '-Z', '4096', '-A', '8M', '-o', '1']);
    await init(['-r', `LS:RES1:${res}:0`]);
    await init(['-r', `LS4K:RES4K:${res4k}:0`, '-Z', '4096', '-A', '2M', '-n', '10']);
    await init(['-s', `MIX:0:${mixed}:0`, '-o', '1']);
    await init(['-r', `MIX:VM1:${mixed}:1M`]);
    await init(['-r', `MIX:VM2:${mixed}:2M`, '-n', '5']);

    const long = 'a-host-name-that-is-much-longer-than-the-47-bytes-sanlock-stores';
    const acquired = await Promise.all([
      sanlock(['direct', 'acquire_id', '-s', `LS:1:${ls}:0`, '-o', '1', '-e', 'hostA']),
      sanlock(['direct', 'acquire_id', '-s', `LS:2:${ls}:0`, '-o', '1', '-e', 'hostB']),
      sanlock(['direct', 'acquire_id', '-s', `LS4K:1999:${ls4k}:8M`, '-o', '1', '-e', long]),
      sanlock(['direct', 'acquire_id', '-s', `MIX:3:${mixed}:0`, '-o', '1', '-e', 'hostC']),
      sanlock(['direct', 'acquire', '-r', `LS:RES1:${res}:0`, '-i', '1', '-g', '1']),
      sanlock(['direct', 'acquire', '-r', `LS4K:RES4K:${res4k}:0`, '-i', '10', '-g', '3']),
      sanlock(['direct', 'acquire', '-r', `MIX:VM1:${mixed}:1M`, '-i', '3', '-g', '1']),
      sanlock(['direct', 'acquire', '-r', `MIX:VM2:${mixed}:2M`, '-i', '5', '-g', '2']),
    ]);
    expect(acquired.map((r) => r.stdout.trim())).toEqual([
      ...Array(4).fill('acquire_id done 0'), ...Array(4).fill('acquire done 0'),
    ]);
    // a second ballot by a newer generation of host 1, then a renewal and a release
    expect((await sanlock(['direct', 'acquire', '-r', `LS:RES1:${res}:0`, '-i', '1', '-g', '2'])).stdout).toBe('acquire done 0\n');
    expect((await sanlock(['direct', 'renew_id', '-s', `LS:1:${ls}:0`])).stdout).toBe('rewew_id done 0\n');
    expect((await sanlock(['direct', 'release_id', '-s', `LS:2:${ls}:0`])).stdout).toBe('release_id done 0\n');

    const cmds: string[][] = [];
    for (const f of [ls, ls4k, res, res4k, mixed]) for (const m of ['0', '1', '2']) cmds.push(['dump', f, '-f', m]);
    cmds.push(['dump', `${ls4k}:8M`, '-f', '1'], ['dump', `${mixed}:1M`, '-f', '2'], ['dump', `${mixed}:0:2M`, '-f', '2']);
    for (const h of [1, 2, 3]) cmds.push(['read_leader', '-s', `LS:${h}:${ls}:0`]);
    cmds.push(['read_leader', '-s', `LS4K:1999:${ls4k}:8M`], ['read_leader', '-s', `MIX:3:${mixed}:0`]);
    cmds.push(['read_leader', '-r', `LS:RES1:${res}:0`], ['read_leader', '-r', `LS4K:RES4K:${res4k}:0`]);
    cmds.push(['read_leader', '-r', `MIX:VM1:${mixed}:1M`], ['read_leader', '-r', `MIX:VM2:${mixed}:2M`]);
    expect(await compareAll(cmds)).toEqual([]);

    // what the rows say, spelled out once
    const d = await lockagent(['direct', 'dump', res, '-f', '2']);
    expect(d.stdout).toMatch(/^00000000 +LS +RES1 \d{10} 0001 0002 2\/0\/0\n/m);
    expect(d.stdout).toMatch(/^dblock\[0000\] mbal 2001 bal 2001 inp 1 inp2 2 inp3 \d+ lver 2 sum [0-9a-f]+$/m);
    const l = await lockagent(['direct', 'dump', `${ls4k}:8M`, '-f', '1']);
    expect(l.stdout).toContain(`${(8 * MiB + 1998 * 4096).toString().padStart(8, '0')}                                 LS4K ${long.slice(0, 47).padStart(48)} `);
  });
});
