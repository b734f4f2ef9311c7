import { readFile } from 'fs/promises';
import { ACQUIRE_CONCURRENCY, Agent, forEachLimited } from '../agent/agent';
import { FailedOwner, failureAction, KillPolicy, LeaseFailurePolicy } from '../agent/failure';
import { KeyedQueue } from '../agent/keyedqueue';
import { leaseFileOwner } from '../agent/leasefile';
import { ensureResourceFile } from '../agent/resourcefile';
import { AgentConfig } from '../config/config';
import { systemClock } from '../lease/clock';
import { LeaseSpec, LockManagerDomain } from '../agent/types';
import { identify, isSame, ProcessId } from '../agent/process';
import { Logger } from '../log/logger';
import { LeaseAcquireError } from '../lease/paxos';
import { geometryFor, heldByAnotherHost, LeaseError, SANLK } from '../ondisk';
import { LeaseRow, StateStore } from '../state/statestore';
import { VIR_ERR } from './connection';
import { DiskInfo, DomainInfo, DomainXmlError, LeaseInfo, parseDomainXml } from './domainxml';
import { LeasePlan, LeasePlanError, planLeases } from './leaseplan';
import { LeaderProbe, WatchedLease } from './leasewatch';
import { domainFromLockManager, formatLockState } from './lockmanager';

/**
 * Domains and their leases: the start gate (hook requests), lifecycle events, and what to do
 * when a lease is lost. Hook requests are answered from our own state — they never call
 * libvirt, which is blocked waiting for the hook. Work for one domain runs in order.
 */

/** The libvirt calls the manager needs, outside hook requests. */
export interface DomainControl {
  listDomains(): Promise<Array<{ uuid: string; name: string; id?: number; state: number | string }>>;
  /** inactive + secure: the configuration to start the domain from again (a transient one's restart) */
  getXML(uuid: string, opts?: { inactive?: boolean; secure?: boolean }): Promise<string>;
  suspend(uuid: string): Promise<void>;
  resume(uuid: string): Promise<void>;
  destroy(uuid: string): Promise<void>;
  create(uuid: string): Promise<void>;
  /** virDomainCreateXML: starts a transient domain from its XML */
  createXML(xml: string): Promise<unknown>;
  /** virDomainGetState, to tell whether a failed action's goal is reached anyway */
  state?(uuid: string): Promise<{ stateName: string }>;
}

export interface LifecycleEventLike {
  uuid: string;
  name: string;
  event: string;
  detail: string;
  /**
   * When libvirt handed it to us (performance.now() time), if earlier than its delivery: the
   * connection holds events back while it lists the domains after a reconnect.
   */
  receivedAt?: number;
}

export interface DeviceEventLike {
  uuid: string;
  name: string;
  action: 'added' | 'removed';
  /** libvirt's alias of the device (virtio-disk1, scsi0-0-0-1, ua-...) */
  alias: string;
}

interface DomainState {
  uuid: string;
  name: string;
  xml?: string;
  plan?: LeasePlan;
  /** When `migrate begin` was seen: a `prepare` soon after is an incoming migration's start. */
  incomingAt?: number;
  /** This start is an incoming migration: its leases are taken when the source releases them. */
  incoming: boolean;
  /** The watch of an incoming migration's leases (see startWatch). */
  watch?: { stopped: boolean };
  /** What the lock-driver plugin registered (it sends no XML), with attaches and detaches since. */
  info?: DomainInfo;
  /** Registered by the plugin and not acquired yet: its next acquire is this run's start. */
  starting?: boolean;
  /** QEMU's process, as the lock-driver plugin registered it */
  qemu?: ProcessId;
  /** The lock state the plugin's last pause returned */
  lockState?: string;
  /** performance.now() when its last start began (prepare, the plugin's register or acquire) */
  startedAt?: number;
  /** performance.now() of the plugin's last pause call (lock_release with a state) */
  pausedAt?: number;
}

export interface DomainManagerOptions {
  agent: Agent;
  config: AgentConfig;
  store: StateStore;
  log: Logger;
  /** null until connected; actions are retried when it is missing */
  control: () => DomainControl | undefined;
  /** where libvirt keeps QEMU pid files */
  qemuRunDir?: string;
  /** wait this long for a lease the migration source is releasing */
  migrationAcquireMs?: number;
  /** watch an incoming migration's leases for at most this long (default 10 min) */
  migrationWatchMs?: number;
  /** on_lockfailure=restart: wait this long for the domain's lockspaces to join again (default 10 min) */
  restartJoinWaitMs?: number;
}

const toSpec = (e: LeasePlan['entries'][number]): LeaseSpec => ({ lockspace: e.lockspace, resource: e.resource, path: e.path, offset: e.offset, mode: e.mode, disk: e.disk?.source });

/** Lifecycle events that tell whether a domain runs (not DEFINED, UNDEFINED, ...). */
const RUN_EVENTS: ReadonlySet<string> = new Set(['STARTED', 'STOPPED', 'SUSPENDED', 'RESUMED']);

/** Longest wait for a libvirt call made while handling an event (getXML). */
const LIBVIRT_CALL_MS = 15000;
/** libvirt runs `prepare begin` right after `migrate begin` (same Prepare step); a `migrate begin`
 * older than this (an offline migration, which starts nothing) does not make a later start incoming. */
const INCOMING_PREPARE_MS = 10000;
/** Leader reads of a lease a migration source holds: one per lease this often. */
const WATCH_STEP_MS = 5;

export class DomainManager implements LeaseFailurePolicy {
  private readonly domains = new Map<string, DomainState>();
  /**
   * Lease work of one domain, in order: hook requests and the lease part of events. Nothing in
   * here calls libvirt: a hook request may be waiting in this queue while libvirtd holds the
   * domain locked for that very hook, so a libvirt call in front of it could deadlock.
   */
  private readonly queue = new KeyedQueue();
  /** Events (and resync work) of one domain, in order; their libvirt calls run here, outside `queue`. */
  private readonly events = new KeyedQueue();
  private readonly kill: KillPolicy;
  /** Lease files (disk_lease_dir) seen initialised: see ensureLeaseFiles. */
  private readonly initialisedFiles = new Set<string>();
  /** Domains kept paused because another host had their disk while they were paused (status). */
  private readonly stale = new Map<string, { name: string; heldBy: string; since: string }>();
  /** When each domain's last lifecycle event arrived (kept past its STOPPED): see changedSince. */
  private readonly eventAt = new Map<string, number>();

  constructor(private readonly o: DomainManagerOptions) {
    this.kill = new KillPolicy({ graceSeconds: o.config.killGraceSeconds, log: (l, m) => o.log[l](m) });
  }

  // ---- hook requests: never call libvirt from here ---------------------------------------------

  /** `prepare begin`: the start gate. Resolves when every lease is ours; rejects with the reason. */
  prepare(xml: string, timeoutMs?: number): Promise<{ leases: number; deferred: boolean }> {
    const t0 = performance.now();
    // The hook's budget counts from its request, the wait behind this domain's queue included.
    const left = () => (timeoutMs === undefined ? undefined : Math.max(1, timeoutMs - (performance.now() - t0)));
    const dom = parseDomainXml(xml);
    const tParsed = performance.now();
    return this.queue.run(dom.uuid, async () => {
      const tQueued = performance.now();
      const st = this.state(dom, xml);
      st.startedAt = t0;
      const plan = this.startPlan(dom, st);
      st.incoming = st.incomingAt !== undefined && Date.now() - st.incomingAt < INCOMING_PREPARE_MS;
      st.incomingAt = undefined;
      if (st.incoming) {
        this.o.log.info(`${dom.name}: incoming migration; watching its ${plan.entries.length} lease(s) to take them the moment the source releases them`);
        this.startWatch(dom, st, plan);
        return { leases: plan.entries.length, deferred: true };
      }
      const timing = { files: 0, acquire: 0 };
      await this.acquirePlan(dom, plan, { timeoutMs: left(), timing });
      // Where the start gate's time goes (virsh start waits for all of it): docs/libvirt-integration.md
      const ms = (x: number) => x.toFixed(1);
      this.o.log.debug(`prepare ${dom.name}: ${plan.entries.length} lease(s) in ${ms(performance.now() - t0)} ms ` +
        `(parse ${ms(tParsed - t0)}, queue ${ms(tQueued - tParsed)}, lease files ${ms(timing.files)}, acquire ${ms(timing.acquire)})`);
      return { leases: plan.entries.length, deferred: false };
    });
  }

  /**
   * `migrate begin` on the destination: the next start of this domain (its `prepare`, which
   * follows at once) is an incoming migration. Refused when this host cannot take the leases:
   * a lockspace of the plan not joined here (after waiting for a join in progress).
   */
  migrateBegin(xml: string): Promise<void> {
    const dom = parseDomainXml(xml);
    return this.queue.run(dom.uuid, async () => {
      const st = this.state(dom, xml);
      const plan = this.startPlan(dom, st);
      await this.checkJoined(dom, plan);
      st.incomingAt = Date.now();
    });
  }

