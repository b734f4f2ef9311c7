import { existsSync } from 'fs';
import { loadNative, NativeBinding } from '../io/native';
import { renewalFailSeconds, WATCHDOG_FIRE_TIMEOUT } from '../lease/timeouts';
import { Logger } from '../log/logger';

/**
 * The agent as a wdmd client (docs/fencing.md). wdmd pets /dev/watchdog only while
 * every client's expiry time lies in the future; sanlock keeps one client per lockspace and,
 * after each successful renewal, sets its expiry to last renewal + id_renewal_fail_seconds
 * (8·io). The agent keeps one client for all its lockspaces with the earliest of those expiries:
 * the same moment wdmd would fail the first of sanlock's tests. The watchdog then fires at most
 * WATCHDOG_FIRE_TIMEOUT (60 s) later — before other hosts call us dead (8·io + 60 s) and take
 * our leases.
 */

/** libwdmd's fixed socket (WDMD_RUN_DIR/WDMD_SOCKET_NAME): "wdmd is running" means it exists. */
export const WDMD_SOCKET = '/run/wdmd/wdmd.sock';

export interface WdmdSource {
  lockspace: string;
  /** monotonic seconds of the last successful renewal */
  lastSuccess: number;
  ioTimeout: number;
}

export interface WdmdTest {
  /** what wdmd_test_live gets: monotonic seconds; 0/0 = disarmed */
  renewal: number;
  expire: number;
  /** the lockspace whose expiry it is */
  lockspace?: string;
}

/** One wdmd test for several lockspaces: the earliest expiry of sanlock's per-lockspace tests. */
export function wdmdTest(sources: readonly WdmdSource[]): WdmdTest {
  let best: WdmdTest = { renewal: 0, expire: 0 };
  for (const s of sources) {
    const expire = s.lastSuccess + renewalFailSeconds(s.ioTimeout);
    if (best.expire === 0 || expire < best.expire) best = { renewal: s.lastSuccess, expire, lockspace: s.lockspace };
  }
  return best;
}

export type WdmdState = 'connected' | 'absent' | 'closed' | `error: ${string}`;

export interface WdmdClientOptions {
  log: Logger;
  /** use_watchdog = 1: wdmd must be usable, or the agent refuses to start */
  required: boolean;
  /** the lockspaces that must keep the host alive, read once a second */
  sources: () => WdmdSource[];
  native?: NativeBinding;
  socketPath?: string;
  /** client name in wdmd's dump */
  name?: string;
}

export class WdmdRefusal extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'WdmdRefusal';
  }
}

export class WdmdClient {
  private fd?: number;
  private state: WdmdState = 'absent';
  private timer?: NodeJS.Timeout;
  private last: WdmdTest = { renewal: 0, expire: 0 };
  private failing = false;

  constructor(private readonly o: WdmdClientOptions) {}

  /**
   * Connect when wdmd runs or use_watchdog = 1. Throws WdmdRefusal (the reason) when it is
   * required but unusable; otherwise a problem is logged and the agent runs without it.
   */
  start(): void {
    const sock = this.o.socketPath ?? WDMD_SOCKET;
    if (!this.o.required && !existsSync(sock)) {
      this.state = 'absent';
      return;
    }
    const refuse = (why: string): void => {
      if (this.o.required) throw new WdmdRefusal(`use_watchdog = 1 but wdmd cannot be used: ${why}`);
      this.state = `error: ${why}`;
      this.o.log.warning(`wdmd (${sock}) is present but cannot be used: ${why}; running without the watchdog`);
    };
    const n = this.o.native ?? loadNative();
    if (!n.wdmdConnect || !n.wdmdStatus || !n.wdmdTestLive || !n.wdmdClose) {
      return refuse('the native addon was built without wdmd support: run `npm run build:native`');
    }
    if (!existsSync(sock)) {
      return refuse(`${sock} does not exist: start wdmd (systemctl start wdmd; it needs a /dev/watchdog device, e.g. modprobe softdog), or set use_watchdog = 0`);
    }
    let fd: number;
    try {
      fd = n.wdmdConnect(this.o.name ?? `lockagent:${process.pid}`);
    } catch (e) {
      return refuse(`${(e as Error).message} (is wdmd running, and is this agent allowed to use ${sock}?)`);
    }
    try {
      // sanlock refuses a wdmd whose fire timeout differs from the 60 s every host assumes in
      // host_dead: the reset would come later than other hosts take our leases.
      const st = n.wdmdStatus(fd);
      if (st.fireTimeout !== WATCHDOG_FIRE_TIMEOUT) {
        n.wdmdClose(fd, true);
        return refuse(`wdmd's watchdog fire timeout is ${st.fireTimeout} s, not the ${WATCHDOG_FIRE_TIMEOUT} s that host_dead (8 x io_timeout + 60 s) assumes; run wdmd with its default timeout`);
      }
    } catch (e) {
      n.wdmdClose(fd, true);
      return refuse((e as Error).message);
    }
    this.fd = fd;
    this.state = 'connected';
    this.o.log.info(`wdmd connected (${sock}): the host is reset if a lockspace stops renewing and its owners are not stopped`);
    this.timer = setInterval(() => this.tick(), 1000);
    this.timer.unref();
    this.tick();
  }

  /** Once a second, from the main loop: re-arm when the earliest expiry moved. */
  tick(): void {
    if (this.fd === undefined) return;
    const t = wdmdTest(this.o.sources());
    if (t.renewal === this.last.renewal && t.expire === this.last.expire) return;
    try {
      (this.o.native ?? loadNative()).wdmdTestLive!(this.fd, t.renewal, t.expire);
      if (this.failing) this.o.log.warning('wdmd: test updates work again');
      this.failing = false;
      this.last = t;
      this.state = 'connected';
    } catch (e) {
      // Retried next second; wdmd keeps the old expiry meanwhile, so a lasting failure resets the host.
      if (!this.failing) this.o.log.error(`wdmd_test_live(${t.renewal}, ${t.expire}) failed: ${(e as Error).message}; retrying every second`);
      this.failing = true;
      this.state = `error: ${(e as Error).message}`;
    }
  }

  /** The test as last sent (0/0 when disarmed), for status. */
  test(): WdmdTest {
    return this.last;
  }

  status(): WdmdState {
    return this.state;
  }

  /**
   * Clean stop: disarm, drop the refcount, close. A connection closed while armed could never be
   * disarmed again (wdmd keeps its expiry), so the agent disarms even with owners running; the
   * guard covers them until the agent is back (docs/fencing.md).
   */
  stop(): void {
    clearInterval(this.timer);
    if (this.fd === undefined) return;
    const n = this.o.native ?? loadNative();
    try {
      n.wdmdTestLive!(this.fd, 0, 0);
    } catch (e) {
      this.o.log.error(`wdmd: disarming the test failed: ${(e as Error).message}; wdmd keeps the last expiry`);
    }
    n.wdmdClose!(this.fd, true);
    this.fd = undefined;
    this.state = 'closed';
    if (this.last.expire) this.o.log.info('wdmd test disarmed and closed');
  }
}
