import { Clock, systemClock } from '../lease/clock';
import { timeoutsFor } from '../lease/timeouts';
import { AgentConfig } from '../config/config';
import { identify, ProcessId } from './process';

/**
 * What happens to an owner (a domain, a process) whose leases are lost: the lockspace could not
 * renew for 8·io_timeout, or a resumed domain found its lease taken. The agent decides *when*;
 * a policy decides *what*. The libvirt integration plugs domain actions (poweroff, pause) in;
 * the default is sanlock's: SIGTERM, then SIGKILL after the grace period.
 */
export interface FailedOwner {
  uuid: string;
  name: string;
  pid?: number;
  /** the process `pid` named when it was registered: a pid now naming another process is never signalled */
  process?: ProcessId;
  /** e.g. "lockspace __LIBVIRT__DISKS__ could not renew for 8 s" */
  reason: string;
  /** the action requested for this owner (from <on_lockfailure> or the config default) */
  action?: string;
  /**
   * When other hosts may take its leases (Clock.nowMs): host_dead after our last renewal.
   * Unknown when the leases were never ours on disk (e.g. a failed re-adoption).
   */
  hostDeadAtMs?: number;
  /**
   * The owner must be dead by this time (Clock.nowMs), whatever the action and the grace period
   * say: hostDeadAtMs minus killMarginSeconds. See killDeadline.
   */
  killDeadlineMs?: number;
}

/**
 * How long before host_dead our last SIGKILL goes out. It must cover: the signal's delivery and
 * the process's exit (a process blocked in a storage write dies only when that write returns,
 * which our io_timeout bounds), a timer of ours firing late (one renewal interval, 2·io), and
 * room for the guard process, which kills on its own no later than 5 s before host_dead, to see
 * that the owner is already gone. Hence max(8 s, 2·io): at io_timeout 10 the last SIGKILL goes
 * out 20 s before host_dead (140 s), at io_timeout 1, 8 s before (68 s).
 */
export function killMarginSeconds(ioTimeout: number): number {
  return Math.max(8, 2 * timeoutsFor(ioTimeout).ioTimeout);
}

/**
 * The kill deadline of an owner whose lockspace was lost: other hosts count host_dead from the
 * last renewal they saw, which is no earlier than the one we wrote at `lastSuccess` (whole
 * seconds of the monotonic clock, taken before the write), so our leases are safe until
 * lastSuccess + host_dead and no kill may outlive lastSuccess + host_dead - margin.
 */
export function killDeadline(lastSuccess: number, ioTimeout: number): { hostDeadAtMs: number; killDeadlineMs: number } {
  const hostDeadAtMs = (lastSuccess + timeoutsFor(ioTimeout).hostDead) * 1000;
  return { hostDeadAtMs, killDeadlineMs: hostDeadAtMs - killMarginSeconds(ioTimeout) * 1000 };
}

export interface LeaseFailurePolicy {
  /** Start the action; resolves when it is complete or handed off. Must not throw. */
  onLeaseFailure(owner: FailedOwner): Promise<void>;
}

export interface KillPolicyOptions {
  graceSeconds: number;
  log: (level: 'warning' | 'error' | 'info', msg: string) => void;
  /** the clock FailedOwner deadlines are on (monotonic: it runs on while the agent is stopped) */
  clock?: Clock;
  /** injectable for tests */
  kill?: (pid: number, sig: NodeJS.Signals) => void;
  identify?: (pid: number) => ProcessId | undefined;
}

const secs = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

/**
 * sanlock's default: SIGTERM, wait up to the grace period, then SIGKILL; each step logged. The
 * SIGKILL never goes out later than the owner's kill deadline (no kill outlives host_dead): the
 * wait is judged by the clock, not by counting sleeps, so an agent that was stopped (SIGSTOP, a
 * stalled VM) and wakes up past the deadline sends SIGKILL at once.
 */
export class KillPolicy implements LeaseFailurePolicy {
  constructor(private readonly o: KillPolicyOptions) {}

