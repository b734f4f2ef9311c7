import { LeaseSpec, LockManagerDomain, OwnerRef } from '../agent/types';
import { AddLockspaceReply, HeldLeaseReply, HostStatusReply, RenewalsReply, StatusReply, SweepReport } from './replies';

/**
 * The control socket protocol, version 1: one JSON object per line in each direction.
 *   request:  {"v":1,"id":7,"op":"acquire","owner":{...},"leases":[...]}
 *   response: {"v":1,"id":7,"ok":true,"result":{...}}
 *             {"v":1,"id":7,"ok":false,"error":{"rv":-243,"name":"SANLK_ACQUIRE_IDLIVE","message":"..."}}
 * Versioned so an old hook binary talking to a new agent gets a clear refusal, not a misparse.
 */
export const PROTOCOL_VERSION = 1;

/**
 * The control socket's limits: any local client allowed on the socket must not be able to grow
 * the agent without bound (200 clients each sending 4 MB without a newline took it to 2 GB RSS;
 * half-open connections stayed for ever). What goes past a limit gets one error line, then the
 * connection is closed.
 */
export interface SocketLimits {
  /** connections open at once (libvirt runs its hooks from ~20 worker threads; clients keep one each) */
  maxConnections: number;
  /** one request line (domain XML is a few KB; 1 MiB is generous) */
  maxLineBytes: number;
  /** partial request lines buffered over all connections: bounds the memory clients can pin */
  maxBufferedBytes: number;
  /**
   * A connection with no request in flight and no complete request for this long is closed
   * (AgentConnection reconnects on its next call). A request in flight (an acquire waiting
   * for the lockspace join) keeps its connection open however long it takes.
   */
  idleMs: number;
}

export const SOCKET_LIMITS: SocketLimits = {
  maxConnections: 256,
  maxLineBytes: 1024 * 1024,
  maxBufferedBytes: 32 * 1024 * 1024,
  idleMs: 60_000,
};

/**
 * Each op: the fields of its request (beside `op`) and the result the agent answers. The client
 * (`callAgent`), the server and the handlers all take their types from here.
 */
export interface Ops {
  status: { args: object; res: StatusReply };
  host_status: { args: { lockspace?: string }; res: HostStatusReply };
  renewals: { args: { lockspace: string }; res: RenewalsReply };
  acquire: { args: { owner: OwnerRef; leases: LeaseSpec[]; timeoutMs?: number }; res: HeldLeaseReply[] };
  release: { args: { owner: OwnerRef; leases?: LeaseSpec[] }; res: { released: number } };
  inquire: { args: { owner: OwnerRef }; res: HeldLeaseReply[] };
  add_lockspace: { args: { lockspace: string; hostId: number; path: string; offset: number; ioTimeout?: number }; res: AddLockspaceReply };
  rem_lockspace: { args: { lockspace: string }; res: { removed: string } };
  domain_prepare: { args: { xml: string; timeoutMs?: number }; res: { leases: number; deferred: boolean } };
  domain_release: { args: { xml?: string; uuid?: string }; res: { released: number } };
  domain_reconnect: { args: { xml: string }; res: null };
  domain_migrate: { args: { xml: string }; res: null };
  cleanup: { args: { dryRun: boolean; minAgeSeconds?: number }; res: SweepReport };
  // The lock-driver plugin inside libvirtd (native/lockdriver): one request per libvirt call.
  lock_register: { args: { domain: LockManagerDomain }; res: { leases: number } };
  lock_acquire: { args: { domain: LockManagerDomain; state?: string; timeoutMs?: number }; res: { leases: number } };
  /** pause: libvirt keeps the returned state for the resume; else a disk or lease is detached */
  lock_release: { args: { domain: LockManagerDomain; pause: boolean }; res: { released: number; state: string } };
  lock_inquire: { args: { domain: LockManagerDomain }; res: { state: string } };
}

