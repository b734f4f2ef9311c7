import { systemClock } from '../lease/clock';
import { Agent } from '../agent/agent';
import { SdNotifier } from './sdnotify';
import { WdmdClient, WdmdState } from '../agent/wdmd';

/**
 * The watchdog layers as `lockagent status` shows them (the `fencing` section): wdmd and the
 * systemd watchdog. The guard's fields sit beside these.
 */
export interface HostWatchStatus {
  wdmd: WdmdState;
  /** seconds until wdmd fails our test, when armed */
  wdmdExpiresIn?: number;
  /** the lockspace whose renewal sets that expiry */
  wdmdLockspace?: string;
  systemdWatchdog: 'on' | 'off';
  systemdWatchdogIntervalMs?: number;
}

export function hostWatchStatus(wdmd: WdmdClient, notify: SdNotifier): HostWatchStatus {
  const t = wdmd.test();
  const wd = notify.watchdog();
  return {
    wdmd: wdmd.status(),
    ...(t.expire ? { wdmdExpiresIn: t.expire - systemClock.monotime(), wdmdLockspace: t.lockspace } : {}),
    systemdWatchdog: wd.on ? 'on' : 'off',
    ...(wd.on ? { systemdWatchdogIntervalMs: wd.intervalMs } : {}),
  };
}

/**
 * systemd's STATUS= line: each lockspace's join state ("__LIBVIRT__DISKS__ joined"). Built every
 * second from the lockspaces' own fields, not from lockspaceStatus(), which judges every host of
 * every lockspace (2,000 of them in a full lockspace).
 */
export function joinStatusLine(agent: Agent): string {
  const ls = [...agent.lockspaces.values()];
  if (!ls.length) return 'serving; no lockspaces';
  return ls.map((l) => `${l.name} ${l.state}${l.state === 'retrying' && l.lastError ? ` (${l.lastError.slice(0, 80)})` : ''}`).join(', ');
}
