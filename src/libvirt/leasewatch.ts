import { FileLeaseStorage, openLeaseStorage } from '../io/file-storage';
import { decodeLeader } from '../ondisk';

/**
 * Watching leases a migration source still holds: one leader read (one sector, the first of
 * the lease) per lease and poll, on fds kept open for the whole watch. A paxos lease is free when
 * its leader's timestamp is 0 (sanlock's release writes exactly that) — or when the owner is
 * this host already. This only tells when an acquire is worth trying; the acquire itself
 * decides (paxos), so a stale or torn read costs one refused try, never a lease.
 */
export interface WatchedLease {
  path: string;
  offset: number;
  /** our host_id in the lease's lockspace */
  hostId: number;
}

export class LeaderProbe {
  private readonly files = new Map<string, Promise<FileLeaseStorage>>();

  constructor(private readonly sectorSize: number, private readonly ioTimeoutMs: number) {}

  /** True when every lease reads free (or ours). A read error counts as not free. */
  async allFree(leases: WatchedLease[]): Promise<boolean> {
    for (const l of leases) {
      if (!(await this.isFree(l).catch(() => false))) return false;
    }
    return true;
  }

  private async isFree(l: WatchedLease): Promise<boolean> {
    let f = this.files.get(l.path);
    if (!f) {
      f = openLeaseStorage(l.path, { readOnly: true, timeoutMs: this.ioTimeoutMs });
      this.files.set(l.path, f);
      f.catch(() => this.files.delete(l.path));
    }
    const buf = await (await f).read(l.offset, this.sectorSize, this.ioTimeoutMs);
    const leader = decodeLeader(buf);
    return leader.timestamp === 0 || leader.ownerId === l.hostId;
  }

  /**
   * Poll every `stepMs` until all leases read free (true), `until` (epoch ms) passes or
   * `stopped()` says so (false).
   */
  async waitFree(leases: WatchedLease[], until: number, stepMs: number, stopped: () => boolean = () => false): Promise<boolean> {
    for (;;) {
      if (stopped()) return false;
      if (await this.allFree(leases)) return true;
      if (Date.now() + stepMs > until) return false;
      await new Promise((r) => setTimeout(r, stepMs));
    }
  }

  async close(): Promise<void> {
    const all = [...this.files.values()];
    this.files.clear();
    for (const f of all) await f.then((s) => s.close(), () => undefined);
  }
}
