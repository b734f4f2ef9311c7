import { DELTA_DISK_MAGIC, DELTA_DISK_VERSION_MAJOR, HOST_NAME_MAX_ON_DISK, HOSTID_BITMAP_OFFSET, HOSTID_BITMAP_SIZE, LEADER_CHECKSUM_LEN, VERSION_MAJOR_MASK } from '../ondisk/constants';
import { decodeLeader, LEADER_CHECKSUM_OFFSET, LEADER_TIMESTAMP_OFFSET, leaderChecksum, LeaderRecord } from '../ondisk/leader';
import { namesEqual } from '../ondisk/names';
import { describeResult, LeaseError, SANLK } from '../ondisk/results';
import { Geometry, geometryFromLeader } from '../ondisk/sizes';
import { writeU64 } from '../ondisk/u64';
import { verifyDeltaLeader } from '../ondisk/verify';
import { Clock } from './clock';
import { sameLeader, sealLeader } from './record';
import { ioError, readArea, timedIo, writeSector } from './diskio';
import { LeaseStorage, NOT_STARTED, SectorStamp, StartWindow } from './storage';
import { deltaAcquireHeldDelay, deltaShortDelay, hostDeadSeconds } from './timeouts';
import { Cancel, checkCancel, leaseTimestamp, sleepSeconds } from './wait';

/**
 * Delta leases (sanlock's delta_lease.c): the host_id lease a host holds in a lockspace, with
 * the same reads, writes, delays and checks as sanlock 3.8.5 so both can share a lockspace.
 */

/** The host event a daemon publishes in write_id/gen/ts ("extra1..3") with each renewal. */
export interface HostEvent {
  generation: number;
  event: number;
  data: number;
}

/** Our hold on one host_id sector: what sanlock keeps in struct space + the lockspace thread. */
export interface DeltaLease {
  readonly spaceName: string;
  readonly hostId: number;
  /** The name we were given; on disk it is truncated to 47 bytes + NUL. */
  readonly hostName: string;
  readonly storage: LeaseStorage;
  /** Byte offset of the lockspace area (sector 0 = host_id 1). */
  readonly offset: number;
  readonly geometry: Geometry;
  /** Our io_timeout, written (& 0xFF) into every record. */
  readonly ioTimeout: number;
  /** Host generation (owner_generation of our acquire): tokens carry it as inp2/mode-block gen. */
  readonly generation: number;
  /** The record we last wrote (leader_last): renew compares the disk against it. */
  leader: LeaderRecord;
  /** Monotime of our last successful acquire/renew, i.e. the timestamp we wrote. */
  lastSuccess: number;
  /** Result of the last acquire/renew (sanlock's prev_result): 0 enables the -261 check. */
  lastResult: number;
  /** Bits we set for other hosts ("look at your requests/events"), written at 256..511 on renew. */
  readonly bitmap: Buffer;
  /** Host event for write_id/gen/ts; undefined leaves the on-disk values as they are. */
  event?: HostEvent;
  /** Renewal read buffer, reused across renewals and dropped after a failed read. */
  iobuf?: Buffer;
  /**
   * The bytes of the sector we last wrote (with `leader`). While the last renewal succeeded,
   * the next one sends its read and write as one request that writes only if these bytes are
   * still on disk (LeaseStorage.readCompareWrite).
   */
  lastSector?: Buffer;
  released: boolean;
  /**
   * The host_id's record as deltaAcquire found it (undefined for a lease continued, not
   * acquired): a record under our own name with timestamp 0 means we left cleanly last time.
   */
  readonly previous?: LeaderRecord;
}

export interface DeltaAcquireParams {
  storage: LeaseStorage;
  offset: number;
  spaceName: string;
  hostId: number;
  hostName: string;
  ioTimeout: number;
  clock: Clock;
  cancel?: Cancel;
  /**
   * Fail at once with -262 when the slot is held under another name, instead of waiting for its
   * host to prove dead (host_id = auto chose it as free: another host took it first).
   */
  requireFree?: boolean;
  /**
   * Whether a record under our own name may be taken at once (sanlock's fast reacquire). sanlock
   * always does; a clone with our host name shares it, so the agent allows it only for the
   * generation its own record says this machine acquired. Otherwise our name is treated as
   * another's: wait for the writer to prove dead. Without it, sanlock's rule.
   */
  ownNameProven?: (leader: LeaderRecord) => boolean;
}

