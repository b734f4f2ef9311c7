/**
 * The compiled hook client (native/hook/lockagent-hook.c) against a real ControlServer: what
 * libvirt sees (exit code, stderr) and what the agent receives, compared with the reference
 * implementation (src/libvirt/hook.ts runHook) wherever both can run.
 *
 * The client under test is native/build/Release/lockagent-hook when it is at least as new as its
 * source (npm run build:native), else a private `cc` build of the source (so an edit of the C
 * file is always what is tested).
 */
import { execFileSync, spawn } from 'child_process';
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'fs';
import net from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { Request } from '../../src/control/protocol';
import { ControlServer } from '../../src/control/server';
import { hookSettingsPath, installHook, runHook } from '../../src/libvirt/hook';
import { LeaseError } from '../../src/ondisk/results';

const ROOT = join(__dirname, '..', '..');
const SRC = join(ROOT, 'native', 'hook', 'lockagent-hook.c');
const BUILT = join(ROOT, 'native', 'build', 'Release', 'lockagent-hook');

let work: string;
let client: string;

function clientBinary(): string {
  try {
    accessSync(BUILT, constants.X_OK);
    if (statSync(BUILT).mtimeMs >= statSync(SRC).mtimeMs) return BUILT;
  } catch {
    // not built: compile it here
  }
  const out = join(work, 'lockagent-hook');
  execFileSync('cc', ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, SRC], { stdio: 'pipe' });
  return out;
}

interface Run {
  code: number | null;
  stderr: string;
  stdout: string;
}

