import { constants as C, promises as fsp } from 'fs';
import { buildLockspaceArea, DELTA_DISK_MAGIC, Geometry, LeaseError, SANLK, decodeLeader } from '../ondisk';
import { DirectFile } from '../io/directio';

/**
 * Create a lockspace file the way libvirt's plugin does, but safely on shared storage: exclusive
 * create, zero-fill to the align size, then sanlock's two-step init. A host that loses the
 * creation race uses the winner's file; it waits for the winner's commit write instead of
 * initialising over it.
 */
export async function ensureLockspaceFile(
  path: string, spaceName: string, geometry: Geometry, ioTimeout: number,
  opts: { mode?: number; uid?: number; gid?: number; waitCommitMs?: number; log?: (m: string) => void } = {},
): Promise<'created' | 'existing'> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(path, C.O_CREAT | C.O_EXCL | C.O_WRONLY, opts.mode ?? 0o600);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'EEXIST') {
      throw new LeaseError(-Math.abs(err.errno ?? 5), `cannot create lockspace file ${path}: ${err.message}` +
        (err.code === 'ENOENT' ? ' (the lease directory does not exist: create it on the shared mount)' : ''));
    }
  }
  if (!fh) {
    await waitCommitted(path, spaceName, ioTimeout, opts.waitCommitMs ?? 10000);
    return 'existing';
  }
  try {
    if (opts.uid !== undefined || opts.gid !== undefined) await fh.chown(opts.uid ?? -1, opts.gid ?? -1);
    await fh.truncate(geometry.alignSize);
  } finally {
    await fh.close();
  }
  const f = await DirectFile.open(path);
  try {
    const { area, commitSector } = buildLockspaceArea({ spaceName, geometry, ioTimeout });
    await f.write(0, area, 60000);
    await f.write(0, commitSector, 60000);
  } catch (e) {
    await fsp.unlink(path).catch(() => undefined);
    throw e;
  } finally {
    await f.close();
  }
  opts.log?.(`created lockspace ${spaceName} in ${path} (${geometry.sectorSize}/${geometry.alignSize >> 20}M, io_timeout ${ioTimeout})`);
  return 'created';
}

async function waitCommitted(path: string, spaceName: string, ioTimeout: number, waitMs: number): Promise<void> {
  const until = Date.now() + waitMs;
  for (;;) {
    const f = await DirectFile.open(path, { readOnly: true });
    let magic: number;
    try {
      const b = await f.read(0, 512, ioTimeout * 1000);
      magic = decodeLeader(b, 0).magic;
    } finally {
      await f.close();
    }
    if (magic === DELTA_DISK_MAGIC) return;
    if (Date.now() > until) {
      throw new LeaseError(SANLK.LEADER_MAGIC,
        `lockspace file ${path} exists but holds no initialised lockspace ${spaceName}; ` +
        `if no host is creating it, initialise it with: lockagent direct init -s ${spaceName}:0:${path}:0`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
