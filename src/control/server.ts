import { chmodSync, chownSync, existsSync, mkdirSync, unlinkSync } from 'fs';
import net from 'net';
import { dirname } from 'path';
import { LeaseError, Refusal, resultInfo, SANLK } from '../ondisk/results';
import { ErrorBody, parseRequest, PROTOCOL_VERSION, ProtocolError, Request, Response, SOCKET_LIMITS, SocketLimits } from './protocol';

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
  /** a fault of the agent while serving a request (error: with its stack) */
  onError?: (msg: string) => void;
  /**
   * A request answered with a refusal: the lease is held elsewhere, the lockspace is not joined
   * (info), or the request itself is refused: a domain XML or lease plan libvirt's rules forbid
   * (warning). Not a fault of the agent.
   */
  onRequestRefused?: (level: 'info' | 'warning', msg: string) => void;
  /** a refused or dropped client, for the log (warning: it is the client's fault, not ours) */
  onRefused?: (msg: string) => void;
  /** SOCKET_LIMITS by default; tests shorten them */
  limits?: Partial<SocketLimits>;
}

/** How long a refused client gets to read its error line before the connection is destroyed. */
const LINGER_MS = 1000;
/** A flood of refused clients must not flood the log too. */
const REFUSAL_LOG_MS = 10_000;

/**
 * The one mapping from a failed request to its answer and its log line. A refusal (a LeaseError:
 * contention, a lockspace not joined; a Refusal: input that policy forbids; a malformed request)
 * is answered with its own code and sentence; anything else is a fault of the agent, answered
 * SANLK_ERROR and logged with its stack.
 */
export function mapRequestError(e: unknown): { body: ErrorBody; kind: 'refusal' | 'policy' | 'protocol' | 'fault' } {
  const body = (rv: number, message: string) => ({ rv, name: resultInfo(rv).name, message });
  if (e instanceof LeaseError) return { body: body(e.rv, e.message), kind: 'refusal' };
  if (e instanceof Refusal) return { body: body(e.rv, e.message), kind: 'policy' };
  if (e instanceof ProtocolError) return { body: body(SANLK.EINVAL, e.message), kind: 'protocol' };
  return { body: body(SANLK.ERROR, e instanceof Error ? e.message : String(e)), kind: 'fault' };
}

/** Unix-socket JSON-lines server. A bad client gets an error line, never crashes the agent. */
export class ControlServer {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly limits: SocketLimits;
  /** bytes of partial request lines held over all connections */
  private buffered = 0;
  /** refusals are logged at most once per REFUSAL_LOG_MS, with a count of those not logged */
  private lastRefusalLog = 0;
  private refusalsUnlogged = 0;

