import { mkdirSync, promises as fsp } from 'fs';
import { join } from 'path';
import { AgentConfig, configLockspaces, DISKS_LOCKSPACE, hostSlots, loadConfig } from '../config/config';
import { ControlServer, Peer } from '../control/server';
import { socketOwner } from '../control/peerpolicy';
import { systemClock } from '../lease/clock';
import { createLogger, Level, Logger, parseLevel } from '../log/logger';
import { geometryFor } from '../ondisk';
import { StateStore } from '../state/statestore';
import { isMd5Name } from '../cleanup/classify';
import { Agent, LeaseCandidate, RunningLeaseOwners } from '../agent/agent';
import { FailedOwner, failureAction, KillPolicy, LeaseFailurePolicy } from '../agent/failure';
import { GuardClient } from '../agent/guard';
import { CleanupHandlers, DomainHandlers, makeHandler } from '../control/handler';
import { DomainStatus } from '../control/replies';
import { resolveHostName } from '../agent/hostname';
import { leaseFileOwner } from '../agent/leasefile';
import { ensureLockspaceFile } from '../agent/lockspacefile';
import { IdleTrimmer, limitMallocArenas } from './memtrim';
import { MALLOC_ARENAS, missingNodeFlags } from './nodeflags';
import type { Metrics } from './metrics';
import { hostWatchStatus, joinStatusLine } from './hostwatch';
import { SdNotifier } from './sdnotify';
import { WdmdClient } from '../agent/wdmd';
import { stillThere } from '../agent/process';

/**
 * `lockagent daemon`: config → log → state → lockspaces (joined in the background) → control
 * socket → re-adoption of leases held before a restart. Status and releases are served from the
 * first moment; acquisitions wait for their lockspace.
 */
export interface DaemonHandle {
  agent: Agent;
  config: AgentConfig;
  log: Logger;
  store: StateStore;
  server: ControlServer;
  /** the Prometheus metrics, when metrics_listen is set (extensions report into it) */
  metrics?: Metrics;
  stop(opts?: { releaseAll?: boolean }): Promise<void>;
}

export interface DaemonExtensions {
  /** plugs in the libvirt integration; receives the agent, returns domain request handling */
  domain?: (d: Omit<DaemonHandle, 'server' | 'stop'>) => Promise<{ handlers: DomainHandlers; policy?: LeaseFailurePolicy; ownerExists?: (o: { uuid: string; name: string; pid: number | null; startTime: number | null }) => Promise<boolean>; runningOwners?: RunningLeaseOwners; stop?: () => Promise<void>; domains?: () => DomainStatus[] }>;
  peerOf?: (sock: import('net').Socket) => Peer | undefined;
  /**
   * The cleanup sweeper. `recovering` is true until the start-up recovery and reconcile have
   * ended (a real sweep waits for them; absent: nothing to wait for); `stop` resolves once a
   * sweep in progress has ended.
   */
  cleanup?: (d: Omit<DaemonHandle, 'server' | 'stop'> & { recovering?: () => boolean }) => { handlers: CleanupHandlers; stop: () => Promise<void> };
  allowPeer?: (config: AgentConfig) => (p: Peer) => boolean;
  /** another native binding (tests) */
  native?: import('../io/native').NativeBinding;
}

/** State database meta key: the lockspaces the config joined at the last start (JSON list of names). */
const CONFIG_LOCKSPACES_META = 'config-lockspaces';

/**
 * The lockspaces of the state database that the config did not join at this start. Those joined
 * with client add_lockspace are joined again, until rem_lockspace. Those the config joined at the
 * last start (auto_disk_leases turned off, a lockspaces entry removed) are left, unless leases
 * are still held in them: not joining would make the start-up recovery take those leases for
 * lost and act on their running owners, so such a lockspace is joined again, with a warning,
 * until a start finds none held. Databases of earlier builds did not record which were the
 * config's: there the disk lockspace at disk_lease_dir is taken for the config's. A row that
 * cannot be joined is reported and dropped rather than stopping the start. Returns the config's
 * lockspaces kept for their leases (they stay the config's for the next start).
 */
