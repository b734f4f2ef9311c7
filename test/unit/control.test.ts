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

describe('control socket limits', () => {
  let dir: string;
  let server: ControlServer;
  const refusals: string[] = [];
  const sockPath = () => join(dir, 'sock');
  const start = async (limits: ConstructorParameters<typeof ControlServer>[0]['limits']) => {
    server = new ControlServer({
      path: sockPath(), mode: 0o600, limits, onRefused: (m) => refusals.push(m),
      handler: async (req) => {
        if (req.op === 'host_status') await new Promise((r) => setTimeout(r, 600)); // a slow request
        return { pong: req.op };
      },
    });
    await server.listen();
  };
  /** Connect, optionally write, and collect lines until the server closes the connection (or `waitMs`). */
  const session = (payload: string | Buffer | undefined, waitMs = 2000) => new Promise<{ lines: string[]; closed: boolean }>((resolve, reject) => {
    const s = net.connect(sockPath());
    let buf = '';
    const t = setTimeout(() => { s.destroy(); resolve({ lines: buf.split('\n').filter(Boolean), closed: false }); }, waitMs);
    s.setEncoding('utf8');
    s.on('connect', () => { if (payload !== undefined) s.write(payload); });
    s.on('data', (d: string) => { buf += d; });
    s.on('error', reject);
    s.on('close', () => { clearTimeout(t); resolve({ lines: buf.split('\n').filter(Boolean), closed: true }); });
  });
  const open = () => new Promise<net.Socket>((resolve) => { const s = net.connect(sockPath(), () => resolve(s)); });

  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'la-ctl-lim-')); refusals.length = 0; });
  afterEach(async () => { await server.close(); rmSync(dir, { recursive: true, force: true }); });

  it('refuses connections past the cap with one error line, and serves again once one closes', async () => {
    await start({ maxConnections: 3 });
    const held = await Promise.all([open(), open(), open()]);
    await new Promise((r) => setTimeout(r, 50));
    const extra = await session('{"v":1,"id":1,"op":"status"}\n');
    expect(extra.closed).toBe(true);
    expect(extra.lines.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ name: 'EBUSY', message: expect.stringContaining('too many connections to lockagent (3 open)') }) })]);
    expect(refusals[0]).toMatch(/3 connections are open; refusing another/);
    held[0].destroy();
    await new Promise((r) => setTimeout(r, 50));
    await expect(callAgent(sockPath(), { op: 'status' }, 2000)).resolves.toEqual({ pong: 'status' });
    for (const s of held) s.destroy();
  });

  it('answers an over-long request line with an error and closes, with or without its newline', async () => {
    await start({ maxLineBytes: 1024 });
    for (const payload of ['x'.repeat(5000), `${'y'.repeat(2000)}\n`]) {
      const r = await session(payload);
      expect(r.closed).toBe(true);
      expect(JSON.parse(r.lines[0])).toMatchObject({ ok: false, error: { name: 'EINVAL', message: 'request line longer than 1024 bytes' } });
    }
    // a line within the limit, sent in pieces, is still served
    const pad = 'p'.repeat(900);
    const ok = await session(`{"v":1,"id":7,"op":"status","pad":"${pad}"}\n`, 300);
    expect(JSON.parse(ok.lines[0])).toMatchObject({ id: 7, ok: true });
  });

  it('caps the bytes of unfinished requests over all connections', async () => {
    await start({ maxLineBytes: 3000, maxBufferedBytes: 4000 });
    const first = await open();
    first.write('{"v":1,"id":1,"op":"status","pad":"' + 'a'.repeat(2500));
    await new Promise((r) => setTimeout(r, 50));
    const second = await session('b'.repeat(2500));
    expect(second.closed).toBe(true);
    expect(JSON.parse(second.lines[0])).toMatchObject({ ok: false, error: { name: 'EBUSY', message: expect.stringContaining('unfinished requests') } });
    // the first client's request completes normally
    const reply = new Promise<string>((resolve) => { first.setEncoding('utf8'); first.once('data', (d: string) => resolve(d)); });
    first.write('"}\n');
    expect(JSON.parse(await reply)).toMatchObject({ id: 1, ok: true });
    first.destroy();
  });

  it('drops idle connections, never one with a request in flight; a persistent connection reconnects', async () => {
    await start({ idleMs: 300 });
    const silent = await session(undefined, 3000);
    expect(silent.closed).toBe(true);
    // a request slower than the idle limit is answered on its connection
    const slow = await session('{"v":1,"id":2,"op":"host_status"}\n', 3000);
    expect(slow.lines.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ id: 2, ok: true })]);
    expect(slow.closed).toBe(true); // and then dropped once idle
    const conn = await AgentConnection.connect(sockPath());
    await expect(conn.call({ op: 'status' })).resolves.toEqual({ pong: 'status' });
    await new Promise((r) => setTimeout(r, 700));
    await expect(conn.call({ op: 'status' })).resolves.toEqual({ pong: 'status' });
    conn.close();
  });
});
