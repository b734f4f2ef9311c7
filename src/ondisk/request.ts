import { REQ_DISK_MAGIC, REQ_DISK_VERSION } from './constants';
import { readU64, writeU64 } from './u64';

/** struct request_record (sector 1 of a resource). Bytes 20..23 are padding, possibly garbage. */
export interface RequestRecord {
  magic: number;
  version: number;
  lver: number;
  forceMode: number;
}

export function freshRequest(): RequestRecord {
  return { magic: REQ_DISK_MAGIC, version: REQ_DISK_VERSION, lver: 0, forceMode: 0 };
}

export function decodeRequest(buf: Buffer, off = 0): RequestRecord {
  return {
    magic: buf.readUInt32LE(off),
    version: buf.readUInt32LE(off + 4),
    lver: readU64(buf, off + 8),
    forceMode: buf.readUInt32LE(off + 16),
  };
}

/** Writes 24 bytes with zero padding (we never copy a foreign writer's garbage). */
export function encodeRequestInto(r: RequestRecord, buf: Buffer, off = 0): void {
  buf.writeUInt32LE(r.magic >>> 0, off);
  buf.writeUInt32LE(r.version >>> 0, off + 4);
  writeU64(buf, off + 8, r.lver);
  buf.writeUInt32LE(r.forceMode >>> 0, off + 16);
  buf.writeUInt32LE(0, off + 20);
}
