import { spawn } from 'child_process';
import * as fs from 'fs';
import net from 'net';
import * as os from 'os';
import * as path from 'path';
import { peerOf } from '../../src/control/peercred';
import type { Peer } from '../../src/control/server';
import { loadNative } from '../../src/io/native';

type WithPeerCred = { peerCred(fd: number): { pid: number; uid: number; gid: number } };

function listen(server: net.Server, where: string | number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (typeof where === 'string') server.listen(where, done);
    else server.listen(where, '127.0.0.1', done);
  });
}

/** Connects a client and returns what peerOf() said about it on the server side. */
async function peerSeenByServer(server: net.Server, connect: () => net.Socket): Promise<Peer | undefined> {
  const seen = new Promise<Peer | undefined>((resolve) => {
    server.once('connection', (sock) => {
      resolve(peerOf(sock));
      sock.destroy();
    });
  });
  const client = connect();
  client.on('error', () => undefined);
  try {
    return await seen;
  } finally {
    client.destroy();
  }
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('peerOf (SO_PEERCRED)', () => {
  let dir: string;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockagent-peercred-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('the addon exports peerCred', () => {
    expect(typeof (loadNative() as unknown as WithPeerCred).peerCred).toBe('function');
  });

  it("reports the connecting client's pid, uid and gid over a unix socket", async () => {
    const sockPath = path.join(dir, 'control.sock');
    const server = net.createServer();
    await listen(server, sockPath);
    try {
      const peer = await peerSeenByServer(server, () => net.connect(sockPath));
      expect(peer).toEqual({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
    } finally {
      await close(server);
    }
  });

  it('reports another process (as another user when running as root)', async () => {
    const asRoot = process.getuid!() === 0;
    const uid = asRoot ? 65534 : process.getuid!();
    const gid = asRoot ? 65534 : process.getgid!();
    const sockPath = path.join(dir, 'other.sock');
    fs.chmodSync(dir, 0o755);
    const server = net.createServer();
    await listen(server, sockPath);
    fs.chmodSync(sockPath, 0o777);
    try {
      const seen = new Promise<Peer | undefined>((resolve) => {
        server.once('connection', (sock) => {
          resolve(peerOf(sock));
          sock.end();
        });
      });
      // The child connects and exits when the server hangs up.
      const script = `require('net').connect(${JSON.stringify(sockPath)}).on('error', () => process.exit(3)).resume()`;
      const child = spawn(process.execPath, ['-e', script], { uid, gid, stdio: 'ignore' });
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const peer = await seen;
      expect(peer).toEqual({ pid: child.pid, uid, gid });
      expect(await exited).toBe(0);
    } finally {
      await close(server);
      fs.chmodSync(dir, 0o700);
    }
  });

  it('is undefined for a TCP socket (no credentials)', async () => {
    const server = net.createServer();
    await listen(server, 0);
    try {
      const port = (server.address() as net.AddressInfo).port;
      expect(await peerSeenByServer(server, () => net.connect(port, '127.0.0.1'))).toBeUndefined();
    } finally {
      await close(server);
    }
  });

  it('is undefined for a socket that is already destroyed', async () => {
    const sockPath = path.join(dir, 'closed.sock');
    const server = net.createServer();
    await listen(server, sockPath);
    try {
      const seen = new Promise<Peer | undefined>((resolve) => {
        server.once('connection', (sock) => {
          sock.destroy();
          resolve(peerOf(sock));
        });
      });
      const client = net.connect(sockPath);
      client.on('error', () => undefined);
      expect(await seen).toBeUndefined();
      client.destroy();
    } finally {
      await close(server);
    }
  });

  it('the native call rejects a bad fd with a Node-style error', () => {
    const native = loadNative() as unknown as WithPeerCred;
    expect(() => native.peerCred(-1)).toThrow(expect.objectContaining({ code: 'EBADF', syscall: 'getsockopt' }));
    // An fd that is not a socket.
    const fd = fs.openSync(path.join(dir, 'plain'), 'w');
    try {
      expect(() => native.peerCred(fd)).toThrow(expect.objectContaining({ code: 'ENOTSOCK' }));
    } finally {
      fs.closeSync(fd);
    }
  });
});