  /** `stopped end` / `release end` (also after a start we vetoed, or a failed incoming migration): idempotent. */
  release(uuid: string, why: string): Promise<number> {
    this.stopWatch(uuid);
    return this.queue.run(uuid, () => this.releaseAll(uuid, why));
  }

  /** `reconnect begin`: never refuse (libvirt would kill the domain); re-adopt what we can. */
  reconnect(xml: string): Promise<void> {
    const dom = parseDomainXml(xml);
    return this.queue.run(dom.uuid, async () => {
      const st = this.state(dom, xml);
      const plan = this.plan(dom, st);
      const missing = plan.entries.filter((e) => !this.o.agent.inquire(dom.uuid).some((h) => sameResource(h.spec, e)));
      if (!missing.length) return;
      void this.acquirePlan(dom, plan, { withPid: true }).catch((e) => {
        // Outside the hook (deferred): apply the lock-failure action later.
        setTimeout(() => void this.onLeaseFailure({ uuid: dom.uuid, name: dom.name, reason: `its leases could not be re-adopted on libvirt reconnect: ${(e as Error).message}`, action: dom.onLockFailure }), 2000);
      });
    });
  }

  // ---- the lock-driver plugin's calls (inside libvirtd): never call libvirt from here either ----

  /**
   * Registration, in libvirtd's child before it execs QEMU (whose CPUs start later): as libvirt's
   * sanlock driver, no lease is taken yet; what would refuse the start anyway refuses it here,
   * before QEMU runs: the plan (a lease required and missing...), a lockspace not joined
   * (after waiting for a join in progress), a lease file that cannot be created. Records QEMU's
   * process, so a STOPPED event of the domain's previous run cannot release this run's leases.
   */
  lockRegister(d: LockManagerDomain): Promise<{ leases: number }> {
    const dom = domainFromLockManager(d);
    return this.queue.run(dom.uuid, async () => {
      const st = this.state(dom);
      st.info = dom;
      st.startedAt = performance.now();
      const plan = this.startPlan(dom, st);
      await this.checkJoined(dom, plan, `cannot start ${dom.name}`);
      await this.ensureLeaseFiles(plan);
      await this.forgetEarlierRun(dom, st, plan);
      st.qemu = d.pid !== undefined ? identify(d.pid) : undefined;
      st.starting = true;
      this.o.log.debug(`lock_register ${dom.name}: ${plan.entries.length} lease(s) planned in ${(performance.now() - st.startedAt).toFixed(1)} ms`);
      return { leases: plan.entries.length };
    });
  }

  /**
   * A new run starts (libvirt starts no domain that runs): what an earlier run left, because its
   * STOPPED event was skipped or has not arrived yet, goes. Its leases that this run does not use
   * are released (those it uses stay held, and are taken again by this run's acquire); the lvers
   * kept at its pause and its stale mark are forgotten.
   */
  private async forgetEarlierRun(dom: DomainInfo, st: DomainState, plan: LeasePlan): Promise<void> {
    const n = await this.releaseUnplanned(dom, plan);
    if (n) this.o.log.info(`${dom.name}: released ${n} lease(s) its previous run held and this one does not use`);
    for (const r of this.o.store.leases(dom.uuid)) if (!r.held) this.o.store.forgetLease(dom.uuid, r.lockspace, r.resource);
    this.stale.delete(dom.uuid);
    st.lockState = undefined;
  }

  /**
   * Acquire, in libvirtd before it starts (or resumes) the CPUs, or for a disk being attached:
   * the leases of the resources given. A refusal keeps the CPUs stopped and fails the start or
   * resume with the reason. With libvirt's lock state (a resume), leases released at a pause on
   * this host must still have their lver; with a state and no such pause (an incoming
   * migration: the state is the source's) the source may still be releasing, so a busy lease is
   * tried again for up to 20 s. Without a state, the first acquire after the registration is the
   * start's (or, after `virsh start --paused`, its first resume's), also while leases of the last
   * run are still held; a later one is attaching a disk (or libvirt's fake reboot, below).
   */
  lockAcquire(d: LockManagerDomain, state?: string, timeoutMs?: number): Promise<{ leases: number }> {
    const dom = domainFromLockManager(d);
    return this.queue.run(dom.uuid, async () => {
      const t0 = performance.now();
      const st = this.state(dom);
      st.startedAt = t0;
      const plan = planLeases(dom, this.o.config);
      const held = this.o.agent.inquire(dom.uuid);
      // The start's acquire lists every resource registered; an attach lists only the new one.
      const starting = state === undefined && !!st.starting && !!st.info && covers(dom, st.info);
      const pausedRows = this.pausedLeases(dom.uuid);
      const wasPaused = (e: LeasePlan['entries'][number]) => pausedRows.some((r) => r.lockspace === e.lockspace && r.resource === e.resource);
      // A resume whose lock state libvirt does not have (its pause call failed or timed out on
      // libvirt's side, though the agent released): it lists every registered resource (an attach
      // lists one), some released at a pause here and the rest held (attached while paused).
      // With one resource the two look alike (libvirt gives paths, not devices): taken as an
      // attach, the safe side of the bookkeeping; its lvers are checked either way (below).
      // Unknown list (an agent restart): every lease it lists released at the pause or held.
      const listed = dom.disks.length + dom.leases.length;
      const listsAll = st.info ? listed > 1 && covers(dom, st.info) && listed === st.info.disks.length + st.info.leases.length
        : plan.entries.every((e) => wasPaused(e) || held.some((h) => sameResource(h.spec, e)));
      const resumeWithoutState = state === undefined && !starting && listsAll && plan.entries.some(wasPaused);
      // Leases released at a pause here keep their lvers for any acquire but the start's: a resume
      // (with libvirt's state or without) and an attach while paused of a disk sharing one alike.
      const kept = state !== undefined || !starting ? pausedRows : [];
      const resuming = state !== undefined ? pausedRows.length > 0 : resumeWithoutState;
      const incoming = state !== undefined && !pausedRows.length;
      // libvirt's fake reboot (an ACPI reboot, on_poweroff=restart) starts the CPUs again through
      // the lock driver's resume with no state, listing every registered resource: all held
      // already, and none of it an attach. A hot-plug lists one disk: with one resource the two
      // cannot be told apart, and the attach's bookkeeping (below) is the safe side (a lease
      // kept after a detach, never one released under a disk still in use).
      // (Holding nothing, with nothing to take: the resume of a domain without leases, whose pause
      // gave libvirt an empty state.)
      if (state === undefined && !starting && listed > 1 &&
        plan.entries.every((e) => held.some((h) => sameResource(h.spec, e))) &&
        held.every((h) => plan.entries.some((e) => sameResource(h.spec, e)))) {
        this.o.log.debug(`lock_acquire ${dom.name}: every lease listed is held already (its CPUs started again: a fake reboot); nothing to take`);
        return { leases: plan.entries.length };
      }
      // Also by a domain holding no lease (no disk, or only read-only ones): the attached disk must
      // be in the registered list, or libvirt's undo of a second attach of it would release it.
      const attach = state === undefined && !starting && !resumeWithoutState;
      if (attach && !st.info && plan.entries.some((e) => held.some((h) => sameResource(h.spec, e)))) {
        // The registered disk list is gone with an agent restart: a fake reboot listing one
        // resource and an attach of a disk the domain has already look alike. Taken as it comes
        // (what is held stays held, nothing is written): refusing it left a rebooting guest
        // paused. Safe, as a detach without the list releases nothing until the domain stops.
        this.o.log.debug(`lock_acquire ${dom.name}: a lease listed is held by this domain already (a fake reboot, or the same disk attached twice; its registered disk list is not known after an agent restart)`);
      }
      this.stopWatch(dom.uuid);
      try {
        await this.acquirePlan(dom, plan, {
          timeoutMs,
          lvers: new Map(kept.map((r) => [`${r.lockspace}:${r.resource}`, r.lver])),
          retryMs: incoming ? this.o.migrationAcquireMs ?? 20000 : 0,
          // QEMU's exit releases them, as sanlock's registration does: libvirt makes no stop call
          pid: d.pid,
          watchPid: d.pid !== undefined,
        });
      } catch (e) {
        if (resuming && isStaleRefusal(e)) this.markStale(dom.uuid, dom.name, e, 'libvirt keeps its CPUs stopped');
        throw e;
      }
      // An attach is added as it comes (a disk attached twice is listed twice: libvirt's undo of
      // the second attach must leave the first one's lease); the start adds only what is new
      // (attached while `start --paused` waited for its resume).
      if (attach && st.info) st.info = { ...st.info, disks: [...st.info.disks, ...dom.disks], leases: [...st.info.leases, ...dom.leases] };
      if (starting && st.info) {
        const info = st.info;
        st.info = { ...info, disks: [...info.disks, ...dom.disks.filter((x) => !info.disks.some((y) => sameDisk(x, y)))], leases: [...info.leases, ...dom.leases.filter((x) => !info.leases.some((y) => sameLease(x, y)))] };
        st.starting = false;
      }
      if (resuming) {
        this.stale.delete(dom.uuid);
        this.o.store.setOwnerState(dom.uuid, 'active');
      }
      if (state !== undefined || resumeWithoutState) st.lockState = undefined;
      this.o.log.debug(`lock_acquire ${dom.name}: ${plan.entries.length} lease(s) in ${(performance.now() - t0).toFixed(1)} ms`);
      return { leases: plan.entries.length };
    });
  }

