/**
 * The e2e bed most libvirt suites share: the suite lock on the one libvirtd, a temp lease
 * directory, agent A (host 1, the libvirt integration and the installed hook) and agent B
 * (host 2, same lease directory, no libvirt), and an event monitor; torn down in reverse.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AgentHost, startHost, stopHost, waitJoined, writeHostConfig } from './agentproc';
import { makeTempDir, removeTempDir } from './cli';
import { EventMonitor, installHook, removeDomains, removeHook, startServices, suiteLock, URI } from './libvirt';

export interface HookBed {
  unlock: () => void;
  base: string;
  leaseDir: string;
  A: AgentHost;
  B: AgentHost;
}

export async function startHookBed(name: string, monitor: EventMonitor): Promise<HookBed> {
  const unlock = await suiteLock(name);
  await startServices();
  await removeDomains();
  const base = makeTempDir(`la-e2e-${name}`);
  const leaseDir = path.join(base, 'leases');
  fs.mkdirSync(leaseDir);
  const A = startHost(writeHostConfig(base, 1, { leaseDir, libvirtUri: URI }));
  const B = startHost(writeHostConfig(base, 2, { leaseDir }));
  await Promise.all([waitJoined(A), waitJoined(B)]);
  await installHook(A.socket);
  monitor.start(path.join(base, 'events.log'));
  return { unlock, base, leaseDir, A, B };
}

/** `beforeRemove` runs after the agents stop, before the directory goes (e.g. loop devices). */
export async function stopHookBed(bed: Partial<HookBed>, monitor: EventMonitor, beforeRemove?: () => Promise<void>): Promise<void> {
  monitor.stop();
  await removeDomains().catch(() => undefined);
  await removeHook().catch(() => undefined);
  if (bed.A) await stopHost(bed.A, 'SIGKILL');
  if (bed.B) await stopHost(bed.B, 'SIGKILL');
  await beforeRemove?.();
  if (bed.base && !process.env.LOCKAGENT_E2E_KEEP) removeTempDir(bed.base);
  bed.unlock?.();
}