  async onLeaseFailure(owner: FailedOwner): Promise<void> {
    const kill = this.o.kill ?? ((pid: number, sig: NodeJS.Signals) => process.kill(pid, sig));
    const ident = this.o.identify ?? identify;
    const clock = this.o.clock ?? systemClock;
    const who = `${owner.name} (${owner.uuid}${owner.pid ? `, pid ${owner.pid}` : ''})`;
    if (!owner.pid) {
      this.o.log('error', `lease lost for ${who}: ${owner.reason}; no pid is known, so nothing can be killed — stop it by hand`);
      return;
    }
    const pid = owner.pid;
    // The process to stop: the one registered under this pid, else whatever has it now (a pid
    // from libvirt's pid file, checked by the caller). Checked again before every signal.
    const target = owner.process?.pid === pid ? owner.process : ident(pid);
    const now0 = ident(pid);
    if (!target || !now0) {
      this.o.log('warning', `lease lost for ${who}: ${owner.reason}; the process has already exited, nothing to signal`);
      return;
    }
    if (now0.startTime !== target.startTime) {
      this.o.log('warning', `lease lost for ${who}: ${owner.reason}; pid ${pid} now belongs to another process (the owner exited and its pid was reused): not signalled`);
      return;
    }
    /** the owner is still running under its pid; else says why nothing is signalled */
    const same = (): boolean => {
      const cur = ident(pid);
      if (cur?.startTime === target.startTime) return true;
      this.o.log('warning', cur ? `${who}: pid ${pid} now belongs to another process; the owner is gone, nothing more is signalled` : `${who} exited after SIGTERM`);
      return false;
    };
    const grace = this.o.graceSeconds;
    const start = clock.nowMs();
    const graceEnd = start + grace * 1000;
    const killAt = owner.killDeadlineMs !== undefined ? Math.min(graceEnd, owner.killDeadlineMs) : graceEnd;
    const cutShort = killAt < graceEnd;
    const why = (now: number) => owner.hostDeadAtMs !== undefined
      ? `other hosts may take its leases in ${secs(owner.hostDeadAtMs - now)} s (host_dead), kill_grace_seconds ${grace} cut short`
      : `kill_grace_seconds ${grace} cut short`;
    const sigkill = (msg: string) => {
      this.o.log('error', msg);
      try { kill(pid, 'SIGKILL'); } catch { /* already gone */ }
    };
    if (killAt <= start) {
      sigkill(`lease lost for ${who}: ${owner.reason}; SIGKILL now: ${why(start)}`);
      return;
    }
    this.o.log('error', `lease lost for ${who}: ${owner.reason}; sending SIGTERM, SIGKILL in ${secs(killAt - start)} s` +
      (cutShort ? ` (${why(start)})` : ''));
    try { kill(pid, 'SIGTERM'); } catch { return; }
    let lastReport = secs(killAt - start);
    for (;;) {
      const before = clock.nowMs();
      if (before >= killAt) break;
      await clock.sleep(Math.min(1000, killAt - before));
      if (!same()) return;
      const left = secs(killAt - clock.nowMs());
      if (left > 0 && left !== lastReport && (left % 10 === 0 || left <= 3)) {
        lastReport = left;
        this.o.log('warning', `${who} still running after SIGTERM; SIGKILL in ${left} s`);
      }
    }
    const now = clock.nowMs();
    if (!same()) return;
    if (cutShort) sigkill(`${who} still running after SIGTERM; SIGKILL now: ${why(now)}`);
    else sigkill(`${who} ignored SIGTERM for ${grace} s; sending SIGKILL`);
  }
}

/**
 * The action a lease failure gets: <on_lockfailure>, else lease_failure_action; ignore, which a
 * domain started before lockagent refused it may still carry, gets lease_failure_action.
 */
export function failureAction(action: string | undefined, config: Pick<AgentConfig, 'leaseFailureAction'>): string {
  return action === undefined || action === 'ignore' ? config.leaseFailureAction : action;
}
