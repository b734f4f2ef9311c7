import { createHash, randomUUID } from 'crypto';
import { readFileSync } from 'fs';
import { hostname } from 'os';
import { StateStore } from '../state/statestore';

/**
 * Our name in delta leases ("<uuid>.<nodename>", as sanlock's; only 47 bytes reach the disk, so
 * the nodename part is cut at 10 characters). A restarted agent must come back under the same
 * name — it is how it recognises its own delta lease and continues it — and a clone of this
 * machine must not: two hosts with one name would each take the other's slot for their own.
 *
 * So the default name is derived from the machine's identity, not kept only in the state
 * database (which a lost disk loses and a clone copies): a hash of /etc/machine-id and of the
 * firmware's product UUID (/sys/class/dmi/id/product_uuid, readable by root; a cloned VM gets a
 * new one even when its machine-id was copied). `host_name` in the config always wins.
 *
 * Upgrades: a name recorded by an older version is kept while the database belongs to this
 * machine (the identity hash recorded next to it matches, or none was recorded yet): switching
 * names would make the agent treat its own live delta lease as another host's. A database whose
 * recorded identity differs was copied from another machine: the name is derived anew.
 */

export const IDENTITY_SOURCES = ['/etc/machine-id', '/sys/class/dmi/id/product_uuid'];

export interface HostNameResult {
  name: string;
  /** where it came from, for the start-up log line */
  source: 'config' | 'machine identity' | 'state database' | 'random';
  /** something the operator should hear about (logged as a warning) */
  warning?: string;
}

/** sha256 of the identity files that exist and are not empty; undefined when none is readable. */
export function machineIdentity(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | undefined {
  const parts: string[] = [];
  for (const p of IDENTITY_SOURCES) {
    try {
      const v = read(p).trim().toLowerCase();
      if (v) parts.push(`${p}=${v}`);
    } catch {
      // absent (containers) or not readable (product_uuid as non-root)
    }
  }
  return parts.length ? createHash('sha256').update(parts.join('\n')).digest('hex') : undefined;
}

/** "<uuid-like from the identity>.<nodename>", at most 47 bytes. */
export function nameFromIdentity(identity: string, nodename = hostname()): string {
  const h = identity.slice(0, 32);
  const uuid = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
  return `${uuid}.${nodename}`.slice(0, 47);
}

/** Best effort: a failing state store must not keep the agent from starting. */
function remember(store: StateStore, key: string, value: string): void {
  store.write(() => store.setMeta(key, value), `recording ${key}`);
}

function readMeta(store: StateStore, key: string): string | undefined {
  try {
    return store.getMeta(key);
  } catch {
    return undefined;
  }
}

export function resolveHostName(
  store: StateStore, configured?: string, readIdentity: () => string | undefined = () => machineIdentity(), nodename = hostname(),
): HostNameResult {
  if (configured) {
    remember(store, 'host_name', configured);
    return { name: configured, source: 'config' };
  }
  const identity = readIdentity();
  const kept = readMeta(store, 'host_name');
  const keptIdentity = readMeta(store, 'host_identity');
  if (!identity) {
    // Nothing identifies this machine: a name kept in the database is all we have.
    if (kept) return { name: kept, source: 'state database' };
    const made = `${randomUUID()}.${nodename}`.slice(0, 47);
    remember(store, 'host_name', made);
    return {
      name: made, source: 'random',
      warning: `neither ${IDENTITY_SOURCES.join(' nor ')} is readable: made the random host name ${made}, kept only in the state database ` +
        `${store.path}; if that is lost the agent comes back under a new name — set host_name in lockagent.conf`,
    };
  }
  const derived = nameFromIdentity(identity, nodename);
  let warning: string | undefined;
  if (kept && (keptIdentity === undefined || keptIdentity === identity)) {
    if (keptIdentity === undefined) remember(store, 'host_identity', identity);
    return { name: kept, source: 'state database' };
  }
  if (kept) {
    warning = `the state database ${store.path} names this host ${kept}, but it was recorded on another machine ` +
      `(copied or cloned: the machine identity differs); using ${derived}, derived from this machine's identity`;
  }
  remember(store, 'host_name', derived);
  remember(store, 'host_identity', identity);
  return { name: derived, source: 'machine identity', warning };
}