const ls = (space: string, hostId: number) => `host_id ${hostId} of lockspace ${space}`;

/**
 * delta_read_lockspace_sizes: sector 0 tells the sector and align size (4096 bytes read at the
 * lockspace offset cover one 4K sector or eight 512 ones). A magic of 0 there means init is
 * not committed yet.
 */
export async function readLockspaceGeometry(
  storage: LeaseStorage, offset: number, spaceName: string, ioTimeout: number,
): Promise<Geometry> {
  let buf: Buffer;
  try {
    buf = await timedIo('leader_read', () => storage.read(offset, 4096, ioTimeout * 1000));
  } catch (e) {
    throw ioError(e, SANLK.LEADER_READ, `reading the header of lockspace ${spaceName} on ${storage.id}`);
  }
  const l = decodeLeader(buf, 0);
  if (l.magic !== DELTA_DISK_MAGIC) {
    throw new LeaseError(SANLK.LEADER_MAGIC, l.magic === 0
      ? `lockspace ${spaceName} on ${storage.id}:${offset} is not initialised (or its init did not complete)`
      : `no lockspace at ${storage.id}:${offset} (magic 0x${l.magic.toString(16)})`);
  }
  if (((l.version & VERSION_MAJOR_MASK) >>> 0) !== DELTA_DISK_VERSION_MAJOR) {
    throw new LeaseError(SANLK.LEADER_VERSION, `lockspace at ${storage.id}:${offset} has unsupported version 0x${l.version.toString(16)}`);
  }
  const g = geometryFromLeader(l.sectorSize, l.flags);
  if (!g) {
    throw new LeaseError(SANLK.ADDLS_SIZES, `lockspace at ${storage.id}:${offset} has an invalid sector/align size (${l.sectorSize}, flags 0x${l.flags.toString(16)})`);
  }
  return g;
}

/** delta_lease_leader_read: one sector, verified (magic, version, lockspace name, checksum). */
export async function readDeltaLeader(
  storage: LeaseStorage, offset: number, geometry: Geometry, spaceName: string, hostId: number, ioTimeout: number,
): Promise<LeaderRecord> {
  const at = offset + (hostId - 1) * geometry.sectorSize;
  let buf: Buffer;
  try {
    buf = await timedIo('leader_read', () => storage.read(at, geometry.sectorSize, ioTimeout * 1000));
  } catch (e) {
    throw ioError(e, SANLK.LEADER_READ, `reading the delta lease of ${ls(spaceName, hostId)}`);
  }
  const { rv, leader } = verifyDeltaLeader(buf, 0, spaceName);
  if (rv < 0) throw new LeaseError(rv, `the delta lease of ${ls(spaceName, hostId)} at ${storage.id}:${at} is invalid: ${describeResult(rv)}`);
  return leader;
}

/** Our delta lease sector as written: the sealed record, then the bitmap (if any). */
function fillDeltaSector(rec: LeaderRecord, s: Buffer, bitmap?: Buffer): LeaderRecord {
  const written = sealLeader(rec, s, 0, HOST_NAME_MAX_ON_DISK);
  if (bitmap) bitmap.copy(s, HOSTID_BITMAP_OFFSET, 0, HOSTID_BITMAP_SIZE);
  return written;
}

/** A renewal's timestamp and leader checksum, as the storage stamps them into a scheduled renewal. */
const RENEWAL_STAMP: SectorStamp = { timestampAt: LEADER_TIMESTAMP_OFFSET, checksumAt: LEADER_CHECKSUM_OFFSET, checksumLength: LEADER_CHECKSUM_LEN };

/**
 * The next renewal can be handed to the storage ahead of its time (deltaRenew with `at`): the
 * last one succeeded, it only restamps our sector, and the storage starts requests on its own.
 * Its sector is built when it is handed over: a bitmap bit set meanwhile (setDeltaBitmap) goes
 * out with the renewal after it, 2·io_timeout later.
 */
