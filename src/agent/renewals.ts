import { SANLK } from '../ondisk';

/**
 * The renewal history of one lockspace, as sanlock keeps it (`sanlock client renewal`): for each
 * successful renewal the timestamp it wrote, how long its read and write took, and how many
 * renewal attempts timed out or failed after it until the next success. Operators read it to
 * see how close a host runs to its deadline before that turns into a lease loss.
 */
export interface RenewalRecord {
  /** the monotonic timestamp the renewal wrote (what other hosts see) */
  timestamp: number;
  readMs: number;
  writeMs: number;
  /** attempts after this one that timed out (-202) before the next success */
  nextTimeouts: number;
  /** attempts after this one that failed otherwise */
  nextErrors: number;
}

/** sanlock's default renewal_history_size (-H). */
export const RENEWAL_HISTORY_SIZE = 180;

export class RenewalHistory {
  private readonly ring: RenewalRecord[] = [];

  constructor(private readonly size = RENEWAL_HISTORY_SIZE) {}

  success(timestamp: number, readMs: number, writeMs: number): void {
    if (this.ring.length >= this.size) this.ring.shift();
    this.ring.push({ timestamp, readMs: Math.round(readMs), writeMs: Math.round(writeMs), nextTimeouts: 0, nextErrors: 0 });
  }

  failure(rv: number): void {
    const last = this.ring[this.ring.length - 1];
    if (!last) return;
    if (rv === SANLK.AIO_TIMEOUT) last.nextTimeouts++;
    else last.nextErrors++;
  }

  /** Oldest first. */
  list(): RenewalRecord[] {
    return this.ring.map((r) => ({ ...r }));
  }
}

/** One line per renewal, in `sanlock client renewal`'s format. */
export function formatRenewal(r: RenewalRecord): string {
  return `timestamp=${r.timestamp} read_ms=${r.readMs} write_ms=${r.writeMs} next_timeouts=${r.nextTimeouts} next_errors=${r.nextErrors}`;
}
