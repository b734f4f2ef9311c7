/**
 * sanlock's CRC-32C variant: Castagnoli polynomial, reflected (0x82F63B78), start value
 * 0xFFFFFFFE (~1) and no final xor. A standard CRC-32C would produce different checksums and
 * every sanlock host would reject our records with -229.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export const SANLOCK_CRC_SEED = 0xfffffffe;

/** CRC over `buf[start, end)` continuing from `crc` (no final xor, as sanlock). */
export function crc32cUpdate(crc: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = crc >>> 0;
  for (let i = start; i < end; i++) c = TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** The checksum sanlock stores in leaders and dblocks. */
export function sanlockChecksum(buf: Uint8Array, start: number, len: number): number {
  return crc32cUpdate(SANLOCK_CRC_SEED, buf, start, start + len);
}

/** Standard CRC-32C (seed ~0, final xor), only for cross-checking the table against known vectors. */
export function crc32cStandard(buf: Uint8Array): number {
  return (crc32cUpdate(0xffffffff, buf) ^ 0xffffffff) >>> 0;
}
