import { readFileSync } from 'fs';

/**
 * User and group names to ids, from /etc/passwd and /etc/group (node has no getpwnam). A
 * numeric id ("107", or libvirt's "+107") is taken as it is. Used for socket_user/socket_group
 * and user/group.
 */
export function lookupId(file: string, name: string | undefined): { id: number; members: string[] } | undefined {
  if (!name) return undefined;
  if (/^\+?\d+$/.test(name)) return { id: Number(name.replace('+', '')), members: [] };
  try {
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name) return { id: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) };
    }
  } catch { /* no such file: only numeric ids work */ }
  return undefined;
}

export const PASSWD_FILE = '/etc/passwd';
export const GROUP_FILE = '/etc/group';
