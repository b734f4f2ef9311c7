'use strict';
/**
 * Shared pieces of the benchmarks (scripts/bench/*.js): the lockagent build, work directories,
 * lease-area initialisation, real sanlock and lockagent daemons as child processes, the
 * python3-sanlock driver, /proc sampling, strace parsing and statistics.
 *
 * Everything a benchmark starts is tracked here and stopped by pid on exit (or on SIGINT /
 * SIGTERM); work directories are removed unless --keep is given.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { resolveBuild, resolveNative, ROOT } = require('./build');

const PY = process.env.BENCH_PYTHON || '/usr/bin/python3';
const SANLOCK = process.env.BENCH_SANLOCK || '/usr/sbin/sanlock';
const DRIVER = path.join(__dirname, 'sanlock_driver.py');
const AGENT_DRIVER = path.join(__dirname, 'agent_driver.py');
const MiB = 1024 * 1024;

// ---- command line --------------------------------------------------------------------------

function parseArgs(argv = process.argv.slice(2)) {
  const o = { quick: false, keep: false, out: undefined, reps: undefined, hosts: undefined, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--keep') o.keep = true;
    else if (a === '--out') o.out = argv[++i];
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--hosts') o.hosts = Number(argv[++i]);
    else o.rest.push(a);
  }
  return o;
}

const t0 = Date.now();
function log(msg) {
  process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${msg}\n`);
}

// ---- build -----------------------------------------------------------------------------------

let distDir;
function dist() {
  if (!distDir) {
    distDir = resolveBuild((m) => log(m));
    // this process, the daemons it starts and the scripts it runs all load this addon build
    process.env.LOCKAGENT_NATIVE_ADDON = resolveNative((m) => log(m));
  }
  return distDir;
}
const req = (rel) => require(path.join(dist(), rel));
const cliMain = () => path.join(dist(), 'cli', 'main.js');

// ---- statistics ------------------------------------------------------------------------------

function stats(xs) {
  const a = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((p, q) => p - q);
  if (!a.length) return { n: 0 };
  const mid = a.length >> 1;
  const median = a.length % 2 ? a[mid] : (a[mid - 1] + a[mid]) / 2;
  const pct = (p) => a[Math.min(a.length - 1, Math.floor(p * a.length))];
  return { n: a.length, median, min: a[0], max: a[a.length - 1], mean: a.reduce((s, x) => s + x, 0) / a.length, p90: pct(0.9) };
}

const round = (x, d = 2) => (typeof x === 'number' ? Math.round(x * 10 ** d) / 10 ** d : x);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hr = () => Number(process.hrtime.bigint()) / 1e6; // ms, monotonic
/** CLOCK_MONOTONIC in whole seconds: the timestamps sanlock and lockagent write into leases. */
const monotime = () => Math.floor(Number(process.hrtime.bigint() / 1000000000n));

async function waitFor(what, fn, timeoutMs = 30000, stepMs = 100) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false && v !== null) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await sleep(stepMs);
  }
}

// ---- processes and cleanup -----------------------------------------------------------------

const tracked = new Set(); // { pid, name, stop?: () => Promise<void> }
const workDirs = [];
let keepWork = false;
const cleanups = [];

function track(entry) {
  tracked.add(entry);
  return entry;
}
function untrack(entry) {
  tracked.delete(entry);
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

async function waitExit(pid, ms) {
  const until = Date.now() + ms;
  while (pidAlive(pid) && Date.now() < until) await sleep(50);
  // zombies of our own children count as gone
  if (pidAlive(pid)) {
    try {
      const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (st.slice(st.lastIndexOf(')') + 2).startsWith('Z')) return true;
    } catch {
      return true;
    }
    return false;
  }
  return true;
}

let cleaning;
async function cleanupAll() {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch((e) => log(`cleanup: ${e.message}`));
    for (const t of [...tracked].reverse()) {
      try {
        if (t.stop) await t.stop();
        else if (pidAlive(t.pid)) {
          process.kill(t.pid, 'SIGTERM');
          if (!(await waitExit(t.pid, 3000))) process.kill(t.pid, 'SIGKILL');
        }
      } catch (e) {
        log(`cleanup of ${t.name} (pid ${t.pid}): ${e.message}`);
      }
      tracked.delete(t);
    }
    if (keepWork) for (const d of workDirs) log(`kept ${d}`);
    for (const d of keepWork ? [] : workDirs) {
      try {
        fs.rmSync(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
      } catch (e) {
        // a socket re-created while a daemon stops (agent/guard.sock): the results stand
        log(`cleanup: could not remove ${d}: ${e.message}`);
      }
    }
  })();
  return cleaning;
}

