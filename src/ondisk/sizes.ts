import { LFL_ALIGN_1M, LFL_ALIGN_2M, LFL_ALIGN_4M, LFL_ALIGN_8M, LFL_ALIGN_MASK } from './constants';
import { LeaseError, SANLK } from './results';

export const MiB = 1048576;

/** A lease area geometry: one of sanlock's five sector/align combinations. */
export interface Geometry {
  sectorSize: 512 | 4096;
  alignSize: number;
  /** Host slots in a lockspace / dblocks in a resource; also the largest usable host_id. */
  maxHosts: number;
  /** Align bit stored in leader.flags. */
  alignFlag: number;
}

const GEOMETRIES: readonly Geometry[] = [
  { sectorSize: 512, alignSize: 1 * MiB, maxHosts: 2000, alignFlag: LFL_ALIGN_1M },
  { sectorSize: 4096, alignSize: 1 * MiB, maxHosts: 250, alignFlag: LFL_ALIGN_1M },
  { sectorSize: 4096, alignSize: 2 * MiB, maxHosts: 500, alignFlag: LFL_ALIGN_2M },
  { sectorSize: 4096, alignSize: 4 * MiB, maxHosts: 1000, alignFlag: LFL_ALIGN_4M },
  { sectorSize: 4096, alignSize: 8 * MiB, maxHosts: 2000, alignFlag: LFL_ALIGN_8M },
];

export const DEFAULT_GEOMETRY = GEOMETRIES[0];

export function listGeometries(): readonly Geometry[] {
  return GEOMETRIES;
}

/** The geometry for a sector/align pair; anything else is refused as sanlock does. */
export function geometryFor(sectorSize: number, alignSize: number): Geometry {
  const g = GEOMETRIES.find((x) => x.sectorSize === sectorSize && x.alignSize === alignSize);
  if (!g) {
    throw new LeaseError(
      SANLK.EINVAL,
      `invalid sector_size/align_size combination ${sectorSize}/${alignSize / MiB}M; ` +
        'valid: 512/1M, 4096/1M, 4096/2M, 4096/4M, 4096/8M',
    );
  }
  return g;
}

/**
 * Geometry described by a leader's sector_size and flags. Leaders without an align bit (older
 * writers) follow sanlock's old rule: 512 means 1M, 4096 means 8M. Returns undefined when the
 * pair is not one sanlock could have written.
 */
export function geometryFromLeader(sectorSize: number, flags: number): Geometry | undefined {
  if (sectorSize !== 512 && sectorSize !== 4096) return undefined;
  // sanlock tests the bits from 1M upwards, so the lowest set bit wins.
  const all = flags & LFL_ALIGN_MASK;
  const bits = all & -all;
  let align: number;
  switch (bits) {
    case LFL_ALIGN_1M: align = 1 * MiB; break;
    case LFL_ALIGN_2M: align = 2 * MiB; break;
    case LFL_ALIGN_4M: align = 4 * MiB; break;
    case LFL_ALIGN_8M: align = 8 * MiB; break;
    default: align = sectorSize === 512 ? 1 * MiB : 8 * MiB; break;
  }
  return GEOMETRIES.find((x) => x.sectorSize === sectorSize && x.alignSize === align);
}

/**
 * Bytes a paxos ballot reads: the leader, request and num_hosts dblocks, rounded up to a power
 * of two sectors as sanlock does (1 MiB for 512/2000 hosts).
 */
export function paxosReadSize(numHosts: number, sectorSize: number): number {
  let n = 1;
  while (n < numHosts + 2) n *= 2;
  return n * sectorSize;
}
