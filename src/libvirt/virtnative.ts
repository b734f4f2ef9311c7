// Loader and types for the lockagent_virt addon (native/src/virt_*.cc, built by
// `npm run build:native` where pkg-config finds libvirt).
//
// Loading the addon registers libvirt's default event implementation and starts
// the libvirt event thread. libvirt allows this once per process and only
// before the first connection is opened, so load it (loadVirt()) before anything
// else in the process talks to libvirt.
import * as fs from 'fs';
import * as path from 'path';
import { findPackageRoot } from '../io/packageroot';

/** One domain as listed: identity plus virDomainGetState(). */
export interface NativeDomainInfo {
  uuid: string;
  name: string;
  /** Hypervisor id; -1 when the domain is not running. */
  id: number;
  /** virDomainState: 1 RUNNING, 3 PAUSED, 5 SHUTOFF, ... */
  state: number;
  stateName: string;
  /** The state's reason code (virDomainPausedReason etc.). */
  stateReason: number;
  stateReasonName: string;
}

export interface NativeDomainRef {
  uuid: string;
  name: string;
  id: number;
}

export interface NativeDomainState {
  state: number;
  stateName: string;
  reason: number;
  reasonName: string;
}

export interface NativeLifecycleEvent {
  type: 'lifecycle';
  uuid: string;
  name: string;
  id: number;
  /** virDomainEventType: 0 DEFINED ... 5 STOPPED ... 8 CRASHED. */
  event: number;
  eventName: string;
  /** The event's detail code, e.g. STOPPED 1 = DESTROYED. */
  detail: number;
  detailName: string;
  /** Wall-clock ms (fractional) when libvirt's callback ran on the event thread. */
  ts: number;
}

export interface NativeDeviceEvent {
  type: 'device';
  action: 'added' | 'removed';
  uuid: string;
  name: string;
  id: number;
  /** Device alias, e.g. "virtio-disk1" or "ua-lease0". */
  alias: string;
  ts: number;
}

export interface NativeCloseEvent {
  type: 'close';
  /** virConnectCloseReason: 0 ERROR, 1 EOF, 2 KEEPALIVE, 3 CLIENT. */
  reason: number;
  reasonName: string;
  ts: number;
}

export type NativeVirtEvent = NativeLifecycleEvent | NativeDeviceEvent | NativeCloseEvent;

export interface NativeOpenOptions {
  /** Open with VIR_CONNECT_RO (enough for events and listing). */
  readOnly?: boolean;
  /** virConnectSetKeepAlive interval in seconds; <= 0 disables. Default 5. */
  keepAliveInterval?: number;
  /** virConnectSetKeepAlive count. Default 3. */
  keepAliveCount?: number;
}

/**
 * A libvirt connection owned by the addon. Every method that talks to libvirt
 * runs on the connection's own worker thread, in call order, and returns a
 * promise; failures reject with a libvirt error (see LibvirtErrorFields).
 */
export interface NativeVirtConnection {
  readonly uri: string;
  /** True if virConnectSetKeepAlive succeeded (remote drivers only). */
  readonly keepAlive: boolean;
  /** True once close() was called, the open failed, or the object was finalized. */
  readonly closed: boolean;
  listDomains(): Promise<NativeDomainInfo[]>;
  lookup(uuid: string): Promise<NativeDomainInfo>;
  lookupByName(name: string): Promise<NativeDomainInfo>;
  /** virDomainGetXMLDesc flags: 1 SECURE, 2 INACTIVE, 4 UPDATE_CPU, 8 MIGRATABLE. */
  getXML(uuid: string, flags?: number): Promise<string>;
  state(uuid: string): Promise<NativeDomainState>;
  suspend(uuid: string): Promise<void>;
  resume(uuid: string): Promise<void>;
  destroy(uuid: string): Promise<void>;
  /** virDomainCreate: start a defined domain. */
  create(uuid: string): Promise<void>;
  defineXML(xml: string): Promise<NativeDomainRef>;
  /** virDomainCreateXML: start a transient domain from its XML (flags: virDomainCreateFlags). */
  createXML(xml: string, flags?: number): Promise<NativeDomainRef>;
  /** virDomainUndefineFlags. */
  undefine(uuid: string, flags?: number): Promise<void>;
  /** virConnectIsAlive: false once the transport to the daemon is gone. */
  isAlive(): Promise<boolean>;
  /** Deregisters the callbacks and closes the connection; later calls reject with VIR_ERR_INVALID_CONN. */
  close(): Promise<void>;
  /** The connection keeps the process alive while open (default), like a socket. */
  ref(): this;
  unref(): this;
  /** Test hook: delivers a close event exactly as libvirt's close callback would. */
  _simulateClose(reason?: number): void;
  /** Test hook: blocks this connection's worker thread for `ms`. */
  _sleep(ms: number): Promise<void>;
}

export interface VirtEventLoopInfo {
  registered: boolean;
  running: boolean;
  iterations: number;
  error?: string;
}

export interface VirtBinding {
  open(uri: string, options: NativeOpenOptions, onEvent: (ev: NativeVirtEvent) => void): Promise<NativeVirtConnection>;
  eventLoopInfo(): VirtEventLoopInfo;
  /** virGetVersion: major * 1e6 + minor * 1e3 + release. */
  libvirtVersion(): number;
}

/** The fields the addon puts on every rejected libvirt call. */
export interface LibvirtErrorFields {
  /** virErrorNumber, e.g. 42 VIR_ERR_NO_DOMAIN. */
  code: number;
  codeName: string;
  /** virErrorDomain, e.g. 12 VIR_FROM_TEST. */
  domain: number;
  domainName: string;
  /** virErrorLevel: 1 warning, 2 error. */
  level: number;
  /** The call that failed: 'open', 'suspend', ... */
  op: string;
  /** The uuid, name or uri the call was about. */
  target?: string;
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'lockagent_virt.node');

export function virtAddonPath(): string {
  return path.join(findPackageRoot(__dirname), ADDON_RELATIVE);
}

let cached: VirtBinding | undefined;

/** Loads the addon once; throws an actionable error if it has not been built. */
export function loadVirt(): VirtBinding {
  if (cached) return cached;
  const file = virtAddonPath();
  if (!fs.existsSync(file)) {
    throw new Error(
      `lockagent: libvirt addon not found at ${file}; install libvirt's development files ` +
        '(Debian: apt-get install libvirt-dev pkg-config) and run `npm run build:native` ' +
        '(the lockagent_virt target is skipped when `pkg-config --exists libvirt` fails)',
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cached = require(file) as VirtBinding;
  return cached;
}