export type Op = keyof Ops;
export type RequestOf<O extends Op> = { op: O } & Ops[O]['args'];
export type ResultOf<O extends Op> = Ops[O]['res'];
/** Any request: a union discriminated by `op`. */
export type Request = { [O in Op]: RequestOf<O> }[Op];
export const REQUEST_OPS: readonly Op[] = [
  'status', 'host_status', 'renewals', 'acquire', 'release', 'inquire', 'add_lockspace', 'rem_lockspace',
  'domain_prepare', 'domain_release', 'domain_reconnect', 'domain_migrate', 'cleanup',
  'lock_register', 'lock_acquire', 'lock_release', 'lock_inquire',
];

/** Handlers for some ops, each typed by its op's request and result. */
export type OpHandlers<K extends Op, P = unknown> = { [O in K]: (req: RequestOf<O>, peer: P) => Promise<ResultOf<O>> };

export interface ErrorBody {
  rv: number;
  name: string;
  message: string;
}

export type Response<R = unknown> =
  | { v: number; id: number | string | null; ok: true; result: R }
  | { v: number; id: number | string | null; ok: false; error: ErrorBody };

export class ProtocolError extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = 'ProtocolError';
  }
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const str = (o: Record<string, unknown>, k: string, required = true): string | undefined => {
  const v = o[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new ProtocolError(`"${k}" must be a non-empty string`);
  return v;
};
const int = (o: Record<string, unknown>, k: string, required = true): number | undefined => {
  const v = o[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ProtocolError(`"${k}" must be a non-negative integer`);
  return v;
};

function owner(o: Record<string, unknown>): OwnerRef {
  const w = o.owner;
  if (!isObj(w)) throw new ProtocolError('"owner" must be an object {uuid, name?, pid?}');
  return { uuid: str(w, 'uuid')!, name: str(w, 'name', false), pid: int(w, 'pid', false) };
}

function lease(x: unknown, i: number): LeaseSpec {
  if (!isObj(x)) throw new ProtocolError(`leases[${i}] must be an object`);
  const mode = x.mode;
  if (mode !== undefined && mode !== 'exclusive' && mode !== 'shared') throw new ProtocolError(`leases[${i}].mode must be "exclusive" or "shared"`);
  return {
    lockspace: str(x, 'lockspace')!, resource: str(x, 'resource')!, path: str(x, 'path')!,
    offset: int(x, 'offset')!, mode: mode as LeaseSpec['mode'], lver: int(x, 'lver', false), disk: str(x, 'disk', false),
  };
}

function leases(o: Record<string, unknown>, required: boolean): LeaseSpec[] | undefined {
  const v = o.leases;
  if (v === undefined && !required) return undefined;
  if (!Array.isArray(v)) throw new ProtocolError('"leases" must be an array');
  return v.map(lease);
}

const bool = (o: Record<string, unknown>, k: string, dflt: boolean): boolean => {
  const v = o[k];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new ProtocolError(`"${k}" must be true or false`);
  return v;
};

const ACTIONS = ['poweroff', 'restart', 'pause', 'ignore'] as const;

/** The domain of a lock-driver call, with `action` (sent beside it, at acquire) folded in. */
function lockDomain(o: Record<string, unknown>): LockManagerDomain {
  const d = o.domain;
  if (!isObj(d)) throw new ProtocolError('"domain" must be an object {uuid, name, pid?, disks, leases}');
  if (!Array.isArray(d.disks) || !Array.isArray(d.leases)) throw new ProtocolError('"domain" needs "disks" and "leases" arrays');
  const action = o.action;
  if (action !== undefined && !ACTIONS.includes(action as typeof ACTIONS[number])) throw new ProtocolError(`"action" must be one of ${ACTIONS.join(', ')}`);
  return {
    uuid: str(d, 'uuid')!, name: str(d, 'name')!, pid: int(d, 'pid', false),
    disks: d.disks.map((x: unknown, i: number) => {
      if (!isObj(x)) throw new ProtocolError(`domain.disks[${i}] must be an object`);
      return { path: str(x, 'path')!, readonly: bool(x, 'readonly', false), shared: bool(x, 'shared', false) };
    }),
    leases: d.leases.map((x: unknown, i: number) => {
      if (!isObj(x)) throw new ProtocolError(`domain.leases[${i}] must be an object`);
      const ls = x.lockspace;
      if (ls !== undefined && typeof ls !== 'string') throw new ProtocolError(`domain.leases[${i}].lockspace must be a string`);
      return { lockspace: ls, key: str(x, 'key')!, path: str(x, 'path')!, offset: int(x, 'offset')! };
    }),
    ...(action !== undefined ? { action: action as LockManagerDomain['action'] } : {}),
  };
}

/** Validate a parsed request line. Throws ProtocolError with a message fit for the client. */
export function parseRequest(line: string): { id: number | string | null; req: Request } {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    throw new ProtocolError('request is not valid JSON');
  }
  if (!isObj(o)) throw new ProtocolError('request must be a JSON object');
  const id = typeof o.id === 'number' || typeof o.id === 'string' ? o.id : null;
  if (o.v !== PROTOCOL_VERSION) throw Object.assign(new ProtocolError(`unsupported protocol version ${JSON.stringify(o.v)}; this agent speaks version ${PROTOCOL_VERSION}`), { id });
  const op = o.op;
  try {
    switch (op) {
      case 'status': return { id, req: { op } };
      case 'host_status': return { id, req: { op, lockspace: str(o, 'lockspace', false) } };
      case 'renewals': return { id, req: { op, lockspace: str(o, 'lockspace')! } };
      case 'acquire': return { id, req: { op, owner: owner(o), leases: leases(o, true)!, timeoutMs: int(o, 'timeoutMs', false) } };
      case 'release': return { id, req: { op, owner: owner(o), leases: leases(o, false) } };
      case 'inquire': return { id, req: { op, owner: owner(o) } };
      case 'add_lockspace':
        return { id, req: { op, lockspace: str(o, 'lockspace')!, hostId: int(o, 'hostId')!, path: str(o, 'path')!, offset: int(o, 'offset')!, ioTimeout: int(o, 'ioTimeout', false) } };
      case 'rem_lockspace': return { id, req: { op, lockspace: str(o, 'lockspace')! } };
      case 'domain_prepare': return { id, req: { op, xml: str(o, 'xml')!, timeoutMs: int(o, 'timeoutMs', false) } };
      case 'domain_release': {
        const req = { op, xml: str(o, 'xml', false), uuid: str(o, 'uuid', false) } as const;
        if (!req.xml && !req.uuid) throw new ProtocolError('domain_release needs "xml" or "uuid"');
        return { id, req };
      }
      case 'domain_reconnect': return { id, req: { op, xml: str(o, 'xml')! } };
      case 'domain_migrate': return { id, req: { op, xml: str(o, 'xml')! } };
      case 'cleanup': {
        if (typeof o.dryRun !== 'boolean') throw new ProtocolError('"dryRun" must be true or false');
        return { id, req: { op, dryRun: o.dryRun, minAgeSeconds: int(o, 'minAgeSeconds', false) } };
      }
      case 'lock_register': return { id, req: { op, domain: lockDomain(o) } };
      case 'lock_acquire': {
        const state = o.state;
        if (state !== undefined && typeof state !== 'string') throw new ProtocolError('"state" must be a string');
        return { id, req: { op, domain: lockDomain(o), state, timeoutMs: int(o, 'timeoutMs', false) } };
      }
      case 'lock_release': {
        if (typeof o.pause !== 'boolean') throw new ProtocolError('"pause" must be true or false');
        return { id, req: { op, domain: lockDomain(o), pause: o.pause } };
      }
      case 'lock_inquire': return { id, req: { op, domain: lockDomain(o) } };
      default:
        throw new ProtocolError(`unknown op ${JSON.stringify(op)}; known: ${REQUEST_OPS.join(', ')}`);
    }
  } catch (e) {
    if (e instanceof ProtocolError) throw Object.assign(e, { id });
    throw e;
  }
}
