#!/usr/bin/env node
'use strict';
/**
 * Merges benchmark result files into scripts/bench/results/latest.json (a benchmark not run
 * this time keeps its previous result, with its own date) and prints the comparison table.
 *
 *   node scripts/bench/lib/report.js [--out latest.json] [--quick] [--markdown] RESULT.json...
 *   node scripts/bench/lib/report.js --print [--markdown] [latest.json]     print only
 */
const fs = require('fs');
const path = require('path');

const ORDER = ['throughput', 'ios', 'failover', 'virsh-start', 'idle', 'cleanup', 'nfs', 'scale'];

function fmt(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  return x.toFixed(3).replace(/\.?0+$/, '') || '0';
}

function cell(s) {
  if (!s || s.median === undefined) return '—';
  if (s.n === 1 || s.min === s.max) return fmt(s.median);
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

function rows(latest) {
  const out = [];
  for (const name of ORDER.concat(Object.keys(latest.benchmarks).filter((n) => !ORDER.includes(n)))) {
    const b = latest.benchmarks[name];
    if (!b) continue;
    if (b.error || b.skipped) {
      out.push({ bench: name, label: b.error ? `FAILED: ${b.error}` : `skipped: ${b.skipped}`, unit: '', la: '', sl: '', ratio: '', target: '', ok: '' });
      continue;
    }
    for (const m of b.metrics || []) {
      out.push({
        bench: name, label: m.label, unit: m.unit, la: cell(m.lockagent), sl: cell(m.sanlock),
        ratio: m.ratio === undefined ? '—' : `${fmt(m.ratio)}×`, target: m.target || '',
        ok: m.pass === undefined ? '' : m.pass ? 'yes' : 'NO',
      });
    }
  }
  return out;
}

function loadLine(latest) {
  const parts = [];
  for (const name of ORDER.concat(Object.keys(latest.benchmarks).filter((n) => !ORDER.includes(n)))) {
    const b = latest.benchmarks[name];
    if (b?.loadavg) parts.push(`${name} ${b.loadavg.start[0]}→${b.loadavg.end[0]}${b.quick ? ' (quick)' : ''}`);
  }
  const m = latest.machine;
  const mach = m ? `${m.nproc} CPU ${m.cpu || ''}, ${m.memGiB} GiB, kernel ${m.kernel}, ${m.fs}; node ${m.node}, sanlock ${m.sanlock}, libvirt ${m.libvirt}, QEMU ${m.qemu}` : '';
  return `${mach}\nload average (1 min) at start→end: ${parts.join(', ')}`;
}

function print(latest, markdown) {
  const r = rows(latest);
  const head = { bench: 'bench', label: 'measure', unit: 'unit', la: 'lockagent median (min–max)', sl: 'sanlock median (min–max)', ratio: 'la/sl', target: 'target', ok: 'met' };
  const cols = Object.keys(head);
  if (markdown) {
    const line = (o) => `| ${cols.map((k) => String(o[k]).replace(/\|/g, '\\|')).join(' | ')} |`;
    return [line(head), `|${cols.map(() => '---').join('|')}|`, ...r.map(line), '', loadLine(latest)].join('\n');
  }
  const w = {};
  for (const k of cols) w[k] = Math.max(head[k].length, ...r.map((o) => String(o[k]).length));
  w.label = Math.min(w.label, 80);
  const line = (o) => cols.map((k) => {
    let s = String(o[k]);
    if (s.length > w[k]) s = `${s.slice(0, w[k] - 1)}…`;
    return s.padEnd(w[k]);
  }).join('  ').trimEnd();
  return [line(head), cols.map((k) => '-'.repeat(w[k])).join('  '), ...r.map(line), '', loadLine(latest)].join('\n');
}

function main() {
  const argv = process.argv.slice(2);
  const flag = (f) => {
    const i = argv.indexOf(f);
    if (i < 0) return false;
    argv.splice(i, 1);
    return true;
  };
  const opt = (f) => {
    const i = argv.indexOf(f);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    argv.splice(i, 2);
    return v;
  };
  if (flag('-h') || flag('--help')) {
    process.stdout.write(`${fs.readFileSync(__filename, 'utf8').split('\n').slice(3, 8).map((l) => l.replace(/^ \*( |$)/, '')).join('\n')}\n`);
    return;
  }
  const markdown = flag('--markdown');
  const quick = flag('--quick');
  const onlyPrint = flag('--print');
  const outFile = opt('--out') || path.join(__dirname, '..', 'results', 'latest.json');
  // An option it does not know would otherwise be taken for a result file and recorded as a
  // benchmark that failed.
  const unknown = argv.find((a) => a.startsWith('-'));
  if (unknown) {
    process.stderr.write(`report.js: unknown option ${unknown} (see --help)\n`);
    process.exitCode = 2;
    return;
  }
  if (onlyPrint) {
    const f = argv[0] || outFile;
    process.stdout.write(`${print(JSON.parse(fs.readFileSync(f, 'utf8')), markdown)}\n`);
    return;
  }
  let latest = { benchmarks: {} };
  try {
    latest = JSON.parse(fs.readFileSync(outFile, 'utf8'));
  } catch { /* first run */ }
  latest.benchmarks ??= {};
  for (const f of argv) {
    let r;
    try {
      r = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (e) {
      const name = path.basename(f, '.json');
      latest.benchmarks[name] = { name, error: `no result (${e.message.split('\n')[0]})`, finishedAt: new Date().toISOString(), quick };
      continue;
    }
    r.finishedAt ??= new Date(fs.statSync(f).mtimeMs).toISOString();
    r.quick = quick;
    latest.benchmarks[r.name] = r;
  }
  latest.updatedAt = new Date().toISOString();
  latest.command = `scripts/bench/run.sh${quick ? ' --quick' : ''}`;
  const ms = Object.values(latest.benchmarks).map((b) => b.machine).filter(Boolean);
  if (ms.length) latest.machine = ms[ms.length - 1];
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, `${JSON.stringify(latest, null, 1)}\n`);
  process.stdout.write(`${print(latest, markdown)}\n`);
}

if (require.main === module) main();
module.exports = { print, rows };