  constructor(private readonly opts: ServerOptions) {
    this.limits = { ...SOCKET_LIMITS, ...opts.limits };
  }

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
    sock.on('error', () => sock.destroy());
    if (this.sockets.size >= this.limits.maxConnections) {
      this.refused(`control socket: ${this.limits.maxConnections} connections are open; refusing another`);
      this.refuse(sock, SANLK.EBUSY, 'EBUSY', `too many connections to lockagent (${this.limits.maxConnections} open); try again`);
      return;
    }
    this.sockets.add(sock);
    const peer = this.opts.peerOf?.(sock) ?? {};
    if (this.opts.allow && !this.opts.allow(peer)) {
      sock.on('close', () => this.sockets.delete(sock));
      this.refuse(sock, SANLK.EACCES, 'EACCES', `permission denied: uid ${peer.uid} may not use the lockagent socket (see socket_user/socket_group in lockagent.conf)`);
      return;
    }
    // A partial request line: chunks not yet ending in a newline.
    let parts: Buffer[] = [];
    let partLen = 0;
    let inFlight = 0;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const forget = () => {
      this.buffered -= partLen;
      parts = [];
      partLen = 0;
    };
    const armIdle = () => {
      clearTimeout(idle);
      if (inFlight === 0 && !done) {
        idle = setTimeout(() => {
          done = true;
          forget();
          sock.destroy();
        }, this.limits.idleMs);
        idle.unref();
      }
    };
    const drop = (rv: number, name: string, message: string) => {
      done = true;
      clearTimeout(idle);
      forget();
      this.refused(`control socket: dropping a client${peer.pid ? ` (pid ${peer.pid})` : ''}: ${message}`);
      this.refuse(sock, rv, name, message);
    };
    sock.on('close', () => {
      done = true;
      clearTimeout(idle);
      forget();
      this.sockets.delete(sock);
    });
    armIdle();
    sock.on('data', (chunk: Buffer) => {
      while (!done) {
        const nl = chunk.indexOf(10);
        if (nl < 0) {
          if (chunk.length === 0) return;
          if (partLen + chunk.length > this.limits.maxLineBytes) {
            drop(SANLK.EINVAL, 'EINVAL', `request line longer than ${this.limits.maxLineBytes} bytes`);
            return;
          }
          if (this.buffered + chunk.length > this.limits.maxBufferedBytes) {
            drop(SANLK.EBUSY, 'EBUSY', `lockagent is holding ${this.limits.maxBufferedBytes} bytes of unfinished requests; try again`);
            return;
          }
          parts.push(chunk);
          partLen += chunk.length;
          this.buffered += chunk.length;
          return;
        }
        if (partLen + nl > this.limits.maxLineBytes) {
          drop(SANLK.EINVAL, 'EINVAL', `request line longer than ${this.limits.maxLineBytes} bytes`);
          return;
        }
        const line = (partLen ? Buffer.concat([...parts, chunk.subarray(0, nl)]) : chunk.subarray(0, nl)).toString('utf8');
        forget();
        chunk = chunk.subarray(nl + 1);
        if (!line.trim()) continue;
        inFlight++;
        clearTimeout(idle);
        void this.dispatch(sock, line, peer).finally(() => {
          inFlight--;
          armIdle();
        });
      }
    });
  }

  private refused(msg: string): void {
    const now = Date.now();
    if (now - this.lastRefusalLog < REFUSAL_LOG_MS) {
      this.refusalsUnlogged++;
      return;
    }
    const more = this.refusalsUnlogged ? ` (and ${this.refusalsUnlogged} more refusals in the last ${Math.round((now - this.lastRefusalLog) / 1000)} s)` : '';
    this.lastRefusalLog = now;
    this.refusalsUnlogged = 0;
    this.opts.onRefused?.(msg + more);
  }

  /** One error line, then close; destroyed if the client does not read it. */
  private refuse(sock: net.Socket, rv: number, name: string, message: string): void {
    this.send(sock, { v: PROTOCOL_VERSION, id: null, ok: false, error: { rv, name, message } });
    sock.end();
    setTimeout(() => sock.destroy(), LINGER_MS).unref();
  }

  private async dispatch(sock: net.Socket, line: string, peer: Peer): Promise<void> {
    let id: number | string | null = null;
    let op: Request['op'] | undefined;
    try {
      const parsed = parseRequest(line);
      id = parsed.id;
      op = parsed.req.op;
      const result = await this.opts.handler(parsed.req, peer);
      this.send(sock, { v: PROTOCOL_VERSION, id, ok: true, result: result ?? null });
    } catch (e) {
      const eid = (e as { id?: number | string | null }).id;
      const { body, kind } = mapRequestError(e);
      this.send(sock, { v: PROTOCOL_VERSION, id: eid ?? id, ok: false, error: body });
      const who = `${op ?? 'request'}${peer.pid ? ` from pid ${peer.pid}` : ''}`;
      if (kind === 'fault') this.opts.onError?.(`control request failed: ${who}: ${(e as Error).stack ?? e}`);
      else if (kind === 'policy') this.opts.onRequestRefused?.('warning', `refused: ${who}: ${body.message}`);
      else if (kind === 'protocol') this.refused(`control socket: bad request from ${peer.pid ? `pid ${peer.pid}` : 'a client'}: ${body.message}`);
      else if (kind === 'refusal') this.opts.onRequestRefused?.('info', `refused: ${who}: ${body.message} (${body.name})`);
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
