// A libvirt connection for the agent: domain control calls plus lifecycle and
// device events, with automatic reconnect and a full resync after every
// (re)connect. Built on the lockagent_virt addon (virtnative.ts); see
// docs/libvirt-events.md for the threads, the event flow and why we do not use
// @unraid/libvirt.
//
// Never call this from inside the handling of a libvirt hook request: libvirtd
// holds the domain's lock while the hook runs, so a call that needs that domain
// (and listDomains, which touches all of them) can deadlock (docs/libvirt-events.md, "The hook rule").
import { EventEmitter } from 'events';
import { backoffDelay } from '../lease/wait';
import {
  LibvirtErrorFields,
  loadVirt,
  NativeDeviceEvent,
  NativeDomainInfo,
  NativeDomainRef,
  NativeDomainState,
  NativeLifecycleEvent,
  NativeVirtConnection,
  NativeVirtEvent,
  VirtBinding,
} from './virtnative';

export type DomainInfo = NativeDomainInfo;
export type DomainRef = NativeDomainRef;
export type DomainStateInfo = NativeDomainState;
export type LifecycleEvent = NativeLifecycleEvent;
export type DeviceEvent = NativeDeviceEvent;

/**
 * A failed libvirt call, with libvirt's own numbers and message. Every
 * rejection of a LibvirtConnection call that came from libvirt is one of these
 * (errors thrown by the addon are re-created in the caller's realm, so
 * `instanceof` works in jest too).
 */
export class LibvirtError extends Error implements LibvirtErrorFields {
  readonly code: number;
  readonly codeName: string;
  readonly domain: number;
  readonly domainName: string;
  readonly level: number;
  readonly op: string;
  readonly target?: string;

  constructor(message: string, fields: LibvirtErrorFields) {
    super(message);
    this.name = 'LibvirtError';
    this.code = fields.code;
    this.codeName = fields.codeName;
    this.domain = fields.domain;
    this.domainName = fields.domainName;
    this.level = fields.level;
    this.op = fields.op;
    if (fields.target !== undefined) this.target = fields.target;
  }
}

/** True for a LibvirtError or an error object from the addon carrying libvirt's numbers. */
export function isLibvirtError(e: unknown): e is LibvirtError {
  if (e instanceof LibvirtError) return true;
  const o = e as Partial<LibvirtErrorFields & { message: unknown }> | null;
  return typeof o === 'object' && o !== null && typeof o.code === 'number' && typeof o.domain === 'number' && typeof o.message === 'string';
}

function toLibvirtError(e: unknown): unknown {
  if (e instanceof LibvirtError || !isLibvirtError(e)) return e;
  const f = e as unknown as LibvirtErrorFields & { message: string };
  return new LibvirtError(f.message, {
    code: f.code,
    codeName: f.codeName ?? '',
    domain: f.domain,
    domainName: f.domainName ?? '',
    level: f.level ?? 2,
    op: f.op ?? '',
    target: f.target,
  });
}

/** virErrorNumber values the agent acts on (virterror.h). */
export const VIR_ERR = {
  INTERNAL_ERROR: 1,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_CONN: 6,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  XML_ERROR: 27,
  DOM_EXIST: 28,
  OPERATION_DENIED: 29,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  AUTH_FAILED: 45,
  OPERATION_INVALID: 55,
  OPERATION_TIMEOUT: 68,
} as const;

/** virDomainXMLFlags for getXML(). */
export const DOMAIN_XML = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;

/** Reconnect attempts are paused while this many timed-out ones are still blocked in libvirt. */
const MAX_STUCK_ATTEMPTS = 2;

/** Errors after which the transport may be gone: checked with virConnectIsAlive. */
const TRANSPORT_ERRORS: ReadonlySet<number> = new Set([VIR_ERR.SYSTEM_ERROR, VIR_ERR.RPC, VIR_ERR.NO_CONNECT]);