function rejoinLockspaces(agent: Agent, store: StateStore, config: AgentConfig, log: Logger, autoHostIdLimit: number): string[] {
  let previous: string[] | undefined;
  try {
    const v: unknown = JSON.parse(store.getMeta(CONFIG_LOCKSPACES_META) ?? 'null');
    previous = Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined;
  } catch {
    previous = undefined; // unreadable: as an earlier build's
  }
  const held = new Map<string, number>();
  let heldKnown = true;
  try {
    for (const r of store.leases()) if (r.held) held.set(r.lockspace, (held.get(r.lockspace) ?? 0) + 1);
  } catch {
    heldKnown = false; // unreadable (reported by the store): every lockspace is joined again, to be safe
  }
  const kept: string[] = [];
  for (const row of store.lockspaces()) {
    if (agent.lockspaces.has(row.name)) continue;
    const where = `${row.path}:${row.offset}, host_id ${row.hostId || 'auto'}`;
    const forget = (level: 'info' | 'warning', why: string) => {
      log[level](`lockspace ${row.name} (${where}) joined before the restart is not joined again: ${why}`);
      store.write(() => store.removeLockspace(row.name));
    };
    const configs = previous ? previous.includes(row.name) : row.name === DISKS_LOCKSPACE && row.path === join(config.diskLeaseDir, DISKS_LOCKSPACE);
    const n = heldKnown ? held.get(row.name) ?? 0 : 1;
    if (configs && !n) {
      forget('info', 'the config no longer names it');
      continue;
    }
    if (configs) {
      const why = heldKnown ? `${n} lease(s) are held in it (lockagent status)` : 'the state database cannot tell whether leases are held in it';
      log.warning(`lockspace ${row.name} (${where}) is no longer in the config, but ${why}: joined again so that ` +
        'their owners keep them; a start that finds none held leaves it (stop or release them, or put it back in the config)');
      kept.push(row.name);
    }
    try {
      agent.addLockspace({ name: row.name, hostId: row.hostId || 'auto', path: row.path, offset: row.offset, ioTimeout: row.ioTimeout, autoHostIdLimit });
    } catch (e) {
      forget('warning', `${(e as Error).message}; join it again with lockagent client add_lockspace`);
    }
  }
  return kept;
}

