import { cpus } from 'os';
import { join } from 'path';
import { Worker } from 'worker_threads';
import { describeRun, runSeed, SimResult } from './simulation';

/**
 * Running many seeds: in this thread, or spread over worker threads (one per core). Workers
 * load the TypeScript sources with a tiny transpile-on-require hook, so no build step and no
 * ts-node are needed.
 */

export interface SeedSummary {
  seed: number;
  violations: string[];
  /** describeRun() line. */
  line: string;
  acquisitions: number;
  hintedAcquisitions: number;
  sharedAcquisitions: number;
  faults: number;
  lateCompletions: number;
  crashes: number;
  pauses: number;
  watchdogResets: number;
  lockspaceFailures: number;
  events: number;
  virtualMs: number;
  wallMs: number;
}

export function summarize(r: SimResult, wallMs: number): SeedSummary {
  return {
    seed: r.seed,
    violations: r.violations.map((v) => v.text),
    line: describeRun(r),
    acquisitions: r.acquisitions,
    hintedAcquisitions: r.stats.hintedAcquisitions,
    sharedAcquisitions: r.sharedAcquisitions,
    faults: Object.values(r.io.faults).reduce((a, b) => a + b, 0),
    lateCompletions: r.io.lateCompletions,
    crashes: r.stats.crashes,
    pauses: r.stats.pauses,
    watchdogResets: r.stats.watchdogResets,
    lockspaceFailures: r.stats.lockspaceFailures,
    events: r.events,
    virtualMs: r.virtualMs,
    wallMs,
  };
}

/** Run one seed here and summarise it. Stack traces are off: errors are frequent and expected. */
export async function runOne(seed: number): Promise<SeedSummary> {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  const t0 = Date.now();
  try {
    return summarize(await runSeed(seed), Date.now() - t0);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('worker_threads');
const fs = require('fs');
const ts = require(workerData.typescript);
require.extensions['.ts'] = (module, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  });
  module._compile(out.outputText, filename);
};
const { runOne } = require(workerData.entry);
parentPort.on('message', async (seed) => {
  if (seed === null) return process.exit(0);
  try {
    parentPort.postMessage({ ok: await runOne(seed) });
  } catch (e) {
    parentPort.postMessage({ error: String(e && e.stack || e), seed });
  }
});
parentPort.postMessage({ ready: true });
`;

/** Run `seeds` over `threads` workers (default: one per core); results in seed order. */
export async function runSeeds(seeds: number[], threads = cpus().length, onResult?: (s: SeedSummary) => void): Promise<SeedSummary[]> {
  const out: SeedSummary[] = [];
  if (threads <= 1 || seeds.length < 4) {
    for (const s of seeds) {
      const r = await runOne(s);
      onResult?.(r);
      out.push(r);
    }
    return out;
  }
  const queue = [...seeds];
  const typescript = require.resolve('typescript');
  const entry = join(__dirname, 'batch.ts');
  await Promise.all(Array.from({ length: Math.min(threads, seeds.length) }, () => new Promise<void>((resolve, reject) => {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { typescript, entry } });
    const next = () => w.postMessage(queue.length ? queue.shift() : null);
    w.on('message', (m: { ready?: boolean; ok?: SeedSummary; error?: string; seed?: number }) => {
      if (m.error) {
        reject(new Error(`seed ${m.seed} threw: ${m.error}\nreplay: SIM_SEED=${m.seed} npx jest test/sim`));
        void w.terminate();
        return;
      }
      if (m.ok) {
        onResult?.(m.ok);
        out.push(m.ok);
      }
      next();
    });
    w.on('error', reject);
    w.on('exit', () => resolve());
  })));
  return out.sort((a, b) => a.seed - b.seed);
}