export function canScheduleRenewal(lease: DeltaLease): boolean {
  return lease.lastResult === SANLK.OK && !!lease.lastSector && !!lease.storage.readCompareWriteAt && !!lease.storage.readInto && canRestamp(lease);
}

/** A renewal changes nothing but the timestamp (and the bitmap): no host event to write, same io_timeout. */
function canRestamp(lease: DeltaLease): boolean {
  return !lease.event && lease.leader.ioTimeout === (lease.ioTimeout & 0xff) && lease.lastSector?.length === lease.geometry.sectorSize;
}

/**
 * The sector of such a renewal: our last sector with the new timestamp, the current bitmap and
 * the checksum over it, byte for byte what encoding the whole record gives (every other byte is
 * as we last wrote it), without encoding names and numbers again at every renewal.
 */
function restampedSector(lease: DeltaLease, timestamp: number): { rec: LeaderRecord; sector: Buffer } {
  const sector = Buffer.from(lease.lastSector!);
  writeU64(sector, LEADER_TIMESTAMP_OFFSET, timestamp);
  lease.bitmap.copy(sector, HOSTID_BITMAP_OFFSET, 0, HOSTID_BITMAP_SIZE);
  const checksum = leaderChecksum(sector, 0);
  sector.writeUInt32LE(checksum, LEADER_CHECKSUM_OFFSET);
  return { rec: { ...lease.leader, timestamp, checksum }, sector };
}

async function writeDeltaSector(
  storage: LeaseStorage, at: number, sectorSize: number, rec: LeaderRecord, timeoutMs: number,
  what: string, bitmap?: Buffer,
): Promise<{ written: LeaderRecord; sector: Buffer }> {
  let written = rec;
  try {
    const sector = await timedIo('delta_write', () => writeSector(storage, at, sectorSize, timeoutMs, (s) => {
      written = fillDeltaSector(rec, s, bitmap);
    }));
    return { written, sector };
  } catch (e) {
    throw ioError(e, SANLK.LEADER_WRITE, what);
  }
}

/** A delta record's writer, as acquire messages name it. */
export const describeOwner = (l: LeaderRecord) =>
  `host "${l.resourceName}" (generation ${l.ownerGeneration}, timestamp ${l.timestamp})`;

/**
 * delta_lease_acquire. Free sector or our own name ("fast reacquire", unless ownNameProven says
 * otherwise): write at once. Held under another name: wait max(host_dead, 8·io) of the previous
 * owner's io_timeout, then take it only
 * if the record did not change or became free. After writing, wait 2·io and re-read: any
 * difference means another host is writing the same host_id (-262).
 */
