import { LeaderRecord } from '../ondisk';
import { Clock } from './clock';
import { DeltaLease, readDeltaLeader } from './delta';
import { HostMonitor, HostStatus } from './hostmonitor';

/**
 * What paxos needs to know about other hosts of the resource's lockspace. In sanlock this is
 * the joined lockspace (its disk and host_status table); in direct mode there is none and a
 * held lease cannot be judged (-241).
 */
export interface HostLiveness {
  /** Our monotime: the clock the snapshot's firstCheck/lastCheck/lastLive are in. */
  now(): number;
  /** Read and verify host_id's delta lease now (sector host_id-1 of the lockspace). */
  readDelta(hostId: number): Promise<LeaderRecord>;
  /** What our renewals have seen of host_id, or undefined if we have not looked yet. */
  snapshot(hostId: number): HostStatus | undefined;
  /** host_live(): may a shared holder of this generation still be using its lease? */
  hostLive(hostId: number, generation: number): boolean;
}

/** Liveness from our joined lockspace: its delta lease (disk) and the monitor fed by renewals. */
export function lockspaceLiveness(lease: DeltaLease, monitor: HostMonitor, clock: Clock): HostLiveness {
  return {
    now: () => clock.monotime(),
    readDelta: (hostId) => readDeltaLeader(lease.storage, lease.offset, lease.geometry, lease.spaceName, hostId, lease.ioTimeout),
    snapshot: (hostId) => monitor.snapshot(hostId),
    hostLive: (hostId, generation) => monitor.hostLive(hostId, generation, clock.monotime()),
  };
}