  /**
   * Release: at a pause (`pause`: libvirt keeps the returned lock state for the resume) every
   * lease, each lver kept for the resume check, as at SUSPENDED; for a disk being detached (or
   * an attach being undone), the leases no other disk of the domain still uses.
   */
  lockRelease(d: LockManagerDomain, pause: boolean): Promise<{ released: number; state: string }> {
    const dom = domainFromLockManager(d, { checkUtf8: false });
    return this.queue.run(dom.uuid, async () => {
      const held = this.o.agent.inquire(dom.uuid);
      const st = this.state(dom);
      if (pause) {
        // libvirt's pause may call twice (its stop, then QEMU's STOP event): the second call
        // releases nothing and must not blank the state the first one gave (libvirt keeps the
        // last one). After an agent restart between the two it is rebuilt from the records the
        // first one kept (their lvers, for the resume's check).
        st.pausedAt = performance.now();
        if (!held.length) return { released: 0, state: st.lockState ?? formatLockState(this.pausedLeases(dom.uuid)) };
        st.lockState = formatLockState(held);
        await this.suspendRelease(dom.uuid, dom.name, 'paused by libvirt');
        return { released: held.length, state: st.lockState };
      }
      if (!st.info) {
        // Another disk of the domain may have the same path (and lease): without the list nothing
        // tells, so nothing is released (QEMU's exit, or the STOPPED event, releases it).
        this.o.log.info(`${dom.name}: detach of ${[...dom.disks.map((x) => x.target), ...dom.leases.map((x) => `<lease> ${x.key}`)].join(', ')}: ` +
          'its lease(s) stay held until the domain stops (its registered disk list is not known after an agent restart, so whether another disk still uses them cannot be told)');
        return { released: 0, state: '' };
      }
      // The registered disk list, less one of each disk detached: what still needs a lease.
      const disks = [...st.info.disks];
      const leases = [...st.info.leases];
      const drop = <T>(list: T[], i: number) => { if (i >= 0) list.splice(i, 1); };
      for (const x of dom.disks) drop(disks, disks.findIndex((y) => sameDisk(x, y)));
      for (const x of dom.leases) drop(leases, leases.findIndex((y) => sameLease(x, y)));
      st.info = { ...st.info, disks, leases };
      const still = planLeases(st.info, this.o.config).entries;
      const detached = planLeases(dom, this.o.config).entries.filter((e) => !still.some((x) => x.lockspace === e.lockspace && x.resource === e.resource));
      const specs = detached.filter((e) => held.some((h) => sameResource(h.spec, e))).map(toSpec);
      // keepRecord: the lvers a pause kept for the other leases stay (a detach while paused)
      const n = specs.length ? await this.o.agent.release({ uuid: dom.uuid, name: dom.name }, specs, { keepRecord: true }) : 0;
      for (const e of detached) this.o.store.forgetLease(dom.uuid, e.lockspace, e.resource);
      if (n) this.o.log.info(`${dom.name}: released ${n} lease(s) of detached disk(s)`);
      return { released: n, state: '' };
    });
  }

  /** Inquire (a migration's source): the lock state of the leases held, for the destination. */
  lockInquire(uuid: string): Promise<{ state: string }> {
    const id = uuid.toLowerCase();
    return this.queue.run(id, async () => ({ state: formatLockState(this.o.agent.inquire(id)) }));
  }

  // ---- lifecycle events --------------------------------------------------------------------------

  onLifecycle(ev: LifecycleEventLike): Promise<void> {
    const arrived = Math.min(performance.now(), ev.receivedAt ?? Infinity);
    // A resync's list older than one of these is not acted on for the domain.
    if (RUN_EVENTS.has(ev.event)) this.eventAt.set(ev.uuid, Math.max(arrived, this.eventAt.get(ev.uuid) ?? -Infinity));
    return this.events.run(ev.uuid, async () => {
      const kind = `${ev.event}/${ev.detail}`;
      // libvirt calls happen here, before the lease work is queued behind hook requests.
      const wantsXml = ev.event === 'RESUMED' || (ev.event === 'STARTED' && ev.detail !== 'MIGRATED' && ev.detail !== 'WAKEUP');
      const xml = wantsXml ? await this.fetchXml(ev.uuid) : undefined;
      // A plugin domain's RESUMED: whether it runs now (see pluginResumed).
      const asked = performance.now();
      const ctl = ev.event === 'RESUMED' && this.pluginRuns(ev.uuid) ? this.o.control() : undefined;
      const now = ctl?.state ? await this.libvirtCall(() => ctl.state!(ev.uuid)) : undefined;
      const after = await this.queue.run(ev.uuid, async (): Promise<(() => Promise<void>) | undefined> => {
        // An event of the run before a start that began after it arrived (its lease work queued
        // behind that start's prepare): the new run is not what it tells of. (STOPPED below also
        // knows the plugin's registered QEMU.)
        if (ev.event !== 'STOPPED' && RUN_EVENTS.has(ev.event) && this.startedSince(ev.uuid, arrived)) {
          this.o.log.info(`${ev.name}: ${kind} is of an earlier run; a start began since, nothing to do`);
          return undefined;
        }
        switch (ev.event) {
          case 'STOPPED': {
            // With the lock-driver plugin no stop call comes from libvirt, and the next run may
            // have registered (and taken the leases) before this event of the last run arrives.
            // The same when a start began after this event arrived.
            const q = this.domains.get(ev.uuid)?.qemu;
            if ((q && isSame(q)) || this.startedSince(ev.uuid, arrived)) {
              this.o.log.info(`${ev.name}: ${kind} is of an earlier run; it starts or runs again${q && isSame(q) ? ` (QEMU pid ${q.pid})` : ''}, its leases stay held`);
              return undefined;
            }
            this.stopWatch(ev.uuid);
            await this.releaseAll(ev.uuid, `stopped (${ev.detail.toLowerCase()})`);
            this.domains.delete(ev.uuid);
            this.stale.delete(ev.uuid);
            return undefined;
          }
          case 'SUSPENDED':
            if (this.pluginRuns(ev.uuid)) {
              // Late, it could release the leases a quick resume's plugin acquire has taken since.
              this.o.log.debug(`${ev.name}: ${kind}: nothing to release, libvirt had the lock-driver plugin release its leases at the pause`);
              return undefined;
            }
            await this.suspendRelease(ev.uuid, ev.name, kind);
            return undefined;
          case 'RESUMED':
            if (this.pluginRuns(ev.uuid)) return this.pluginResumed(ev, xml, now?.stateName, asked);
            return this.resumeAcquire(ev.uuid, ev.name, ev.detail, xml);
          case 'STARTED': {
            if (ev.detail === 'MIGRATED' || ev.detail === 'WAKEUP') return undefined;
            // Started through the lock-driver plugin: it takes the leases before the CPUs start
            // (a `virsh start --paused` holds none until its resume).
            if (this.pluginRuns(ev.uuid)) return undefined;
            const st = this.domains.get(ev.uuid);
            if (st?.incoming) {
              // `prepare` let it through as an incoming migration (a `migrate begin` just before),
              // but it booted: a plain start after a migration that failed before its own start.
              // Its leases are taken now (or its lock-failure action applies), and its next
              // resume is checked as any other.
              st.incoming = false;
              this.stopWatch(ev.uuid);
              this.o.log.error(`${ev.name}: ${kind}, not an incoming migration as its start gate assumed (a \`migrate begin\` came just before it): it started without waiting for its leases; taking them now`);
            }
            await this.ensureHeld(ev.uuid, ev.name, kind, xml);
            return undefined;
          }
          case 'DEFINED': {
            // An offline migration ends here (`migrate begin`, then no start): the mark must not
            // make a later start skip the start gate. A live one has used it at `prepare` already.
            const st = this.domains.get(ev.uuid);
            if (st) st.incomingAt = undefined;
            return undefined;
          }
          case 'UNDEFINED':
            if (!this.o.agent.inquire(ev.uuid).length) this.domains.delete(ev.uuid);
            return undefined;
          default:
            return undefined; // PMSUSPENDED, SHUTDOWN, CRASHED: leases unchanged
        }
      });
      // Actions on the domain (pause it again, destroy it...) also run outside `queue`.
      if (after) await after();
    });
  }

