/**
 * The safety oracle: no two hosts may use one resource at one virtual instant unless both
 * hold it shared. A host "uses" a lease from its acquire success until it starts releasing,
 * crashes, or its pids are killed after the lockspace failed (sanlock's kill after 8·io; the
 * watchdog reset at 8·io + 60 is modelled as a crash). Each use also records the host's
 * renewal-fail deadline (last renewal success + 8·io), so a violation says whether the other
 * holder was still inside it (a plain mutual-exclusion bug) or only covered by the fencing
 * margin.
 */

export type Mode = 'EX' | 'SH';

interface Use {
  holder: string;
  mode: Mode;
  since: number;
  lver: number;
}

export interface Violation {
  atMs: number;
  resource: number;
  text: string;
}

export class Oracle {
  private readonly uses = new Map<number, Map<string, Use>>();
  readonly violations: Violation[] = [];
  acquisitions = 0;
  sharedAcquisitions = 0;

  /**
   * @param renewalDeadlineMs virtual time at which `holder`'s last renewal + 8·io passes
   */
  constructor(private readonly renewalDeadlineMs: (holder: string) => number) {}

  acquired(holder: string, resource: number, mode: Mode, atMs: number, lver: number): void {
    this.acquisitions++;
    if (mode === 'SH') this.sharedAcquisitions++;
    let m = this.uses.get(resource);
    if (!m) {
      m = new Map();
      this.uses.set(resource, m);
    }
    for (const u of m.values()) {
      if (u.holder === holder) continue;
      if (mode === 'SH' && u.mode === 'SH') continue;
      const inside = atMs < this.renewalDeadlineMs(u.holder);
      this.violations.push({
        atMs, resource,
        text: `resource R${resource}: ${holder} acquired ${mode} (lver ${lver}) at ${atMs} ms while ${u.holder} uses it ${u.mode} ` +
          `(lver ${u.lver}, since ${u.since} ms) — ${inside ? 'within its renewal deadline: MUTUAL EXCLUSION BROKEN' : 'past its 8·io deadline but before its kill/watchdog: fencing margin broken'}`,
      });
    }
    m.set(holder, { holder, mode, since: atMs, lver });
  }

  /** `holder` stops using `resource` (release started, pids killed, crash). */
  ended(holder: string, resource: number): void {
    this.uses.get(resource)?.delete(holder);
  }

  endAll(holder: string): void {
    for (const m of this.uses.values()) m.delete(holder);
  }

  holders(resource: number): string[] {
    return [...(this.uses.get(resource)?.keys() ?? [])];
  }
}
