/**
 * scripts/bench/lib/report.js, the merger of benchmark results into latest.json: a result file
 * is merged under its benchmark's name, and an option it does not know is refused instead of
 * being recorded as a benchmark that failed (a `--help` once left a "FAILED: --help" row).
 */
import { spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import path from 'path';
import { removeTempDir, ROOT } from '../helpers/cli';

const REPORT = path.join(ROOT, 'scripts', 'bench', 'lib', 'report.js');
let work: string;
beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), 'la-bench-report-'));
});
afterAll(() => removeTempDir(work));

const report = (...args: string[]) => spawnSync(process.execPath, [REPORT, ...args], { encoding: 'utf8' });

it('merges a result under its name and prints the table', () => {
  const out = path.join(work, 'latest.json');
  const res = path.join(work, 'r.json');
  writeFileSync(res, JSON.stringify({ name: 'ios', metrics: [{ id: 'ios.acquire', label: 'I/Os per acquire', unit: 'I/Os', lockagent: { median: 3, n: 1 }, sanlock: { median: 6, n: 1 }, ratio: 0.5 }] }));
  const r = report('--out', out, res);
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('I/Os per acquire');
  expect(Object.keys(JSON.parse(readFileSync(out, 'utf8')).benchmarks)).toEqual(['ios']);
});

it('refuses an unknown option and writes nothing; --help prints the usage', () => {
  const out = path.join(work, 'none.json');
  const r = report('--out', out, '--bogus');
  expect({ status: r.status, err: r.stderr.trim() }).toEqual({ status: 2, err: 'report.js: unknown option --bogus (see --help)' });
  expect(existsSync(out)).toBe(false);
  const h = report('--help');
  expect(h.status).toBe(0);
  expect(h.stdout).toContain('report.js --print');
  expect(existsSync(path.join(work, '--help'))).toBe(false);
});
