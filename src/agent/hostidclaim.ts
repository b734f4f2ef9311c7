import { Clock } from '../lease/clock';
import { readLockspaceGeometry } from '../lease/delta';
import { readArea } from '../lease/diskio';
import { sameLeader } from '../lease/record';
import { LeaseStorage } from '../lease/storage';
import { timeoutsFor } from '../lease/timeouts';
import { LeaderRecord, LeaseError, namesEqual, SANLK } from '../ondisk';
import { verifyDeltaLeader } from '../ondisk/verify';

/**
 * `host_id = auto`: which slot of a lockspace this host should try to take. Only a choice — the
 * taking is the normal delta acquire (write, wait 2·io, re-read), so two hosts that choose the
 * same slot cannot both win: the one whose record is overwritten fails with -262 and chooses
 * again, leaving that slot out. In order of preference:
 *   1. the id our state database remembers (a restart keeps its id);
 *   2. a slot that carries our host name (a reinstall, whose state is gone, keeps its id);
 *   3. a free slot (timestamp 0: never used, or released), one of the lowest few at random so
 *      hosts starting together rarely choose the same one;
 *   4. a slot whose host has been silent for host_dead (watched that long), as sanlock would
 *      take a dead host's id.
 * `kind` tells the caller how to take it: a free slot must still be free when the acquire reads
 * it (else choose again at once), a dead host's slot goes through sanlock's host_dead wait.
 */
export interface HostIdChoice {
  hostId: number;
  kind: 'remembered' | 'named' | 'free' | 'dead';
}

export interface ClaimParams {
  storage: LeaseStorage;
  offset: number;
  spaceName: string;
  hostName: string;
  ioTimeout: number;
  clock: Clock;
  remembered?: number;
  /** ids found busy earlier in this claim: never chosen again */
  rejected: ReadonlySet<number>;
  /** choose no id above this (max_hosts of the lease areas), else up to the lockspace's size */
  limit?: number;
  log: (msg: string) => void;
  stopped: () => boolean;
}

/** How many of the lowest free slots a choice is spread over. */
const FREE_SPREAD = 16;

export async function chooseHostId(p: ClaimParams): Promise<HostIdChoice> {
  const g = await readLockspaceGeometry(p.storage, p.offset, p.spaceName, p.ioTimeout);
  const top = Math.min(g.maxHosts, p.limit ?? g.maxHosts);
  if (p.remembered && p.remembered <= top && !p.rejected.has(p.remembered)) return { hostId: p.remembered, kind: 'remembered' };
  const readSlots = async (): Promise<Array<LeaderRecord | undefined>> => {
    const area = await readArea(p.storage, p.offset, g.alignSize, p.ioTimeout * 1000);
    const out: Array<LeaderRecord | undefined> = [];
    for (let id = 1; id <= g.maxHosts; id++) {
      const { rv, leader } = verifyDeltaLeader(area, (id - 1) * g.sectorSize, p.spaceName);
      out.push(rv < 0 ? undefined : leader);
    }
    return out;
  };
  const slots = await readSlots();
  const usable = (id: number) => id <= top && !p.rejected.has(id);
  const ourName = p.hostName.slice(0, 47);
  const named = slots.findIndex((l, i) => l && l.timestamp !== 0 && namesEqual(l.resourceName, ourName) && usable(i + 1));
  if (named >= 0) return { hostId: named + 1, kind: 'named' };
  const free = slots.map((l, i) => (l && l.timestamp === 0 && usable(i + 1) ? i + 1 : 0)).filter((id) => id > 0);
  if (free.length) {
    const spread = free.slice(0, FREE_SPREAD);
    return { hostId: spread[Math.floor(p.clock.random() * spread.length)], kind: 'free' };
  }
  // Every slot is held. A host silent for host_dead (of the longest io_timeout written) is dead.
  const wait = Math.max(...slots.map((l) => timeoutsFor((l?.ioTimeout || p.ioTimeout)).hostDead));
  p.log(`host_id = auto: lockspace ${p.spaceName} has no free host_id (${g.maxHosts} slots); watching them ${wait} s for hosts that are dead`);
  await p.clock.sleep(wait * 1000);
  if (p.stopped()) throw new LeaseError(SANLK.ENOSPC, `lockspace ${p.spaceName} is being removed`);
  const later = await readSlots();
  const dead = later.map((l, i) => (l && slots[i] && sameLeader(l, slots[i]!) && usable(i + 1) ? i + 1 : 0)).filter((id) => id > 0);
  const nowFree = later.map((l, i) => (l && l.timestamp === 0 && usable(i + 1) ? i + 1 : 0)).filter((id) => id > 0);
  if (nowFree.length) return { hostId: nowFree[0], kind: 'free' };
  if (dead.length) return { hostId: dead[Math.floor(p.clock.random() * dead.length)], kind: 'dead' };
  throw new LeaseError(SANLK.ENOSPC,
    `host_id = auto: lockspace ${p.spaceName} has no free host_id: all ${top} slots${top < g.maxHosts ? ` up to max_hosts ${top}` : ''} are held by live hosts; ` +
    'free one (lockagent host_status shows who holds them) or give this host a fixed host_id');
}
