import { runSeeds, SeedSummary } from './batch';
import { describeRun, runSeed } from './simulation';

/**
 * Deterministic simulation of lockagent hosts sharing one lockspace and a few resource leases,
 * with crashes, pauses, I/O errors, slow and late I/O, torn writes. The oracle fails the run
 * if two hosts use one resource at once (except both shared).
 *
 *   npx jest test/sim                       CI batch: 2,000 seeds over all cores
 *   SIM_SEEDS=100000 npx jest test/sim      long run (SIM_START=n to begin elsewhere)
 *   SIM_SEED=1234 npx jest test/sim         replay one seed with its full event log
 */

const replay = process.env.SIM_SEED;
const count = Number(process.env.SIM_SEEDS ?? 2000);
const start = Number(process.env.SIM_START ?? 1);
const threads = process.env.SIM_THREADS ? Number(process.env.SIM_THREADS) : undefined;

function total(rs: SeedSummary[], k: keyof SeedSummary): number {
  return rs.reduce((a, r) => a + (r[k] as number), 0);
}

if (replay) {
  it(`replays seed ${replay}`, async () => {
    const r = await runSeed(Number(replay), { fullLog: true });
    process.stdout.write(`${describeRun(r)}\n${r.log.join('\n')}\n`);
    for (const v of r.violations) process.stdout.write(`VIOLATION ${v.text}\n`);
    expect(r.violations.map((v) => v.text)).toEqual([]);
  }, 600_000);
} else {
  it(`keeps mutual exclusion over ${count} random seeds with faults`, async () => {
    const t0 = Date.now();
    const rs = await runSeeds(Array.from({ length: count }, (_, i) => start + i), threads);
    const wall = Date.now() - t0;
    const bad = rs.filter((r) => r.violations.length);
    const report = [
      `simulation: ${rs.length} seeds (${start}..${start + count - 1}) in ${(wall / 1000).toFixed(1)} s wall, ` +
        `${Math.round(total(rs, 'virtualMs') / 3600_000)} h virtual, ${total(rs, 'events')} events`,
      `  ${total(rs, 'acquisitions')} acquisitions (${total(rs, 'sharedAcquisitions')} shared, ${total(rs, 'hintedAcquisitions')} from a release hint), ` +
        `${total(rs, 'faults')} I/O faults injected, ${total(rs, 'lateCompletions')} late completions, ` +
        `${total(rs, 'crashes')} crashes, ${total(rs, 'pauses')} pauses, ${total(rs, 'watchdogResets')} watchdog resets, ` +
        `${total(rs, 'lockspaceFailures')} lockspace failures`,
      ...bad.flatMap((r) => [`FAILED ${r.line}`, ...r.violations.map((v) => `  ${v}`), `  replay: SIM_SEED=${r.seed} npx jest test/sim`]),
    ];
    process.stdout.write(`${report.join('\n')}\n`);
    expect(bad.map((r) => r.seed)).toEqual([]);
    expect(total(rs, 'acquisitions')).toBeGreaterThan(count * 5);
    expect(total(rs, 'hintedAcquisitions')).toBeGreaterThan(count);
  }, 3_600_000);
}