  /**
   * A device hot-plugged or unplugged. libvirt runs no hook for either, so with the hook this is
   * after the fact: QEMU may use an attached disk before its lease is taken here, and a detached
   * one keeps its lease until then. The live XML is planned: after an attach, a running domain
   * takes the leases it lacks, and a refusal (the disk is leased by another host) is a lease
   * failure of the domain, handled by its <on_lockfailure>; after a detach, the leases the plan
   * no longer has are released. With the lock-driver plugin, libvirt had it do both at the attach
   * or detach itself (a refused attach never reaches QEMU): nothing is left to do here.
   */
  onDevice(ev: DeviceEventLike): Promise<void> {
    return this.events.run(ev.uuid, async () => {
      if (this.pluginRuns(ev.uuid)) return;
      const ctl = this.o.control();
      if (!ctl) return; // the resync after the reconnect makes the leases whole
      const [xml, now] = await Promise.all([this.fetchXml(ev.uuid), ctl.state ? this.libvirtCall(() => ctl.state!(ev.uuid)) : undefined]);
      const what = `device ${ev.alias} ${ev.action === 'added' ? 'hot-plugged' : 'unplugged'}`;
      if (!xml) {
        this.o.log.warning(`${ev.name}: ${what}, but its live XML could not be read: its leases are checked again at the next libvirt resync`);
        return;
      }
      // Which device came: a disk's lease is the attach's (its plan failing is a lease failure of
      // the domain); a NIC or a controller takes none. Unknown (an XML not parsed here): the plan
      // is checked as at a resync.
      let disk: boolean | undefined;
      try {
        disk = parseDomainXml(xml).disks.some((x) => x.alias === ev.alias);
      } catch {
        disk = undefined;
      }
      if (ev.action === 'added' && disk === false) return;
      await this.queue.run(ev.uuid, async () => {
        if (ev.action === 'removed') return this.releaseDetached(ev.name, what, xml);
        // A paused domain holds no lease: its resume takes the whole plan, the new disk's too
        // (with the lver check a take now would skip). A state libvirt did not tell (no answer in
        // time) is taken from our record: paused if we released at its pause, else running.
        const paused = now ? now.stateName !== 'RUNNING' : this.recordedPaused(ev.uuid);
        if (paused) return;
        await this.ensureHeld(ev.uuid, ev.name, what, xml, disk === true);
      });
    });
  }

  /** After every (re)connect: reconcile with what libvirt says runs now. Missed events are lost. */
  async onResync(domains: Array<{ uuid: string; name: string; state: number | string; reason?: string }>, listedAt = performance.now()): Promise<void> {
    const running = new Map(domains.map((d) => [d.uuid, d]));
    // One domain at a time, each on its own: a failure with one must not leave the others unchecked.
    const each = (uuid: string, name: string, work: () => Promise<void>) => work().catch((e: unknown) =>
      this.o.log.error(`libvirt resync: ${name} (${uuid}): ${(e as Error).message}; the other domains are checked all the same, this one again at the next resync`));
    for (const o of this.o.agent.ownersList()) {
      // Owners that are not domains (`lockagent client acquire --owner NAME`) are not libvirt's.
      if (!isDomainUuid(o.ref.uuid)) continue;
      const d = running.get(o.ref.uuid);
      const st = stateName(d?.state);
      if (!d || st === 'SHUTOFF' || st === 'CRASHED') {
        // A start since the list was taken (its leases taken at prepare) is not in it.
        await each(o.ref.uuid, o.ref.name, () => this.events.run(o.ref.uuid, () => this.queue.run(o.ref.uuid, async () => {
          if (this.changedSince(o.ref.uuid, listedAt)) return;
          this.stopWatch(o.ref.uuid);
          await this.releaseAll(o.ref.uuid, 'not running after libvirt resync');
        })));
      } else if (st === 'PAUSED' && o.leases.length && d.reason !== 'STARTING_UP' && !this.domains.get(d.uuid)?.incoming && !this.changedSince(d.uuid, listedAt)) {
        // Not while starting up (from the start gate to the CPUs starting: libvirt lists the
        // domain paused), migrating in (the watch took the leases before the CPUs start), or
        // started or resumed since the list (the plugin takes the leases just before the CPUs).
        await each(d.uuid, d.name, () => this.events.run(d.uuid, () => this.queue.run(d.uuid, async () => {
          // An event handled ahead of this (a RESUMED queued before it) is newer than the list.
          if (this.changedSince(d.uuid, listedAt)) return;
          await this.suspendRelease(d.uuid, d.name, 'paused at resync');
        })));
      }
    }
    for (const d of domains) {
      if (stateName(d.state) !== 'RUNNING') continue;
      await each(d.uuid, d.name, () => this.events.run(d.uuid, async () => {
        const xml = await this.fetchXml(d.uuid);
        await this.queue.run(d.uuid, async () => {
          if (this.changedSince(d.uuid, listedAt)) return; // stopped or paused since the list: its events decided
          await this.ensureHeld(d.uuid, d.name, 'running at resync', xml);
        });
      }));
    }
  }

  /**
   * For the agent's start-up reconcile: which running domain needs which lease
   * ("lockspace:resource" → the domain), from libvirt's list and each running domain's live XML.
   * Paused domains hold no leases. Undefined when libvirt cannot tell (not connected, a running
   * domain whose XML cannot be read or planned): then nothing is released on its word, since a
   * lease found held might be that domain's. Each such domain is logged; the others' leases are
   * theirs again at the resync, which takes each running domain's plan.
   */
  async runningLeaseOwners(): Promise<Map<string, { uuid: string; name: string; action?: string }> | undefined> {
    const ctl = this.o.control();
    if (!ctl) return undefined;
    const out = new Map<string, { uuid: string; name: string; action?: string }>();
    let unknown = false;
    for (const d of await ctl.listDomains()) {
      const st = stateName(d.state);
      if (st === 'SHUTOFF' || st === 'CRASHED' || st === 'PAUSED') continue;
      const xml = await this.fetchXml(d.uuid);
      try {
        if (!xml) throw new Error('libvirt did not give its XML');
        const dom = parseDomainXml(xml);
        for (const e of planLeases(dom, this.o.config).entries) out.set(`${e.lockspace}:${e.resource}`, { uuid: dom.uuid, name: dom.name, action: dom.onLockFailure });
      } catch (e) {
        unknown = true;
        this.o.log.error(`start-up reconcile: the leases of running domain ${d.name} (${d.uuid}) cannot be told: ${(e as Error).message}; ` +
          `no lease found held here is released, as it may be this domain's${planRemedy(e)}`);
      }
    }
    return unknown ? undefined : out;
  }

  // ---- lock failure --------------------------------------------------------------------------

