import { LeaseError, SANLK } from '../ondisk/results';
import type { CliContext } from './context';
import { describeOpenError } from './messages';
import type { WritableStorage } from './sanlock-io';

export type OpenOutcome =
  | { ok: true; storage: WritableStorage }
  | { ok: false; code: string; message: string; error?: unknown };

/**
 * Open a lease path the way the direct commands need it. Only regular files and block devices
 * are accepted: anything else (a FIFO would block the open, a directory is meaningless) is
 * refused with a sentence, before opening.
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
