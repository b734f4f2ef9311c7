/**
 * The control socket as an API, on a real agent (issue 11 item 7, parts): add_lockspace refuses
 * values the config file would refuse, at once and without joining anything; connections past
 * the cap and over-long request lines get one error line and are closed, and the agent keeps
 * serving everyone else. The limits themselves: test/unit/control.test.ts.
 */
import * as fs from 'fs';
import net from 'net';
import * as path from 'path';
import { callAgent } from '../../src/control/client';
import { SOCKET_LIMITS } from '../../src/control/protocol';
import { makeTempDir, removeTempDir, sparseFile } from '../helpers/cli';
import { AgentHost, startHost, status, stopHost, waitJoined, writeHostConfig } from '../helpers/agentproc';

jest.setTimeout(60000);

describe('control socket limits on a real agent', () => {
  let base: string;
  let host: AgentHost;
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    base = makeTempDir('la-ctl-');
    const leaseDir = path.join(base, 'leases');
    fs.mkdirSync(leaseDir);
    host = startHost(writeHostConfig(base, 1, { leaseDir }));
    await waitJoined(host);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await stopHost(host, 'SIGKILL');
    removeTempDir(base);
  });

  it('add_lockspace refuses host_id > 2000 and io_timeout > 255 at once, joining nothing', async () => {
    const ls = sparseFile(path.join(base, 'ls2'), 1048576);
    const req = (hostId: number, ioTimeout?: number) => callAgent(host.socket, { op: 'add_lockspace', lockspace: 'LS2', hostId, path: ls, offset: 0, ioTimeout }, 5000);
    await expect(req(2001)).rejects.toMatchObject({ rv: -231, message: expect.stringContaining('host_id 2001 is outside 1..2000') });
    await expect(req(0)).rejects.toMatchObject({ rv: -231 });
    await expect(req(1, 100000)).rejects.toMatchObject({ rv: -22, message: expect.stringContaining('io_timeout 100000 is outside 1..255') });
    expect((await status(host)).lockspaces.map((l) => l.name)).toEqual(['__LIBVIRT__DISKS__']);
  });

  it('refuses connections past the cap and over-long lines, and keeps serving', async () => {
    const open = () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(host.socket, () => resolve(s));
      s.on('error', reject);
      sockets.push(s);
    });
    for (let i = 0; i < SOCKET_LIMITS.maxConnections; i++) await open();
    const extra = await open();
    const line = await new Promise<string>((resolve) => { let b = ''; extra.setEncoding('utf8'); extra.on('data', (d: string) => { b += d; }); extra.on('close', () => resolve(b)); });
    expect(JSON.parse(line)).toMatchObject({ ok: false, error: { name: 'EBUSY', message: expect.stringContaining(`too many connections to lockagent (${SOCKET_LIMITS.maxConnections} open)`) } });
    for (const s of sockets.splice(0)) s.destroy();

    // 20 clients each sending more than a line may hold, without a newline: each is dropped
    const floods = await Promise.all(Array.from({ length: 20 }, async () => {
      const s = await open();
      const answer = new Promise<string>((resolve) => { let b = ''; s.setEncoding('utf8'); s.on('data', (d: string) => { b += d; }); s.on('close', () => resolve(b)); });
      s.write(Buffer.alloc(SOCKET_LIMITS.maxLineBytes + 65536, 'x'));
      return answer;
    }));
    for (const f of floods) expect(JSON.parse(f)).toMatchObject({ ok: false, error: { name: expect.stringMatching(/EINVAL|EBUSY/) } });
    await expect(callAgent(host.socket, { op: 'status' }, 5000)).resolves.toMatchObject({ lockspaces: [expect.objectContaining({ state: 'joined' })] });
  });
});
