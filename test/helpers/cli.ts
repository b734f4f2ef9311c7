/**
 * Run `lockagent` and the real `sanlock` as subprocesses, on files in a temp dir under /tmp
 * (never /dev/shm: tmpfs ignores O_DIRECT).
 *
 * The CLI under test is, in order of preference:
 *  - $LOCKAGENT_CLI (e.g. dist/cli/main.js after `npm run build:ts`), or
 *  - a private build of src/cli/main.ts and the modules it imports, made once under
 *    node_modules/.cache/lockagent-cli-test (rebuilt when src/ changes). It is private so that a
 *    concurrent `npm run build:ts` rewriting dist/ cannot pull files from under a running test,
 *    and so that unrelated modules that do not compile yet do not fail these tests.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { decodeLeader, LeaderRecord } from '../../src/ondisk';

export const ROOT = path.resolve(__dirname, '..', '..');
export const SANLOCK = '/usr/sbin/sanlock';
export const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'sanlock-3.8.5');

const CACHE = path.join(ROOT, 'node_modules', '.cache', 'lockagent-cli-test');
const LOCK = path.join(CACHE, 'lock');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (ent.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return Math.floor(newest);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function withLock<T>(fn: () => T): T {
  fs.mkdirSync(CACHE, { recursive: true });
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - fs.statSync(LOCK).mtimeMs > 300_000) fs.rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // lock vanished meanwhile
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${LOCK}`);
      sleepSync(200);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}

let cliPath: string | undefined;

/**
 * Path of the CLI's main.js, building the private copy if there is none for the current sources.
 * Each build goes to its own directory (named after the newest source mtime) and is never
 * rewritten, so a rebuild triggered by one jest worker cannot break CLI processes another worker
 * is running; builds older than an hour are removed.
 */
export function cliEntry(): string {
  if (cliPath) return cliPath;
  if (process.env.LOCKAGENT_CLI) {
    cliPath = path.resolve(ROOT, process.env.LOCKAGENT_CLI);
    return cliPath;
  }
  const stamp = newestMtime(path.join(ROOT, 'src'));
  const out = path.join(CACHE, `build-${stamp}`);
  const entry = path.join(out, 'cli', 'main.js');
  withLock(() => {
    if (fs.existsSync(entry)) return;
    const tmp = `${out}.tmp-${process.pid}`;
    const cfg = path.join(CACHE, `tsconfig-${process.pid}.json`);
    fs.writeFileSync(cfg, JSON.stringify({
      extends: path.join(ROOT, 'tsconfig.build.json'),
      compilerOptions: { rootDir: path.join(ROOT, 'src'), outDir: tmp, sourceMap: false, incremental: false },
      files: [path.join(ROOT, 'src', 'cli', 'main.ts')],
      include: [],
    }, null, 2));
    try {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', cfg], {
        cwd: ROOT, stdio: 'pipe', timeout: 170_000,
      });
    } catch (e) {
      const err = e as { stdout?: Buffer; stderr?: Buffer; message: string };
      fs.rmSync(tmp, { recursive: true, force: true });
      throw new Error(`building the CLI for tests failed:\n${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}${err.message}`);
    } finally {
      fs.rmSync(cfg, { force: true });
    }
    fs.renameSync(tmp, out);
    for (const old of fs.readdirSync(CACHE)) {
      const p = path.join(CACHE, old);
      if (old.startsWith('build-') && p !== out && Date.now() - fs.statSync(p).mtimeMs > 3_600_000) {
        fs.rmSync(p, { recursive: true, force: true });
      }
    }
  });
  cliPath = entry;
  return cliPath;
}

