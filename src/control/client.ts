import net from 'net';
import { LeaseError, resultInfo, SANLK } from '../ondisk/results';
import { Op, PROTOCOL_VERSION, RequestOf, Response, ResultOf } from './protocol';

/**
 * Calls the agent over its control socket; errors come back as LeaseError with the agent's
 * sentence. The result has the type protocol.ts gives the op.
 */
export async function callAgent<O extends Op>(socketPath: string, req: RequestOf<O>, timeoutMs = 300000): Promise<ResultOf<O>> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new LeaseError(SANLK.ETIMEDOUT, `lockagent did not answer within ${Math.round(timeoutMs / 1000)} s (socket ${socketPath})`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, ...req }) + '\n'));
    sock.on('data', (chunk: string) => {
      // Look for the end of the line in the new chunk only: a sweep report is tens of MB, and
      // searching all of it at every 64 KiB chunk cost seconds.
      const at = chunk.indexOf('\n');
      const nl = at < 0 ? -1 : buf.length + at;
      buf += chunk;
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      let r: Response<ResultOf<O>>;
      try {
        // The agent answers each op with its ResultOf (the JSON boundary: trusted, not re-checked).
        r = JSON.parse(buf.slice(0, nl)) as Response<ResultOf<O>>;
      } catch {
        return reject(new LeaseError(SANLK.ERROR, 'lockagent sent an unreadable reply'));
      }
      settle(r, resolve, reject);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(connectError(socketPath, e));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (!buf.includes('\n')) reject(new LeaseError(SANLK.ERROR, `lockagent closed the connection without answering (socket ${socketPath})`));
    });
  });
}

/**
 * The connection to the agent failed: nothing was sent, so nothing was done (the CLI exits 3).
 * Unlike an answer that does not come in time, after which the request may have been carried out.
 */
export class AgentUnreachable extends LeaseError {}

/** What a failed connection to the agent means to the operator. */
function connectError(socketPath: string, e: NodeJS.ErrnoException): LeaseError {
  const why = e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
    ? `lockagent is not running (no listener on ${socketPath}); start it with: lockagent daemon`
    : e.code === 'EACCES'
      ? `permission denied on ${socketPath}: run as root or as a member of socket_group`
      : `cannot reach lockagent on ${socketPath}: ${e.message}`;
  return new AgentUnreachable(e.code === 'EACCES' ? SANLK.EACCES : SANLK.ECONNREFUSED, why);
}

/**
 * The agent's refusal of a request: its result code and sentence. The code's name is
 * resultInfo's, the one naming of a code (src/ondisk/results.ts), so that a code reads the same
 * whether the agent answered it or the CLI met it; the reply's own `name` is not used.
 */
export class AgentError extends LeaseError {
  get rvName(): string {
    return resultInfo(this.rv).name;
  }
}

function settle<R>(r: Response<R>, resolve: (v: R) => void, reject: (e: Error) => void): void {
  if (r.ok) resolve(r.result);
  else reject(new AgentError(r.error.rv, r.error.message));
}

/**
 * One long-lived connection carrying many requests, matched to replies by id (the server
 * answers each line as soon as it is done, so requests may overlap). For programs that manage
 * many leases — like a sanlock client that registers once and reuses its fd — it saves a
 * connect, a peer-credential check and a socket per request. The agent closes a connection idle
 * for SOCKET_LIMITS.idleMs; the next call then connects again. A close while calls are pending
 * means the agent went away: those calls and every later one fail.
 */
export class AgentConnection {
  private nextId = 1;
  private buf = '';
  private failure?: LeaseError;
  private closed = false;
  private sock?: net.Socket;
  private connecting?: Promise<net.Socket>;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  private constructor(sock: net.Socket, private readonly socketPath: string) {
    this.attach(sock);
  }

  static async connect(socketPath: string): Promise<AgentConnection> {
    return new AgentConnection(await openSocket(socketPath), socketPath);
  }

  private attach(sock: net.Socket): void {
    this.sock = sock;
    this.buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => this.onData(chunk));
    sock.on('error', (e: NodeJS.ErrnoException) => this.lost(sock, `lockagent closed the connection (socket ${this.socketPath}): ${e.message}`));
    sock.on('close', () => this.lost(sock, `lockagent closed the connection (socket ${this.socketPath})`));
  }

  private lost(sock: net.Socket, msg: string): void {
    if (this.sock !== sock) return;
    this.sock = undefined;
    // Idle (nothing pending): the agent dropped an idle connection; the next call reconnects.
    if (this.pending.size) this.fail(new LeaseError(SANLK.ERROR, msg));
  }

  async call<O extends Op>(req: RequestOf<O>, timeoutMs = 300000): Promise<ResultOf<O>> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new LeaseError(SANLK.ERROR, `the connection to lockagent (socket ${this.socketPath}) was closed`);
    if (!this.sock) {
      this.connecting ??= openSocket(this.socketPath).finally(() => { this.connecting = undefined; });
      const sock = await this.connecting;
      if (!this.sock) this.attach(sock);
      else if (this.sock !== sock) sock.destroy();
    }
    const sock = this.sock!;
    const id = this.nextId++;
    return new Promise<ResultOf<O>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new LeaseError(SANLK.ETIMEDOUT, `lockagent did not answer within ${Math.round(timeoutMs / 1000)} s (socket ${this.socketPath})`));
      }, timeoutMs);
      // The reply to this id answers this op (the JSON boundary: trusted, not re-checked).
      this.pending.set(id, { resolve: (v) => resolve(v as ResultOf<O>), reject, timer });
      sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id, ...req }) + '\n');
    });
  }

  close(): void {
    this.closed = true;
    this.sock?.end();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      let r: Response;
      try {
        r = JSON.parse(line) as Response;
      } catch {
        this.fail(new LeaseError(SANLK.ERROR, 'lockagent sent an unreadable reply'));
        this.sock?.destroy();
        return;
      }
      const p = typeof r.id === 'number' ? this.pending.get(r.id) : undefined;
      if (!p) continue;
      this.pending.delete(r.id as number);
      clearTimeout(p.timer);
      settle(r, p.resolve, p.reject);
    }
  }

  private fail(e: LeaseError): void {
    this.failure ??= e;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(e);
    }
    this.pending.clear();
  }
}

function openSocket(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const onError = (e: NodeJS.ErrnoException) => reject(connectError(socketPath, e));
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      resolve(sock);
    });
  });
}
