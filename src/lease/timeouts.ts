/**
 * Everything sanlock 3.8.5 derives from io_timeout (timeouts.c). Delays that concern another
 * host must be computed from the io_timeout *that host* wrote in its delta record.
 */
export const WATCHDOG_FIRE_TIMEOUT = 60;
export const KILL_GRACE_SECONDS = 40;

export interface Timeouts {
  ioTimeout: number;
  /** renew our delta lease this often */
  idRenewal: number;
  /** log a warning when renewals have failed this long */
  idRenewalWarn: number;
  /** stop using the lockspace's leases (kill owners) after this long without renewal */
  idRenewalFail: number;
  /** other hosts treat us as dead (and take our leases) this long after our last renewal */
  hostDead: number;
  deltaLargeDelay: number;
  deltaShortDelay: number;
  /** bitmap request bit lifetime */
  setBitmap: number;
}

export function timeoutsFor(ioTimeout: number): Timeouts {
  const io = ioTimeout > 0 ? ioTimeout : 10;
  return {
    ioTimeout: io,
    idRenewal: 2 * io,
    idRenewalWarn: 6 * io,
    idRenewalFail: 8 * io,
    hostDead: 8 * io + WATCHDOG_FIRE_TIMEOUT,
    deltaLargeDelay: 8 * io,
    deltaShortDelay: 2 * io,
    setBitmap: 6 * io,
  };
}

/** host_dead_seconds of another host, from the io_timeout it wrote (0 there means ours). */
export function hostDeadSeconds(otherIoTimeout: number, ourIoTimeout: number): number {
  return timeoutsFor(otherIoTimeout || ourIoTimeout).hostDead;
}

/** id_renewal_fail_seconds of a host with this io_timeout: it stops using its leases after this long. */
export function renewalFailSeconds(ioTimeout: number): number {
  return timeoutsFor(ioTimeout).idRenewalFail;
}

/**
 * delta_acquire's wait when the host_id is held under another name: max(host_dead, 2·io + 6·io)
 * of the *previous owner's* io_timeout (its on-disk value, or ours when it wrote 0). The host_id
 * must not change hands before the old owner's watchdog has fired, because paxos takeover
 * treats a re-acquired host_id as "owner gone".
 */
export function deltaAcquireHeldDelay(otherIoTimeout: number, ourIoTimeout: number): number {
  const t = timeoutsFor(otherIoTimeout || ourIoTimeout);
  return Math.max(t.hostDead, t.idRenewal + 6 * t.ioTimeout);
}

/** delta_acquire's check delay after writing: 2·io of the previous owner (delta_short_delay). */
export function deltaShortDelay(otherIoTimeout: number, ourIoTimeout: number): number {
  return timeoutsFor(otherIoTimeout || ourIoTimeout).deltaShortDelay;
}
