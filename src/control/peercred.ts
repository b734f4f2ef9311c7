// Credentials of the process at the other end of a control-socket connection
// (SO_PEERCRED, through the lockagent_native addon). Used by ControlServer's
// `peerOf` option to decide who may talk to the agent.
import type net from 'net';
import { loadNative } from '../io/native';
import type { Peer } from './server';

type PeerCredFn = (fd: number) => { pid: number; uid: number; gid: number };

let peerCredFn: PeerCredFn | null | undefined;

function peerCred(): PeerCredFn | null {
  if (peerCredFn !== undefined) return peerCredFn;
  try {
    const fn = (loadNative() as unknown as { peerCred?: unknown }).peerCred;
    peerCredFn = typeof fn === 'function' ? (fn as PeerCredFn) : null;
  } catch {
    peerCredFn = null; // addon not built
  }
  return peerCredFn;
}

/**
 * {pid, uid, gid} of the peer of a connected unix-domain socket, as the kernel
 * recorded them at connect() time; undefined when they cannot be had (addon
 * missing or too old, not a unix socket, socket already closed).
 * Synchronous: one getsockopt() on the JS thread, which never blocks.
 *
 * The fd comes from libuv's handle (`_handle.fd`), an undocumented but stable
 * Node internal; on anything else than a pipe handle it is absent or -1.
 */
export function peerOf(sock: net.Socket): Peer | undefined {
  const fn = peerCred();
  if (!fn) return undefined;
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    const c = fn(fd);
    // A socket without credentials (TCP) reports pid 0 and uid/gid (u32)-1.
    if (!(c.pid > 0)) return undefined;
    return { pid: c.pid, uid: c.uid, gid: c.gid };
  } catch {
    return undefined;
  }
}