export async function startDaemon(config: AgentConfig, ext: DaemonExtensions = {}, logOverride?: Logger): Promise<DaemonHandle> {
  const log = logOverride ?? createLogger({
    file: config.logFile || undefined, fileLevel: config.logFile ? parseLevel(config.logLevel) : undefined,
    stderrLevel: config.logStderr ? parseLevel(config.logLevel) : undefined,
  });
  mkdirSync(join(config.statePath, '..'), { recursive: true });
  // The wrapper sets MALLOC_ARENA_MAX (nodeflags.ts DAEMON_ENV); started without it, cap them now.
  const arenasCapped = !!process.env.MALLOC_ARENA_MAX || limitMallocArenas();
  const store = StateStore.open(config.statePath, {
    onFault: (f) => log.error(f.message),
    onRecovered: (m) => log.warning(m),
  });
  const { name: hostName, source: nameSource, warning: nameWarning } = resolveHostName(store, config.hostName);
  log.info(`lockagent starting: host name ${hostName} (from ${nameSource}), config ${config.source}`);
  const missing = [...missingNodeFlags(), ...(process.env.MALLOC_ARENA_MAX ? [] : [`MALLOC_ARENA_MAX=${MALLOC_ARENAS}${arenasCapped ? ' (capped at start instead)' : ''}`])];
  if (missing.length) {
    log.info(`node started without ${missing.join(' ')}: the daemon's memory will be larger (up to ~20 MiB, docs/benchmarks.md); start it as \`lockagent daemon\` (the installed wrapper adds them)`);
  }
  if (nameWarning) log.warning(nameWarning);

  // Policy is swappable: the libvirt integration replaces the default kill policy.
  let policy: LeaseFailurePolicy = new KillPolicy({ graceSeconds: config.killGraceSeconds, log: (lvl, m) => log[lvl](m) });
  // prom-client (and the OpenTelemetry API it loads) only when metrics are served: ~80 modules.
  const metrics = config.metricsListen ? new (await import('./metrics')).Metrics() : undefined;
  // The fencing guard's client needs the agent and the agent tells it about changes: a late binding.
  const late: { guard?: GuardClient } = {};
  const onLeaseFailure = (o: FailedOwner) => {
    // KillPolicy always kills; the libvirt policy takes <on_lockfailure>, else the configured default.
    metrics?.leaseFailureAction(policy instanceof KillPolicy ? 'kill' : failureAction(o.action, config));
    // Once the failure action is done with an owner, the guard need not kill it.
    return policy.onLeaseFailure(o).finally(() => late.guard?.failureHandled(o.pid));
  };
  const agent = new Agent({
    clock: systemClock, log, store, hostName, policy: { onLeaseFailure }, observer: metrics?.observer, numHosts: config.maxHosts,
    fence: { admit: (o, ls) => late.guard?.admit(o, ls), changed: () => late.guard?.changed(), renewed: (l) => late.guard?.renewed(l) },
  });
  metrics?.attach(agent);

  // wdmd before any lockspace is joined: use_watchdog = 1 without it refuses to start (WdmdRefusal).
  const wdmd = new WdmdClient({ log, required: config.useWatchdog || config.fencing === 'wdmd', sources: () => agent.watchdogSources(), native: ext.native });
  try {
    wdmd.start();
  } catch (e) {
    store.close();
    throw e;
  }
  const notify = new SdNotifier({ log, native: ext.native });

  // host_id = auto claims a slot the lease files this host creates have: the geometry caps them.
  const autoHostIdLimit = hostSlots(config);
  if (config.autoDiskLeases) {
    const path = join(config.diskLeaseDir, DISKS_LOCKSPACE);
    // Creation failures are retried by the join loop's own errors; the file is needed first.
    await ensureLockspaceFile(path, DISKS_LOCKSPACE, geometryFor(config.sectorSize, config.alignSize), config.ioTimeout, {
      ...leaseFileOwner(config), log: (m) => log.info(m),
    }).catch((e) => log.error(`cannot prepare lockspace file ${path}: ${(e as Error).message}; the join will keep retrying`));
    agent.addLockspace({ name: DISKS_LOCKSPACE, hostId: config.hostId, path, offset: 0, ioTimeout: config.ioTimeout, autoHostIdLimit });
  }
  for (const ls of configLockspaces(config)) {
    agent.addLockspace({ name: ls.name, hostId: ls.hostId, path: ls.path, offset: ls.offset, ioTimeout: config.ioTimeout });
  }
  const configNames = [...agent.lockspaces.keys()];
  const kept = rejoinLockspaces(agent, store, config, log, autoHostIdLimit);
  store.write(() => store.setMeta(CONFIG_LOCKSPACES_META, JSON.stringify([...configNames, ...kept])));

  const guard = new GuardClient({
    agent, clock: systemClock, log, fencing: config.fencing, mode: config.fencingMode,
    controlSocket: config.socketPath, killGraceSeconds: config.killGraceSeconds,
  });
  late.guard = guard;
  await guard.start();

  const base = { agent, config, log, store, metrics };
  const domain = ext.domain ? await ext.domain(base) : undefined;
  if (domain?.policy) policy = domain.policy;
  let recovering = true;
  const cleanup = ext.cleanup?.({ ...base, recovering: () => recovering });

  // Memory grown by a burst of requests is given back once the agent is quiet again.
  const trimmer = new IdleTrimmer(5000, (before, after) => log.debug(`idle: memory trimmed, RSS ${Math.round(before / 1048576)} → ${Math.round(after / 1048576)} MiB`),
    () => agent.dropIoBuffers());
  trimmer.start();
  const handle = makeHandler(agent, {
    domain: domain?.handlers, cleanup: cleanup?.handlers, domains: domain?.domains,
    fencing: () => ({ ...guard.status(), ...hostWatchStatus(wdmd, notify) }),
  });
  const server = new ControlServer({
    path: config.socketPath,
    mode: config.socketMode,
    ...socketOwner(config),
    handler: (req, peer) => {
      trimmer.touch();
      return handle(req, peer);
    },
    peerOf: ext.peerOf,
    allow: ext.allowPeer?.(config),
    onError: (m) => log.error(m),
    onRefused: (m) => log.warning(m),
    onRequestRefused: (level, m) => log[level](m),
  });
  await server.listen();
  log.info(`control socket ${config.socketPath} (mode ${config.socketMode.toString(8)})`);
  // systemd: ready once the socket serves; STATUS= follows the join state.
  notify.ready(joinStatusLine(agent));
  // Not started by systemd (no $NOTIFY_SOCKET): nobody reads STATUS=, so no timer wakes us for it.
  const statusTimer = notify.enabled ? setInterval(() => notify.status(joinStatusLine(agent)), 1000) : undefined;
  statusTimer?.unref();
  if (metrics) {
    // A metrics listener that cannot start is reported, not fatal: leases matter more.
    await metrics.listen(config.metricsListen, config.metricsAllowRemote).then(
      (a) => log.info(`metrics at http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/metrics`),
      (e) => log.error(`cannot serve metrics on metrics_listen = "${config.metricsListen}": ${(e as Error).message}; ` +
        'the agent runs without metrics: free the port or choose another one and restart'),
    );
  }

  // Re-adopt in the background: it waits for the lockspace join. Then compare with the lease
  // directory: leases of this host_id that the state database did not know (it was lost,
  // corrupt, or failed to record them) are taken back and handed to their owners.
  void agent.recover(domain?.ownerExists ?? (async (o) => !!o.pid && stillThere(o.pid, o.startTime))).then(
    (r) => {
      if (r.adopted || r.released || r.forgotten) {
        log.info(`restart recovery: ${r.adopted} lease(s) re-adopted, ${r.released} released, ${r.forgotten} found released already`);
      }
    },
    (e) => log.error(`restart recovery failed: ${(e as Error).message}`),
  ).finally(() => guard.setRecovered()).then(async () => {
    const r = await agent.reconcile(await leaseCandidates(config, store), domain?.runningOwners);
    if (r.found) log.warning(`start-up reconcile: ${r.found} lease(s) held on disk were unknown to the state database: ${r.readopted} re-adopted, ${r.released} released, ${r.kept} kept for an unknown owner`);
  }).catch((e) => log.error(`start-up reconcile with the lease directory failed: ${(e as Error).message}`))
    // Start-up is activity: the first quiet check gives back what it alone used (memtrim.ts).
    .finally(() => {
      recovering = false;
      trimmer.touch();
    });

  return {
    ...base,
    server,
    async stop(opts = {}) {
      notify.stopping();
      clearInterval(statusTimer);
      trimmer.stop();
      // A sweep in progress stops at its next file and answers its caller before the socket closes.
      await cleanup?.stop();
      await metrics?.close();
      await server.close();
      await domain?.stop?.();
      await agent.shutdown(opts.releaseAll ?? false);
      wdmd.stop();
      guard.stop();
      store.close();
      log.info('lockagent stopped');
      await log.close();
    },
  };
}

