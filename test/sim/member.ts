import { Clock } from '../../src/lease/clock';
import { deltaAcquire, DeltaLease, deltaRelease, deltaRenew } from '../../src/lease/delta';
import { HostMonitor } from '../../src/lease/hostmonitor';
import { HostLiveness, lockspaceLiveness } from '../../src/lease/liveness';
import { LeaseStorage } from '../../src/lease/storage';
import { PaxosHost } from '../../src/lease/token';
import { timeoutsFor } from '../../src/lease/timeouts';

/**
 * One host's membership in a lockspace, the way sanlock's lockspace thread runs it: join with
 * a delta acquire, renew when 2·io have passed since the last success (checking every second,
 * then half a second before renewing), feed each renewal's area to the host monitor.
 */
export class LockspaceMember {
  lease?: DeltaLease;
  monitor?: HostMonitor;
  renewing = false;
  /** Renewal results, newest last (for tests). */
  readonly results: number[] = [];
  private stopFlag = false;
  private loop?: Promise<void>;

  constructor(
    readonly clock: Clock,
    readonly storage: LeaseStorage,
    readonly spec: { spaceName: string; offset?: number; hostId: number; hostName: string; ioTimeout: number },
  ) {}

  async join(signal?: AbortSignal): Promise<DeltaLease> {
    const { spaceName, hostId, hostName, ioTimeout } = this.spec;
    const lease = await deltaAcquire({
      storage: this.storage, offset: this.spec.offset ?? 0, spaceName, hostId, hostName, ioTimeout, clock: this.clock,
      cancel: signal ? { signal } : undefined,
    });
    this.lease = lease;
    this.monitor = new HostMonitor({ spaceName, hostId, sectorSize: lease.geometry.sectorSize, maxHosts: lease.geometry.maxHosts, ioTimeout });
    return lease;
  }

  /** One renewal, feeding the monitor; returns the result code. */
  async renewOnce(): Promise<number> {
    const lease = this.lease as DeltaLease;
    try {
      const r = await deltaRenew(lease, this.clock);
      this.monitor?.observe(r.area, this.clock.monotime());
      this.results.push(0);
      return 0;
    } catch (e) {
      const rv = (e as { rv?: number }).rv ?? -1;
      this.results.push(rv);
      return rv;
    }
  }

  /** Start the lockspace thread's renewal loop. */
  startRenewals(onResult?: (rv: number) => void): void {
    this.stopFlag = false;
    this.renewing = true;
    const renewal = timeoutsFor(this.spec.ioTimeout).idRenewal;
    this.loop = (async () => {
      while (!this.stopFlag) {
        const lease = this.lease as DeltaLease;
        if (this.clock.monotime() - lease.lastSuccess < renewal) {
          await this.clock.sleep(1000);
          continue;
        }
        await this.clock.sleep(500);
        if (this.stopFlag) break;
        const rv = await this.renewOnce();
        onResult?.(rv);
      }
      this.renewing = false;
    })();
  }

  stopRenewals(): Promise<void> {
    this.stopFlag = true;
    return this.loop ?? Promise.resolve();
  }

  async leave(): Promise<void> {
    await this.stopRenewals();
    if (this.lease) await deltaRelease(this.lease);
  }

  get host(): PaxosHost {
    const lease = this.lease as DeltaLease;
    return { hostId: lease.hostId, generation: lease.generation, ioTimeout: lease.ioTimeout };
  }

  get liveness(): HostLiveness {
    return lockspaceLiveness(this.lease as DeltaLease, this.monitor as HostMonitor, this.clock);
  }
}