/** Run fn once at the end (before tracked processes are stopped), e.g. restore a config. */
function atCleanup(fn) {
  cleanups.push(fn);
}

function workDir(tag, keep = false) {
  if (keep) keepWork = true;
  const base = process.env.BENCH_WORK || os.tmpdir();
  if (base.startsWith('/dev/shm')) throw new Error('BENCH_WORK must be disk-backed (tmpfs ignores O_DIRECT)');
  const d = fs.mkdtempSync(path.join(base, `la-bench-${tag}-`));
  workDirs.push(d);
  return d;
}

/** Runs main(), writes its result (JSON) to --out, always cleans up. */
function runMain(name, main) {
  // Here, not at load: a module that requires this one (a test using lib/latencyfs) keeps its
  // own signal handling.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      log(`${sig}: stopping`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
  const args = parseArgs();
  if (args.keep) keepWork = true;
  (async () => {
    let code = 0;
    const loadStart = os.loadavg().map((x) => round(x, 2));
    const startedAt = new Date().toISOString();
    try {
      const result = await main(args);
      result.name ??= name;
      result.startedAt = startedAt;
      result.finishedAt = new Date().toISOString();
      // other work on this machine skews every number: say how busy it was
      result.loadavg = { start: loadStart, end: os.loadavg().map((x) => round(x, 2)) };
      const text = `${JSON.stringify(result, null, 2)}\n`;
      if (args.out) fs.writeFileSync(args.out, text);
      else process.stdout.write(text);
    } catch (e) {
      log(`${name} failed: ${e.stack || e.message}`);
      code = 1;
    }
    await cleanupAll();
    process.exit(code);
  })();
}

function run(cmd, argv, opts = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => { out += c; });
    p.stderr.on('data', (c) => { err += c; });
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

// ---- lease areas -----------------------------------------------------------------------------

function writeAll(fd, buf, pos) {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off, pos + off);
}

