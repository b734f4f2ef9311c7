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
  /** e.g. "lockspace __LIBVIRT__DISKS__ could not renew for 8 s" */
  reason: string;
  /** the action requested for this owner (from <on_lockfailure> or the config default) */
  action?: string;
}

export interface LeaseFailurePolicy {
  /** Start the action; resolves when it is complete or handed off. Must not throw. */
  onLeaseFailure(owner: FailedOwner): Promise<void>;
}

export interface KillPolicyOptions {
  graceSeconds: number;
  log: (level: 'warning' | 'error' | 'info', msg: string) => void;
  /** injectable for tests */
  kill?: (pid: number, sig: NodeJS.Signals | 0) => void;
  sleep?: (ms: number) => Promise<void>;
}

function alive(kill: (pid: number, sig: 0) => void, pid: number): boolean {
  try {
    kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** sanlock's default: SIGTERM, wait up to the grace period, then SIGKILL; each step logged. */
export class KillPolicy implements LeaseFailurePolicy {
  constructor(private readonly o: KillPolicyOptions) {}

  async onLeaseFailure(owner: FailedOwner): Promise<void> {
    const kill = this.o.kill ?? ((pid: number, sig: NodeJS.Signals | 0) => process.kill(pid, sig));
    const sleep = this.o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
    const who = `${owner.name} (${owner.uuid}${owner.pid ? `, pid ${owner.pid}` : ''})`;
    if (!owner.pid) {
      this.o.log('error', `lease lost for ${who}: ${owner.reason}; no pid is known, so nothing can be killed — stop it by hand`);
      return;
    }
    if (!alive(kill, owner.pid)) return;
    this.o.log('error', `lease lost for ${who}: ${owner.reason}; sending SIGTERM, SIGKILL in ${this.o.graceSeconds} s`);
    try { kill(owner.pid, 'SIGTERM'); } catch { return; }
    for (let left = this.o.graceSeconds; left > 0; left--) {
      await sleep(1000);
      if (!alive(kill, owner.pid)) {
        this.o.log('warning', `${who} exited after SIGTERM`);
        return;
      }
      if (left % 10 === 0 || left <= 3) this.o.log('warning', `${who} still running after SIGTERM; SIGKILL in ${left - 1} s`);
    }
    if (alive(kill, owner.pid)) {
      this.o.log('error', `${who} ignored SIGTERM for ${this.o.graceSeconds} s; sending SIGKILL`);
      try { kill(owner.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
}
