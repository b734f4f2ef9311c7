/**
 * The sweep report: what `lockagent cleanup` prints (table or JSON) and what the daemon logs
 * (its exit status is the CLI's: cli/cleanup-command.ts).
 */
import { CleanupClass, SweepReport, SweepSummary, Verdict } from '../control/replies';
import { CLASS_ORDER } from './classify';

export function summarize(files: Verdict[], dryRun: boolean): { summary: SweepSummary; line: string } {
  const byClass: Partial<Record<CleanupClass, number>> = {};
  let deleted = 0;
  let failed = 0;
  for (const f of files) {
    if (f.action === 'deleted') {
      deleted++;
      continue;
    }
    byClass[f.class] = (byClass[f.class] ?? 0) + 1;
    if (f.class === 'error' || f.action === 'failed') failed++;
  }
  const parts: string[] = [];
  if (deleted || !dryRun) parts.push(`${deleted} deleted`);
  for (const c of CLASS_ORDER) {
    const n = byClass[c];
    if (!n) continue;
    parts.push(!dryRun ? `${n} ${c}` : c === 'free' ? `${n} free (would be deleted)` : c === 'leftover' ? `${n} leftover (would be removed)` : `${n} ${c}`);
  }
  const total = files.length;
  const line = `${total} file${total === 1 ? '' : 's'}${dryRun ? ' (dry run)' : ''}: ${parts.length ? parts.join(', ') : 'nothing'}`;
  return { summary: { total, deleted, byClass, failed }, line };
}

export function busyLine(r: SweepReport): string {
  const s = r.sweeper;
  if (!s) return 'another host is sweeping (the sweep lock is held)';
  if (s.thisHost) return `this host (host ${s.hostId}) is already sweeping`;
  return `another host (host ${s.hostId}${s.name ? `, ${s.name}` : ''}) is sweeping`;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

/** The CLASS column: what happened to the file, or what it is. */
export function shownClass(f: Verdict): string {
  if (f.action === 'deleted') return 'deleted';
  return f.class;
}

/** The DETAIL column: in a dry run, what a sweep would do with a deletable entry. */
function shownDetail(f: Verdict, dryRun: boolean): string {
  if (!dryRun) return f.detail;
  if (f.class === 'free') return `would delete: ${f.detail}`;
  if (f.class === 'leftover' && f.deletable) return `would remove: ${f.detail}`;
  return f.detail;
}

export function formatReport(r: SweepReport): string {
  if (r.status === 'busy') return `${busyLine(r)}; nothing done\n`;
  let out = `${r.dryRun ? 'dry run of ' : ''}cleanup of ${r.dir} (min age ${r.minAgeSeconds} s; liveness: ${r.liveness})\n`;
  if (r.files.length) {
    out += table([['FILE', 'CLASS', 'DETAIL'], ...r.files.map((f) => [f.name, shownClass(f), shownDetail(f, r.dryRun)])]);
  }
  for (const e of r.errors) out += `error: ${e}\n`;
  return `${out}${r.summaryLine}\n`;
}
