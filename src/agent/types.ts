import { LeaseStorage } from '../lease/storage';
/**
 * The core's vocabulary: who owns leases and which leases. The control protocol (src/control)
 * carries these on the wire; the libvirt integration and the sweeper build them.
 */
import { LeaseMode } from '../lease/token';

export type { LeaseMode };

export interface OwnerRef {
  /** domain uuid (or any stable id for non-libvirt owners) */
  uuid: string;
  name?: string;
  pid?: number;
  /**
   * Where the owner's process will write its pid once it exists: libvirt's QEMU pid file for a
   * domain whose leases are taken at `prepare`, before QEMU runs. The fencing guard reads it at
   * its deadline while `pid` is unknown (docs/fencing.md).
   */
  pidFile?: string;
}

export interface LeaseSpec {
  lockspace: string;
  resource: string;
  path: string;
  offset: number;
  mode?: LeaseMode;
  /** require this lease version (sanlock's RES:lver), -240 when it changed */
  lver?: number;
  /** the disk this lease protects, for messages ("disk /nfs/a.qcow2 is leased by host 3") */
  disk?: string;
}

/**
 * Opens a lease or lockspace file for the agent (FileLeaseStorage.open; tests and the simulation
 * pass their own). keepThreadMs: how long the file's idle I/O thread waits for its next request.
 * onSubmit: called each time a request is in flight (OpenLeaseStorageOptions.onSubmit).
 */
export type StorageOpener = (path: string, opts?: { keepThreadMs?: number; onSubmit?: () => void }) => Promise<LeaseStorage>;

/**
 * A domain as libvirt's lock manager describes it to a lock driver (src/locking/domain_lock.c):
 * what the lockagent lock-driver plugin inside libvirtd sends instead of the domain XML. Disk
 * paths are libvirt's, already resolved (volumes included); network disks and empty drives are
 * not listed.
 */
export interface LockManagerDomain {
  uuid: string;
  name: string;
  /** QEMU's pid: at registration the forked child that execs QEMU, later QEMU itself */
  pid?: number;
  disks: Array<{ path: string; readonly: boolean; shared: boolean }>;
  /** lockspace: optional in libvirt's `<lease>` (the plan refuses a lease without one) */
  leases: Array<{ lockspace?: string; key: string; path: string; offset: number }>;
  /** `<on_lockfailure>` as libvirt hands it to the driver's acquire; absent for "default" */
  action?: 'poweroff' | 'restart' | 'pause' | 'ignore';
}
