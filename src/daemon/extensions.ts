import { DaemonExtensions } from './daemon';
import { stillThere } from '../agent/process';
import { peerOf } from '../control/peercred';
import { DomainHandlers } from '../control/handler';
import { LibvirtConnection } from '../libvirt/connection';
import { parseDomainXml } from '../libvirt/domainxml';
import { DomainManager, isDomainUuid } from '../libvirt/domains';
import { peerAllowed } from '../control/peerpolicy';
import { backoffDelay } from '../lease/wait';
import { cleanupExtension } from './cleanup';

/**
 * What the daemon plugs in beyond the lease core: peer checks on the socket and, unless
 * libvirt_uri is "", the libvirt integration (hook requests, lifecycle and device events,
 * lock-failure actions on domains).
 */
export function daemonExtensions(): DaemonExtensions {
  return {
    peerOf,
    domain: async ({ agent, config, log, store }) => {
      let conn: LibvirtConnection | undefined;
      const mgr = new DomainManager({ agent, config, store, log, control: () => (conn?.connected ? conn : undefined) });
      let stopped = false;
      if (config.libvirtUri) {
        const connect = async (attempt: number): Promise<void> => {
          if (stopped) return;
          const c = new LibvirtConnection(config.libvirtUri, {});
          c.on('lifecycle', (ev) => void mgr.onLifecycle({ uuid: ev.uuid, name: ev.name, event: ev.eventName, detail: ev.detailName, receivedAt: performance.now() - (Date.now() - ev.ts) })
            .catch((e) => log.error(`handling ${ev.eventName}/${ev.detailName} of ${ev.name}: ${(e as Error).message}`)));
          // Hot-plug and unplug: after the fact with the hook (libvirt runs no hook for them); the plugin's are skipped.
          c.on('device', (ev) => void mgr.onDevice({ uuid: ev.uuid, name: ev.name, action: ev.action, alias: ev.alias })
            .catch((e) => log.error(`handling device ${ev.alias} ${ev.action} of ${ev.name}: ${(e as Error).message}`)));
          c.on('resync', (r) => void mgr.onResync(r.domains.map((d) => ({ uuid: d.uuid, name: d.name, state: d.stateName, reason: d.stateReasonName })), r.listedAt)
            .catch((e) => log.error(`libvirt resync: ${(e as Error).message}`)));
          c.on('disconnected', () => log.warning(`libvirt connection ${config.libvirtUri} lost; reconnecting (events meanwhile are recovered by a resync)`));
          c.on('reconnected', (i) => log.info(`libvirt connection back after ${Math.round(i.downMs / 1000)} s`));
          // Set before connecting: the initial resync is emitted inside connect(), and its
          // handling needs libvirt calls (the XML of running domains).
          conn = c;
          try {
            await c.connect();
            log.info(`connected to libvirt ${config.libvirtUri}`);
          } catch (e) {
            if (conn === c) conn = undefined;
            await c.close().catch(() => undefined);
            const delay = backoffDelay(attempt, { initial: 1, max: 30 });
            log.warning(`cannot connect to libvirt ${config.libvirtUri}: ${(e as Error).message}; retrying in ${delay} s (the start gate works meanwhile)`);
            setTimeout(() => void connect(attempt + 1), delay * 1000).unref();
          }
        };
        void connect(0);
      }
      // migrate and reconnect answer nothing: null on the wire, as before.
      const handlers: DomainHandlers = {
        domain_prepare: (req) => mgr.prepare(req.xml, req.timeoutMs),
        domain_migrate: async (req) => { await mgr.migrateBegin(req.xml); return null; },
        domain_reconnect: async (req) => { await mgr.reconnect(req.xml); return null; },
        domain_release: async (req) => {
          const uuid = req.uuid ?? parseDomainXml(req.xml!).uuid;
          return { released: await mgr.release(uuid, 'libvirt stopped it') };
        },
        lock_register: (req) => mgr.lockRegister(req.domain),
        lock_acquire: (req) => mgr.lockAcquire(req.domain, req.state, req.timeoutMs),
        lock_release: (req) => mgr.lockRelease(req.domain, req.pause),
        lock_inquire: (req) => mgr.lockInquire(req.domain.uuid),
      };
      return {
        handlers,
        policy: mgr,
        domains: () => mgr.statusDomains(),
        ownerExists: async (o) => {
          if (!isDomainUuid(o.uuid)) return o.pid ? stillThere(o.pid, o.startTime) : true; // not a domain: a plain client owner
          if (!conn?.connected) return true; // cannot tell yet: keep the leases; the resync decides
          const st = await conn.state(o.uuid).catch(() => undefined);
          return !!st && st.stateName !== 'SHUTOFF' && st.stateName !== 'CRASHED';
        },
        // Asked once, after the lockspaces joined: wait a while for the connection (libvirtd may
        // be starting too); meanwhile the leases found stay held.
        runningOwners: async () => {
          if (!config.libvirtUri) return undefined; // no libvirt: nothing tells which process used a lease
          for (let i = 0; i < 60 && !stopped && !conn?.connected; i++) await new Promise((r) => setTimeout(r, 1000));
          return conn?.connected ? mgr.runningLeaseOwners() : undefined;
        },
        stop: async () => {
          stopped = true;
          await conn?.close().catch(() => undefined);
        },
      };
    },
    allowPeer: (config) => peerAllowed(config),
    cleanup: cleanupExtension(),
  };
}