export interface DisconnectInfo {
  /** What noticed the loss: libvirt's close callback, or a failed call whose transport was found dead. */
  cause: 'close-callback' | 'call-failed';
  /** virConnectCloseReason (close-callback only): 0 ERROR, 1 EOF, 2 KEEPALIVE, 3 CLIENT. */
  reason?: number;
  reasonName?: string;
  /** The failed call's error (call-failed only). */
  error?: LibvirtError;
}

export interface ReconnectingInfo {
  /** 1 for the first attempt after a loss. */
  attempt: number;
  delayMs: number;
  /** Why the previous attempt failed (absent before the first attempt). */
  error?: Error;
}

export interface ReconnectedInfo {
  /** Attempts it took (1 = first try). */
  attempts: number;
  /** Time since the loss was noticed. */
  downMs: number;
}

export interface ResyncInfo {
  /** Every domain (active and inactive) with its state, listed after the events were registered. */
  domains: DomainInfo[];
  /** True for the first connect, false after a reconnect. */
  initial: boolean;
  /** Increments with every successful (re)connect. */
  generation: number;
  /** performance.now() when `domains` was asked for: a domain started since may not be in it. */
  listedAt: number;
}

export interface LibvirtConnectionEvents {
  lifecycle: [LifecycleEvent];
  device: [DeviceEvent];
  disconnected: [DisconnectInfo];
  reconnecting: [ReconnectingInfo];
  reconnected: [ReconnectedInfo];
  resync: [ResyncInfo];
}

export interface BackoffOptions {
  /** First retry delay. Default 500 ms. */
  initialMs?: number;
  /** Cap. Default 30 000 ms. */
  maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  factor?: number;
}

export interface LibvirtConnectionOptions {
  /** VIR_CONNECT_RO: enough for events and listing, not for control calls. */
  readOnly?: boolean;
  /** virConnectSetKeepAlive(interval s, count); false disables. Default {interval: 5, count: 3}. */
  keepAlive?: { interval: number; count: number } | false;
  backoff?: BackoffOptions;
  /**
   * Limit for one connect attempt (open + domain listing); 0 disables.
   * Default 60 000 ms. A timed-out attempt fails with VIR_ERR_OPERATION_TIMEOUT.
   */
  connectTimeoutMs?: number;
  /** The addon to use; tests wrap the real one to inject failures. Default loadVirt(). */
  binding?: VirtBinding;
}

export type GetXMLOptions = number | { inactive?: boolean; secure?: boolean; migratable?: boolean };

type Phase = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Our own refusal while there is no connection: libvirt's VIR_ERR_NO_CONNECT. */
function notConnected(uri: string, op: string, why: string): LibvirtError {
  return new LibvirtError(`not connected to ${uri}: ${why}`, {
    code: VIR_ERR.NO_CONNECT,
    codeName: 'VIR_ERR_NO_CONNECT',
    domain: 0,
    domainName: 'VIR_FROM_NONE',
    level: 2,
    op,
    target: uri,
  });
}

function xmlFlags(opts: GetXMLOptions | undefined): number {
  if (opts === undefined) return 0;
  if (typeof opts === 'number') return opts;
  return (opts.secure ? DOMAIN_XML.SECURE : 0) | (opts.inactive ? DOMAIN_XML.INACTIVE : 0) | (opts.migratable ? DOMAIN_XML.MIGRATABLE : 0);
}

/**
 * Events: 'lifecycle', 'device', 'disconnected', 'reconnecting', 'reconnected', 'resync'.
 *
 * Ordering contract: after every successful (re)connect, 'resync' comes first
 * (after 'reconnected' on a reconnect); lifecycle/device events of that
 * connection are held back until then, so every event a listener sees was
 * delivered after the snapshot it reconciled against. An event may still
 * describe a change the snapshot already shows: handlers must be idempotent.
 * Events that happen while disconnected are lost; the next 'resync' covers them.
 */
