/**
 * `lockagent cleanup --dry-run` when the agent's socket is there but cannot be used: permission
 * denied (the dry run reads the directory itself, as without an agent), or an agent that never
 * answers (given up after agentCallMs.dryRun, naming --standalone, instead of 12 hours).
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { ensureLockspaceFile } from '../../src/agent/lockspacefile';
import { agentCallMs } from '../../src/cli/cleanup-command';
import * as client from '../../src/control/client';
import { DEFAULT_GEOMETRY, SANLK } from '../../src/ondisk';
import { cli, initLease, LS, md5 } from './helpers';

jest.setTimeout(30000);

describe('lockagent cleanup --dry-run, agent socket unusable', () => {
  let base: string;
  let dir: string;
  let conf: string;
  const lease = md5('/images/a.img');

  beforeAll(async () => {
    base = fs.mkdtempSync('/tmp/la-cleanup-cli-');
    dir = path.join(base, 'leases');
    fs.mkdirSync(dir);
    await ensureLockspaceFile(path.join(dir, LS), LS, DEFAULT_GEOMETRY, 1);
    await initLease(path.join(dir, lease));
    const old = new Date(Date.now() - 7200 * 1000);
    fs.utimesSync(path.join(dir, lease), old, old);
    conf = path.join(base, 'lockagent.conf');
    fs.writeFileSync(conf, [
      'auto_disk_leases = 1', `disk_lease_dir = "${dir}"`, 'host_id = 1', 'io_timeout = 1',
      `socket_path = "${path.join(base, 'sock')}"`, `state_path = "${path.join(base, 'state.db')}"`, 'log_stderr = 0',
    ].join('\n'));
  });

  afterEach(() => jest.restoreAllMocks());
  afterAll(() => {
    if (base?.startsWith('/tmp/')) fs.rmSync(base, { recursive: true, force: true });
  });

  it('permission denied on the socket: a dry run reads the directory itself; a real sweep exits 3', async () => {
    const sock = path.join(base, 'sock');
    // As root (the tests) connect() is never refused: the client's answer to EACCES, as it makes it.
    jest.spyOn(client, 'callAgent').mockRejectedValue(
      new client.AgentUnreachable(SANLK.EACCES, `permission denied on ${sock}: run as root or as a member of socket_group`));
    const dry = await cli(['cleanup', '--dry-run', '--min-age', '1h', '--socket', sock, '-c', conf]);
    expect(dry.stderr).toBe(`lockagent: cleanup: cannot use the agent (permission denied on ${sock}: run as root or as a member of socket_group); ` +
      'the dry run reads the lease directory itself');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^dry run of cleanup of .* \(min age 3600 s; liveness: lockspace read once/);
    expect(dry.stdout).toMatch(new RegExp(`^${lease} +free +would delete: never used$`, 'm'));

    const real = await cli(['cleanup', '--socket', sock, '-c', conf]);
    expect(real.code).toBe(3);
    expect(real.stderr).toMatch(/permission denied on .* \(a dry run works without it: --dry-run\)$/);
  });

  it('an agent that does not answer a dry run is given up after agentCallMs.dryRun, naming --standalone', async () => {
    const sock = path.join(base, 'hung.sock');
    const held: net.Socket[] = [];
    const server = net.createServer((s) => { held.push(s); }); // reads the request, never answers
    await new Promise<void>((r) => server.listen(sock, r));
    const saved = { ...agentCallMs };
    agentCallMs.dryRun = 1000;
    try {
      const t0 = Date.now();
      const r = await cli(['cleanup', '--dry-run', '--socket', sock, '-c', conf]);
      expect(Date.now() - t0).toBeLessThan(10000);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`lockagent: cleanup: the agent did not answer the dry run within 1 s (socket ${sock}): it may be hung; ` +
        'read the lease directory here instead: lockagent cleanup --dry-run --standalone');
    } finally {
      Object.assign(agentCallMs, saved);
      for (const s of held) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