/**
 * Where this host may hold leases: every automatic disk lease file of disk_lease_dir (named by
 * the md5 of a disk path, offset 0) and every lease the state database lists.
 */
async function leaseCandidates(config: AgentConfig, store: StateStore): Promise<LeaseCandidate[]> {
  const out: LeaseCandidate[] = [];
  if (config.autoDiskLeases) {
    const names = await fsp.readdir(config.diskLeaseDir).catch(() => [] as string[]);
    for (const n of names.filter(isMd5Name)) out.push({ lockspace: DISKS_LOCKSPACE, resource: n, path: `${config.diskLeaseDir}/${n}`, offset: 0 });
  }
  try {
    for (const l of store.leases()) out.push({ lockspace: l.lockspace, resource: l.resource, path: l.path, offset: l.offset });
  } catch {
    // an unreadable store is reported by the store
  }
  return out;
}

/** Foreground daemon entry: runs until SIGTERM/SIGINT. */
export async function runDaemon(
  configPath: string, ext: DaemonExtensions = {},
  levels: { file?: Level | null; stderr?: Level | null } = {},
): Promise<void> {
  const { config, warnings } = loadConfig(configPath);
  // -L / -S override the config's level per target (null = off), as sanlock's flags do.
  const log = createLogger({
    file: config.logFile || undefined,
    fileLevel: levels.file === null ? undefined : levels.file ?? (config.logFile ? parseLevel(config.logLevel) : undefined),
    stderrLevel: levels.stderr === null ? undefined : levels.stderr ?? (config.logStderr ? parseLevel(config.logLevel) : undefined),
  });
  for (const w of warnings) log.warning(w); // before the start, which may fail
  const d = await startDaemon(config, ext, log);
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    d.log.info(`${sig}: stopping; leases of running owners are kept (restart within ${8 * config.ioTimeout} s to keep renewing them)`);
    void d.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