export interface RunResult {
  code: number;
  /** raw stdout bytes (sanlock prints on-disk name bytes as they are) */
  stdoutBuf: Buffer;
  /** stdout as latin1: one character per byte, comparable byte for byte */
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBuf = Buffer.concat(out);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdoutBuf,
        stdout: stdoutBuf.toString('latin1'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** `lockagent <args>` */
export function lockagent(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult> {
  return run(process.execPath, [cliEntry(), ...args], opts);
}

/** `sanlock <args>` (the real 3.8.5 binary) */
export function sanlock(args: string[], opts?: { timeoutMs?: number }): Promise<RunResult> {
  return run(SANLOCK, args, opts);
}

export function sanlockInstalled(): boolean {
  try {
    fs.accessSync(SANLOCK, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * `node <cli> ...args` as the user nobody (uid/gid 65534), for permission tests. The checkout may
 * sit under a directory nobody cannot enter (a clone in `mktemp -d`, mode 0700): the CLI runs
 * from a bind mount of the checkout at a path nobody can reach, in a mount namespace of its own
 * (needs root, unshare and setpriv; `canRunAsNobody` tells).
 */
export function asNobodyCommand(cliArgs: string[]): { cmd: string; args: string[] } {
  const rel = path.relative(ROOT, cliEntry());
  const script = 'mnt=/tmp/lockagent-nobody-root && mkdir -p "$mnt" && chmod 755 "$mnt" && mount --bind "$1" "$mnt" && shift && ' +
    'exec setpriv --reuid=65534 --regid=65534 --clear-groups "$0" "$mnt/$@"';
  return { cmd: 'unshare', args: ['--mount', '--propagation', 'private', 'sh', '-c', script, process.execPath, ROOT, rel, ...cliArgs] };
}

let nobodyOk: boolean | undefined;

/** Whether asNobodyCommand works here: root, with unshare, mount and setpriv, and the CLI readable through the bind mount. */
export function canRunAsNobody(): boolean {
  if (nobodyOk === undefined) {
    nobodyOk = process.getuid?.() === 0 && (() => {
      const c = asNobodyCommand(['--version']);
      return spawnSync(c.cmd, c.args, { stdio: 'ignore', timeout: 60_000 }).status === 0;
    })();
  }
  return nobodyOk;
}

/**
 * A fresh directory under /tmp, whatever TMPDIR says: /tmp is disk-backed here, so O_DIRECT is
 * real (tmpfs such as /dev/shm accepts O_DIRECT and ignores it). Remove it with removeTempDir.
 */
export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join('/tmp', `${prefix}-`));
}

/**
 * Remove a test directory, first ending the processes that still name it on their command line
 * (a fencing guard outlives its agent by design and would re-create its socket in the directory
 * while it is being removed).
 */
export function removeTempDir(dir: string): void {
  if (!dir || !dir.startsWith('/tmp/') || dir.length < 8) return;
  for (const pid of processesNaming(dir)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
}

function processesNaming(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    const pid = Number(e);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.split('\0').some((a) => a === dir || a.startsWith(`${dir}/`))) out.push(pid);
    } catch { /* exited */ }
  }
  return out;
}

/** Create (or truncate to) a sparse file of `size` bytes. */
export function sparseFile(p: string, size: number): string {
  fs.writeFileSync(p, '');
  fs.truncateSync(p, size);
  return p;
}

export function copyFixture(name: string, dir: string, as = name): string {
  const dst = path.join(dir, as);
  fs.copyFileSync(path.join(FIXTURES, name), dst);
  return dst;
}

export function sha256(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** Write `bytes` at `offset` of a file (a test patch, not a lease write). */
export function patchFile(p: string, offset: number, bytes: Buffer | number[]): void {
  const fd = fs.openSync(p, 'r+');
  try {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    fs.writeSync(fd, b, 0, b.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Run async jobs with at most `limit` in flight (subprocess-heavy tests). */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The CLI's stderr is one operator line per failure, never a stack trace. */
export function expectOneLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.length > 0 && !/falling back to O_DSYNC/.test(l));
  if (lines.length !== 1) throw new Error(`expected exactly one stderr line, got ${lines.length}:\n${stderr}`);
  if (/^\s+at /m.test(stderr)) throw new Error(`stderr contains a stack trace:\n${stderr}`);
  return lines[0];
}

/**
 * `lockagent <args>` run in this process through the same `run()` that main.ts calls, with
 * stdout/stderr captured. Much cheaper than a subprocess on a 2-CPU machine, for large matrices;
 * every suite still runs the real binary for a subset.
 */
export async function lockagentInProcess(args: string[]): Promise<RunResult> {
  // required lazily so that suites using only subprocesses do not load the addon
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { run: runCli } = require('../../src/cli/program') as typeof import('../../src/cli/program');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { defaultContext } = require('../../src/cli/context') as typeof import('../../src/cli/context');
  const out: Buffer[] = [];
  const err: string[] = [];
  const ctx = defaultContext();
  ctx.output = {
    out: (text) => out.push(Buffer.from(text, 'latin1')),
    json: (value) => out.push(Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8')),
    err: (line) => err.push(`${line}\n`),
  };
  const code = await runCli(['node', 'lockagent', ...args], ctx);
  const stdoutBuf = Buffer.concat(out);
  return { code, stdoutBuf, stdout: stdoutBuf.toString('latin1'), stderr: err.join('') };
}

/** The leader record in the first sector of a lease file, read as the disk has it now. */
export function readLeaderOf(file: string): LeaderRecord {
  const b = Buffer.alloc(512);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, b, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  return decodeLeader(b, 0);
}

/** A temp dir with a lease directory; `res(r)` names resource r's lease file there in sanlock syntax. */
export interface LeaseBed {
  base: string;
  leaseDir: string;
  res(r: string): string;
  leaderOf(r: string): LeaderRecord;
}

/** makeTempDir plus a `leases` directory holding 1 MiB resource leases `resources`, initialised by `lockagent direct init`. */
export async function makeLeaseBed(prefix: string, resources: string[], lockspace = '__LIBVIRT__DISKS__'): Promise<LeaseBed> {
  const base = makeTempDir(prefix);
  const leaseDir = path.join(base, 'leases');
  fs.mkdirSync(leaseDir);
  const res = (r: string) => `${lockspace}:${r}:${path.join(leaseDir, r)}:0`;
  for (const r of resources) {
    sparseFile(path.join(leaseDir, r), 1048576);
    const init = await lockagent(['direct', 'init', '-r', res(r)]);
    if (init.code !== 0) throw new Error(`lockagent direct init -r ${res(r)} failed (${init.code}): ${init.stderr}`);
  }
  return { base, leaseDir, res, leaderOf: (r) => readLeaderOf(path.join(leaseDir, r)) };
}

/** Owner processes (`sleep 600`) for a test; killAll() in its teardown. */
export class Sleepers {
  readonly all: ChildProcess[] = [];
  spawn(): ChildProcess {
    const c = spawn('sleep', ['600'], { stdio: 'ignore' });
    this.all.push(c);
    return c;
  }
  killAll(): void {
    for (const c of this.all) c.kill('SIGKILL');
  }
}
