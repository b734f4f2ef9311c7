import { readFileSync } from 'fs';
import { lookupId } from '../config/accounts';
import { AgentConfig } from '../config/config';
import { Peer } from './server';

export { lookupId }; // socket_user/socket_group and user/group share one lookup

/**
 * Who may use the control socket, checked with SO_PEERCRED after the file mode let them
 * connect: root, the agent's own user, socket_user, and members of socket_group (primary or
 * supplementary). Anything else is refused before a request is read.
 */

function userName(uid: number): string | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (Number(f[2]) === uid) return f[0];
    }
  } catch { /* ignore */ }
  return undefined;
}

/** uid/gid for chown of the socket from socket_user / socket_group (names or numeric ids). */
export function socketOwner(config: Pick<AgentConfig, 'socketUser' | 'socketGroup'>): { uid?: number; gid?: number } {
  const uid = lookupId('/etc/passwd', config.socketUser)?.id;
  const gid = lookupId('/etc/group', config.socketGroup)?.id;
  if (config.socketUser && uid === undefined) throw new Error(`socket_user "${config.socketUser}" does not exist`);
  if (config.socketGroup && gid === undefined) throw new Error(`socket_group "${config.socketGroup}" does not exist`);
  return { uid, gid };
}

export function peerAllowed(config: Pick<AgentConfig, 'socketUser' | 'socketGroup'>): (p: Peer) => boolean {
  const user = lookupId('/etc/passwd', config.socketUser);
  const group = lookupId('/etc/group', config.socketGroup);
  const self = process.getuid?.() ?? 0;
  return (p: Peer) => {
    if (p.uid === undefined) return true; // no credentials available: the file mode is the gate
    if (p.uid === 0 || p.uid === self || (user && p.uid === user.id)) return true;
    if (group && (p.gid === group.id || group.members.includes(userName(p.uid) ?? '\0'))) return true;
    return false;
  };
}
