import { mkdtempSync, rmSync, statSync } from 'fs';
import net from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { AgentConnection, callAgent } from '../../src/control/client';
import { Request } from '../../src/control/protocol';
import { ControlServer } from '../../src/control/server';
import { LeaseError } from '../../src/ondisk/results';

function rawExchange(path: string, payload: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(payload));
    s.on('data', (d: string) => { buf += d; });
    s.on('error', reject);
    setTimeout(() => { s.destroy(); resolve(buf.split('\n').filter(Boolean)); }, 150);
  });
}

describe('control socket', () => {
  let dir: string;
  let server: ControlServer;
  const seen: Request[] = [];
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'la-ctl-'));
    server = new ControlServer({
      path: join(dir, 'sock'),
      mode: 0o660,
      handler: async (req) => {
        seen.push(req);
        if (req.op === 'acquire') throw new LeaseError(-243, 'disk /nfs/a.qcow2 is leased by host 3 (node03), last renewal 4 s ago');
        if (req.op === 'inquire') throw new Error('boom');
        return { pong: req.op };
      },
    });
    await server.listen();
  });
  afterEach(async () => { await server.close(); rmSync(dir, { recursive: true, force: true }); });

  it('creates the socket with the configured mode and answers requests', async () => {
    expect(statSync(join(dir, 'sock')).mode & 0o777).toBe(0o660);
    await expect(callAgent(join(dir, 'sock'), { op: 'status' })).resolves.toEqual({ pong: 'status' });
  });

  it('carries many overlapping requests on one persistent connection, each answered by id', async () => {
    const conn = await AgentConnection.connect(join(dir, 'sock'));
    const ops = ['status', 'host_status', 'status', 'host_status', 'status'] as const;
    const replies = await Promise.all(ops.map((op) => conn.call({ op } as Request)));
    expect(replies).toEqual(ops.map((op) => ({ pong: op })));
    // an error reply fails only its own call; the connection goes on
    await expect(conn.call({ op: 'acquire', owner: { uuid: 'u' }, leases: [{ lockspace: 'L', resource: 'R', path: '/p', offset: 0 }] }))
      .rejects.toMatchObject({ rv: -243, message: expect.stringContaining('leased by host 3') });
    await expect(conn.call({ op: 'status' })).resolves.toEqual({ pong: 'status' });
    // the agent going away fails what is pending and every later call, naming the socket
    const pending = conn.call({ op: 'status' });
    await server.close();
    await pending.catch(() => undefined);
    await expect(conn.call({ op: 'status' })).rejects.toMatchObject({ message: expect.stringContaining('closed the connection') });
    conn.close();
    await expect(AgentConnection.connect(join(dir, 'sock'))).rejects.toMatchObject({ rv: -111, message: expect.stringContaining('lockagent is not running') });
  });

  it('returns lease errors with their code and sentence', async () => {
    const p = callAgent(join(dir, 'sock'), { op: 'acquire', owner: { uuid: 'u' }, leases: [{ lockspace: 'L', resource: 'R', path: '/p', offset: 0 }] });
    await expect(p).rejects.toMatchObject({ rv: -243, message: expect.stringContaining('leased by host 3') });
  });

  it('survives malformed input and reports each problem', async () => {
    const lines = await rawExchange(join(dir, 'sock'), [
      'not json', '[1]', '{"v":2,"id":1,"op":"status"}', '{"v":1,"id":2,"op":"explode"}',
      '{"v":1,"id":3,"op":"acquire","owner":{"uuid":""},"leases":[]}', '{"v":1,"id":4,"op":"acquire","owner":{"uuid":"u"},"leases":[{"lockspace":"L","resource":"R","path":"/p","offset":-1}]}',
      '{"v":1,"id":5,"op":"inquire","owner":{"uuid":"u"}}', '{"v":1,"id":6,"op":"status"}',
    ].join('\n') + '\n');
    const rs = lines.map((l) => JSON.parse(l));
    const msgs = rs.map((r) => (r.ok ? 'ok' : r.error.message));
    expect(msgs).toEqual(expect.arrayContaining([
      'request is not valid JSON', 'request must be a JSON object',
      expect.stringContaining('unsupported protocol version 2'), expect.stringContaining('unknown op "explode"'),
      '"uuid" must be a non-empty string', '"offset" must be a non-negative integer', 'boom', 'ok',
    ]));
    expect(rs.find((r) => r.id === 6)).toMatchObject({ ok: true, result: { pong: 'status' } });
  });

  it('replaces a stale socket file but refuses to steal a live one', async () => {
    const other = new ControlServer({ path: join(dir, 'sock'), mode: 0o600, handler: async () => null });
    await expect(other.listen()).rejects.toThrow(/already listening/);
  });

  it('explains an absent agent', async () => {
    await expect(callAgent(join(dir, 'nope'), { op: 'status' })).rejects.toThrow(/lockagent is not running/);
  });
});
