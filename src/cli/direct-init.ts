/**
 * `lockagent direct init -s LS:0:PATH:OFF | -r LS:RES:PATH:OFF` — byte-identical to
 * `sanlock direct init`: a lockspace is written as the whole area with sector 0 uncommitted
 * (magic 0) and then sector 0 alone; a resource as one write of the whole area.
 */
import { constants as osConstants } from 'os';
import { buildLockspaceArea, buildResourceArea } from '../ondisk/area';
import { DEFAULT_IO_TIMEOUT } from '../ondisk/constants';
import { Geometry, geometryFor, MiB } from '../ondisk/sizes';
import { escapePath, LockspaceArg, ResourceArg, sizeLabel, UsageError } from '../config/sanlockargs';
import { CliContext, EXIT_FAILED, EXIT_OK } from './context';
import { failureLine, leaseLabel } from './messages';
import { openTarget } from './open-target';
import { errorToRv, WritableStorage } from './sanlock-io';

/** sanlock 3.8.5 writes a new lease with a 60 s I/O timeout (write_init_io_timeout). */
export const INIT_WRITE_TIMEOUT_MS = 60_000;
const OPEN_TIMEOUT_MS = 60_000;

export interface InitOptions {
  lockspace?: LockspaceArg;
  resource?: ResourceArg;
  /** -Z/-A; undefined = from the device */
  geometry?: Geometry;
  /** -o (lockspace records); default 10 */
  ioTimeout?: number;
  /** -n (resource); 0 = max_hosts */
  numHosts?: number;
  /** -z 1 (resource) */
  clear?: boolean;
}

/** sanlock's defaults: files are 512/1M; block devices follow their logical sector size. */
export function defaultGeometry(storage: WritableStorage, path: string): Geometry {
  if (!storage.info.isBlockDevice) return geometryFor(512, MiB);
  const ls = storage.info.logicalSectorSize;
  if (ls === 512) return geometryFor(512, MiB);
  if (ls === 4096) return geometryFor(4096, 8 * MiB);
  throw new UsageError(`${path} has ${ls}-byte logical sectors, which sanlock does not support by default; give -Z and -A`);
}

export async function directInit(ctx: CliContext, o: InitOptions): Promise<number> {
  const out = ctx.output;
  const target = o.lockspace ?? o.resource;
  if (!target) throw new UsageError('needs -s LOCKSPACE or -r RESOURCE');
  if (o.lockspace && o.resource) throw new UsageError('give either -s or -r, not both');
  const { path, offset } = target;
  const isLs = !!o.lockspace;
  const label = o.lockspace
    ? leaseLabel([o.lockspace.name], path, offset)
    : leaseLabel([o.resource!.lockspace, o.resource!.resource], path, offset);

  // Checks that need no I/O come first: a bad command line never opens anything.
  const alignHint = o.geometry?.alignSize ?? MiB;
  if (offset % alignHint !== 0) {
    throw new UsageError(
      `offset ${offset} is not a multiple of the align size ${sizeLabel(alignHint)}; lease areas must start on align boundaries ` +
      `(sanlock does not check this, lockagent does)`,
    );
  }
  if (!isLs && o.geometry && o.numHosts && o.numHosts > o.geometry.maxHosts) {
    throw new UsageError(`-n ${o.numHosts} exceeds max_hosts ${o.geometry.maxHosts} of ${o.geometry.sectorSize}/${sizeLabel(o.geometry.alignSize)} (sanlock would silently use ${o.geometry.maxHosts})`);
  }

  const createSize = sizeLabel(offset + (o.geometry?.alignSize ?? MiB));
  const opened = await openTarget(ctx, path, 'init', { timeoutMs: OPEN_TIMEOUT_MS, createSize });
  if (!opened.ok) {
    // sanlock: a lockspace path that cannot be opened is -ENODEV; a resource gives -errno
    const errno = (osConstants.errno as Record<string, number | undefined>)[opened.code];
    const rv = isLs || !errno ? -19 : -errno;
    out.out(`init done ${rv}\n`);
    out.err(`lockagent: init ${label} failed: ${opened.message}`);
    return EXIT_FAILED;
  }
  const storage = opened.storage;
  try {
    const g = o.geometry ?? defaultGeometry(storage, path);
    if (storage.info.isBlockDevice && g.sectorSize < storage.info.logicalSectorSize) {
      throw new UsageError(`${path} has ${storage.info.logicalSectorSize}-byte logical sectors; -Z ${g.sectorSize} cannot be used on it (use -Z 4096 -A 1M|2M|4M|8M)`);
    }
    if (offset % g.alignSize !== 0) {
      throw new UsageError(
        `offset ${offset} is not a multiple of the align size ${sizeLabel(g.alignSize)} (${g.sectorSize}/${sizeLabel(g.alignSize)} on ${escapePath(path)}); ` +
        'lease areas must start on align boundaries (sanlock does not check this, lockagent does)',
      );
    }
    if (!isLs && o.numHosts && o.numHosts > g.maxHosts) {
      throw new UsageError(`-n ${o.numHosts} exceeds max_hosts ${g.maxHosts} of ${g.sectorSize}/${sizeLabel(g.alignSize)} (sanlock would silently use ${g.maxHosts})`);
    }
    if (storage.info.isBlockDevice && offset + g.alignSize > storage.info.size) {
      out.out('init done -28\n');
      out.err(
        `lockagent: init ${label} failed: the device is ${storage.info.size} bytes, the lease area needs ${offset + g.alignSize} ` +
        `(offset ${offset} + ${sizeLabel(g.alignSize)}); remedy: use a smaller offset or a larger device`,
      );
      return EXIT_FAILED;
    }

    try {
      if (o.lockspace) {
        const { area, commitSector } = buildLockspaceArea({
          spaceName: o.lockspace.name, geometry: g, ioTimeout: o.ioTimeout ?? DEFAULT_IO_TIMEOUT,
        });
        await storage.write(offset, area, INIT_WRITE_TIMEOUT_MS);
        await storage.write(offset, commitSector, INIT_WRITE_TIMEOUT_MS);
      } else {
        const r = o.resource!;
        const area = buildResourceArea({
          spaceName: r.lockspace, resourceName: r.resource, geometry: g, numHosts: o.numHosts || 0,
          clear: !!o.clear, now: o.clear ? ctx.monotime() : 0,
        });
        await storage.write(offset, area, INIT_WRITE_TIMEOUT_MS);
      }
    } catch (error) {
      const rv = errorToRv(error);
      out.out(`init done ${rv}\n`);
      const msg = error instanceof Error ? error.message : String(error);
      out.err(`${failureLine(`init ${label}`, rv, `writing ${escapePath(path)} failed: ${msg}`, 'check the storage and retry; the area may be half-written, so do not use it until init succeeds')}`);
      return EXIT_FAILED;
    }
    out.out('init done 0\n');
    return EXIT_OK;
  } finally {
    await storage.close().catch(() => undefined);
  }
}
