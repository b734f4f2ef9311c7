#!/usr/bin/env node
// Writes the man page lockagent(8) to stdout, in groff (man macros), from the CLI's own help
// (`lockagent --help` and every subcommand's, walked recursively) and the sections of docs/cli.md.
//   node scripts/manpage.js [CLI_MAIN_JS] [CLI_MD] [VERSION]
// defaults: dist/cli/main.js, docs/cli.md, package.json's version.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const main = process.argv[2] || path.join(root, 'dist', 'cli', 'main.js');
const cliMd = process.argv[3] || path.join(root, 'docs', 'cli.md');
const version = process.argv[4] || require(path.join(root, 'package.json')).version;

/** groff-safe text: backslashes, leading dots and quotes, hyphens that are options. */
function esc(s) {
  return s.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/, '\\&$1')
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`);
}

function help(args) {
  return execFileSync(process.execPath, [main, ...args, '--help'], { encoding: 'utf8', env: { ...process.env, COLUMNS: '78' } });
}

/** The subcommand names listed under "Commands:" of a help text (not `help`). */
function subcommands(text) {
  const m = text.split('\nCommands:\n')[1];
  if (!m) return [];
  const out = [];
  for (const line of m.split('\n')) {
    const c = /^ {2}([A-Za-z_][\w-]*)/.exec(line);
    if (c && c[1] !== 'help') out.push(c[1]);
  }
  return out;
}

const lines = [];
const put = (...l) => lines.push(...l);
const verbatim = (text) => {
  put('.nf', '.RS 4');
  for (const l of text.replace(/\n+$/, '').split('\n')) put(esc(l));
  put('.RE', '.fi');
};

put(`.TH LOCKAGENT 8 "" "lockagent ${esc(version)}" "System Administration"`);
put('.SH NAME', 'lockagent \\- host lease agent for libvirt/KVM: sanlock 3.8.5\\-compatible delta and Disk Paxos leases');
put('.SH SYNOPSIS', '.B lockagent', '.I command', '[\\fIoptions\\fR]');
put('.SH DESCRIPTION');
put('lockagent runs beside libvirtd on every KVM host that shares a datastore. Before libvirt starts',
  'a domain it takes a lease on each of its disks (through the libvirt hook that',
  '.B lockagent install\\-hook',
  'installs), and keeps, releases and re\\-takes them as the domain stops, pauses and migrates. Its',
  'leases are sanlock 3.8.5\'s on disk, so lockagent hosts and libvirt+sanlock hosts exclude each other.',
  'The daemon runs under systemd (lockagent.service, lockagent\\-guard.service) with',
  '.IR /etc/lockagent.conf .');
put('.SH COMMANDS');
const seen = new Set();
function walk(args) {
  const key = args.join(' ');
  if (seen.has(key)) return;
  seen.add(key);
  const text = help(args);
  put(`.SS lockagent${args.length ? ' ' + esc(key) : ''}`);
  verbatim(text);
  for (const c of subcommands(text)) walk([...args, c]);
}
walk([]);

// docs/cli.md: headings become sections, code blocks verbatim, tables and paragraphs as text.
put('.SH "DIRECT COMMANDS (docs/cli.md)"');
const md = fs.readFileSync(cliMd, 'utf8').split('\n');
let code = null;
let para = false;
const endPara = () => { para = false; };
for (const l of md) {
  if (code !== null) {
    if (/^```/.test(l)) { verbatim(code.join('\n')); code = null; } else code.push(l);
    continue;
  }
  if (/^```/.test(l)) { code = []; endPara(); continue; }
  const h = /^(#+)\s+(.*)$/.exec(l);
  if (h) {
    const title = h[2].replace(/`/g, '');
    if (h[1].length === 1) continue; // the document title: the section heading above
    put(`.SS "${esc(title).replace(/"/g, '\\(dq')}"`);
    endPara();
    continue;
  }
  if (!l.trim()) { if (para) put('.PP'); endPara(); continue; }
  if (/^\|[-| :]+\|$/.test(l)) continue; // table rule
  const text = l.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`([^`]*)`/g, '$1').replace(/\*\*([^*]*)\*\*/g, '$1');
  if (/^\|/.test(l)) {
    put('.br', esc(text.replace(/^\|\s*|\s*\|$/g, '').split(/\s*\|\s*/).join(' \u2014 ')));
  } else {
    put(esc(text));
  }
  para = true;
}

put('.SH FILES');
for (const [f, d] of [
  ['/etc/lockagent.conf', 'configuration; every key is documented in it (lockagent config check)'],
  ['/usr/lib/lockagent/', 'the program: built JavaScript, native addons, the hook client and the fencing guard'],
  ['/var/lib/lockagent/state.db', 'durable state (owners, held leases); rebuilt from the lease directory when lost'],
  ['/run/lockagent/lockagent.sock', 'control socket (socket_path); guard.sock beside it'],
  ['/etc/libvirt/hooks/qemu.d/50\\-lockagent', 'the start gate (lockagent install\\-hook)'],
  ['/var/log/lockagent.log', 'log_file; rotated by /etc/logrotate.d/lockagent'],
]) put('.TP', `.I ${f}`, esc(d).replace(/\\\\-/g, '\\-'));
put('.SH "EXIT STATUS"', '0 success; 1 the operation failed (one line on stderr says why); 2 usage error.');
put('.SH "SEE ALSO"', '.BR sanlock (8),', '.BR libvirtd (8),', '.BR systemctl (1);',
  '/usr/share/doc/lockagent/operator\\-guide.md, cli.md, fencing.md, libvirt\\-integration.md');
process.stdout.write(lines.join('\n') + '\n');