export async function deltaAcquire(p: DeltaAcquireParams): Promise<DeltaLease> {
  const { storage, offset, spaceName, hostId, clock } = p;
  const what = () => `acquiring ${ls(spaceName, hostId)}`;
  checkCancel(clock, p.cancel, what);
  const geometry = await readLockspaceGeometry(storage, offset, spaceName, p.ioTimeout);
  if (!Number.isInteger(hostId) || hostId < 1 || hostId > geometry.maxHosts) {
    throw new LeaseError(SANLK.ADDLS_INVALID_HOSTID, `host_id ${hostId} is outside 1..${geometry.maxHosts} for lockspace ${spaceName}`);
  }
  const at = offset + (hostId - 1) * geometry.sectorSize;
  const read = () => readDeltaLeader(storage, offset, geometry, spaceName, hostId, p.ioTimeout);

  let leader = await read();
  // Delays concern the previous owner: use the io_timeout it wrote (ours if it wrote none).
  const otherIo = leader.ioTimeout;

  if (p.requireFree && leader.timestamp !== 0) {
    throw new LeaseError(SANLK.HOSTID_BUSY, `${ls(spaceName, hostId)} is no longer free: ${describeOwner(leader)} took it`);
  }
  const ours = namesEqual(leader.resourceName, p.hostName) && (p.ownNameProven?.(leader) ?? true);
  if (leader.timestamp !== 0 && !ours) {
    // Held by another name: it may be alive. Wait long enough that, if it is dead, its
    // watchdog has fired; if it renews meanwhile, the host_id is busy.
    const delay = deltaAcquireHeldDelay(otherIo, p.ioTimeout);
    const before = leader;
    await sleepSeconds(clock, delay, p.cancel, () => `${what()} (waiting ${delay} s for ${describeOwner(before)} to prove dead)`);
    leader = await read();
    if (!sameLeader(before, leader) && leader.timestamp !== 0) {
      throw new LeaseError(SANLK.HOSTID_BUSY,
        `${ls(spaceName, hostId)} is in use: ${describeOwner(leader)} renewed it during our ${delay} s wait`);
    }
  }

  checkCancel(clock, p.cancel, what);
  const rec: LeaderRecord = {
    ...leader,
    timestamp: leaseTimestamp(clock),
    ioTimeout: p.ioTimeout & 0xff,
    ownerId: hostId,
    ownerGeneration: leader.ownerGeneration + 1,
    resourceName: truncateHostName(p.hostName),
  };
  const { written, sector } = await writeDeltaSector(storage, at, geometry.sectorSize, rec, p.ioTimeout * 1000, `writing the delta lease of ${ls(spaceName, hostId)}`);

  // Another host may be doing the same: if it wrote after us, our record is gone.
  await sleepSeconds(clock, deltaShortDelay(otherIo, p.ioTimeout), p.cancel, what);
  const check = await read();
  if (!sameLeader(written, check)) {
    throw new LeaseError(SANLK.HOSTID_BUSY,
      `${ls(spaceName, hostId)} is in use: ${describeOwner(check)} wrote it while we were acquiring it`);
  }
  return {
    spaceName, hostId, hostName: p.hostName, storage, offset, geometry, ioTimeout: p.ioTimeout,
    generation: written.ownerGeneration, leader: written, lastSuccess: written.timestamp, lastResult: SANLK.OK,
    bitmap: Buffer.alloc(HOSTID_BITMAP_SIZE), released: false, previous: leader, lastSector: sector,
  };
}

/**
 * Set or clear host_id's bit in the bitmap our renewals write (sanlock sets it to signal a
 * request or host event to that host, for set_bitmap_seconds).
 */
export function setDeltaBitmap(lease: DeltaLease, hostId: number, on: boolean): void {
  const byte = (hostId - 1) >> 3;
  const mask = 1 << ((hostId - 1) & 7);
  lease.bitmap[byte] = on ? lease.bitmap[byte] | mask : lease.bitmap[byte] & ~mask;
}

/** The host name as sanlock stores it: at most 47 bytes, then NUL. */
export function truncateHostName(name: string): string {
  return Buffer.from(name, 'latin1').subarray(0, HOST_NAME_MAX_ON_DISK).toString('latin1');
}

export interface DeltaRenewal {
  /**
   * The whole lockspace area as read (for the host monitor). It is the lease's reusable iobuf:
   * valid until the next renewal.
   */
  area: Buffer;
  leader: LeaderRecord;
  /** how long the lockspace read and our sector write took (sanlock's renewal history) */
  readMs: number;
  writeMs: number;
  /** Both went as one request (readCompareWrite): readMs is the whole of it, writeMs 0. */
  oneRequest?: boolean;
}

/**
 * Results after which sanlock stops using the lockspace at once (corrupt_result): our sector was
 * overwritten or is unreadable as ours. Retrying cannot help.
 */
export function isCorruptRenewal(rv: number): boolean {
  return rv === SANLK.RENEW_OWNER || rv === SANLK.RENEW_DIFF || rv === SANLK.LEADER_MAGIC ||
    rv === SANLK.LEADER_VERSION || rv === SANLK.LEADER_SECTORSIZE || rv === SANLK.LEADER_LOCKSPACE ||
    rv === SANLK.LEADER_CHECKSUM;
}

/**
 * delta_lease_renew: read the whole lockspace in one I/O, check our sector is still ours (-260)
 * and, if the last renewal succeeded, unchanged since we wrote it (-261); then write a new
 * timestamp with our io_timeout and bitmap. The write gets host_dead seconds: timing it out
 * early would only make us retry a write that may still land. After a successful renewal the
 * read and the write go to storage as one request (readCompareWrite, docs/engine.md): one
 * hand-off to the I/O thread per renewal instead of two; its timestamp is taken before the
 * read, so a little earlier than sanlock's (our own expiry is then reckoned a little early).
 */
