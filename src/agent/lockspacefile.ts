import { buildLockspaceArea, DELTA_DISK_MAGIC, Geometry, LeaseError, SANLK } from '../ondisk';
import { createLeaseArea } from './leasefile';

/**
 * Create a lockspace file the way libvirt's plugin does, but safely on shared storage: exclusive
 * create, zero-fill to the align size, then sanlock's two-step init (area, then the commit
 * sector). A host that loses the creation race uses the winner's file; it waits for the winner's
 * commit write instead of initialising over it.
 */
export async function ensureLockspaceFile(
  path: string, spaceName: string, geometry: Geometry, ioTimeout: number,
  opts: { mode?: number; uid?: number; gid?: number; waitCommitMs?: number; log?: (m: string) => void } = {},
): Promise<'created' | 'existing'> {
  const r = await createLeaseArea({
    path, what: 'lockspace file', missingDirHint: 'the lease directory does not exist: create it on the shared mount',
    alignSize: geometry.alignSize, mode: opts.mode, uid: opts.uid, gid: opts.gid,
    initWrites: () => {
      const { area, commitSector } = buildLockspaceArea({ spaceName, geometry, ioTimeout });
      return [area, commitSector];
    },
    initialised: (magic) => magic === DELTA_DISK_MAGIC,
    notInitialised: () => new LeaseError(SANLK.LEADER_MAGIC,
      `lockspace file ${path} exists but holds no initialised lockspace ${spaceName}; ` +
      `if no host is creating it, initialise it with: lockagent direct init -s ${spaceName}:0:${path}:0`),
    waitMs: opts.waitCommitMs ?? 10000, pollMs: 200, readTimeoutMs: ioTimeout * 1000,
  });
  if (r === 'created') opts.log?.(`created lockspace ${spaceName} in ${path} (${geometry.sectorSize}/${geometry.alignSize >> 20}M, io_timeout ${ioTimeout})`);
  return r;
}
