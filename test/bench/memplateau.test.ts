/**
 * Smoke test of scripts/bench/memplateau.js at tiny sizes (lockagent only): it runs and writes
 * its JSON with the RSS series. The numbers themselves are for docs/benchmarks.md, not CI.
 */
import { spawnSync } from 'child_process';
import fs from 'fs';
import os from 'os';
import path from 'path';

const root = path.resolve(__dirname, '../..');

it('memplateau --no-sanlock runs and reports RSS after each chunk of cycles', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-memplateau-'));
  const out = path.join(dir, 'out.json');
  const env: NodeJS.ProcessEnv = { ...process.env, BENCH_WORK: dir };
  // use this worktree's build when there is one (the bench builds a private copy otherwise)
  if (fs.existsSync(path.join(root, 'dist/cli/main.js'))) env.LOCKAGENT_DIST = path.join(root, 'dist');
  const addon = path.join(root, 'native/build/Release/lockagent_native.node');
  if (fs.existsSync(addon)) env.LOCKAGENT_NATIVE_ADDON = addon;
  const r = spawnSync(process.execPath, ['scripts/bench/memplateau.js', '--cycles', '40', '--leases', '4', '--idle', '0', '--no-sanlock', '--out', out],
    { cwd: root, env, encoding: 'utf8', timeout: 170000 });
  try {
    expect(r.status).toBe(0);
    const res = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(res.name).toBe('memplateau');
    expect(res.extra.lockagent.rss.map((x: { cycles: number }) => x.cycles)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40]);
    expect(res.metrics.map((m: { id: string }) => m.id)).toEqual(['mem.rss.end', 'mem.rss.growth', 'mem.rss.idle', 'mem.rss.peak']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 180000);
