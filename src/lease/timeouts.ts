/**
 * Everything sanlock 3.8.5 derives from io_timeout (timeouts.c). Delays that concern another
 * host must be computed from the io_timeout *that host* wrote in its delta record.
 */
export const WATCHDOG_FIRE_TIMEOUT = 60;
export const KILL_GRACE_SECONDS = 40;

/**
 * sanlock's lockspace thread renews once id_renewal whole seconds of monotime have passed since
 * its last timestamp (it looks once a second), and then only after sleeping 500 ms more ("don't
 * spin too quickly"): its renewals are id_renewal + 0.5 s apart (2.5 s at io_timeout 1, 12 in
 * 30 s). Ours follow the same cadence, measured from the start of the last successful renewal:
 * the same reads of the lockspace area per host as sanlock's (a 1 MiB read each: 20 % less
 * than every 2·io), and the same time left for retries before id_renewal_fail.
 */
export const RENEWAL_PAUSE_MS = 500;

export interface Timeouts {
  ioTimeout: number;
  /** renew our delta lease when this long has passed since the last renewal (then RENEWAL_PAUSE_MS more) */
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
