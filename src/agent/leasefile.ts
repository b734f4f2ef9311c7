import { constants as C, promises as fsp } from 'fs';
import type { AgentConfig } from '../config/config';
import { DirectFile } from '../io/directio';
import { decodeLeader, LeaseError } from '../ondisk';

export interface LeaseAreaSpec {
  path: string;
  /** "lockspace file", "lease file": for messages */
  what: string;
  /** appended to the error when the directory does not exist */
  missingDirHint: string;
  /** the file's size: one align area */
  alignSize: number;
  /** the sectors of sanlock's init, each written at offset 0 in this order (built only by the creator) */
  initWrites: () => Buffer[];
  /** a host that lost the creation race waits until the first leader's magic passes this */
  initialised: (magic: number) => boolean;
  /** the error when it does not within `waitMs` */
  notInitialised: () => LeaseError;
  waitMs: number;
  pollMs: number;
  readTimeoutMs: number;
  mode?: number;
  uid?: number;
  gid?: number;
}

/**
 * Mode and owner of the lockspace and lease files this host creates, from user and group (as
 * libvirt's sanlock plugin does): 0600, group read/write too when a group is set, then chown.
 */
export function leaseFileOwner(cfg: Pick<AgentConfig, 'userId' | 'groupId'> & Partial<Pick<AgentConfig, 'maxHosts'>>): { mode: number; uid?: number; gid?: number; numHosts?: number } {
  // numHosts rides along: every creator of lease files passes these options on (max_hosts).
  return { mode: cfg.groupId !== undefined ? 0o660 : 0o600, uid: cfg.userId, gid: cfg.groupId, numHosts: cfg.maxHosts };
}

/**
 * Create a lease file safely on shared storage: exclusive create, sized to one align area, then
 * sanlock's init written with direct I/O (the file is removed again if that fails and the name
 * is still ours). A host that
 * loses the creation race uses the winner's file: it waits for the winner's init instead of
 * initialising over it.
 */
export async function createLeaseArea(s: LeaseAreaSpec): Promise<'created' | 'existing'> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(s.path, C.O_CREAT | C.O_EXCL | C.O_WRONLY, s.mode ?? 0o600);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'EEXIST') {
      throw new LeaseError(-Math.abs(err.errno ?? 5), `cannot create ${s.what} ${s.path}: ${err.message}` +
        (err.code === 'ENOENT' ? ` (${s.missingDirHint})` : ''));
    }
  }
  if (!fh) {
    await waitForWinner(s);
    return 'existing';
  }
  let ours: { dev: bigint; ino: bigint };
  try {
    if (s.uid !== undefined || s.gid !== undefined) await fh.chown(s.uid ?? -1, s.gid ?? -1);
    // The mode asked for, not what the umask leaves of it (0660 for a group would become 0640).
    if (s.mode !== undefined) await fh.chmod(s.mode);
    await fh.truncate(s.alignSize);
    ours = await fh.stat({ bigint: true });
  } finally {
    await fh.close();
  }
  const f = await DirectFile.open(s.path);
  try {
    for (const b of s.initWrites()) await f.write(0, b, 60000);
  } catch (e) {
    // Remove only the file we created: the name may already be someone else's new file.
    const now = await fsp.lstat(s.path, { bigint: true }).catch(() => undefined);
    if (now && now.ino === ours.ino && now.dev === ours.dev) await fsp.unlink(s.path).catch(() => undefined);
    throw e;
  } finally {
    await f.close();
  }
  return 'created';
}

async function waitForWinner(s: LeaseAreaSpec): Promise<void> {
  const until = Date.now() + s.waitMs;
  for (;;) {
    const f = await DirectFile.open(s.path, { readOnly: true });
    let magic: number;
    try {
      magic = decodeLeader(await f.read(0, 512, s.readTimeoutMs), 0).magic;
    } finally {
      await f.close();
    }
    if (s.initialised(magic)) return;
    if (Date.now() > until) throw s.notInitialised();
    await new Promise((r) => setTimeout(r, s.pollMs));
  }
}
