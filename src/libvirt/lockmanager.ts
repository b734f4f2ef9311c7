import { HeldLease } from '../agent/agent';
import { LockManagerDomain } from '../agent/types';
import { formatSanlockResource, refuseNonUtf8 } from '../config/sanlockargs';
import { Refusal, SANLK } from '../ondisk/results';
import { LeaseRow } from '../state/statestore';
import { DiskInfo, DomainInfo } from './domainxml';

/**
 * The lockagent lock-driver plugin's view of a domain (native/lockdriver, loaded by libvirtd
 * with `lock_manager = "lockagent"`): libvirt hands the plugin resources, not XML. This turns
 * them into the DomainInfo the lease plan is made from, so a domain gets the same leases by
 * either way in (docs/libvirt-integration.md, "The lock-driver plugin").
 */
export function domainFromLockManager(d: LockManagerDomain, opts: { checkUtf8?: boolean } = {}): DomainInfo {
  // Only what gets a lease (a read-only disk gets none, as with libvirt's sanlock driver); a
  // release checks nothing (refusing it would only keep the leases of a domain started before).
  if (opts.checkUtf8 !== false) checkUtf8(d);
  const disks: DiskInfo[] = d.disks.map((x, i) => ({
    index: i + 1,
    // libvirt lists only local storage, with its path resolved (volumes included)
    type: 'file',
    device: 'disk',
    target: x.path,
    source: { type: 'file', path: x.path },
    readonly: x.readonly,
    shareable: x.shared,
    transient: false,
  }));
  return {
    name: d.name,
    uuid: d.uuid.toLowerCase(),
    disks,
    leases: d.leases.map((l, i) => ({ index: i + 1, lockspace: l.lockspace, key: l.key, path: l.path, offset: l.offset })),
    ...(d.action ? { onLockFailure: d.action } : {}),
  };
}

/** The fields that name a lease: see utf8Only. */
function checkUtf8(d: LockManagerDomain): void {
  for (const x of d.disks) if (!x.readonly) utf8Only(x.path, `${d.name}: disk path "${x.path}"`);
  for (const l of d.leases) {
    if (l.lockspace !== undefined) utf8Only(l.lockspace, `${d.name}: <lease> lockspace "${l.lockspace}" (key "${l.key}")`);
    utf8Only(l.key, `${d.name}: <lease> key "${l.key}"`);
    utf8Only(l.path, `${d.name}: <lease> path "${l.path}" (key "${l.key}")`);
  }
}

/**
 * libvirt hands the plugin raw bytes, which the agent reads as UTF-8: a byte that is not UTF-8
 * becomes U+FFFD, so the automatic lease name (MD5 of the path) would not be the one libvirt's
 * sanlock driver computes for the same disk. Refused (fail closed), as a refusal of the request
 * rather than the CLI's usage error.
 */
function utf8Only(s: string, what: string): void {
  try {
    refuseNonUtf8(s, what);
  } catch (e) {
    throw new Refusal(SANLK.EINVAL, `${(e as Error).message} (read as U+FFFD here, it would name another lease than libvirt's sanlock driver does)`);
  }
}

/**
 * The lock state libvirt keeps for a paused domain and carries to a migration's destination
 * (which libvirt allows only with the same lock driver): sanlock's form, LOCKSPACE:RESOURCE:
 * PATH:OFFSET:LVER per lease, separated by spaces, for the operator who reads it in libvirt's
 * status file. libvirt writes it into XML (the status file, the migration cookie) without
 * escaping, so '<', '>', '&', quotes and '%' are written as %XX.
 */
export function formatLockState(leases: Array<HeldLease | LeaseRow>): string {
  // A held lease, or the record of one released at a pause (its lver kept for the resume).
  const text = (l: HeldLease | LeaseRow) => ('token' in l ? `${formatSanlockResource(l.spec)}:${l.token.lver}` : `${formatSanlockResource(l)}:${l.lver}`);
  return leases.map(text).join(' ')
    .replace(/[<>&"'%]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
