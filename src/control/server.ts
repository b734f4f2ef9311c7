import { chmodSync, chownSync, existsSync, mkdirSync, unlinkSync } from 'fs';
import net from 'net';
import { dirname } from 'path';
import { explainResult, LeaseError } from '../ondisk/results';
import { MAX_LINE_BYTES, parseRequest, PROTOCOL_VERSION, ProtocolError, Request, Response } from './protocol';

export interface Peer {
  pid?: number;
  uid?: number;
  gid?: number;
}

export type Handler = (req: Request, peer: Peer) => Promise<unknown>;

export interface ServerOptions {
  path: string;
  mode: number;
  uid?: number;
  gid?: number;
  handler: Handler;
  /** Look up the connecting process (SO_PEERCRED); undefined when unavailable. */
  peerOf?: (sock: net.Socket) => Peer | undefined;
  /** Decide whether a peer may use the socket; the file mode is the first gate, this the second. */
  allow?: (peer: Peer) => boolean;
  onError?: (msg: string) => void;
}

function errorBody(e: unknown): { rv: number; name: string; message: string } {
  if (e instanceof LeaseError) return { rv: e.rv, name: explainResult(e.rv)?.name ?? 'SANLK_ERROR', message: e.message };
  if (e instanceof ProtocolError) return { rv: -22, name: 'EINVAL', message: e.message };
  const msg = e instanceof Error ? e.message : String(e);
  return { rv: -201, name: 'SANLK_ERROR', message: msg };
}

/** Unix-socket JSON-lines server. A bad client gets an error line, never crashes the agent. */
export class ControlServer {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: ServerOptions) {}

  async listen(): Promise<void> {
    const { path } = this.opts;
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path)) await removeStaleSocket(path);
    const server = net.createServer((sock) => this.onConnection(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
    });
    chmodSync(path, this.opts.mode);
    if (this.opts.uid !== undefined || this.opts.gid !== undefined) chownSync(path, this.opts.uid ?? -1, this.opts.gid ?? -1);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const peer = this.opts.peerOf?.(sock) ?? {};
    if (this.opts.allow && !this.opts.allow(peer)) {
      this.send(sock, { v: PROTOCOL_VERSION, id: null, ok: false, error: { rv: -13, name: 'EACCES', message: `permission denied: uid ${peer.uid} may not use the lockagent socket (see socket_user/socket_group in lockagent.conf)` } });
      sock.end();
      return;
    }
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE_BYTES && !buf.includes('\n')) {
        this.send(sock, { v: PROTOCOL_VERSION, id: null, ok: false, error: { rv: -22, name: 'EINVAL', message: `request line longer than ${MAX_LINE_BYTES} bytes` } });
        sock.end();
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) void this.dispatch(sock, line, peer);
      }
    });
  }

  private async dispatch(sock: net.Socket, line: string, peer: Peer): Promise<void> {
    let id: number | string | null = null;
    try {
      const parsed = parseRequest(line);
      id = parsed.id;
      const result = await this.opts.handler(parsed.req, peer);
      this.send(sock, { v: PROTOCOL_VERSION, id, ok: true, result: result ?? null });
    } catch (e) {
      const eid = (e as { id?: number | string | null }).id;
      this.send(sock, { v: PROTOCOL_VERSION, id: eid ?? id, ok: false, error: errorBody(e) });
      if (!(e instanceof LeaseError) && !(e instanceof ProtocolError)) this.opts.onError?.(`control request failed: ${(e as Error).stack ?? e}`);
    }
  }

  private send(sock: net.Socket, r: Response): void {
    if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(r) + '\n');
  }
}

/** A socket file left by a killed agent is removed; one a live agent listens on is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another lockagent is already listening on ${path}; stop it first or set socket_path`);
  unlinkSync(path);
}