  /**
   * The action for an owner whose leases are lost: <on_lockfailure>, else the configured default.
   * No action outlives the owner's kill deadline (host_dead minus a margin): a libvirt call still
   * pending then is abandoned for the fallback, whose SIGKILL goes out at once.
   */
  async onLeaseFailure(owner: FailedOwner): Promise<void> {
    const action = failureAction(owner.action, this.o.config);
    const ctl = this.o.control();
    const who = `${owner.name} (${owner.uuid})`;
    if (owner.action === 'ignore') {
      // Started before lockagent refused it (startPlan): it must not outlive its leases.
      this.o.log.error(`lease lost for ${who}: ${owner.reason}; on_lockfailure=ignore is not honoured (it would run on without its leases): ` +
        `applying lease_failure_action = ${action} instead`);
    }
    const inTime = <T>(p: Promise<T>) => this.beforeDeadline(owner, p);
    try {
      switch (action) {
        case 'poweroff':
          this.o.log.error(`lease lost for ${who}: ${owner.reason}; on_lockfailure=poweroff: destroying it`);
          if (!ctl) throw new Error('libvirt is not connected');
          await inTime(ctl.destroy(owner.uuid));
          return;
        case 'pause':
          this.o.log.error(`lease lost for ${who}: ${owner.reason}; on_lockfailure=pause: pausing it`);
          if (!ctl) throw new Error('libvirt is not connected');
          await inTime(ctl.suspend(owner.uuid));
          return;
        case 'restart': {
          this.o.log.error(`lease lost for ${who}: ${owner.reason}; on_lockfailure=restart: destroying it and starting it again (the start needs its leases)`);
          if (!ctl) throw new Error('libvirt is not connected');
          // A transient domain is gone once destroyed: its configuration, read first, is what it
          // starts from again (as libvirt's sanlock helper does). Without it the destroy still goes on.
          const xml = await inTime(ctl.getXML(owner.uuid, { inactive: true, secure: true })).catch((e: unknown) => {
            this.o.log.warning(`restart of ${who}: its configuration could not be read before the destroy (${(e as Error).message}); ` +
              'if it is a transient domain, it cannot be started again');
            return undefined;
          });
          const lockspaces = this.lockspacesOf(owner.uuid, xml);
          await inTime(ctl.destroy(owner.uuid));
          const destroyedAt = performance.now();
          // Still known to libvirt once destroyed: a defined (persistent) domain.
          const persistent = ctl.state
            ? await this.libvirtCall(() => ctl.state!(owner.uuid).then(() => true, (e: { code?: unknown }) => (e.code === VIR_ERR.NO_DOMAIN ? false : undefined)))
            : undefined;
          // The action is done once the domain is down: its start waits for the lockspaces
          // (host_dead at least), and a failure action still pending keeps the lockspace's
          // watchdog armed (wdmd would reset the host meanwhile).
          void this.startAgain(who, owner.uuid, xml, lockspaces, { destroyedAt, persistent })
            .catch((e: unknown) => this.o.log.error(`restart of ${who} failed: ${(e as Error).message}`));
          return;
        }
        default:
          await this.kill.onLeaseFailure({ ...owner, pid: await this.ownerPid(owner) });
      }
    } catch (e) {
      // The goal may be reached anyway (already paused, already gone): then there is nothing to kill.
      const now = await inTime(ctl?.state?.(owner.uuid).then((s) => s.stateName, () => undefined) ?? Promise.resolve(undefined)).catch(() => undefined);
      if ((action === 'pause' && now === 'PAUSED') || ((action === 'poweroff' || action === 'restart') && (now === 'SHUTOFF' || now === 'CRASHED'))) {
        this.o.log.warning(`lock-failure action ${action} for ${who}: ${(e as Error).message}; the domain is ${now.toLowerCase()} anyway`);
        return;
      }
      this.o.log.error(`lock-failure action ${action} for ${who} failed: ${(e as Error).message}; falling back to SIGTERM/SIGKILL`);
      await this.kill.onLeaseFailure({ ...owner, pid: await this.ownerPid(owner) });
    }
  }

  /** The lockspaces of a domain's leases: from its plan at its start, else from its configuration. */
  private lockspacesOf(uuid: string, xml: string | undefined): string[] {
    let plan = this.domains.get(uuid)?.plan;
    if (!plan && xml) {
      try {
        plan = planLeases(parseDomainXml(xml), this.o.config);
      } catch {
        // the start plans it again, and refuses it with the reason
      }
    }
    return [...new Set((plan?.entries ?? []).map((e) => e.lockspace))];
  }

  /**
   * on_lockfailure=restart, after the destroy: once every lockspace of its leases is joined again
   * (a lost one rejoins at host_dead after its last renewal), a defined domain starts from its
   * definition, a transient one (gone since the destroy) from the XML read before it. The wait is
   * here, not in the start's hook: libvirtd would hold the domain (and our connection's calls)
   * meanwhile, and refuse the start after the hook's timeout. Not bound by the kill deadline: the
   * domain is down.
   */
  private async startAgain(who: string, uuid: string, xml: string | undefined, lockspaces: string[],
    since: { destroyedAt: number; persistent?: boolean }): Promise<void> {
    for (const name of lockspaces) {
      const ls = this.o.agent.lockspaces.get(name);
      if (!ls || ls.state === 'joined') continue; // not ours: the start's hook refuses it, naming why
      const waitMs = this.o.restartJoinWaitMs ?? 600000;
      this.o.log.info(`restart of ${who} waits for lockspace ${name} to join (${ls.state}) before starting it: its start needs the leases`);
      try {
        await ls.waitJoined(waitMs);
      } catch (e) {
        this.o.log.error(`restart of ${who}: lockspace ${name} did not join within ${waitMs / 1000} s (${(e as Error).message}); ` +
          'it stays shut off. Start it again once lockagent status shows the lockspace joined');
        return;
      }
    }
    // The operator may have acted during the wait: a start since the destroy is theirs to keep.
    if (this.startedSince(uuid, since.destroyedAt)) {
      this.o.log.info(`restart of ${who}: it was started again meanwhile; nothing more to do`);
      return;
    }
    const ctl = this.o.control();
    if (!ctl) {
      this.o.log.error(`restart of ${who}: libvirt is not connected; it stays shut off`);
      return;
    }
    try {
      await ctl.create(uuid);
      this.o.log.info(`restarted ${who}`);
      return;
    } catch (e) {
      if ((e as { code?: unknown }).code !== VIR_ERR.NO_DOMAIN) {
        this.o.log.error(`restart of ${who} failed: ${(e as Error).message}`);
        return;
      }
      if (since.persistent) {
        // Defined when it was destroyed, gone now: undefined meanwhile, on purpose.
        this.o.log.info(`restart of ${who}: it was undefined meanwhile; not started again`);
        return;
      }
    }
    if (xml === undefined) {
      this.o.log.error(`restart of ${who}: it is gone since the destroy (a transient domain) and its configuration could not be read before it: ` +
        'it stays shut off. Start it again with virsh create once its leases can be taken');
      return;
    }
    try {
      await ctl.createXML(xml);
      this.o.log.info(`restarted ${who} from its configuration (a transient domain)`);
    } catch (e) {
      this.o.log.error(`restart of ${who} (a transient domain) from its configuration failed: ${(e as Error).message}; it stays shut off`);
    }
  }

