#!/usr/bin/env node
'use strict';
/**
 * Benchmark 6: cleanup. Runs scripts/bench/cleanup-dryrun.sh (written and owned by the cleanup
 * sweeper's engineer; called, not edited here) against the same lockagent build as the other
 * benchmarks, and turns its report lines into comparable numbers.
 *
 *   node scripts/bench/cleanup.js [--quick] [--out FILE]
 */
const fs = require('fs');
const path = require('path');
const c = require('./lib/common');

c.runMain('cleanup', async (args) => {
  const script = path.join(__dirname, 'cleanup-dryrun.sh');
  if (!fs.existsSync(script)) {
    return { skipped: `${path.relative(c.ROOT, script)} is not there (yet)`, metrics: [], machine: c.machine() };
  }
  const argv = args.quick ? ['-n', '2000', '-s', '50', '-r', '3'] : [];
  c.log(`cleanup: bash ${path.relative(c.ROOT, script)} ${argv.join(' ')}`);
  const r = await c.run('bash', [script, ...argv], { env: { ...process.env, LOCKAGENT_CLI: c.cliMain() } });
  process.stderr.write(r.out);
  if (r.code !== 0) throw new Error(`cleanup-dryrun.sh failed (${r.code}): ${r.err.trim().split('\n').slice(-5).join(' | ')}`);

  const lines = {};
  for (const l of r.out.split('\n')) {
    const m = /^(.*?):\s+median\s+(\d+) ms\s+\(min (\d+), max (\d+); ([\d.]+) ms\/file\)/.exec(l);
    if (m) lines[m[1].trim()] = { median: Number(m[2]), min: Number(m[3]), max: Number(m[4]), perFile: Number(m[5]) };
  }
  const find = (re) => Object.entries(lines).find(([k]) => re.test(k));
  const metrics = [];
  const laSweep = find(/^lockagent cleanup \(deleting\), (\d+) files/);
  const slSweep = find(/^virt-sanlock-cleanup \(deleting\), (\d+) files/);
  if (laSweep) {
    const n = /(\d+) files/.exec(laSweep[0])[1];
    metrics.push(c.metric('cleanup.sweep', `deleting sweep of ${n} free lease files: lockagent cleanup vs virt-sanlock-cleanup (median of the script's runs)`, 'ms/file',
      [laSweep[1].perFile], slSweep ? [slSweep[1].perFile] : undefined));
  }
  const dry = find(/^lockagent cleanup --dry-run --standalone, (\d+) files/);
  if (dry) metrics.push(c.metric('cleanup.dryrun', `${dry[0]} (no sanlock equivalent: virt-sanlock-cleanup has no dry run)`, 'ms', [dry[1].median], undefined));
  if (dry && slSweep) {
    // What virt-sanlock-cleanup needs to learn the same thing: it has no dry run, so one acquire
    // (and delete) per file; its per-file time on the subset, times the directory size.
    const n = Number(/(\d+) files/.exec(dry[0])[1]);
    metrics.push(c.metric('cleanup.dryrun.vs', `classify ${n} lease files: lockagent --dry-run --standalone vs virt-sanlock-cleanup (its per-file time on the subset × ${n})`, 's',
      [dry[1].median / 1000], [(slSweep[1].perFile * n) / 1000], { target: '≥ 20× faster', pass: (a, s2, ratio) => ratio <= 1 / 20 }));
  }
  const dryAgent = find(/^lockagent cleanup --dry-run \(through the agent\)/);
  if (dryAgent) metrics.push(c.metric('cleanup.dryrun.agent', dryAgent[0], 'ms', [dryAgent[1].median], undefined));
  return {
    params: { args: argv },
    machine: c.machine(),
    metrics,
    extra: { lines, output: r.out.trim().split('\n') },
    notes: ['numbers from scripts/bench/cleanup-dryrun.sh (median of its runs; min/max in extra.lines)'],
  };
});