export class LibvirtConnection extends EventEmitter<LibvirtConnectionEvents> {
  private readonly binding: VirtBinding;
  private phase: Phase = 'idle';
  private native?: NativeVirtConnection;
  /** Incremented for every native connection; events of older ones are dropped. */
  private epoch = 0;
  /** The epoch whose events are held back until its resync is emitted. */
  private holding = 0;
  private held: (LifecycleEvent | DeviceEvent)[] = [];
  /** Epoch whose native connection reported a close before it was adopted. */
  private lostEpoch = 0;
  private generation = 0;
  private attempt = 0;
  private downSince = 0;
  private timer?: NodeJS.Timeout;
  private snapshot: DomainInfo[] = [];
  /** Timed-out connect attempts whose worker thread is still inside libvirt. */
  private stuck = 0;

  constructor(
    readonly uri: string,
    private readonly opts: LibvirtConnectionOptions = {},
  ) {
    super();
    this.binding = opts.binding ?? loadVirt();
  }

  /**
   * Connects (one attempt; a failure rejects with libvirt's error) and lists
   * all domains. Use this form to attach listeners before the initial
   * 'resync'; with `LibvirtConnection.open()` the initial 'resync' is emitted
   * on the next turn of the event loop, so attach listeners right after the
   * await (or read `domains`).
   */
  static async open(uri: string, opts?: LibvirtConnectionOptions): Promise<LibvirtConnection> {
    const c = new LibvirtConnection(uri, opts);
    await c.connectInitial(true);
    return c;
  }

  async connect(): Promise<void> {
    await this.connectInitial(false);
  }

  /** True while a native connection is up and resynced. */
  get connected(): boolean {
    return this.phase === 'open';
  }

  /** Whether keepalive is active on the current connection (never on test:///). */
  get keepAlive(): boolean {
    return this.native?.keepAlive ?? false;
  }

  /** The domain list of the last resync. */
  get domains(): readonly DomainInfo[] {
    return this.snapshot;
  }

  listDomains(): Promise<DomainInfo[]> {
    return this.call('listDomains', (n) => n.listDomains());
  }
  lookup(uuid: string): Promise<DomainInfo> {
    return this.call('lookup', (n) => n.lookup(uuid));
  }
  lookupByName(name: string): Promise<DomainInfo> {
    return this.call('lookupByName', (n) => n.lookupByName(name));
  }
  getXML(uuid: string, opts?: GetXMLOptions): Promise<string> {
    return this.call('getXML', (n) => n.getXML(uuid, xmlFlags(opts)));
  }
  state(uuid: string): Promise<DomainStateInfo> {
    return this.call('state', (n) => n.state(uuid));
  }
  suspend(uuid: string): Promise<void> {
    return this.call('suspend', (n) => n.suspend(uuid));
  }
  resume(uuid: string): Promise<void> {
    return this.call('resume', (n) => n.resume(uuid));
  }
  destroy(uuid: string): Promise<void> {
    return this.call('destroy', (n) => n.destroy(uuid));
  }
  create(uuid: string): Promise<void> {
    return this.call('create', (n) => n.create(uuid));
  }
  defineXML(xml: string): Promise<DomainRef> {
    return this.call('defineXML', (n) => n.defineXML(xml));
  }
  /** Starts a transient domain from its XML (virDomainCreateXML). */
  createXML(xml: string): Promise<DomainRef> {
    return this.call('createXML', (n) => n.createXML(xml));
  }
  undefine(uuid: string, flags = 0): Promise<void> {
    return this.call('undefine', (n) => n.undefine(uuid, flags));
  }
  isAlive(): Promise<boolean> {
    return this.call('isAlive', (n) => n.isAlive());
  }

  /** Stops reconnecting and closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.epoch++;
    this.held = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const n = this.native;
    this.native = undefined;
    if (n) await n.close().catch(() => undefined);
  }

  /** Test hook: behave exactly as if libvirt's close callback fired (reason 1 = EOF). */
  _simulateClose(reason = 1): void {
    this.native?._simulateClose(reason);
  }

