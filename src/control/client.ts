import net from 'net';
import { LeaseError } from '../ondisk/results';
import { PROTOCOL_VERSION, Request, Response } from './protocol';

/** Calls the agent over its control socket; errors come back as LeaseError with the agent's sentence. */
export async function callAgent(socketPath: string, req: Request, timeoutMs = 300000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new LeaseError(-110, `lockagent did not answer within ${Math.round(timeoutMs / 1000)} s (socket ${socketPath})`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, ...req }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      let r: Response;
      try {
        r = JSON.parse(buf.slice(0, nl)) as Response;
      } catch {
        return reject(new LeaseError(-201, 'lockagent sent an unreadable reply'));
      }
      if (r.ok) resolve(r.result);
      else reject(new LeaseError(r.error.rv, r.error.message));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
        ? `lockagent is not running (no listener on ${socketPath}); start it with: lockagent daemon`
        : e.code === 'EACCES'
          ? `permission denied on ${socketPath}: run as root or as a member of socket_group`
          : `cannot reach lockagent on ${socketPath}: ${e.message}`;
      reject(new LeaseError(e.code === 'EACCES' ? -13 : -111, why));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (!buf.includes('\n')) reject(new LeaseError(-201, `lockagent closed the connection without answering (socket ${socketPath})`));
    });
  });
}
