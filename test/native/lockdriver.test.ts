/**
 * The lock-driver plugin (native/build/Release/lockagent.so) driven as libvirtd drives it, by a
 * small C harness (test/fixtures/lockdriver-harness.c) against a stand-in agent on a unix socket:
 * the request line of each libvirt call, the state it hands back, and its errors (an agent that
 * does not run, a refusal, a config it cannot read: init still succeeds, since a failing init
 * stops libvirtd). The plugin inside a real libvirtd: test/migration/lockdriver.test.ts.
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import net from 'net';
import * as os from 'os';
import * as path from 'path';
import { ROOT } from '../helpers/cli';

const PLUGIN = path.join(ROOT, 'native', 'build', 'Release', 'lockagent.so');
const have = fs.existsSync(PLUGIN);
if (!have) console.warn(`SKIPPED lock-driver plugin tests: ${PLUGIN} is not built (npm run build:native)`);
const d = have ? describe : describe.skip;

d('lock-driver plugin, as libvirtd calls it', () => {
  let dir: string;
  let harness: string;
  let server: net.Server | undefined;
  let seen: Array<Record<string, unknown>>;
  let answer: (req: Record<string, unknown>) => object;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-lockdriver-'));
    harness = path.join(dir, 'harness');
    execFileSync('cc', ['-O1', '-o', harness, path.join(ROOT, 'test', 'fixtures', 'lockdriver-harness.c'), '-ldl']);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  beforeEach(async () => {
    seen = [];
    answer = () => ({ ok: true, result: { leases: 2 } });
    server = net.createServer((s) => {
      let buf = '';
      s.on('data', (b) => {
        buf += b.toString();
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const req = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        seen.push(req);
        s.end(`${JSON.stringify({ v: 1, id: req.id, ...answer(req) })}\n`);
      });
    });
    await new Promise<void>((r) => server!.listen(path.join(dir, 'sock'), r));
    fs.writeFileSync(path.join(dir, 'qemu-lockagent.conf'), `socket_path = "${path.join(dir, 'sock')}"\n`);
  });
  afterEach(async () => {
    if (server) await new Promise((r) => server!.close(r));
    server = undefined;
  });

  const run = (call: string, extra: string[] = [], conf = path.join(dir, 'qemu-lockagent.conf')) =>
    new Promise<{ out: string; err: string; code: number | null }>((resolve) => {
      // in a child of its own: spawnSync would block the stand-in agent's event loop
      const p: ChildProcess = spawn(harness, [PLUGIN, conf, call, ...extra]);
      let out = '';
      let err = '';
      p.stdout!.on('data', (b: Buffer) => { out += b; });
      p.stderr!.on('data', (b: Buffer) => { err += b; });
      p.on('exit', (code) => resolve({ out, err, code }));
    });

  const DOMAIN = {
    uuid: '00112233-4455-6677-8899-aabbccddeeff', name: 'vm"1', pid: 4242,
    disks: [{ path: '/nfs/a.qcow2', readonly: false, shared: false }, { path: '/nfs/iso', readonly: true, shared: true }],
    leases: [{ key: 'k1', path: '/nfs/leases', offset: 1048576, lockspace: 'LS' }],
  };

  it('exports only virLockDriverImpl (version 1.0.0, uses state)', async () => {
    const syms = execFileSync('nm', ['-D', '--defined-only', PLUGIN]).toString().trim().split('\n').map((l) => l.split(' ').pop());
    expect(syms).toEqual(['virLockDriverImpl']);
    expect((await run('inquire')).out).toMatch(/^version=1000000 flags=1$/m);
  });

  it('register (libvirtd\'s child) sends lock_register with the domain and its resources', async () => {
    const r = await run('register');
    expect(r.out).toMatch(/rc=0 fd=-1/);
    expect(seen).toEqual([{ v: 1, id: 1, op: 'lock_register', domain: DOMAIN, action: 'pause' }]);
  });

  it('acquire (before the CPUs start) sends lock_acquire with the state libvirt kept', async () => {
    expect((await run('acquire', ['LS:k1:/nfs/leases:1048576:3'])).out).toMatch(/rc=0/);
    expect(seen[0]).toEqual({ v: 1, id: 1, op: 'lock_acquire', domain: DOMAIN, action: 'pause', state: 'LS:k1:/nfs/leases:1048576:3', timeoutMs: 80000 });
    await run('acquire');
    expect(seen[1]).not.toHaveProperty('state');
  });

  it('release at a pause returns the agent\'s state to libvirt; a detach asks for none', async () => {
    answer = () => ({ ok: true, result: { released: 1, state: 'LS:k1:/nfs/leases:1048576:3' } });
    const r = await run('release-pause');
    expect(r.out).toMatch(/rc=0/);
    expect(r.out).toMatch(/^state=LS:k1:\/nfs\/leases:1048576:3$/m);
    expect(seen[0]).toMatchObject({ op: 'lock_release', pause: true });
    expect((await run('release-detach')).out).toMatch(/rc=0/);
    expect(seen[1]).toMatchObject({ op: 'lock_release', pause: false });
  });

  it('inquire returns the state; an empty state is none', async () => {
    answer = () => ({ ok: true, result: { state: '' } });
    const r = await run('inquire');
    expect(r.out).toMatch(/rc=0/);
    expect(r.out).not.toMatch(/state=/);
  });

  it('a refusal fails the call with the agent\'s reason', async () => {
    answer = () => ({ ok: false, error: { rv: -243, name: 'SANLK_ACQUIRE_IDLIVE', message: 'disk /nfs/a.qcow2 is leased by host 3 (node n3)' } });
    const r = await run('acquire');
    expect(r.out).toMatch(/rc=-1/);
    expect(r.err).toContain('lockagent: lockagent: disk /nfs/a.qcow2 is leased by host 3 (node n3)');
  });

  it('no agent: the call fails closed, saying so; init still succeeds', async () => {
    await new Promise((r) => server!.close(r));
    server = undefined;
    const r = await run('register');
    expect(r.out).toMatch(/rc=-1/);
    expect(r.err).toMatch(/lockagent is not running \(no listener on .*sock\); start it with: lockagent daemon/);
  });

  it('a config it cannot read: init succeeds (a failing init stops libvirtd), every call is refused with the reason', async () => {
    const bad = path.join(dir, 'bad.conf');
    fs.writeFileSync(bad, 'socket_path = "unterminated\n');
    const r = await run('register', [], bad);
    expect(r.out).not.toMatch(/init failed/);
    expect(r.out).toMatch(/rc=-1/);
    expect(r.err).toMatch(/bad\.conf:1: unterminated string/);
    expect(seen).toHaveLength(0);
  });
});

