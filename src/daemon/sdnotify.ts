import { loadNative, NativeBinding } from '../io/native';
import { Logger } from '../log/logger';

/**
 * systemd's notify protocol (Type=notify, WatchdogSec=): READY=1 once the control socket
 * serves, STATUS= lines with the join state, and WATCHDOG=1 every WatchdogSec/2 from the main
 * loop — a hung event loop stops the pings and systemd restarts the agent. Without
 * $NOTIFY_SOCKET (not started by systemd) everything here is a no-op.
 */
export interface SdNotifyOptions {
  log: Logger;
  env?: NodeJS.ProcessEnv;
  native?: NativeBinding;
  pid?: number;
}

export interface SystemdWatchdog {
  /** $WATCHDOG_USEC set for this process */
  on: boolean;
  intervalMs?: number;
}

/** The ping interval from $WATCHDOG_USEC/$WATCHDOG_PID (sd_watchdog_enabled): half the timeout. */
export function systemdWatchdogFromEnv(env: NodeJS.ProcessEnv, pid: number): SystemdWatchdog {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isFinite(usec) || usec <= 0) return { on: false };
  // Set for another process (NotifyAccess=all with a helper): not ours to ping.
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return { on: false };
  return { on: true, intervalMs: Math.max(1, Math.floor(usec / 2000)) };
}

export class SdNotifier {
  private readonly socket?: string;
  private readonly wd: SystemdWatchdog;
  private timer?: NodeJS.Timeout;
  private lastStatus?: string;
  private failed = false;

  constructor(private readonly o: SdNotifyOptions) {
    const env = o.env ?? process.env;
    this.socket = env.NOTIFY_SOCKET || undefined;
    this.wd = this.socket ? systemdWatchdogFromEnv(env, o.pid ?? process.pid) : { on: false };
  }

  get enabled(): boolean {
    return this.socket !== undefined;
  }

  watchdog(): SystemdWatchdog {
    return this.wd;
  }

  /** READY=1 (with the current status) and start the watchdog pings. */
  ready(status: string): void {
    this.lastStatus = status;
    this.send(`READY=1\nSTATUS=${status}\nMAINPID=${this.o.pid ?? process.pid}`);
    if (this.wd.on && !this.timer) {
      this.timer = setInterval(() => this.send('WATCHDOG=1'), this.wd.intervalMs);
      this.o.log.info(`systemd watchdog: pinging every ${this.wd.intervalMs} ms`);
    }
  }

  /** STATUS= line, sent only when it changed. */
  status(text: string): void {
    if (text === this.lastStatus) return;
    this.lastStatus = text;
    this.send(`STATUS=${text}`);
  }

  stopping(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.send('STOPPING=1\nSTATUS=stopping');
  }

  private send(msg: string): void {
    if (!this.socket) return;
    try {
      const n = this.o.native ?? loadNative();
      if (!n.sdNotify) throw new Error('the native addon was built without sd_notify: run `npm run build:native`');
      n.sdNotify(this.socket, msg);
      if (this.failed) this.o.log.info('systemd notify works again');
      this.failed = false;
    } catch (e) {
      // Logged once per outage: a ping every few seconds would flood the log.
      if (!this.failed) this.o.log.error(`systemd notify (${this.socket}) failed: ${(e as Error).message}`);
      this.failed = true;
    }
  }
}