function runClient(argv: string[], stdin: Buffer | string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    // libvirt's minimal environment: nothing from the test's
    const p = spawn(client, argv, { env: { PATH: '/usr/bin:/bin', LC_ALL: 'C', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', reject);
    p.stdin.on('error', () => undefined); // the client may exit before reading everything
    p.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
    p.stdin.end(stdin);
  });
}

/** A domain XML with everything JSON must escape, and non-ASCII that must pass through as UTF-8. */
const NASTY_XML = Buffer.from(
  `<domain type='kvm'>\n  <name>vm "quoted" \\ back\\slash</name>\r\n\t<uuid>6d0c1f56-0f1b-4d0e-9a53-2b1c3f7a9e01</uuid>\n` +
  `  <description>ctl \u0001\u0008\u000c\u001f del \u007f é ü 日本語 😀 \u2028 / </description>\n</domain>\n`, 'utf8');

describe('compiled hook client (native/hook/lockagent-hook.c)', () => {
  let server: ControlServer;
  let sock: string;
  const seen: Request[] = [];
  let answer: (req: Request) => Promise<unknown> = async () => ({});

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'la-hookc-'));
    client = clientBinary();
    sock = join(work, 'agent.sock');
    server = new ControlServer({ path: sock, mode: 0o600, handler: async (req) => { seen.push(req); return answer(req); } });
    await server.listen();
  });
  afterAll(async () => {
    await server.close();
    rmSync(work, { recursive: true, force: true });
  });
  beforeEach(() => {
    seen.length = 0;
    answer = async () => ({ leases: 1, deferred: false });
  });

  it('prepare begin, allowed: exit 0, nothing on stderr; the agent gets domain_prepare with timeoutMs 80000 (90 s less the wait for a restarting agent and the reply)', async () => {
    const r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain><name>vm1</name></domain>', { LOCKAGENT_SOCKET: sock });
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(seen).toEqual([{ op: 'domain_prepare', xml: '<domain><name>vm1</name></domain>', timeoutMs: 80000 }]);
  });

  it('forwards each hook operation as hookMain does, and answers the others without the agent', async () => {
    const cases: Array<[string, string, string | undefined]> = [
      ['migrate', 'begin', 'domain_migrate'], ['stopped', 'end', 'domain_release'], ['release', 'end', undefined],
      ['reconnect', 'begin', 'domain_reconnect'], ['start', 'begin', undefined], ['started', 'begin', undefined],
      ['prepare', 'end', undefined], ['restore', 'begin', undefined], ['attach', 'begin', undefined], ['stopped', 'begin', undefined],
    ];
    for (const [op, sub, want] of cases) {
      seen.length = 0;
      const r = await runClient(['vm1', op, sub, '-'], 'x'.repeat(200_000), { LOCKAGENT_SOCKET: sock });
      expect({ op, sub, code: r.code, stderr: r.stderr }).toEqual({ op, sub, code: 0, stderr: '' });
      expect(seen.map((q) => q.op)).toEqual(want ? [want] : []);
      if (want) expect(seen[0]).toEqual({ op: want, xml: 'x'.repeat(200_000) });
      await runHook(['vm1', op, sub, '-'], '<domain/>', sock);
      expect({ op, sub, forwarded: seen.length === 2 }).toEqual({ op, sub, forwarded: !!want });
    }
  });

  it('answers an operation it does not forward without reading stdin (libvirt may still be writing it)', async () => {
    // stdin stays open and unread: a client that drained it before exiting would never exit
    const r = await new Promise<{ code: number | null; wrote: boolean }>((resolve, reject) => {
      const p = spawn(client, ['vm1', 'start', 'begin', '-'], { env: { PATH: '/usr/bin:/bin', LC_ALL: 'C', LOCKAGENT_SOCKET: sock }, stdio: ['pipe', 'ignore', 'ignore'] });
      p.on('error', reject);
      p.stdin.on('error', () => undefined);
      const wrote = p.stdin.write('<domain>');
      p.on('exit', (code) => { p.stdin.destroy(); resolve({ code, wrote }); });
    });
    expect(r.code).toBe(0);
    expect(seen).toEqual([]);
  });

  it('XML with quotes, backslashes, newlines, control characters and non-ASCII arrives byte-identical', async () => {
    const r = await runClient(['vm1', 'prepare', 'begin', '-'], NASTY_XML, { LOCKAGENT_SOCKET: sock });
    expect(r.code).toBe(0);
    expect(seen).toHaveLength(1);
    expect(Buffer.from((seen[0] as { xml: string }).xml, 'utf8').equals(NASTY_XML)).toBe(true);
    // and the same as the reference implementation sends
    seen.length = 0;
    await runHook(['vm1', 'prepare', 'begin', '-'], NASTY_XML.toString('utf8'), sock);
    expect(Buffer.from((seen[0] as { xml: string }).xml, 'utf8').equals(NASTY_XML)).toBe(true);
  });

  it('a refused prepare: exit 1, "lockagent: <message>" on stderr, as runHook', async () => {
    const msg = 'disk /var/lib/libvirt/images/vm "1".qcow2 is leased by host 2 (node nödé02 日本), last renewal 0 s ago [__LIBVIRT__DISKS__:3e0e, sanlock -243]\ttab \u0001';
    answer = async () => { throw new LeaseError(-243, msg); };
    const r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: sock });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`lockagent: ${msg}\n`);
    const ref = await runHook(['vm1', 'prepare', 'begin', '-'], '<domain/>', sock);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: ref.code, stderr: `${ref.stderr}\n` });
  });

  it('a refused migrate exits 1; refusals of stopped and reconnect exit 0 with the message', async () => {
    answer = async () => { throw new LeaseError(-201, 'something went wrong'); };
    for (const [op, sub, code] of [['migrate', 'begin', 1], ['stopped', 'end', 0], ['reconnect', 'begin', 0]] as const) {
      const r = await runClient(['vm 1', op, sub, '-'], '<domain/>', { LOCKAGENT_SOCKET: sock });
      const ref = await runHook(['vm 1', op, sub, '-'], '<domain/>', sock);
      expect({ op, code: r.code, stderr: r.stderr }).toEqual({ op, code, stderr: `${ref.stderr}\n` });
      expect(ref.code).toBe(code);
    }
    const r = await runClient(['vm1', 'stopped', 'end', '-'], '<domain/>', { LOCKAGENT_SOCKET: sock });
    expect(r.stderr).toBe('lockagent: stopped end of vm1: something went wrong\n');
  });

  it('an agent restarting (no listener for a moment, as during a package upgrade): prepare waits for it and goes through; stopped does not wait', async () => {
    const later = join(work, 'restarting.sock');
    const got: string[] = [];
    const t0 = Date.now();
    const pending = runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: later });
    await new Promise((r) => setTimeout(r, 1500));
    const back = new ControlServer({ path: later, mode: 0o600, handler: async (req) => { got.push(req.op); return {}; } });
    await back.listen();
    try {
      expect(await pending).toEqual({ code: 0, stdout: '', stderr: '' });
      expect(got).toEqual(['domain_prepare']);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
    } finally {
      await back.close();
    }
    const t1 = Date.now();
    const r = await runClient(['vm1', 'stopped', 'end', '-'], '<domain/>', { LOCKAGENT_SOCKET: later });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/lockagent is not running \(no listener on /);
    expect(Date.now() - t1).toBeLessThan(5000); // did not wait out the 5 s a gate call waits
  });

  it('unreachable agent: prepare and migrate fail closed (exit 1); stopped and reconnect exit 0', async () => {
    const gone = join(work, 'nobody.sock');
    for (const [op, sub, code] of [['prepare', 'begin', 1], ['migrate', 'begin', 1], ['stopped', 'end', 0], ['reconnect', 'begin', 0]] as const) {
      const r = await runClient(['vm1', op, sub, '-'], '<domain/>', { LOCKAGENT_SOCKET: gone });
      const ref = await runHook(['vm1', op, sub, '-'], '<domain/>', gone);
      expect({ op, code: r.code, stderr: r.stderr }).toEqual({ op, code, stderr: `${ref.stderr}\n` });
    }
    const r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: gone });
    expect(r.stderr).toBe(`lockagent: lockagent is not running (no listener on ${gone}); start it with: lockagent daemon\n`);
    // a socket file nobody listens on (a killed agent's)
    const stale = join(work, 'stale.sock');
    const s = net.createServer();
    await new Promise<void>((res) => s.listen(stale, res));
    await new Promise<void>((res) => s.close(() => res()));
    writeFileSync(stale, ''); // not a socket any more either way
    const r2 = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: stale });
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/^lockagent: /);
  });

  it('an agent that does not answer in time, or hangs up, or answers garbage: fail closed at the gate only', async () => {
    const raw = join(work, 'raw.sock');
    let mode: 'silent' | 'hangup' | 'garbage' | 'escapes' = 'silent';
    const conns = new Set<net.Socket>();
    const srv = net.createServer((c) => {
      conns.add(c);
      c.on('error', () => undefined);
      c.on('data', () => {
        if (mode === 'hangup') c.destroy();
        else if (mode === 'garbage') c.end('{"v":1,"id":1,"ok":tru\n');
        else if (mode === 'escapes') c.end('{"v":1,"id":1,"ok":false,"error":{"rv":-243,"name":"X","message":"h\\u00f6st \\u65e5 \\ud83d\\ude00 \\"q\\" \\\\ \\/ a\\nb"}}\n');
      });
    });
    await new Promise<void>((res) => srv.listen(raw, res));
    try {
      const t = Date.now();
      let r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: raw, LOCKAGENT_HOOK_TIMEOUT_MS: '700' });
      expect(Date.now() - t).toBeLessThan(5000);
      expect(r).toMatchObject({ code: 1, stderr: `lockagent: lockagent did not answer within 1 s (socket ${raw})\n` });
      r = await runClient(['vm1', 'stopped', 'end', '-'], '<domain/>', { LOCKAGENT_SOCKET: raw, LOCKAGENT_HOOK_TIMEOUT_MS: '300' });
      expect(r).toMatchObject({ code: 0, stderr: `lockagent: stopped end of vm1: lockagent did not answer within 0 s (socket ${raw})\n` });
      mode = 'hangup';
      r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: raw });
      const ref = await runHook(['vm1', 'prepare', 'begin', '-'], '<domain/>', raw);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: `${ref.stderr}\n` });
      mode = 'garbage';
      r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: raw });
      expect(r).toMatchObject({ code: 1, stderr: 'lockagent: lockagent sent an unreadable reply\n' });
      mode = 'escapes';
      r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_SOCKET: raw });
      const ref2 = await runHook(['vm1', 'prepare', 'begin', '-'], '<domain/>', raw);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('lockagent: höst 日 😀 "q" \\ / a\nb\n');
      expect(r.stderr).toBe(`${ref2.stderr}\n`);
    } finally {
      for (const c of conns) c.destroy();
      await new Promise<void>((res) => srv.close(() => res()));
    }
  });

  it('takes socket_path from $LOCKAGENT_CONFIG (comments, quotes, lists, other keys); $LOCKAGENT_SOCKET wins', async () => {
    const conf = join(work, 'lockagent.conf');
    writeFileSync(conf, [
      '# lockagent.conf',
      'host_id = 1   # a comment',
      'lockspaces = [ "a:1:/x:0",',
      '   # inside a list',
      "   'b:1:/y:0' ]",
      '#socket_path = "/not/this"',
      'socket_path = "/first/value"',
      `socket_path = '${sock}' # the last one wins`,
      'log_level = "info"; ',
      '',
    ].join('\n'));
    const r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_CONFIG: conf });
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(seen.map((q) => q.op)).toEqual(['domain_prepare']);
    // $LOCKAGENT_SOCKET first
    const r2 = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_CONFIG: conf, LOCKAGENT_SOCKET: join(work, 'nope.sock') });
    expect(r2.code).toBe(1);
    expect(r2.stderr).toContain('nope.sock');
    // no socket_path in the config: the default
    writeFileSync(conf, 'host_id = 1\n');
    const r3 = await runClient(['vm1', 'stopped', 'end', '-'], '<domain/>', { LOCKAGENT_CONFIG: conf });
    expect(r3.stderr).toContain('(no listener on /run/lockagent/lockagent.sock)');
  });

  it('an unreadable or broken config fails closed at the gate, and never fails stopped', async () => {
    const missing = join(work, 'missing.conf');
    let r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_CONFIG: missing });
    expect(r).toMatchObject({ code: 1, stderr: `lockagent: config file ${missing} does not exist: copy conf/lockagent.conf there or pass -c PATH\n` });
    r = await runClient(['vm1', 'stopped', 'end', '-'], '<domain/>', { LOCKAGENT_CONFIG: missing });
    expect(r).toMatchObject({ code: 0, stderr: `lockagent: config file ${missing} does not exist: copy conf/lockagent.conf there or pass -c PATH\n` });
    const bad = join(work, 'bad.conf');
    writeFileSync(bad, 'host_id = 1\nsocket_path = "/unterminated\n');
    r = await runClient(['vm1', 'prepare', 'begin', '-'], '<domain/>', { LOCKAGENT_CONFIG: bad });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^lockagent: ${bad}:2: unterminated string`));
    expect(seen).toEqual([]);
  });

  it('installHook installs a copy of the compiled client itself (socket in its settings file), else a script running node with hook.js', () => {
    const dir = join(work, 'hooks', 'qemu.d');
    const p = installHook({ dir, socket: sock, client });
    expect(readFileSync(p).equals(readFileSync(client))).toBe(true);
    expect(statSync(p).mode & 0o777).toBe(0o755);
    const settings = hookSettingsPath(p);
    expect(settings).toBe(join(dir, '.50-lockagent.conf'));
    expect(readFileSync(settings, 'utf8')).toContain(`socket_path = ${JSON.stringify(sock)}\n`);
    expect(statSync(settings).mode & 0o111).toBe(0); // libvirt runs only executables (and skips hidden files)
    expect(readdirSync(dir).sort()).toEqual(['.50-lockagent.conf', '50-lockagent']);
    const node = readFileSync(installHook({ dir, socket: sock, client: 'node' }), 'utf8');
    expect(node).toContain(`exec '${process.execPath}' '`);
    expect(node).toMatch(/hook\.js' "\$@"/);
    expect(node).toContain(`export LOCKAGENT_SOCKET='${sock}'`);
    expect(node).toMatch(/case "\$2:\$3" in\n {2}prepare:begin\|migrate:begin\|stopped:end\|reconnect:begin\) ;;/);
    expect(readdirSync(dir)).toEqual(['50-lockagent']); // the script carries its settings
  });

  it('installHook writes no main hook, removes the placeholder earlier versions wrote, and keeps anyone else\'s', () => {
    const hooks = join(work, 'hooks3');
    const dir = join(hooks, 'qemu.d');
    installHook({ dir, socket: sock, client });
    expect(() => statSync(join(hooks, 'qemu'))).toThrow();
    const old = '#!/bin/sh\n# placeholder so libvirt runs the scripts in qemu.d; installed by "lockagent install-hook"\ncat > /dev/null\nexit 0\n';
    writeFileSync(join(hooks, 'qemu'), old, { mode: 0o755 });
    installHook({ dir, socket: sock, client });
    expect(() => statSync(join(hooks, 'qemu'))).toThrow();
    writeFileSync(join(hooks, 'qemu'), '#!/bin/sh\nlogger "$@"\n', { mode: 0o755 });
    installHook({ dir, socket: sock, client });
    expect(readFileSync(join(hooks, 'qemu'), 'utf8')).toBe('#!/bin/sh\nlogger "$@"\n');
  });

  it('the installed hook runs end to end, as libvirt runs it (full path, minimal environment): --socket, --config, the node script', async () => {
    const dir = join(work, 'hooks2', 'qemu.d');
    let p = installHook({ dir, socket: sock, client });
    answer = async () => { throw new LeaseError(-243, 'leased by host 2'); };
    const run = (args: string[]) => new Promise<Run>((resolve) => {
      const c = spawn(p, args, { env: { PATH: '/usr/bin:/bin', LC_ALL: 'C' } });
      let err = '';
      c.stderr.on('data', (b: Buffer) => { err += b.toString(); });
      c.on('close', (code) => resolve({ code, stderr: err, stdout: '' }));
      c.stdin.on('error', () => undefined); // unforwarded ops exit without reading stdin (EPIPE), as libvirt allows
      c.stdin.end(NASTY_XML);
    });
    expect(await run(['vm1', 'prepare', 'begin', '-'])).toMatchObject({ code: 1, stderr: 'lockagent: leased by host 2\n' });
    expect(Buffer.from((seen[0] as { xml: string }).xml, 'utf8').equals(NASTY_XML)).toBe(true);
    expect(await run(['vm1', 'start', 'begin', '-'])).toMatchObject({ code: 0, stderr: '' });
    expect(seen).toHaveLength(1);
    // --config: the settings file is a link to the config
    const conf = join(work, 'hooked.conf');
    writeFileSync(conf, `host_id = 1\nsocket_path = "${sock}"\n`);
    p = installHook({ dir, config: conf, client });
    expect(readlinkSync(hookSettingsPath(p))).toBe(conf);
    expect(await run(['vm1', 'prepare', 'begin', '-'])).toMatchObject({ code: 1, stderr: 'lockagent: leased by host 2\n' });
    expect(seen).toHaveLength(2);
    rmSync(conf);
    const gone = await run(['vm1', 'prepare', 'begin', '-']);
    expect(gone.code).toBe(1); // fails closed, and says how to repair it
    expect(gone.stderr).toMatch(/^lockagent: cannot read .*\.50-lockagent\.conf, the settings of this hook .*install it again with lockagent install-hook\n$/);
    // the node script
    p = installHook({ dir, socket: sock, client: 'node' });
    expect(await run(['vm1', 'prepare', 'begin', '-'])).toMatchObject({ code: 1, stderr: 'lockagent: leased by host 2\n' });
    expect(await run(['vm1', 'start', 'begin', '-'])).toMatchObject({ code: 0, stderr: '' });
    expect(seen).toHaveLength(3);
  });
});
