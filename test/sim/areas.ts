import { buildLockspaceArea, buildResourceArea, DEFAULT_GEOMETRY, Geometry } from '../../src/ondisk';
import { MemStorage } from '../helpers/memstorage';

/** Initialise lease areas in a MemStorage exactly as `sanlock direct init` would. */

export function initLockspace(st: MemStorage, offset: number, spaceName: string, ioTimeout = 10, geometry: Geometry = DEFAULT_GEOMETRY): void {
  const { area, commitSector } = buildLockspaceArea({ spaceName, geometry, ioTimeout });
  st.load(offset, area);
  st.load(offset, commitSector);
}

export function initResource(
  st: MemStorage, offset: number, spaceName: string, resourceName: string, geometry: Geometry = DEFAULT_GEOMETRY, numHosts?: number,
): void {
  st.load(offset, buildResourceArea({ spaceName, resourceName, geometry, numHosts }));
}
