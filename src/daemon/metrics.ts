/**
 * Prometheus metrics at metrics_listen (daemon layer: it reads the agent core, which never
 * imports prom-client). Counters and histograms are fed by the core's observer (renewals,
 * acquire/release results), the lease layer's I/O timing and the daemon's lease-failure and
 * cleanup hooks; gauges are read from the agent at each scrape. docs/metrics.md lists them.
 */
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { metricsAddress } from '../config/config';
import { ioStats } from '../io/directio';
import { IoKind, setIoObserver } from '../lease/diskio';
import { HostState } from '../lease/hostmonitor';
import { resultInfo } from '../ondisk/results';
import type { Agent, AgentObserver } from '../agent/agent';
import type { JoinState } from '../agent/lockspace';

const JOIN_STATES: readonly JoinState[] = ['joining', 'joined', 'retrying', 'lost', 'leaving', 'left'];
const HOST_STATES: readonly HostState[] = ['LIVE', 'FAIL', 'DEAD', 'FREE', 'UNKNOWN'];
/** 1 ms .. 20 s: a healthy renewal takes milliseconds, io_timeout is 10 s by default. */
const IO_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20];
/** an acquire may wait for a silent holder's host_dead (minutes) */
const ACQUIRE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** A result code by name ("OK", "SANLK_ACQUIRE_IDLIVE", "EBADF"), never a bare number (resultInfo's name; an unknown one keeps its number). */
export function resultName(rv: number): string {
  const { name } = resultInfo(rv);
  return name === 'UNKNOWN' ? `UNKNOWN_${Math.abs(rv)}` : name;
}

/** The parts of a cleanup run the metrics count (cleanup's SweepReport has them). */
export interface CleanupRunInfo {
  status: 'done' | 'busy';
  dryRun: boolean;
  files: Array<{ class: string; action?: string }>;
}

export class Metrics {
  readonly registry = new Registry();
  private agent?: Agent;
  private server?: Server;
  private readonly minMargin = new Map<string, number>();
  private readonly lastMargin = new Map<string, number>();

  private readonly renewalDuration: Histogram<'lockspace' | 'phase'>;
  private readonly renewals: Counter<'lockspace' | 'result'>;
  private readonly acquires: Counter<'result'>;
  private readonly releases: Counter<'result'>;
  private readonly acquireDuration: Histogram;
  private readonly ioDuration: Histogram<'kind'>;
  private readonly failureActions: Counter<'action'>;
  private readonly cleanupRuns: Counter<'result'>;
  private readonly cleanupFiles: Counter<'class' | 'action'>;

  constructor() {
    const registers = [this.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    const perLockspace = (name: string, help: string, value: (ls: ReturnType<Agent['lockspaceStatus']>[number]) => number | undefined) =>
      new Gauge({
        name, help, labelNames: ['lockspace'], registers,
        collect() {
          this.reset();
          for (const ls of self.agent?.lockspaceStatus() ?? []) {
            const v = value(ls);
            if (v !== undefined) this.set({ lockspace: ls.name }, v);
          }
        },
      });

    new Gauge({
      name: 'lockagent_lockspace_state', help: 'join state of each lockspace: 1 for the current state, 0 for the others',
      labelNames: ['lockspace', 'state'], registers,
      collect() {
        this.reset();
        for (const ls of self.agent?.lockspaceStatus() ?? []) {
          for (const st of JOIN_STATES) this.set({ lockspace: ls.name, state: st }, ls.state === st ? 1 : 0);
        }
      },
    });
    perLockspace('lockagent_lockspace_host_id', 'this host\'s host_id in the lockspace', (ls) => ls.hostId);
    perLockspace('lockagent_lockspace_generation', 'generation of our delta lease (absent while not joined)', (ls) => ls.generation);
    perLockspace('lockagent_lockspace_io_timeout_seconds', 'io_timeout of the lockspace; leases fail 8 x io_timeout after the last renewal', (ls) => ls.ioTimeout);
    perLockspace('lockagent_lockspace_renewal_age_seconds', 'seconds since the last successful renewal (absent while not joined)', (ls) => ls.renewedAgo);
    perLockspace('lockagent_lockspace_io_timeout_mismatches', 'live hosts of the lockspace whose io_timeout differs from ours', (ls) => ls.ioTimeoutMismatches.length);
    perLockspace('lockagent_renewal_margin_seconds', 'seconds that were left before 8 x io_timeout when the last renewal completed', (ls) => this.lastMargin.get(ls.name));
    perLockspace('lockagent_renewal_margin_min_seconds', 'the smallest renewal margin since the agent started', (ls) => this.minMargin.get(ls.name));

    this.renewalDuration = new Histogram({
      name: 'lockagent_renewal_duration_seconds', help: 'delta lease renewal I/O: phase="read" the lockspace area, phase="write" our sector, phase="read_write" both as one request',
      labelNames: ['lockspace', 'phase'], buckets: IO_BUCKETS, registers,
    });
    this.renewals = new Counter({ name: 'lockagent_renewals_total', help: 'renewal attempts by result (ok, failed)', labelNames: ['lockspace', 'result'], registers });

    new Gauge({
      name: 'lockagent_hosts', help: 'hosts seen in each joined lockspace by state (LIVE, FAIL, DEAD, FREE, UNKNOWN), this host included',
      labelNames: ['lockspace', 'state'], registers,
      collect() {
        this.reset();
        for (const ls of self.agent?.lockspaces.values() ?? []) {
          if (ls.state !== 'joined') continue;
          const n = new Map<HostState, number>(HOST_STATES.map((s) => [s, 0]));
          for (const h of ls.hosts()) n.set(h.state, (n.get(h.state) ?? 0) + 1);
          for (const [state, v] of n) this.set({ lockspace: ls.name, state }, v);
        }
      },
    });

    this.acquires = new Counter({ name: 'lockagent_acquires_total', help: 'acquire requests by result code name (OK, SANLK_ACQUIRE_IDLIVE, ...)', labelNames: ['result'], registers });
    this.releases = new Counter({ name: 'lockagent_releases_total', help: 'release requests by result code name', labelNames: ['result'], registers });
    this.acquireDuration = new Histogram({ name: 'lockagent_acquire_duration_seconds', help: 'duration of acquire requests, all results', buckets: ACQUIRE_BUCKETS, registers });
    this.ioDuration = new Histogram({
      name: 'lockagent_io_duration_seconds', help: 'lease I/O latency by kind (leader_read, leader_write, dblock_read, dblock_write, area_read, delta_write, release_rmw)',
      labelNames: ['kind'], buckets: IO_BUCKETS, registers,
    });
    // The addon's own counters, read at each scrape.
    const addon = (name: string, help: string, field: keyof ReturnType<typeof ioStats>) => new Counter({
      name, help, registers,
      collect() {
        this.reset();
        try {
          this.inc(ioStats()[field]);
        } catch { /* addon not loaded: nothing counted */ }
      },
    });
    addon('lockagent_io_reads_total', 'reads completed by the direct-I/O addon', 'reads');
    addon('lockagent_io_writes_total', 'writes completed by the direct-I/O addon', 'writes');
    addon('lockagent_io_read_bytes_total', 'bytes read by the direct-I/O addon', 'bytesRead');
    addon('lockagent_io_written_bytes_total', 'bytes written by the direct-I/O addon', 'bytesWritten');
    addon('lockagent_io_errors_total', 'I/O errors reported by the direct-I/O addon', 'errors');
    addon('lockagent_io_timeouts_total', 'I/Os that did not complete within their deadline', 'timeouts');
    addon('lockagent_io_late_completions_total', 'I/Os that completed after their deadline had passed', 'lateCompletions');

    new Gauge({
      name: 'lockagent_leases_held', help: 'resource leases held by this host\'s owners, by mode', labelNames: ['mode'], registers,
      collect() {
        this.reset();
        const n = { exclusive: 0, shared: 0 };
        for (const o of self.agent?.ownersList() ?? []) for (const l of o.leases) n[l.spec.mode]++;
        this.set({ mode: 'exclusive' }, n.exclusive);
        this.set({ mode: 'shared' }, n.shared);
      },
    });
    new Gauge({
      name: 'lockagent_owners', help: 'owners (domains, processes) the agent holds leases for', registers,
      collect() {
        this.set(self.agent?.ownersList().length ?? 0);
      },
    });
    this.failureActions = new Counter({ name: 'lockagent_lease_failure_actions_total', help: 'lease-failure actions started, by action (kill, poweroff, pause, restart)', labelNames: ['action'], registers });
    this.cleanupRuns = new Counter({ name: 'lockagent_cleanup_runs_total', help: 'cleanup runs by result (done, dry_run, busy, failed)', labelNames: ['result'], registers });
    this.cleanupFiles = new Counter({ name: 'lockagent_cleanup_files_total', help: 'files examined by cleanup runs (dry runs not counted), by class and action', labelNames: ['class', 'action'], registers });
  }

  /** Feed it to the Agent (AgentOptions.observer). */
  readonly observer: AgentObserver = {
    renewal: (ls, r) => {
      const name = ls.name;
      this.renewals.inc({ lockspace: name, result: r.ok ? 'ok' : 'failed' });
      if (r.oneRequest && r.readMs !== undefined) {
        this.renewalDuration.observe({ lockspace: name, phase: 'read_write' }, r.readMs / 1000);
      } else {
        if (r.readMs !== undefined) this.renewalDuration.observe({ lockspace: name, phase: 'read' }, r.readMs / 1000);
        if (r.writeMs !== undefined) this.renewalDuration.observe({ lockspace: name, phase: 'write' }, r.writeMs / 1000);
      }
      if (r.ok) {
        this.lastMargin.set(name, r.marginS);
        this.minMargin.set(name, Math.min(this.minMargin.get(name) ?? Infinity, r.marginS));
      }
    },
    acquired: (rv, seconds) => {
      this.acquires.inc({ result: resultName(rv) });
      this.acquireDuration.observe(seconds);
    },
    released: (rv) => {
      this.releases.inc({ result: resultName(rv) });
    },
  };

  /** A lease-failure action the daemon started for an owner. */
  leaseFailureAction(action: string): void {
    this.failureActions.inc({ action });
  }

  cleanupRun(r: CleanupRunInfo | undefined, failed = false): void {
    if (failed || !r) {
      this.cleanupRuns.inc({ result: 'failed' });
      return;
    }
    this.cleanupRuns.inc({ result: r.status === 'busy' ? 'busy' : r.dryRun ? 'dry_run' : 'done' });
    if (r.dryRun) return;
    for (const f of r.files) this.cleanupFiles.inc({ class: f.class, action: f.action ?? 'kept' });
  }

  /** Read gauges from this agent, and time lease I/O, from now on. */
  attach(agent: Agent): void {
    this.agent = agent;
    setIoObserver((kind: IoKind, seconds: number) => this.ioDuration.observe({ kind }, seconds));
  }

  /** Serve GET /metrics on metrics_listen; resolves once listening (rejects when it cannot or may not). */
  async listen(address: string, allowRemote: boolean): Promise<{ host: string; port: number }> {
    const a = metricsAddress(address, allowRemote);
    const server = createServer((req, res) => void this.serve(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(a.port, a.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const bound = server.address();
    return { host: a.host, port: typeof bound === 'object' && bound ? bound.port : a.port };
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('lockagent serves only /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('only GET\n');
      return;
    }
    try {
      const body = await this.registry.metrics();
      res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
    } catch (e) {
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`collecting metrics failed: ${(e as Error).message}\n`);
    }
  }

  /** Stop serving and stop timing I/O. */
  async close(): Promise<void> {
    setIoObserver(undefined);
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