export async function deltaRenew(lease: DeltaLease, clock: Clock): Promise<DeltaRenewal>;
/**
 * With `at` (only when canScheduleRenewal): the same renewal as one request that the storage
 * starts `at.startInMs` from now (readCompareWriteAt), stamping the timestamp of its start;
 * NOT_STARTED when it never started (cancelled, or not startable by `at.latestStartInMs`):
 * nothing was read or written and the lease is as it was.
 */
export async function deltaRenew(lease: DeltaLease, clock: Clock, at: StartWindow): Promise<DeltaRenewal | typeof NOT_STARTED>;
export async function deltaRenew(lease: DeltaLease, clock: Clock, at?: StartWindow): Promise<DeltaRenewal | typeof NOT_STARTED> {
  const g = lease.geometry;
  const idOff = (lease.hostId - 1) * g.sectorSize;
  const name = () => ls(lease.spaceName, lease.hostId); // for errors only: not built per renewal
  const fail = (e: LeaseError): never => {
    lease.lastResult = e.rv;
    throw e;
  };
  if (lease.released) fail(new LeaseError(SANLK.RENEW_OWNER, `${name()} was released; acquire it again`));

  const newRecord = (onDisk: LeaderRecord): LeaderRecord => ({
    ...onDisk,
    ioTimeout: lease.ioTimeout & 0xff,
    timestamp: leaseTimestamp(clock),
    ...(lease.event ? {
      writeId: lease.event.generation, writeGeneration: lease.event.event, writeTimestamp: lease.event.data,
    } : {}),
  });
  const storage = lease.storage;
  const target = storage.readInto ? (lease.iobuf ?? storage.allocBuffer?.(g.alignSize) ?? Buffer.allocUnsafe(g.alignSize)) : undefined;
  const t0 = clock.nowMs() + (at?.startInMs ?? 0);
  let area: Buffer | undefined;
  if (at && !(canScheduleRenewal(lease) && target)) throw new Error(`renewing ${name()}: a scheduled renewal needs canScheduleRenewal()`);

  // The last renewal succeeded: our sector must hold exactly what it wrote (the -261 check
  // below), so the read and the write go as one request that writes only if it does. Any
  // difference, and the request writes nothing: the checks below then name it. The deadline is
  // the read's (io_timeout), so a slow read fails the renewal as before; a write that lands after
  // it counts as failed too (safe: our expiry is reckoned from the previous renewal), and the
  // next renewal goes the two-request way, which does not insist on what we wrote.
  if (lease.lastResult === SANLK.OK && lease.lastSector && target && (at || storage.readCompareWrite)) {
    let rec: LeaderRecord;
    let sector: Buffer;
    if (at) {
      // Our last sector with the current bitmap; the storage stamps the timestamp and checksum
      // when it starts the request (RENEWAL_STAMP), as restampedSector would then.
      sector = Buffer.from(lease.lastSector);
      lease.bitmap.copy(sector, HOSTID_BITMAP_OFFSET, 0, HOSTID_BITMAP_SIZE);
      rec = lease.leader; // until stamped below (only a written sector's record is kept)
    } else if (canRestamp(lease)) {
      ({ rec, sector } = restampedSector(lease, leaseTimestamp(clock)));
    } else {
      sector = Buffer.alloc(g.sectorSize);
      rec = fillDeltaSector(newRecord(lease.leader), sector, lease.bitmap);
    }
    let written: boolean;
    let ranMs: number | undefined;
    try {
      const writes = [{ offset: lease.offset + idOff, data: sector }];
      if (at) {
        const r = await timedIo('renew_rmw', () => storage.readCompareWriteAt!(lease.offset, target, idOff, lease.lastSector!, writes, lease.ioTimeout * 1000, at, RENEWAL_STAMP));
        if (r === NOT_STARTED) return NOT_STARTED;
        ({ written, ms: ranMs } = r);
        if (r.timestamp === undefined || r.checksum === undefined) throw new Error(`${storage.id} ran a stamped request without its stamp`);
        // What was written: the stamp in our copy of the sector and record.
        writeU64(sector, LEADER_TIMESTAMP_OFFSET, r.timestamp);
        sector.writeUInt32LE(r.checksum, LEADER_CHECKSUM_OFFSET);
        rec = { ...lease.leader, timestamp: r.timestamp, checksum: r.checksum };
      } else {
        written = await timedIo('renew_rmw', () => storage.readCompareWrite!(lease.offset, target, idOff, lease.lastSector!, writes, lease.ioTimeout * 1000));
      }
    } catch (e) {
      lease.iobuf = undefined; // a late completion may still land in it
      const wrote = (e as { syscall?: string }).syscall === 'write';
      return fail(ioError(e, wrote ? SANLK.LEADER_WRITE : SANLK.LEADER_READ,
        `renewing ${name()}: ${wrote ? 'writing our delta lease' : 'reading the lockspace'}`));
    }
    lease.iobuf = target;
    if (written) {
      lease.leader = rec;
      lease.lastSector = sector;
      lease.lastSuccess = rec.timestamp;
      lease.lastResult = SANLK.OK;
      return { area: target, leader: rec, readMs: ranMs ?? clock.nowMs() - t0, writeMs: 0, oneRequest: true };
    }
    area = target;
  }

  if (!area) {
    try {
      area = await timedIo('area_read', () => readArea(storage, lease.offset, g.alignSize, lease.ioTimeout * 1000, target));
    } catch (e) {
      lease.iobuf = undefined; // a late completion may still land in it
      return fail(ioError(e, SANLK.LEADER_READ, `renewing ${name()}: reading the lockspace`));
    }
    if (storage.readInto) lease.iobuf = area;
  }

  const { rv, leader } = verifyDeltaLeader(area, idOff, lease.spaceName);
  if (rv < 0) fail(new LeaseError(rv, `renewing ${name()}: our delta lease sector is invalid: ${describeResult(rv)}`));
  const last = lease.leader;
  if (leader.ownerId !== last.ownerId || leader.ownerGeneration !== last.ownerGeneration ||
      leader.resourceName !== last.resourceName) {
    fail(new LeaseError(SANLK.RENEW_OWNER,
      `renewing ${name()}: the sector now belongs to ${describeOwner(leader)}, not to us (generation ${last.ownerGeneration}); ` +
      'two hosts are using the same host_id'));
  }
  if (lease.lastResult === SANLK.OK && !sameLeader(leader, last)) {
    fail(new LeaseError(SANLK.RENEW_DIFF,
      `renewing ${name()}: our delta lease changed on disk since our last write; another host is writing our host_id`));
  }

  const t1 = clock.nowMs();
  const { written, sector } = await writeDeltaSector(
    storage, lease.offset + idOff, g.sectorSize, newRecord(leader), hostDeadSeconds(lease.ioTimeout, lease.ioTimeout) * 1000,
    `renewing ${name()}: writing our delta lease`, lease.bitmap,
  ).catch((e: LeaseError) => fail(e));
  lease.leader = written;
  lease.lastSector = sector;
  lease.lastSuccess = written.timestamp;
  lease.lastResult = SANLK.OK;
  return { area, leader: written, readMs: t1 - t0, writeMs: clock.nowMs() - t1 };
}

/**
 * delta_lease_release: our last record with timestamp 0, written as a whole sector (so the
 * bitmap is cleared). Release resources first: other hosts treat every paxos lease of a free
 * host_id as free.
 */
export async function deltaRelease(lease: DeltaLease): Promise<LeaderRecord> {
  const at = lease.offset + (lease.hostId - 1) * lease.geometry.sectorSize;
  const { written } = await writeDeltaSector(lease.storage, at, lease.geometry.sectorSize,
    { ...lease.leader, timestamp: 0 }, lease.ioTimeout * 1000, `releasing ${ls(lease.spaceName, lease.hostId)}`);
  lease.leader = written;
  lease.lastSector = undefined;
  lease.released = true;
  return written;
}