  /** Test hook: block the worker thread of the current connection. */
  _sleep(ms: number): Promise<void> {
    return this.call('_sleep', (n) => n._sleep(ms));
  }

  // --- internals -----------------------------------------------------------

  private async call<T>(op: string, fn: (n: NativeVirtConnection) => Promise<T>): Promise<T> {
    const n = this.native;
    if (!n || this.phase !== 'open') {
      const why = this.phase === 'closed' ? 'the connection was closed' : this.phase === 'reconnecting' ? `reconnecting (attempt ${this.attempt})` : 'not connected yet';
      throw notConnected(this.uri, op, why);
    }
    try {
      return await fn(n);
    } catch (raw) {
      const e = toLibvirtError(raw);
      if (isLibvirtError(e) && TRANSPORT_ERRORS.has(e.code)) void this.checkTransport(n, e);
      throw e;
    }
  }

  /**
   * After a call failed with a transport-looking error: VIR_ERR_SYSTEM_ERROR
   * is also what libvirtd reports for its own failed syscalls, so reconnect
   * only if the client side says the transport is really dead.
   */
  private async checkTransport(n: NativeVirtConnection, error: LibvirtError): Promise<void> {
    let alive = false;
    try {
      alive = await n.isAlive();
    } catch {
      alive = false;
    }
    if (!alive && n === this.native && this.phase === 'open') this.lose({ cause: 'call-failed', error });
  }

  private async connectInitial(deferEmit: boolean): Promise<void> {
    if (this.phase !== 'idle') throw new Error(`LibvirtConnection: connect() called in state ${this.phase}`);
    this.phase = 'connecting';
    let domains: DomainInfo[];
    try {
      domains = await this.attach();
    } catch (e) {
      if (this.phase === 'connecting') this.phase = 'idle';
      throw e;
    }
    this.phase = 'open';
    this.snapshot = domains;
    if (deferEmit) {
      const epoch = this.epoch;
      setImmediate(() => {
        if (this.epoch === epoch && this.phase === 'open') this.publish(domains, true);
      });
    } else {
      this.publish(domains, true);
    }
  }

