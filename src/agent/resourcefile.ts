import { buildResourceArea, Geometry, LeaseError, SANLK } from '../ondisk';
import { createLeaseArea } from './leasefile';

/**
 * Create an automatic disk lease file (<disk_lease_dir>/<md5>) as libvirt's plugin does:
 * exclusive create, size of one align area, sanlock's paxos init. Unlike libvirt, a host that
 * loses the creation race waits for the winner's init instead of failing on an empty file.
 * `numHosts` (config max_hosts) sets the leader's num_hosts, capped at the geometry's max_hosts.
 */
export function ensureResourceFile(
  path: string, spaceName: string, resourceName: string, geometry: Geometry,
  opts: { mode?: number; uid?: number; gid?: number; waitInitMs?: number; numHosts?: number } = {},
): Promise<'created' | 'existing'> {
  return createLeaseArea({
    path, what: 'lease file', missingDirHint: 'disk_lease_dir does not exist: create it on the shared mount',
    alignSize: geometry.alignSize, mode: opts.mode, uid: opts.uid, gid: opts.gid,
    initWrites: () => [buildResourceArea({ spaceName, resourceName, geometry, numHosts: Math.min(opts.numHosts ?? geometry.maxHosts, geometry.maxHosts) })],
    // Any non-zero magic is someone's record: let the acquire report it precisely.
    initialised: (magic) => magic !== 0,
    notInitialised: () => new LeaseError(SANLK.LEADER_MAGIC, `lease file ${path} exists but was never initialised; if no host is creating it, remove it`),
    waitMs: opts.waitInitMs ?? 5000, pollMs: 100, readTimeoutMs: 10000,
  });
}
