import { randomUUID } from 'crypto';
import { hostname } from 'os';
import { StateStore } from '../state/statestore';

/**
 * Our name in delta leases. sanlock makes "<uuid>.<nodename>" anew at every daemon start; we
 * keep the one we made in the state database so a restarted agent is recognised as the same
 * host ("fast reacquire" of its host_id, immediate reclaim of its leases). Only 47 bytes reach
 * the disk, so the nodename part is cut at 10 characters, as sanlock's is.
 */
export function resolveHostName(store: StateStore, configured?: string): string {
  if (configured) {
    store.setMeta('host_name', configured);
    return configured;
  }
  const kept = store.getMeta('host_name');
  if (kept) return kept;
  const made = `${randomUUID()}.${hostname()}`.slice(0, 47);
  store.setMeta('host_name', made);
  return made;
}
