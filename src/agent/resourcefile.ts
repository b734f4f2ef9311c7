import { constants as C, promises as fsp } from 'fs';
import { DirectFile } from '../io/directio';
import { buildResourceArea, decodeLeader, Geometry, LeaseError, SANLK } from '../ondisk';

/**
 * Create an automatic disk lease file (<disk_lease_dir>/<md5>) as libvirt's plugin does:
 * exclusive create, size of one align area, sanlock's paxos init. Unlike libvirt, a host that
 * loses the creation race waits for the winner's init instead of failing on an empty file.
 */
export async function ensureResourceFile(
  path: string, spaceName: string, resourceName: string, geometry: Geometry,
  opts: { mode?: number; uid?: number; gid?: number; waitInitMs?: number } = {},
): Promise<'created' | 'existing'> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(path, C.O_CREAT | C.O_EXCL | C.O_WRONLY, opts.mode ?? 0o600);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'EEXIST') {
      throw new LeaseError(-Math.abs(err.errno ?? 5), `cannot create lease file ${path}: ${err.message}` +
        (err.code === 'ENOENT' ? ' (disk_lease_dir does not exist: create it on the shared mount)' : ''));
    }
  }
  if (!fh) {
    await waitInitialised(path, opts.waitInitMs ?? 5000);
    return 'existing';
  }
  let ours: { dev: bigint; ino: bigint };
  try {
    if (opts.uid !== undefined || opts.gid !== undefined) await fh.chown(opts.uid ?? -1, opts.gid ?? -1);
    await fh.truncate(geometry.alignSize);
    ours = await fh.stat({ bigint: true });
  } finally {
    await fh.close();
  }
  const f = await DirectFile.open(path);
  try {
    await f.write(0, buildResourceArea({ spaceName, resourceName, geometry }), 60000);
  } catch (e) {
    // Remove only the file we created: the name may already be someone else's new file.
    const now = await fsp.lstat(path, { bigint: true }).catch(() => undefined);
    if (now && now.ino === ours.ino && now.dev === ours.dev) await fsp.unlink(path).catch(() => undefined);
    throw e;
  } finally {
    await f.close();
  }
  return 'created';
}

async function waitInitialised(path: string, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  for (;;) {
    const f = await DirectFile.open(path, { readOnly: true });
    let magic: number;
    try {
      magic = decodeLeader(await f.read(0, 512, 10000), 0).magic;
    } finally {
      await f.close();
    }
    // Any other non-zero magic is someone's record: let the acquire report it precisely.
    if (magic !== 0 || Date.now() > until) {
      if (magic === 0) throw new LeaseError(SANLK.LEADER_MAGIC, `lease file ${path} exists but was never initialised; if no host is creating it, remove it`);
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