  /** `p`, or a rejection at the owner's kill deadline if it is still pending then. */
  private beforeDeadline<T>(owner: FailedOwner, p: Promise<T>): Promise<T> {
    if (owner.killDeadlineMs === undefined) return p;
    const left = owner.killDeadlineMs - systemClock.nowMs();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('libvirt did not complete it before the kill deadline (host_dead minus a margin)')), Math.max(0, left));
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  // ---- internals -----------------------------------------------------------------------------

  /** Whether a start of the domain (prepare, or the plugin's register or acquire) began after `t` (performance.now()). */
  private startedSince(uuid: string, t: number): boolean {
    return (this.domains.get(uuid)?.startedAt ?? -Infinity) > t;
  }

  /** A start or a lifecycle event since `t` (a resync's listing): newer news than the list. */
  private changedSince(uuid: string, t: number): boolean {
    return this.startedSince(uuid, t) || (this.eventAt.get(uuid) ?? -Infinity) > t;
  }

  private state(dom: DomainInfo, xml?: string): DomainState {
    let st = this.domains.get(dom.uuid);
    if (!st) {
      st = { uuid: dom.uuid, name: dom.name, incoming: false };
      this.domains.set(dom.uuid, st);
    }
    st.name = dom.name;
    if (xml) st.xml = xml;
    return st;
  }

  private plan(dom: DomainInfo, st: DomainState): LeasePlan {
    const plan = planLeases(dom, this.o.config);
    st.plan = plan;
    return plan;
  }

  /**
   * The plan of a domain about to run here (a start, an incoming migration). As with libvirt's
   * sanlock driver, <on_lockfailure>ignore</on_lockfailure> refuses it: a guest kept running once
   * its leases are lost keeps writing disks that other hosts may lease after host_dead, and the
   * fencing that prevents it would have to be dropped for it. (One running already, started under
   * an earlier lockagent, is adopted; a loss gives it the configured default action.)
   */
  private startPlan(dom: DomainInfo, st: DomainState): LeasePlan {
    if (dom.onLockFailure === 'ignore') {
      throw new LeasePlanError('UNSUPPORTED_ACTION', `${dom.name}: <on_lockfailure>ignore</on_lockfailure> is not supported (nor by libvirt's sanlock ` +
        'driver): a guest left running once its leases are lost could write a disk another host has leased since. Use pause, poweroff or ' +
        'restart, or remove the element for lease_failure_action');
    }
    return this.plan(dom, st);
  }

  /**
   * Create missing automatic lease files. A file this agent has already seen initialised is not
   * checked again (an exclusive create plus a sector read: two to three storage round trips
   * on every start); if it was removed or replaced since, the acquire fails on it (ENOENT, or
   * an invalid leader before anything is written) and acquirePlan checks the files and retries.
   * Returns whether a file was skipped that way.
   */
  private async ensureLeaseFiles(plan: LeasePlan, full = false): Promise<boolean> {
    const g = geometryFor(this.o.config.sectorSize, this.o.config.alignSize);
    let skipped = false;
    const todo = new Map<string, LeasePlan['entries'][number]>();
    for (const e of plan.entries) {
      if (e.origin !== 'disk' || todo.has(e.path)) continue;
      if (!full && this.initialisedFiles.has(e.path)) {
        skipped = true;
        continue;
      }
      todo.set(e.path, e);
    }
    // Side by side (each its own file), as their leases are acquired next; the first failure
    // is reported once those under way have ended, and none is started after it.
    let failed: { e: unknown } | undefined;
    await forEachLimited([...todo.values()], ACQUIRE_CONCURRENCY, async (e) => {
      if (failed) return;
      try {
        await ensureResourceFile(e.path, e.lockspace, e.resource, g, leaseFileOwner(this.o.config));
        this.initialisedFiles.add(e.path);
      } catch (err) {
        failed ??= { e: err };
      }
    });
    if (failed) throw failed.e;
    return skipped;
  }

  /**
   * A lease file deleted under an acquire (a cleanup on another host removed it just after we
   * opened it): create it again, as at start. Only automatic disk leases are ours to create.
   */
  private async recreateLeaseFile(plan: LeasePlan, s: LeaseSpec): Promise<void> {
    const e = plan.entries.find((x) => x.origin === 'disk' && x.path === s.path && x.lockspace === s.lockspace && x.resource === s.resource);
    if (!e) throw new LeaseError(SANLK.ENOENT, `lease file ${s.path} was deleted while acquiring it, and it is not an automatic disk lease to re-create`);
    await ensureResourceFile(e.path, e.lockspace, e.resource, geometryFor(this.o.config.sectorSize, this.o.config.alignSize), leaseFileOwner(this.o.config));
  }

  /** withPid: QEMU exists (not at `prepare`): record its pid (from libvirt's pid file, or `pid`) for the kill policy. */
  private async acquirePlan(dom: DomainInfo, plan: LeasePlan, opts: { timeoutMs?: number; lvers?: Map<string, number>; retryMs?: number; withPid?: boolean; pid?: number; watchPid?: boolean; timing?: { files: number; acquire: number } }): Promise<void> {
    if (!plan.entries.length) return;
    let t = performance.now();
    // One deadline for the whole plan: the file checks and every try share it.
    const deadline = opts.timeoutMs === undefined ? undefined : t + opts.timeoutMs;
    const left = () => (deadline === undefined ? undefined : Math.max(1, deadline - performance.now()));
    let unchecked = await this.ensureLeaseFiles(plan);
    if (opts.timing) {
      opts.timing.files = performance.now() - t;
      t = performance.now();
    }
    const specs = plan.entries.map((e) => ({ ...toSpec(e), lver: opts.lvers?.get(`${e.lockspace}:${e.resource}`) }));
    const pid = opts.pid ?? (opts.withPid ? await this.qemuPid(dom.name) : undefined);
    // Before QEMU exists, the guard can still find it by the pid file libvirt will write.
    const owner = pid === undefined ? { uuid: dom.uuid, name: dom.name, pidFile: this.qemuPidFile(dom.name) } : { uuid: dom.uuid, name: dom.name, pid };
    const until = Date.now() + (opts.retryMs ?? 0);
    for (;;) {
      try {
        await this.o.agent.acquire(owner, specs, {
          timeoutMs: left(), action: dom.onLockFailure, recreate: (s) => this.recreateLeaseFile(plan, s), watchPid: opts.watchPid,
        });
        if (opts.timing) opts.timing.acquire = performance.now() - t;
        return;
      } catch (e) {
        const rv = (e as LeaseError).rv;
        if (unchecked && (rv === SANLK.LEADER_MAGIC || (e as NodeJS.ErrnoException).code === 'ENOENT')) {
          // A lease file known initialised is gone or blank now (removed, being re-created):
          // nothing was written to it; check the files as for a first start, then try again.
          for (const x of plan.entries) this.initialisedFiles.delete(x.path);
          unchecked = await this.ensureLeaseFiles(plan, true);
          continue;
        }
        const busy = heldByAnotherHost(rv);
        if (!busy || Date.now() >= until) throw e;
        // Try again as soon as the leases read free (the holder released them), or in 500 ms.
        const probe = this.probe();
        try {
          await probe.waitFree(this.watched(plan), Math.min(until, Date.now() + 500), WATCH_STEP_MS);
        } finally {
          await probe.close();
        }
      }
    }
  }

  private probe(): LeaderProbe {
    return new LeaderProbe(geometryFor(this.o.config.sectorSize, this.o.config.alignSize).sectorSize, Math.max(1000, this.o.config.ioTimeout * 1000));
  }

  private watched(plan: LeasePlan): WatchedLease[] {
    const ids = new Map(this.o.agent.lockspaceStatus().map((l) => [l.name, l.hostId]));
    return plan.entries.map((e) => ({ path: e.path, offset: e.offset, hostId: ids.get(e.lockspace) ?? 0 }));
  }

  /** Every lockspace of the plan must be joined here, else an incoming migration cannot get its leases. */
  private async checkJoined(dom: DomainInfo, plan: LeasePlan, what = `cannot accept the incoming migration of ${dom.name}`): Promise<void> {
    const names = [...new Set(plan.entries.map((e) => e.lockspace))];
    const until = Date.now() + (this.o.migrationAcquireMs ?? 20000);
    for (const name of names) {
      for (;;) {
        const ls = this.o.agent.lockspaceStatus().find((l) => l.name === name);
        if (!ls) {
          throw new LeaseError(SANLK.ENOSPC, `${what}: lockspace ${name} is not joined on this host, so its leases could not be taken here; ` +
            'add it (lockagent client add_lockspace, or lockspaces in lockagent.conf) and try again');
        }
        if (ls.state === 'joined') break;
        if (Date.now() >= until) {
          throw new LeaseError(SANLK.ENOSPC, `${what}: lockspace ${name} is not joined on this host (${ls.state}` +
            `${ls.lastError ? `: ${ls.lastError}` : ''}), so its leases could not be taken here; try again once lockagent status shows it joined`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /**
   * An incoming migration (from `prepare` until RESUMED, or until it stops): watch each lease of
   * the plan with a leader read every few ms and take them all as soon as the source's release
   * shows on disk — usually before libvirt starts the CPUs here, so the guest does not run
   * without its leases. Bounded by migrationWatchMs; RESUMED takes over (and stops the watch)
   * when the leases are not held yet. The acquire runs in the domain's queue, so a `stopped`
   * (failed or cancelled migration) either stops the watch first or releases what it took.
   */
  private startWatch(dom: DomainInfo, st: DomainState, plan: LeasePlan): void {
    this.stopWatch(dom.uuid);
    if (!plan.entries.length) return;
    const w = { stopped: false };
    st.watch = w;
    const leases = this.watched(plan);
    const probe = this.probe();
    const t0 = performance.now();
    const until = Date.now() + (this.o.migrationWatchMs ?? 600000);
    const ms = (x: number) => x.toFixed(1);
    void (async () => {
      try {
        while (!w.stopped) {
          if (!(await probe.waitFree(leases, until, WATCH_STEP_MS, () => w.stopped))) {
            if (!w.stopped) this.o.log.info(`${dom.name}: the migration source did not release its leases within ${Math.round((this.o.migrationWatchMs ?? 600000) / 1000)} s; they are taken when it resumes here`);
            return;
          }
          const seen = performance.now();
          const done = await this.queue.run(dom.uuid, async () => {
            if (w.stopped) return true;
            try {
              await this.acquirePlan(dom, plan, { withPid: true });
              this.o.log.info(`${dom.name}: incoming migration: took its ${plan.entries.length} lease(s) ${ms(performance.now() - seen)} ms after the source's release showed on disk ` +
                `(watched ${ms(seen - t0)} ms)`);
              return true;
            } catch (e) {
              const rv = (e as LeaseError).rv;
              if (heldByAnotherHost(rv)) return false;
              this.o.log.warning(`${dom.name}: incoming migration: taking its leases after the source released them failed: ${(e as Error).message}; trying again when it resumes here`);
              return true;
            }
          });
          if (done) return;
        }
      } finally {
        if (st.watch === w) st.watch = undefined;
        await probe.close();
      }
    })().catch((e: unknown) => this.o.log.warning(`${dom.name}: watching its leases for the incoming migration failed: ${(e as Error).message}`));
  }

  private stopWatch(uuid: string): void {
    const st = this.domains.get(uuid);
    if (st?.watch) st.watch.stopped = true;
  }

  private async releaseAll(uuid: string, why: string): Promise<number> {
    const n = await this.o.agent.release({ uuid }).catch((e) => {
      this.o.log.warning(`releasing the leases of ${uuid} (${why}) failed: ${(e as Error).message}`);
      return 0;
    });
    // Leases released on suspend keep rows (lver) until the domain stops.
    for (const l of this.o.store.leases(uuid)) this.o.store.forgetLease(uuid, l.lockspace, l.resource);
    this.o.store.removeOwner(uuid);
    if (n) this.o.log.info(`released ${n} lease(s) of ${this.domains.get(uuid)?.name ?? uuid}: ${why}`);
    return n;
  }

  /** SUSPENDED: give the leases up (another host may take the disk), remembering each lver. */
  private async suspendRelease(uuid: string, name: string, why: string): Promise<void> {
    const held = this.o.agent.inquire(uuid);
    if (!held.length) return;
    await this.o.agent.release({ uuid, name }, undefined, { keepRecord: true });
    this.o.store.setOwnerState(uuid, 'suspended');
    this.o.log.info(`${name} paused (${why}): released ${held.length} lease(s), lver kept for the resume check`);
  }

  /**
   * RESUMED: take the leases again and require each lver unchanged — libvirt parses the saved
   * state and never checks it. If another host took a disk meanwhile, the domain must not run:
   * the returned follow-up (run outside the lease queue) pauses it again at once. A stale lease
   * (another host holds or has held the disk since the pause) keeps it paused — every later
   * resume is paused again the same way — and only <on_lockfailure>poweroff</on_lockfailure>
   * destroys it: a paused guest writes nothing, and its memory may still be worth saving. Other
   * failures (storage, lockspace not joined, a plan that cannot be made, as libvirt would refuse
   * the resume) apply the lock-failure action after the pause.
   */
  private async resumeAcquire(uuid: string, name: string, detail: string, xml?: string,
    plugin?: { info?: DomainInfo; pid?: number }): Promise<(() => Promise<void>) | undefined> {
    const st = this.domains.get(uuid);
    const rows = this.pausedLeases(uuid);
    const lvers = new Map(rows.map((r) => [`${r.lockspace}:${r.resource}`, r.lver]));
    const migrated = detail === 'MIGRATED' || st?.incoming;
    // The CPUs run here now: take the leases in this queue (the watch's acquire, queued behind, stops).
    this.stopWatch(uuid);
    let dom: DomainInfo | undefined;
    try {
      dom = plugin?.info ?? this.domainInfo(uuid, name, xml);
      if (!dom) return undefined;
      const plan = this.plan(dom, this.state(dom));
      const have = this.o.agent.inquire(uuid);
      const heldAlready = plan.entries.length > 0 && plan.entries.every((e) => have.some((h) => sameResource(h.spec, e)));
      await this.acquirePlan(dom, plan, {
        lvers: migrated ? undefined : lvers,
        retryMs: migrated ? this.o.migrationAcquireMs ?? 20000 : 0,
        withPid: true,
        // a plugin domain's QEMU, watched as the plugin's acquire does: libvirt makes no stop call
        pid: plugin?.pid,
        watchPid: plugin?.pid !== undefined,
      });
      if (st) st.incoming = false;
      this.stale.delete(uuid);
      this.o.store.setOwnerState(uuid, 'active');
      this.o.log.info(`${name} resumed${migrated ? ' after incoming migration' : ''}: ${plan.entries.length} lease(s) held` +
        (migrated && heldAlready ? ' (taken before it resumed)' : migrated && plan.entries.length ? ' (taken after it resumed)' : ''));
      return undefined;
    } catch (e) {
      if (this.heldDespitePlan(uuid, name, 'resumed', e)) return undefined;
      const reason = `${(e as Error).message}${planRemedy(e)}`;
      const taken = isStaleRefusal(e);
      this.o.log.error(`${name} resumed but its leases cannot be taken: ${reason}; pausing it again`);
      return async () => {
        const ctl = this.o.control();
        let paused = false;
        if (ctl) {
          paused = await ctl.suspend(uuid).then(() => true, (err) => {
            this.o.log.error(`pausing ${name} again failed: ${(err as Error).message}`);
            return false;
          });
        }
        const action = dom?.onLockFailure ?? this.o.config.leaseFailureAction;
        if (paused && taken && action !== 'poweroff') {
          this.markStale(uuid, name, e, `on_lockfailure=${action}; only poweroff destroys it`);
          return;
        }
        if (paused && action === 'pause') {
          this.o.log.error(`${name} stays paused (on_lockfailure=pause): resume it once its leases can be taken`);
          return;
        }
        if (paused && action === 'ignore') {
          this.o.log.error(`${name} stays paused (on_lockfailure=ignore): resume it once its leases can be taken`);
          return;
        }
        await this.onLeaseFailure({ uuid, name, reason: `resumed without its leases: ${reason}`, action });
      };
    }
  }

  /**
   * RESUMED of a domain the plugin registered. libvirt had the plugin take the leases before the
   * CPUs ran, except when QEMU was resumed behind its back (`virsh qemu-monitor-command --hmp
   * cont`): then they are taken now, as at a resume with the hook (lver check, paused again on a
   * refusal). Only if libvirt says it runs now and no pause call came since it was asked: a late
   * RESUMED of a domain paused again must not take back leases its pause released (a migration's
   * source lets them go for the destination). libvirt not answering: nothing is done.
   */
  private async pluginResumed(ev: LifecycleEventLike, xml: string | undefined, now: string | undefined, asked: number): Promise<(() => Promise<void>) | undefined> {
    const st = this.domains.get(ev.uuid);
    if (now !== 'RUNNING' || (st?.pausedAt ?? -Infinity) > asked) {
      this.o.log.debug(`${ev.name}: RESUMED/${ev.detail}: ${now === undefined ? 'libvirt did not tell its state' : now !== 'RUNNING' ? `libvirt lists it ${now.toLowerCase()}` : 'paused again since'}; no lease taken`);
      return undefined;
    }
    // The registered list is the plugin's view (volumes resolved by libvirt); after an agent restart, the live XML.
    const info = st?.info;
    const have = this.o.agent.inquire(ev.uuid);
    try {
      const dom = info ?? this.domainInfo(ev.uuid, ev.name, xml);
      if (!dom || planLeases(dom, this.o.config).entries.every((e) => have.some((h) => sameResource(h.spec, e)))) return undefined;
    } catch (e) {
      // An XML the agent cannot plan (a volume libvirt resolved for the plugin; its registered
      // list is gone with an agent restart): nothing tells what it lacks, so nothing is done —
      // pausing or killing it for a plan only libvirt could make would be the agent's fault.
      this.o.log.warning(`${ev.name}: RESUMED/${ev.detail}: its lease plan cannot be made from its XML (${(e as Error).message}); ` +
        `the ${have.length} lease(s) it holds stay as they are, none is taken`);
      return undefined;
    }
    this.o.log.warning(`${ev.name} resumed without a lock-driver call (QEMU resumed behind libvirt's back?): taking its leases after the fact`);
    return this.resumeAcquire(ev.uuid, ev.name, ev.detail, xml, { info, pid: this.pluginQemu(ev.uuid)?.pid });
  }

  /** A domain kept paused on a stale lease (status lists it until it stops), and the log line that says so. */
  private markStale(uuid: string, name: string, e: unknown, why: string): void {
    const h = e instanceof LeaseAcquireError ? e.holder : undefined;
    const heldBy = h ? `host ${h.hostId}${h.hostName ? ` (node ${h.hostName})` : ''}` : 'another host';
    this.stale.set(uuid, { name, heldBy, since: this.stale.get(uuid)?.since ?? new Date().toISOString() });
    this.o.log.error(`${name} stays paused: stale lease, its disk was held by ${heldBy} since it was paused here ` +
      `(${why}). It must not resume on that disk: destroy it and start it again`);
  }

  /** For `lockagent status`: domains kept paused on a stale lease, and why. */
  statusDomains(): Array<{ uuid: string; name: string; state: string }> {
    return [...this.stale].map(([uuid, s]) => ({ uuid, name: s.name, state: `paused: stale lease (held by ${s.heldBy} since it was paused; kept paused since ${s.since})` }));
  }

  /**
   * A running domain must hold its leases (it started while we were down, or without the hook, or
   * with `hotplug`, a disk was attached). What cannot be planned or taken is a lease failure of
   * the domain: libvirt would have refused its start, or the attach.
   */
  private async ensureHeld(uuid: string, name: string, why: string, xml?: string, hotplug = false): Promise<void> {
    let dom: DomainInfo | undefined;
    try {
      dom = this.domainInfo(uuid, name, xml);
      if (!dom) return;
      const plan = this.plan(dom, this.state(dom));
      const have = this.o.agent.inquire(uuid);
      const missing = plan.entries.filter((e) => !have.some((h) => sameResource(h.spec, e)));
      if (!missing.length) {
        // Leases taken at `prepare` (before QEMU existed): record QEMU's pid for the kill policy.
        const pid = await this.qemuPid(dom.name);
        if (pid && plan.entries.length) this.o.agent.setOwnerPid(uuid, pid);
        return;
      }
      // Leases recorded before an agent restart are being re-adopted, not taken for the first time.
      const known = this.o.store.leases(uuid).some((r) => r.held);
      await this.acquirePlan(dom, plan, { withPid: true });
      if (hotplug) this.o.log.warning(`${name}: ${why}: took ${missing.length} lease(s) after the fact (libvirt runs no hook for a hot-plug, so QEMU may have used the disk before)`);
      else if (known) this.o.log.info(`${name} is ${why}: its ${plan.entries.length} lease(s) are held again`);
      else this.o.log.warning(`${name} was ${why} without all its leases; they are now held`);
    } catch (e) {
      // A disk attached after the fact must have its lease: its plan failing is a lease failure.
      if (!hotplug && this.heldDespitePlan(uuid, name, why, e)) return;
      const reason = hotplug ? `${why}, and its lease is refused (after the fact): ${(e as Error).message}${planRemedy(e)}`
        : `it runs without its leases (${why}): ${(e as Error).message}${planRemedy(e)}`;
      void this.onLeaseFailure({ uuid, name, reason, action: dom?.onLockFailure });
    }
  }

  /**
   * After a hot-unplug (hook): the leases the live XML's plan no longer has are released. If it
   * cannot be planned nothing is released: the leases it holds stay held until it stops.
   */
  private async releaseDetached(name: string, why: string, xml: string): Promise<void> {
    try {
      const dom = parseDomainXml(xml);
      const n = await this.releaseUnplanned(dom, this.plan(dom, this.state(dom)));
      if (n) this.o.log.info(`${name}: ${why}: released ${n} lease(s) it no longer uses (after the fact: libvirt runs no hook for a hot-unplug)`);
    } catch (e) {
      this.o.log.error(`${name}: ${why}, but its leases cannot be planned: ${(e as Error).message}; those it holds stay held until it stops`);
    }
  }

  /** Release the leases the domain holds that its plan does not have, and forget their rows; the rows of the others (lvers kept at a pause) stay. */
  private async releaseUnplanned(dom: DomainInfo, plan: LeasePlan): Promise<number> {
    const planned = (x: { lockspace: string; resource: string }) => plan.entries.some((e) => sameResource(e, x));
    const gone = this.o.agent.inquire(dom.uuid).filter((h) => !planned(h.spec));
    const n = gone.length ? await this.o.agent.release({ uuid: dom.uuid, name: dom.name }, gone.map((h) => h.spec), { keepRecord: true }) : 0;
    for (const r of this.o.store.leases(dom.uuid)) if (!planned(r)) this.o.store.forgetLease(dom.uuid, r.lockspace, r.resource);
    return n;
  }

  /**
   * A domain whose live XML cannot be planned here but that holds leases: not a lease failure.
   * The plan from the XML can fail where the domain's own start did not: a volume disk resolved
   * by libvirt for the lock-driver plugin (the agent has no pool resolver), after an agent
   * restart that forgot which domains the plugin registered. What it holds stays held; it is
   * logged. One holding nothing runs unprotected: that stays a lease failure.
   */
  private heldDespitePlan(uuid: string, name: string, why: string, e: unknown): boolean {
    if (!isPlanError(e)) return false;
    const n = this.o.agent.inquire(uuid).length;
    if (!n) return false;
    this.o.log.error(`${name} (${why}): its lease plan cannot be made from its XML (${(e as Error).message}); the ${n} lease(s) it holds stay held, ` +
      'none is taken or released for it until it stops (expected for a domain started through the lock-driver plugin, for which libvirt resolves volumes)');
    return true;
  }

  /** Paused by our record (its leases released at its pause); an unreadable record: not paused. */
  private recordedPaused(uuid: string): boolean {
    try {
      return this.o.store.owner(uuid)?.state === 'suspended';
    } catch {
      return false;
    }
  }

  /** The records of leases released at a pause (their lvers, for the resume's check). */
  private pausedLeases(uuid: string): LeaseRow[] {
    return this.o.store.leases(uuid).filter((r) => !r.held);
  }

  /** Whether the domain runs the QEMU the lock-driver plugin registered: libvirt calls the plugin for its lease changes. */
  private pluginRuns(uuid: string): boolean {
    return this.pluginQemu(uuid) !== undefined;
  }

  /** The QEMU the lock-driver plugin registered for the domain, if it still runs. */
  private pluginQemu(uuid: string): ProcessId | undefined {
    let q: ProcessId | undefined = this.domains.get(uuid)?.qemu;
    if (!q) {
      // Registered before an agent restart (this build's or an earlier one's): only the plugin's
      // acquire watches a domain's QEMU (lockAcquire's watchPid), and the state database keeps it.
      try {
        const p = this.o.store.ownerProcess(uuid);
        if (p?.watched) q = p;
      } catch {
        // unreadable: not known as the plugin's
      }
    }
    return q && isSame(q) ? q : undefined;
  }

  /** The live XML (fetched before the lease work is queued), else the one the hook sent. */
  private async fetchXml(uuid: string): Promise<string | undefined> {
    const ctl = this.o.control();
    return ctl ? this.libvirtCall(() => ctl.getXML(uuid)) : undefined;
  }

  /** A libvirt call made while handling an event: undefined if it fails or takes longer than LIBVIRT_CALL_MS. */
  private async libvirtCall<T>(call: () => Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), LIBVIRT_CALL_MS); });
    try {
      return await Promise.race([call().catch(() => undefined), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private domainInfo(uuid: string, name: string, xml?: string): DomainInfo | undefined {
    const st = this.domains.get(uuid);
    const text = xml ?? st?.xml;
    if (!text && st?.info) return st.info;
    if (!text) {
      this.o.log.warning(`no XML known for ${name} (${uuid}); cannot plan its leases`);
      return undefined;
    }
    return parseDomainXml(text);
  }

  /** The pid to signal: QEMU's (from libvirt's pid file) for a domain, else the one the owner gave. */
  private async ownerPid(owner: FailedOwner): Promise<number | undefined> {
    return (await this.qemuPid(owner.name)) ?? owner.pid;
  }

  /** Where libvirt's QEMU driver writes the pid of the domain's QEMU. */
  private qemuPidFile(name: string): string {
    return `${this.o.qemuRunDir ?? '/run/libvirt/qemu'}/${name}.pid`;
  }

  /**
   * QEMU's pid from libvirt's pid file (<qemuRunDir>/<name>.pid), only if that process really is
   * this domain's QEMU: a stale pid file must never make us signal an unrelated process.
   */
  private async qemuPid(name: string): Promise<number | undefined> {
    const txt = await readFile(this.qemuPidFile(name), 'utf8').catch(() => '');
    const pid = Number(txt.trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
    // libvirt passes "-name guest=<name>,debug-threads=on" with commas in the name doubled.
    const args = cmdline.split('\0');
    const i = args.indexOf('-name');
    const guest = i >= 0 ? args[i + 1] ?? '' : '';
    const want = `guest=${name.replace(/,/g, ',,')}`;
    return guest === want || (guest.startsWith(`${want},`) && !guest.startsWith(`${want},,`)) ? pid : undefined;
  }
}

/** A resume refused because another host (or another domain here) holds or has held the disk since the pause: the guest's view of it is stale. */
function isStaleRefusal(e: unknown): boolean {
  const rv = (e as LeaseError).rv;
  // EEXIST: another domain on this host took the disk while this one was paused.
  return heldByAnotherHost(rv) || rv === SANLK.ACQUIRE_LVER || rv === SANLK.EEXIST;
}

/** The same disk in the plugin's resource lists (domainFromLockManager: a path each). */
function sameDisk(a: DiskInfo, b: DiskInfo): boolean {
  return a.source?.type === 'file' && b.source?.type === 'file' && a.source.path === b.source.path;
}

function sameLease(a: LeaseInfo, b: LeaseInfo): boolean {
  return a.key === b.key && a.lockspace === b.lockspace && a.path === b.path;
}

/** Whether `dom` lists every disk and lease of `info`. */
function covers(dom: DomainInfo, info: DomainInfo): boolean {
  return info.disks.every((x) => dom.disks.some((y) => sameDisk(x, y))) && info.leases.every((x) => dom.leases.some((y) => sameLease(x, y)));
}

/** A domain's lease plan cannot be made from its XML (as opposed to a lease that cannot be taken). */
function isPlanError(e: unknown): boolean {
  return e instanceof LeasePlanError || e instanceof DomainXmlError;
}

/** The same lease: one lockspace, one resource name. */
function sameResource(a: { lockspace: string; resource: string }, b: { lockspace: string; resource: string }): boolean {
  return a.lockspace === b.lockspace && a.resource === b.resource;
}

/** What to do about a domain whose leases cannot be planned (libvirt would not start it), for the error's log line. */
function planRemedy(e: unknown): string {
  return isPlanError(e)
    ? '; its lease plan cannot be made, so libvirt would not start it: correct its XML (or the disk lease settings in lockagent.conf)' : '';
}

/** Domain owners are keyed by the canonical lower-case UUID (parseDomainXml's form). */
export function isDomainUuid(id: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id);
}

function stateName(s: number | string | undefined): string {
  if (typeof s === 'string') return s.toUpperCase();
  return ['NOSTATE', 'RUNNING', 'BLOCKED', 'PAUSED', 'SHUTDOWN', 'SHUTOFF', 'CRASHED', 'PMSUSPENDED'][s ?? 0] ?? 'NOSTATE';
}
