import { Request } from './protocol';
import { Peer } from './server';
import { DEFAULT_IO_TIMEOUT, LeaseError, SANLK } from '../ondisk';
import { Agent } from '../agent/agent';

/**
 * Control-socket requests that concern leases and lockspaces. Domain requests (the libvirt
 * hook) are served by the libvirt integration, which registers its own handler for them.
 */
export type DomainHandler = (req: Request, peer: Peer) => Promise<unknown>;

export function makeHandler(agent: Agent, extra?: { domain?: DomainHandler; cleanup?: DomainHandler; statusExtra?: () => Record<string, unknown>; fencing?: () => object }) {
  return async (req: Request, peer: Peer): Promise<unknown> => {
    void peer;
    switch (req.op) {
      case 'status':
        return {
          hostName: agent.hostName,
          stateStore: agent.stateStoreHealth(),
          lockspaces: agent.lockspaceStatus(),
          owners: agent.ownersList().map((o) => ({
            uuid: o.ref.uuid, name: o.ref.name, pid: o.ref.pid,
            leases: o.leases.map((l) => ({ ...l.spec, lver: l.token.lver })),
          })),
          ...(extra?.statusExtra?.() ?? {}),
          ...(extra?.fencing ? { fencing: extra.fencing() } : {}),
        };
      case 'host_status': {
        const list = req.lockspace ? [agent.lockspaces.get(req.lockspace)] : [...agent.lockspaces.values()];
        if (req.lockspace && !list[0]) throw new LeaseError(SANLK.ENOENT, `lockspace ${req.lockspace} is not joined on this host`);
        return list.map((ls) => ({ lockspace: ls!.name, hostId: ls!.spec.hostId, state: ls!.state, hosts: ls!.hosts() }));
      }
      case 'renewals': {
        const ls = agent.lockspaces.get(req.lockspace);
        if (!ls) throw new LeaseError(SANLK.ENOENT, `lockspace ${req.lockspace} is not joined on this host`);
        return { lockspace: ls.name, hostId: ls.spec.hostId, ioTimeout: ls.spec.ioTimeout, renewals: ls.renewals.list() };
      }
      case 'acquire': {
        // A client's pid is the process using the leases: its exit releases them.
        const held = await agent.acquire(req.owner, req.leases, { timeoutMs: req.timeoutMs, watchPid: true });
        return held.map((h) => ({ ...h.spec, lver: h.token.lver }));
      }
      case 'release':
        return { released: await agent.release(req.owner, req.leases) };
      case 'inquire':
        return agent.inquire(req.owner.uuid).map((h) => ({ ...h.spec, lver: h.token.lver }));
      case 'add_lockspace': {
        const ls = agent.addLockspace({ name: req.lockspace, hostId: req.hostId, path: req.path, offset: req.offset, ioTimeout: req.ioTimeout || DEFAULT_IO_TIMEOUT }); // 0: the default, as in sanlock
        await ls.waitJoined(10 * 60 * 1000);
        return { lockspace: ls.name, hostId: ls.spec.hostId, generation: ls.lease?.generation };
      }
      case 'rem_lockspace':
        await agent.removeLockspace(req.lockspace);
        return { removed: req.lockspace };
      case 'cleanup':
        if (!extra?.cleanup) throw new LeaseError(SANLK.EINVAL, 'the cleanup sweeper is not available in this agent');
        return extra.cleanup(req, peer);
      default:
        if (!extra?.domain) throw new LeaseError(SANLK.EINVAL, `${req.op} needs the libvirt integration, which is not enabled in this agent`);
        return extra.domain(req, peer);
    }
  };
}
