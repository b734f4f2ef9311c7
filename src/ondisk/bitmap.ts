import { HOSTID_BITMAP_OFFSET, HOSTID_BITMAP_SIZE } from './constants';

/**
 * The host bitmap in bytes 256..511 of a delta-lease sector: bit (h-1) set means "host h, look
 * at your requests/events". Least significant bit first. Not covered by the checksum.
 */
export function bitmapHosts(sector: Buffer, sectorOff = 0): number[] {
  const hosts: number[] = [];
  for (let i = 0; i < HOSTID_BITMAP_SIZE; i++) {
    const b = sector[sectorOff + HOSTID_BITMAP_OFFSET + i];
    if (!b) continue;
    for (let bit = 0; bit < 8; bit++) if (b & (1 << bit)) hosts.push(i * 8 + bit + 1);
  }
  return hosts;
}

export function setBitmapHost(sector: Buffer, hostId: number, on: boolean, sectorOff = 0): void {
  const byte = sectorOff + HOSTID_BITMAP_OFFSET + ((hostId - 1) >> 3);
  const mask = 1 << ((hostId - 1) & 7);
  sector[byte] = on ? sector[byte] | mask : sector[byte] & ~mask;
}

export function bitmapHas(sector: Buffer, hostId: number, sectorOff = 0): boolean {
  return (sector[sectorOff + HOSTID_BITMAP_OFFSET + ((hostId - 1) >> 3)] & (1 << ((hostId - 1) & 7))) !== 0;
}
