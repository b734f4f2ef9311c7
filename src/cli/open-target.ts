import { promises as fsp } from 'fs';
import { LeaseError, SANLK } from '../ondisk/results';
import type { CliContext } from './context';
import { describeOpenError } from './messages';
import type { WritableStorage } from './sanlock-io';

export type OpenOutcome =
  | { ok: true; storage: WritableStorage }
  | { ok: false; code: string; message: string; error?: unknown };

/**
 * Kernel pseudo-filesystems (statfs f_type, linux/magic.h): their "files" are kernel settings
 * and views (/proc/sys/..., /sys/kernel/mm/...), where a lease write would change the running
 * system. No lease lives there.
 */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'procfs'], [0x62656572, 'sysfs'], [0x64626720, 'debugfs'], [0x74726163, 'tracefs'],
  [0x27e0eb, 'cgroup'], [0x63677270, 'cgroup2'], [0x73636673, 'securityfs'], [0xf97cff8c, 'selinuxfs'],
  [0xcafe4a11, 'bpf'], [0x6165676c, 'pstore'], [0xde5e81e4, 'efivarfs'], [0x62656570, 'configfs'],
  [0x42494e4d, 'binfmt_misc'], [0x65735543, 'fusectl'],
]);

/** The pseudo-filesystem `path` is on, if any (undefined also when statfs fails: the open reports). */
async function pseudoFs(path: string): Promise<string | undefined> {
  try {
    return PSEUDO_FS.get(Number((await fsp.statfs(path)).type));
  } catch {
    return undefined;
  }
}

/**
 * Open a lease path the way the direct commands need it. Only regular files and block devices
 * are accepted: anything else (a FIFO would block the open, a directory is meaningless, a file
 * of procfs or sysfs is a kernel setting) is refused with a sentence, before opening.
 */
export async function openTarget(
  ctx: CliContext, path: string, purpose: 'init' | 'read', opts: { timeoutMs: number; createSize?: string },
): Promise<OpenOutcome> {
  try {
    const st = await ctx.stat(path);
    if (st.isDirectory()) return { ok: false, code: 'EISDIR', message: describeOpenError({ code: 'EISDIR' }, path, purpose).message };
    if (!st.isFile() && !st.isBlockDevice()) {
      return { ok: false, code: 'ENOTBLK', message: `${path} is neither a regular file nor a block device; leases live in files or on block devices` };
    }
    const pseudo = st.isFile() ? await pseudoFs(path) : undefined;
    if (pseudo) {
      return { ok: false, code: 'ENOTBLK', message: `${path} is a file of ${pseudo} (a kernel interface, not storage); leases live in files or on block devices` };
    }
  } catch (error) {
    const d = describeOpenError(error, path, purpose, opts.createSize);
    return { ok: false, code: d.code, message: d.message, error };
  }
  try {
    const storage = await ctx.openStorage(path, { readOnly: purpose === 'read', timeoutMs: opts.timeoutMs });
    return { ok: true, storage };
  } catch (error) {
    if (error instanceof LeaseError && error.rv === SANLK.AIO_TIMEOUT) {
      return { ok: false, code: 'ETIMEDOUT', message: `${error.message}; the storage is not responding: check the NFS server, multipath or device`, error };
    }
    // an error without an errno code (e.g. the native addon is missing) is not about the path
    if (!hasErrnoCode(error)) throw error;
    const d = describeOpenError(error, path, purpose, opts.createSize);
    return { ok: false, code: d.code, message: d.message, error };
  }
}

function hasErrnoCode(e: unknown): boolean {
  return !!e && typeof e === 'object' && typeof (e as { code?: unknown }).code === 'string';
}