/** A lockspace area as `sanlock direct init -o IO -s NAME:0:FILE:0` writes it (1 MiB, 512 B sectors). */
function initLockspace(file, name, ioTimeout) {
  const od = req('ondisk');
  const { area, commitSector } = od.buildLockspaceArea({ spaceName: name, geometry: od.DEFAULT_GEOMETRY, ioTimeout });
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    writeAll(fd, area, 0);
    writeAll(fd, commitSector, 0);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const resName = (i) => `r${String(i).padStart(5, '0')}`;

/**
 * `count` resource leases named r00000.. in one file, lease i at offset i MiB, each the full
 * 1 MiB area `sanlock direct init -r` writes (dense, as libvirt's lease files are: a sparse
 * file would make the 1 MiB area reads of an acquire cheaper than on real storage).
 */
function initResources(file, lockspace, count, numHosts) {
  const od = req('ondisk');
  const g = od.DEFAULT_GEOMETRY;
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    for (let i = 0; i < count; i++) {
      writeAll(fd, od.buildResourceArea({ spaceName: lockspace, resourceName: resName(i), geometry: g, numHosts }), i * g.alignSize);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** One lease file per lease, as libvirt's automatic disk leases: `fileOf(i)` holds resName(i) at offset 0. */
function initResourceFiles(fileOf, lockspace, count, numHosts) {
  const od = req('ondisk');
  for (let i = 0; i < count; i++) {
    const fd = fs.openSync(fileOf(i), 'w', 0o600);
    try {
      writeAll(fd, od.buildResourceArea({ spaceName: lockspace, resourceName: resName(i), geometry: od.DEFAULT_GEOMETRY, numHosts }), 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The delta lease of host_id in a lockspace file, as on disk now (timestamp = monotime s). */
function readDelta(file, hostId) {
  const od = req('ondisk');
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(512);
    fs.readSync(fd, b, 0, 512, (hostId - 1) * 512);
    return od.decodeLeader(b, 0);
  } finally {
    fs.closeSync(fd);
  }
}

// ---- /proc -----------------------------------------------------------------------------------

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds (user+system, all threads) and memory of a process. */
function procSample(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const user = Number(f[11]) / CLK_TCK;
  const sys = Number(f[12]) / CLK_TCK;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status) || [])[1] || 0);
  let io = {};
  try {
    io = Object.fromEntries(fs.readFileSync(`/proc/${pid}/io`, 'utf8').trim().split('\n').map((l) => l.split(': ')).map(([k, v]) => [k, Number(v)]));
  } catch { /* not readable */ }
  return { t: hr(), cpu, user, sys, rssKiB: kib('VmRSS'), hwmKiB: kib('VmHWM'), threads: kib('Threads'), io };
}

/**
 * Each thread's time on a CPU (ns, /proc/PID/task/TID/schedstat), in seconds. /proc/PID/stat's
 * utime+stime come in clock ticks (10 ms): an idle daemon uses a few ticks a minute, too coarse
 * to compare two of them.
 */
function threadRunTimes(pid) {
  const out = new Map();
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(tid, Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e9);
    } catch { /* the thread exited meanwhile */ }
  }
  return out;
}

/** CPU seconds between two threadRunTimes samples (a thread that exited in between is missed). */
function runTimeBetween(a, b) {
  let sum = 0;
  for (const [tid, t] of b) sum += t - (a.get(tid) ?? 0);
  return sum;
}

// ---- sanlock ---------------------------------------------------------------------------------

/**
 * A real sanlock daemon with its own run directory (SANLOCK_RUN_DIR), so several can run as
 * separate "hosts" and none touches the machine's /run/sanlock. Started as in production
 * (daemonised, no debug log to stderr, -L -1 -S -1: no log file, no syslog), without a
 * watchdog (-w 0) and unprivileged (this machine has no CAP_SYS_RESOURCE).
 */
class SanlockDaemon {
  constructor(dir, name) {
    this.dir = dir;
    this.name = name;
    this.runDir = path.join(dir, 'run');
    this.pid = undefined;
  }

  env(extra = {}) {
    return { ...process.env, SANLOCK_RUN_DIR: this.runDir, ...extra };
  }

  async start() {
    fs.mkdirSync(this.runDir, { recursive: true });
    const r = await run(SANLOCK, ['daemon', '-w', '0', '-L', '-1', '-S', '-1', '-e', this.name], { env: this.env({ SANLOCK_PRIVILEGED: '0' }) });
    if (r.code !== 0) throw new Error(`sanlock daemon failed (${r.code}): ${r.err}`);
    this.pid = await waitFor('sanlock pid file', () => {
      const p = Number(fs.readFileSync(path.join(this.runDir, 'sanlock.pid'), 'utf8').trim());
      return p > 0 && pidAlive(p) ? p : undefined;
    }, 10000, 20);
    this.entry = track({ pid: this.pid, name: `sanlock ${this.name}`, stop: () => this.stop() });
    await waitFor('sanlock client status', async () => (await run(SANLOCK, ['client', 'status'], { env: this.env() })).code === 0, 10000, 50);
    return this;
  }

  client(argv) {
    return run(SANLOCK, ['client', ...argv], { env: this.env() });
  }

  async stop() {
    if (!this.pid) return;
    const pid = this.pid;
    this.pid = undefined;
    if (this.entry) untrack(this.entry);
    if (!pidAlive(pid)) return;
    await this.client(['shutdown', '-f', '1']).catch(() => undefined);
    if (!(await waitExit(pid, 8000))) {
      process.kill(pid, 'SIGKILL');
      await waitExit(pid, 3000);
    }
  }

  kill9() {
    if (this.pid && pidAlive(this.pid)) process.kill(this.pid, 'SIGKILL');
    if (this.entry) untrack(this.entry);
    this.pid = undefined;
  }

  /** python3-sanlock driver (lib/sanlock_driver.py), run to completion; resolves its JSON. */
  async py(argv, opts = {}) {
    const r = await run(PY, [DRIVER, ...argv], { env: this.env(), ...opts });
    const line = r.out.trim().split('\n').pop();
    if (r.code !== 0) throw new Error(`sanlock_driver ${argv[0]} failed (${r.code}): ${r.err.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(line);
  }

  /** Long-running driver (hold): resolves with the child once it printed its first JSON line. */
  pySpawn(argv) {
    const p = spawn(PY, [DRIVER, ...argv], { env: this.env(), stdio: ['pipe', 'pipe', 'pipe'] });
    const entry = track({ pid: p.pid, name: `sanlock_driver ${argv[0]}` });
    let out = '';
    let err = '';
    p.stderr.on('data', (c) => { err += c; });
    const first = new Promise((resolve, reject) => {
      p.stdout.on('data', (c) => {
        out += c;
        const nl = out.indexOf('\n');
        if (nl >= 0) {
          try {
            resolve(JSON.parse(out.slice(0, nl)));
          } catch (e) {
            reject(e);
          }
        }
      });
      p.on('exit', (code) => reject(new Error(`sanlock_driver ${argv[0]} exited (${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`)));
    });
    const exited = new Promise((resolve) => p.on('exit', (code) => { untrack(entry); resolve(code); }));
    return { proc: p, first, exited, stop: async () => { p.stdin.end(); if (!(await waitExit(p.pid, 10000))) p.kill('SIGKILL'); await exited; } };
  }
}

// ---- lockagent -------------------------------------------------------------------------------

/**
 * A real `lockagent daemon` process with its own config, socket and state, in `dir`. Logs at
 * lockagent's default level (info) to a file, as in production.
 */
class AgentDaemon {
  constructor(dir, o) {
    this.dir = dir;
    this.o = { hostId: 1, ioTimeout: 1, lockspaces: [], logLevel: 'info', extra: '', ...o };
    this.socket = path.join(dir, 'sock');
    this.conf = path.join(dir, 'lockagent.conf');
    this.logFile = path.join(dir, 'agent.log');
    this.pid = undefined;
  }

  writeConfig() {
    fs.mkdirSync(this.dir, { recursive: true });
    const o = this.o;
    fs.writeFileSync(this.conf, [
      `host_id = ${o.hostId}`,
      `io_timeout = ${o.ioTimeout}`,
      `socket_path = "${this.socket}"`,
      `state_path = "${path.join(this.dir, 'state.db')}"`,
      `log_file = "${this.logFile}"`,
      'log_stderr = 0',
      `log_level = "${o.logLevel}"`,
      `host_name = "${o.hostName ?? `bench-${path.basename(this.dir)}`}"`,
      `libvirt_uri = "${o.libvirtUri ?? ''}"`,
      'cleanup_schedule = "off"',
      `lockspaces = [ ${o.lockspaces.map((s) => `"${s}"`).join(', ')} ]`,
      o.extra,
      '',
    ].join('\n'));
  }

  /** nodeArgs: node flags before the CLI; by default the daemon's own (src/daemon/nodeflags.ts). */
  async start({ waitJoin = true, nodeArgs = require(path.join(dist(), 'daemon', 'nodeflags.js')).DAEMON_NODE_FLAGS } = {}) {
    this.writeConfig();
    const out = fs.openSync(path.join(this.dir, 'daemon.out'), 'a');
    const p = spawn(process.execPath, [...nodeArgs, cliMain(), 'daemon', '-c', this.conf], {
      stdio: ['ignore', out, out], detached: true, env: { ...process.env, ...require(path.join(dist(), 'daemon', 'nodeflags.js')).DAEMON_ENV, LOCKAGENT_SOCKET: '' },
    });
    fs.closeSync(out);
    this.proc = p;
    this.pid = p.pid;
    this.exited = new Promise((resolve) => p.once('exit', (code, sig) => resolve(code ?? sig)));
    this.entry = track({ pid: p.pid, name: `lockagent ${this.dir}`, stop: () => this.stop() });
    await waitFor(`lockagent ${this.dir} socket`, () => this.call({ op: 'status' }, 2000), 30000, 50);
    if (waitJoin && this.o.lockspaces.length) await this.waitJoined();
    return this;
  }

  call(request, timeoutMs = 600000) {
    return req('control/client').callAgent(this.socket, request, timeoutMs);
  }

  /** A persistent connection (AgentConnection): many requests, one socket, as a sanlock client's registered fd. */
  connect() {
    return req('control/client').AgentConnection.connect(this.socket);
  }

  /**
   * `procs` clients, each an owner on its own connection, together doing acquire+release of
   * leases start..start+count-1 (`leaseOf(i)`), one lease at a time: the acquire and release
   * times (ms) and the seconds it all took.
   */
  async cycles(procs, count, leaseOf, { tag = 'bench', start = 0 } = {}) {
    const acq = [];
    const rel = [];
    const t = hr();
    await Promise.all(Array.from({ length: procs }, async (_, p) => {
      const owner = { uuid: `${tag}-client-${p}`, name: `${tag}-client-${p}` };
      const conn = await this.connect();
      for (let i = start + p; i < start + count; i += procs) {
        const lease = leaseOf(i);
        const a = hr();
        await conn.call({ op: 'acquire', owner, leases: [lease] });
        const b = hr();
        await conn.call({ op: 'release', owner, leases: [lease] });
        acq.push(b - a);
        rel.push(hr() - b);
      }
      conn.close();
    }));
    return { seconds: (hr() - t) / 1000, acq, rel };
  }

  /**
   * The same cycles through lib/agent_driver.py: `procs` forked Python processes, each one
   * blocking connection and one owner, timed by the harness that times sanlock's clients
   * (lib/cycles.py). Lease i is resource resName(i) at i MiB of `file`. With `hold` (seconds),
   * each group of 8 leases is held that long before its releases (cycles.py's hold mode).
   */
  async pyCycles(procs, count, lockspace, file, { start = 0, hold = 0 } = {}) {
    const r = await run(PY, [AGENT_DRIVER, 'cycle', this.socket, lockspace, file, String(start), String(count), String(procs), ...(hold ? [`hold=${hold}`] : [])]);
    if (r.code !== 0) throw new Error(`agent_driver cycle failed (${r.code}): ${r.err.trim().split('\n').slice(-3).join(' | ')}`);
    const o = JSON.parse(r.out.trim().split('\n').pop());
    return { seconds: o.seconds, acq: o.acquire_ms, rel: o.release_ms };
  }

  async waitJoined(timeoutMs = 60000) {
    return waitFor('lockagent lockspaces joined', async () => {
      const s = await this.call({ op: 'status' }, 5000);
      return s.lockspaces.length && s.lockspaces.every((l) => l.state === 'joined') ? s : undefined;
    }, timeoutMs, 50);
  }

  async stop(signal = 'SIGTERM') {
    if (!this.pid) return;
    const pid = this.pid;
    this.pid = undefined;
    if (this.entry) untrack(this.entry);
    if (!pidAlive(pid)) return;
    process.kill(pid, signal);
    if (!(await waitExit(pid, 10000))) process.kill(pid, 'SIGKILL');
    await this.exited;
  }

  kill9() {
    if (this.pid && pidAlive(this.pid)) process.kill(this.pid, 'SIGKILL');
    if (this.entry) untrack(this.entry);
    this.pid = undefined;
  }
}

// ---- strace ----------------------------------------------------------------------------------

/**
 * strace -f attached to a running daemon, writing only the given syscalls with wall-clock
 * timestamps (-ttt: the same clock as Python's time.time() and Date.now()).
 */
async function startStrace(pid, outFile, syscalls = 'openat,close,io_submit,pread64,pwrite64,preadv,pwritev,preadv2,pwritev2') {
  const p = spawn('strace', ['-f', '-ttt', '-s', '1', '-e', `trace=${syscalls}`, '-o', outFile, '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const entry = track({ pid: p.pid, name: 'strace' });
  let err = '';
  p.stderr.on('data', (c) => { err += c; });
  const exited = new Promise((resolve) => p.on('exit', (code) => { untrack(entry); resolve(code); }));
  await waitFor('strace to attach', () => (/attached/.test(err) ? true : p.exitCode !== null ? Promise.reject(new Error(err)) : undefined), 10000, 20);
  await sleep(100);
  // files the daemon had open before the trace began (its lockspace, for one)
  const fds = new Map();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      fds.set(Number(fd), fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch { /* closed meanwhile */ }
  }
  return {
    fds,
    async stop() {
      if (p.exitCode === null) p.kill('SIGINT');
      await exited;
    },
  };
}

/**
 * Storage I/O events from an strace -f -ttt log: { ts (ms since epoch), tid, op: 'read'|'write',
 * bytes, offset, path } for io_submit (one per iocb), pread64/pwrite64 and p{read,write}v{,2};
 * paths come from the openat that returned the fd, or from `initialFds` (startStrace's `fds`: what
 * was open when the trace began).
 */
function parseStraceIo(file, initialFds) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const pending = new Map();
  const fdPath = new Map(initialFds || []);
  const events = [];
  for (let raw of lines) {
    let m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(raw);
    if (!m) continue;
    const tid = Number(m[1]);
    const ts = Number(m[2]) * 1000;
    let body = m[3];
    if (body.endsWith('<unfinished ...>')) {
      pending.set(tid, { ts, body: body.slice(0, -'<unfinished ...>'.length) });
      continue;
    }
    const r = /^<\.\.\. (\w+) resumed>(.*)$/.exec(body);
    let startTs = ts;
    if (r) {
      const p = pending.get(tid);
      pending.delete(tid);
      if (!p) continue;
      body = p.body + r[2];
      startTs = p.ts;
    }
    raw = body;
    if ((m = /^openat\([^,]+, "([^"]*)", [^)]*\) = (\d+)/.exec(raw))) {
      fdPath.set(Number(m[2]), m[1]);
    } else if ((m = /^close\((\d+)\)/.exec(raw))) {
      fdPath.delete(Number(m[1]));
    } else if (raw.startsWith('io_submit(')) {
      const re = /aio_lio_opcode=IOCB_CMD_(PREAD|PWRITE)\b.*?aio_fildes=(\d+).*?aio_nbytes=(\d+), aio_offset=(\d+)/g;
      let x;
      while ((x = re.exec(raw))) {
        events.push({ ts: startTs, tid, op: x[1] === 'PREAD' ? 'read' : 'write', bytes: Number(x[3]), offset: Number(x[4]), path: fdPath.get(Number(x[2])) });
      }
    } else if ((m = /^p(read|write)64\((\d+), .*, (\d+), (\d+)\) = (-?\d+)/.exec(raw))) {
      if (Number(m[5]) >= 0) events.push({ ts: startTs, tid, op: m[1], bytes: Number(m[5]), offset: Number(m[4]), path: fdPath.get(Number(m[2])) });
    } else if ((m = /^p(read|write)v2?\((\d+), .*?\], \d+, (\d+)(?:, \d+)?\) = (-?\d+)/.exec(raw))) {
      if (Number(m[4]) >= 0) events.push({ ts: startTs, tid, op: m[1], bytes: Number(m[4]), offset: Number(m[3]), path: fdPath.get(Number(m[2])) });
    }
  }
  return events;
}

function inRepo(p) {
  return p && p.startsWith(ROOT + path.sep) ? path.relative(ROOT, p) : p;
}

function machine() {
  const v = (cmd, argv) => {
    try {
      return execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n')[0];
    } catch {
      return undefined;
    }
  };
  const dpkg = (p) => v('dpkg-query', ['-W', '-f=${Version}', p]);
  const cpu = (/model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8')) || [])[1];
  return {
    nproc: os.cpus().length, cpu, memGiB: round(os.totalmem() / 2 ** 30, 1), kernel: os.release(),
    fs: (v('findmnt', ['-no', 'FSTYPE,SOURCE', '-T', process.env.BENCH_WORK || os.tmpdir()]) || '').replace(/\s+/g, ' '),
    node: process.version, sanlock: dpkg('sanlock'), python3Sanlock: dpkg('python3-sanlock'),
    libvirt: dpkg('libvirt-daemon'), qemu: dpkg('qemu-system-x86'),
    loadavg: os.loadavg().map((x) => round(x, 2)),
    lockagentGit: v('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    // Relative to the checkout, so results name no build machine's paths.
    lockagentBuild: inRepo(distDir),
    nativeAddon: inRepo(process.env.LOCKAGENT_NATIVE_ADDON),
    lockagentDirty: (v('git', ['-C', ROOT, 'status', '--porcelain', 'src']) || '') !== '',
  };
}

module.exports = {
  ROOT, PY, SANLOCK, MiB, parseArgs, log, dist, req, cliMain, stats, round, sleep, hr, monotime, waitFor,
  track, untrack, pidAlive, waitExit, cleanupAll, atCleanup, workDir, runMain, run,
  initLockspace, initResources, initResourceFiles, resName, readDelta, procSample, threadRunTimes, runTimeBetween, SanlockDaemon, AgentDaemon,
  startStrace, parseStraceIo, machine,
};

/**
 * One comparable number: the runs of each tool, their median/min/max, and the ratio
 * lockagent/sanlock ("better" says which direction is better). `target` is the issue's goal
 * in words; `pass` whether the medians meet it (undefined when there is no target).
 */
function metric(id, label, unit, laRuns, slRuns, o = {}) {
  const la = { runs: laRuns.map((x) => round(x, 4)), ...mapRound(stats(laRuns)) };
  const sl = slRuns ? { runs: slRuns.map((x) => round(x, 4)), ...mapRound(stats(slRuns)) } : undefined;
  const ratio = sl && la.median !== undefined && sl.median ? round(la.median / sl.median, 3) : undefined;
  let pass;
  if (o.pass) pass = o.pass(la, sl, ratio);
  return { id, label, unit, better: o.better ?? 'lower', lockagent: la, sanlock: sl, ratio, target: o.target, pass, note: o.note };
}

function mapRound(s) {
  const r = {};
  for (const [k, v] of Object.entries(s)) r[k] = round(v, 4);
  return r;
}

module.exports.metric = metric;