  /**
   * One connect attempt, bounded by connectTimeoutMs. A libvirtd that accepts
   * the socket but never answers would otherwise stall reconnecting forever.
   * The blocked worker thread cannot be interrupted: the attempt is abandoned
   * (its connection closed if it ever opens) and counted as stuck.
   */
  private async attach(): Promise<DomainInfo[]> {
    const epoch = ++this.epoch;
    this.holding = epoch;
    this.held = [];
    const work = this.attachWork(epoch);
    const timeoutMs = this.opts.connectTimeoutMs ?? 60_000;
    if (!(timeoutMs > 0)) return work;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          new LibvirtError(`no answer from ${this.uri} within ${timeoutMs} ms (open and domain listing)`, {
            code: VIR_ERR.OPERATION_TIMEOUT,
            codeName: 'VIR_ERR_OPERATION_TIMEOUT',
            domain: 0,
            domainName: 'VIR_FROM_NONE',
            level: 2,
            op: 'open',
            target: this.uri,
          }),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (e) {
      if (e instanceof LibvirtError && e.code === VIR_ERR.OPERATION_TIMEOUT && e.op === 'open') {
        if (this.epoch === epoch) this.epoch++; // the late result is abandoned by attachWork
        this.stuck++;
        work.then(
          () => this.stuck--,
          () => this.stuck--,
        );
      }
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Opens a native connection, lists the domains and adopts it. Events are held from the start. */
  private async attachWork(epoch: number): Promise<DomainInfo[]> {
    const n = await this.openNative(epoch);
    const abandon = async (err: unknown): Promise<never> => {
      await n.close().catch(() => undefined);
      throw toLibvirtError(err);
    };
    if (this.epoch !== epoch) return abandon(notConnected(this.uri, 'open', 'the connection was closed'));
    let domains: DomainInfo[];
    try {
      this.listedAt = performance.now();
      domains = await n.listDomains();
    } catch (e) {
      return abandon(e);
    }
    if (this.epoch !== epoch) return abandon(notConnected(this.uri, 'open', 'the connection was closed'));
    if (this.lostEpoch === epoch) return abandon(notConnected(this.uri, 'open', 'the connection closed while resynchronising'));
    this.native = n;
    return domains;
  }

  private async openNative(epoch: number): Promise<NativeVirtConnection> {
    const keepAlive = this.opts.keepAlive ?? { interval: 5, count: 3 };
    try {
      return await this.binding.open(
        this.uri,
        {
          readOnly: this.opts.readOnly ?? false,
          keepAliveInterval: keepAlive ? keepAlive.interval : 0,
          keepAliveCount: keepAlive ? keepAlive.count : 0,
        },
        (ev) => this.onNativeEvent(epoch, ev),
      );
    } catch (e) {
      throw toLibvirtError(e);
    }
  }

  /** performance.now() when the domain list of the last (re)connect was asked for */
  private listedAt = 0;

  private publish(domains: DomainInfo[], initial: boolean): void {
    this.snapshot = domains;
    this.generation++;
    const held = this.held;
    this.held = [];
    this.holding = 0;
    this.emit('resync', { domains, initial, generation: this.generation, listedAt: this.listedAt });
    for (const ev of held) this.deliver(ev);
  }

  private deliver(ev: LifecycleEvent | DeviceEvent): void {
    if (ev.type === 'lifecycle') this.emit('lifecycle', ev);
    else this.emit('device', ev);
  }

  private onNativeEvent(epoch: number, ev: NativeVirtEvent): void {
    if (epoch !== this.epoch || this.phase === 'closed') return;
    if (ev.type === 'close') {
      if (this.phase === 'open' && this.native) {
        this.lose({ cause: 'close-callback', reason: ev.reason, reasonName: ev.reasonName });
      } else {
        this.lostEpoch = epoch;
      }
      return;
    }
    if (this.holding === epoch) this.held.push(ev);
    else this.deliver(ev);
  }

  private lose(info: DisconnectInfo): void {
    if (this.phase !== 'open') return;
    this.phase = 'reconnecting';
    this.epoch++;
    this.held = [];
    this.holding = 0;
    const old = this.native;
    this.native = undefined;
    this.downSince = Date.now();
    this.attempt = 0;
    // Free the dead connection on its worker thread; nothing waits for it.
    if (old) void old.close().catch(() => undefined);
    this.emit('disconnected', info);
    this.scheduleReconnect();
  }

  private backoff(attempt: number): number {
    const b = this.opts.backoff;
    return backoffDelay(attempt - 1, { initial: b?.initialMs ?? 500, max: b?.maxMs ?? 30_000, factor: b?.factor });
  }

  private scheduleReconnect(error?: Error): void {
    if (this.phase !== 'reconnecting') return;
    const attempt = ++this.attempt;
    const delayMs = this.backoff(attempt);
    this.emit('reconnecting', { attempt, delayMs, error });
    if (this.phase !== 'reconnecting') return; // a listener closed us
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.tryReconnect();
    }, delayMs);
  }

  private async tryReconnect(): Promise<void> {
    if (this.phase !== 'reconnecting') return;
    if (this.stuck >= MAX_STUCK_ATTEMPTS) {
      // Do not pile up threads blocked inside libvirt; wait for one to return.
      this.scheduleReconnect(new Error(`${this.stuck} earlier connect attempts to ${this.uri} are still blocked in libvirt`));
      return;
    }
    let domains: DomainInfo[];
    try {
      domains = await this.attach();
    } catch (e) {
      if (this.phase !== 'reconnecting') return;
      this.scheduleReconnect(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    if (this.phase !== 'reconnecting') return;
    this.phase = 'open';
    const attempts = this.attempt;
    this.attempt = 0;
    this.emit('reconnected', { attempts, downMs: Date.now() - this.downSince });
    if (this.phase !== 'open') return; // a listener closed us
    this.publish(domains, false);
  }
}
