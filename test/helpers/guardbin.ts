/**
 * The real fencing guard binary (native/build/Release/lockagent-guard) on a socket of a test's
 * own, and a line-oriented client of that socket: what test/unit/guard-*.test.ts talk to.
 * `cleanups` collects what the test's afterEach must undo (the guard, the connections).
 */
import { spawn } from 'child_process';
import { connect } from 'net';
import { join } from 'path';

export const GUARD_BIN = join(__dirname, '..', '..', 'native', 'build', 'Release', 'lockagent-guard');

export async function waitFor<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The real guard, listening on `socket`; log() is what it wrote to stderr so far. */
export async function startGuard(socket: string, cleanups: Array<() => void>, mode: 'enforce' | 'log' = 'enforce'): Promise<{ log: () => string }> {
  let out = '';
  const g = spawn(GUARD_BIN, ['--socket', socket, '--mode', mode], { stdio: ['ignore', 'ignore', 'pipe'] });
  g.stderr!.setEncoding('utf8');
  g.stderr!.on('data', (d: string) => { out += d; });
  cleanups.push(() => g.kill('SIGKILL'));
  await waitFor('the guard to listen', () => new Promise<boolean>((r) => {
    const s = connect(socket);
    s.once('connect', () => { s.destroy(); r(true); });
    s.once('error', () => r(false));
  }));
  return { log: () => out };
}

/** A line-oriented client of a guard socket: what it received, and a way to wait for a line. */
export async function rawClient(socket: string, cleanups: Array<() => void>) {
  const s = connect(socket);
  await new Promise<void>((r, j) => { s.once('connect', r); s.once('error', j); });
  cleanups.push(() => s.destroy());
  const got: string[] = [];
  let buf = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) { got.push(buf.slice(0, nl)); buf = buf.slice(nl + 1); }
  });
  return {
    got,
    send: (line: string) => s.write(line + '\n'),
    next: (re: RegExp, from = 0) => waitFor(`a line ${re}`, () => got.slice(from).find((l) => re.test(l))),
  };
}
