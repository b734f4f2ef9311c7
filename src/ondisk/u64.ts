/**
 * sanlock's u64 fields as JavaScript numbers, read and written as two little-endian u32 words:
 * every record decode and encode goes through these (a renewal, every dblock of an acquire), and
 * the BigInt round trip cost more than the rest of the field's work. Values above 2^53 round to
 * the nearest double exactly as Number(BigInt) does; records keep their raw bytes where exactness
 * matters (leader.ts).
 */
const U32 = 0x100000000;

/** The u64 whose little-endian u32 words are `lo`, `hi` (the host monitor reads sectors as words). */
export function u64FromWords(lo: number, hi: number): number {
  return lo + hi * U32;
}

export function readU64(b: Buffer, off: number): number {
  return u64FromWords(b.readUInt32LE(off), b.readUInt32LE(off + 4));
}

/** Throws RangeError for what writeBigUInt64LE(BigInt(v)) refuses: a fraction, a negative, 2^64 or more. */
export function writeU64(b: Buffer, off: number, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= U32 * U32) throw new RangeError(`${v} is not a u64 value`);
  b.writeUInt32LE(v % U32, off);
  b.writeUInt32LE(Math.floor(v / U32), off + 4);
}
