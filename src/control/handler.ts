import { Agent, HeldLease } from '../agent/agent';
import { DEFAULT_IO_TIMEOUT, LeaseError, SANLK } from '../ondisk';
import { Op, OpHandlers, Request, RequestOf, ResultOf } from './protocol';
import { DomainStatus, FencingStatus } from './replies';
import { Peer } from './server';

/** The ops the libvirt integration serves (the qemu hook's and the lock-driver plugin's requests). */
export type DomainOp = 'domain_prepare' | 'domain_release' | 'domain_reconnect' | 'domain_migrate'
  | 'lock_register' | 'lock_acquire' | 'lock_release' | 'lock_inquire';
export type DomainHandlers = OpHandlers<DomainOp, Peer>;
export type CleanupHandlers = OpHandlers<'cleanup', Peer>;
type CoreOp = Exclude<Op, DomainOp | 'cleanup'>;

const held = (h: HeldLease) => ({ ...h.spec, lver: h.token.lver });

/**
 * Control-socket requests that concern leases and lockspaces. Domain requests (the libvirt
 * hook) are served by the libvirt integration and `cleanup` by the sweeper, which the daemon
 * plugs in here.
 */
export function makeHandler(agent: Agent, extra?: { domain?: DomainHandlers; cleanup?: CleanupHandlers; domains?: () => DomainStatus[]; fencing?: () => FencingStatus }) {
  const core: OpHandlers<CoreOp, Peer> = {
    status: async () => ({
      hostName: agent.hostName,
      stateStore: agent.stateStoreHealth(),
      lockspaces: agent.lockspaceStatus(),
      owners: agent.ownersList().map((o) => ({
        uuid: o.ref.uuid, name: o.ref.name, pid: o.ref.pid,
        leases: o.leases.map(held),
      })),
      ...(extra?.domains ? { domains: extra.domains() } : {}),
      ...(extra?.fencing ? { fencing: extra.fencing() } : {}),
    }),
    host_status: async (req) => {
      const list = req.lockspace ? [agent.lockspaces.get(req.lockspace)] : [...agent.lockspaces.values()];
      if (req.lockspace && !list[0]) throw new LeaseError(SANLK.ENOENT, `lockspace ${req.lockspace} is not joined on this host`);
      return list.map((ls) => ({ lockspace: ls!.name, hostId: ls!.spec.hostId, state: ls!.state, hosts: ls!.hosts() }));
    },
    renewals: async (req) => {
      const ls = agent.lockspaces.get(req.lockspace);
      if (!ls) throw new LeaseError(SANLK.ENOENT, `lockspace ${req.lockspace} is not joined on this host`);
      return { lockspace: ls.name, hostId: ls.spec.hostId, ioTimeout: ls.spec.ioTimeout, renewals: ls.renewals.list() };
    },
    acquire: async (req) => {
      // A client's pid is the process using the leases: its exit releases them.
      const leases = await agent.acquire(req.owner, req.leases, { timeoutMs: req.timeoutMs, watchPid: true });
      return leases.map(held);
    },
    release: async (req) => ({ released: await agent.release(req.owner, req.leases) }),
    inquire: async (req) => agent.inquire(req.owner.uuid).map(held),
    add_lockspace: async (req) => {
      const ls = agent.addLockspace({ name: req.lockspace, hostId: req.hostId, path: req.path, offset: req.offset, ioTimeout: req.ioTimeout || DEFAULT_IO_TIMEOUT }); // 0: the default, as in sanlock
      await ls.waitJoined(10 * 60 * 1000);
      return { lockspace: ls.name, hostId: ls.spec.hostId, generation: ls.lease?.generation };
    },
    rem_lockspace: async (req) => {
      await agent.removeLockspace(req.lockspace);
      return { removed: req.lockspace };
    },
  };
  const missing = (op: Op): never => {
    if (op === 'cleanup') throw new LeaseError(SANLK.EINVAL, 'the cleanup sweeper is not available in this agent');
    throw new LeaseError(SANLK.EINVAL, `${op} needs the libvirt integration, which is not enabled in this agent`);
  };
  const handlers: Partial<OpHandlers<Op, Peer>> = { ...extra?.domain, ...extra?.cleanup, ...core };
  const serve = <O extends Op>(req: RequestOf<O>, peer: Peer): Promise<ResultOf<O>> => {
    const h: OpHandlers<Op, Peer>[O] | undefined = handlers[req.op];
    return h ? h(req, peer) : missing(req.op);
  };
  return (req: Request, peer: Peer) => serve(req, peer);
}
