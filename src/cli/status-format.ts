/** Readable tables for `lockagent status` and `host_status`. */
import { FencingStatus, HostStatusReply, StatusReply } from '../control/replies';

export type { HostStatusReply, StatusReply };

function table(rows: string[][]): string {
  if (!rows.length) return '';
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

export function formatStatus(r: StatusReply): string {
  let out = `host ${r.hostName}\n`;
  const st = r.stateStore;
  if (st) {
    if (st.ok) out += `state ${st.path}: ok\n`;
    else if (st.fault) out += `state ${st.path}: FAILING (${st.fault.code}${st.queued ? `, ${st.queued} write(s) waiting` : ''}): ${st.fault.remedy}\n`;
    else out += `state ${st.path}: in memory only (${st.backing})\n`;
    if (st.movedAside) out += `  a corrupt state database was moved to ${st.movedAside}\n`;
  }
  out += '\n';
  out += table([
    ['LOCKSPACE', 'HOST_ID', 'STATE', 'GEN', 'RENEWED', 'IO_TIMEOUT', 'PATH'],
    ...r.lockspaces.map((l) => [l.name, String(l.hostId), l.state, l.generation !== undefined ? String(l.generation) : '-',
      l.renewedAgo !== undefined ? `${l.renewedAgo} s ago` : '-', `${l.ioTimeout} s`, `${l.path}:${l.offset}`]),
  ]);
  for (const l of r.lockspaces) {
    if (l.lastError) out += `  ${l.name}: ${l.lastError}\n`;
    for (const m of l.ioTimeoutMismatches) out += `  ${l.name}: host ${m.hostId} (${m.ownerName}) uses io_timeout ${m.ioTimeout} s, this host ${l.ioTimeout} s\n`;
  }
  const f = r.fencing;
  if (f?.wdmd) {
    out += `fencing: wdmd ${f.wdmd}${f.wdmdExpiresIn !== undefined ? ` (test expires in ${f.wdmdExpiresIn} s, ${f.wdmdLockspace})` : ''}, ` +
      `systemd watchdog ${f.systemdWatchdog ?? 'off'}\n`;
  }
  out += '\n';
  const rows = r.owners.flatMap((o) => (o.leases.length ? o.leases : [undefined]).map((l) => [
    o.name, o.uuid, o.pid ? String(o.pid) : '-', l ? `${l.lockspace}:${l.resource}` : '(no leases)', l ? (l.mode === 'shared' ? 'SH' : 'EX') : '', l ? String(l.lver) : '', l ? l.path : '',
  ]));
  out += rows.length ? table([['OWNER', 'UUID', 'PID', 'LEASE', 'MODE', 'LVER', 'PATH'], ...rows]) : 'no owners hold leases\n';
  const doms = r.domains ?? [];
  for (const d of doms) out += `domain ${d.name} (${d.uuid}): ${d.state}\n`;
  if (r.fencing) out += '\n' + formatFencing(r.fencing);
  return out;
}

function formatFencing(f: FencingStatus): string {
  const g = f.guard;
  let out = `fencing: ${f.layer}, mode ${f.mode}${f.protected ? '' : ' — UNPROTECTED: owners are not stopped if this agent stops renewing'}\n`;
  const gap = g.lastGapMs !== undefined ? `, last gap ${(g.lastGapMs / 1000).toFixed(1)} s` : '';
  const down = g.downForMs !== undefined ? `, down for ${(g.downForMs / 1000).toFixed(1)} s` : '';
  out += `  guard: ${g.state}${g.pid ? ` pid ${g.pid}` : ''}${g.restarts ? `, ${g.restarts} restart(s)` : ''}${gap}${down}\n`;
  out += `  wdmd: ${f.wdmd ?? 'absent'}\n  systemd watchdog: ${f.systemdWatchdog ?? 'off'}\n`;
  if (g.lockspaces?.length) {
    out += table([['LOCKSPACE', 'GUARD_DEADLINE', 'PIDS', 'SMALLEST_MARGIN'], ...g.lockspaces.map((l) => [
      l.lockspace, l.refused ? 'NOT FENCED' : `in ${l.secondsLeft.toFixed(1)} s`,
      [...l.pids, ...(l.pending ?? []).map((u) => `qemu of ${u} (pid file)`)].join(','), l.minMarginMs !== undefined ? `${(l.minMarginMs / 1000).toFixed(1)} s` : '-',
    ])]).replace(/^/gm, '  ');
    for (const l of g.lockspaces) {
      if (l.refused) out += `  ${l.lockspace}: the guard refused its ${l.pids.length} owner pids (${l.refused}); acquires for owners with a pid there are refused\n`;
    }
  }
  for (const k of g.kills ?? []) out += `  ${k.reportedAt}: guard ${k.what === 'killed' ? 'SIGKILLed' : k.what === 'would-kill' ? 'would have SIGKILLed' : 'found gone'} ${k.pid ? `pid ${k.pid}` : 'no QEMU process yet'} (${k.lockspace})\n`;
  return out;
}

export function formatHostStatus(r: HostStatusReply): string {
  return r.map((ls) => `lockspace ${ls.lockspace} (this host: ${ls.hostId}, ${ls.state})\n` + table([
    ['HOST_ID', 'STATE', 'GEN', 'TIMESTAMP', 'AGE', 'IO_TIMEOUT', 'NAME'],
    ...ls.hosts.map((h) => [String(h.hostId), h.state, String(h.ownerGeneration), String(h.timestamp), `${h.ageSeconds} s`, `${h.ioTimeout} s`, h.ownerName]),
  ])).join('\n');
}
