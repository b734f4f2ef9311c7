import { NAME_ID_SIZE } from './constants';
import { LeaseError, SANLK } from './results';

/**
 * Names on disk are 48-byte fields, NUL-padded but not necessarily NUL-terminated. We keep them
 * as latin1 strings so every byte round-trips unchanged, whatever a foreign writer put there.
 */
export function readName(buf: Uint8Array, off: number): string {
  let end = off;
  while (end < off + NAME_ID_SIZE && buf[end] !== 0) end++;
  return Buffer.from(buf.buffer, buf.byteOffset + off, end - off).toString('latin1');
}

export function writeName(buf: Buffer, off: number, name: string, max = NAME_ID_SIZE): void {
  buf.fill(0, off, off + NAME_ID_SIZE);
  const bytes = Buffer.from(name, 'latin1');
  bytes.copy(buf, off, 0, Math.min(bytes.length, max));
}

/** strncmp(a, b, 48) == 0 */
export function namesEqual(a: string, b: string): boolean {
  return a.slice(0, NAME_ID_SIZE) === b.slice(0, NAME_ID_SIZE);
}

/** Validate a lockspace/resource name given by an operator (utf8 bytes, 1..48, no ':' ambiguity handled by parser). */
export function checkName(kind: 'lockspace' | 'resource', name: string): string {
  const len = Buffer.byteLength(name, 'utf8');
  if (len === 0) throw new LeaseError(SANLK.EINVAL, `${kind} name is empty`);
  if (len > NAME_ID_SIZE) {
    throw new LeaseError(SANLK.EINVAL, `${kind} name "${name}" is ${len} bytes; sanlock allows at most ${NAME_ID_SIZE}`);
  }
  // Stored as bytes: convert utf8 input to the latin1 form used internally.
  return Buffer.from(name, 'utf8').toString('latin1');
}
