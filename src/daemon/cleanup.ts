/**
 * The sweeper inside the daemon (DaemonExtensions.cleanup): the control op `cleanup` and the
 * cleanup_schedule (a cron expression, croner; "" or "off" disables it). Every host may run the
 * schedule: the sweep lock lets one of them sweep and the others log that it is busy. Each
 * run's summary goes to the log.
 *
 * Until the daemon's start-up recovery and reconcile have ended, a real sweep is refused (a
 * scheduled one skipped): a lease of an earlier generation of this host that no record names
 * may be one the reconcile is about to take back for a running domain. The daemon's stop waits
 * for a sweep in progress, which stops at its next file.
 */
import type { Cron } from 'croner';
import type { DaemonHandle, DaemonExtensions } from './daemon';
import { cleanupCron, cleanupScheduleOff, DISKS_LOCKSPACE } from '../config/config';
import { CleanupHandlers } from '../control/handler';
import { busyLine } from '../cleanup/report';
import { SweepReport } from '../control/replies';
import { RECOVERING } from '../cleanup/classify';
import { isSweeping, RECOVERING_TEXT, sweep, sweeperOwner } from '../cleanup/sweep';
import { LeaseError, SANLK } from '../ondisk';

export interface CleanupExtensionOptions {
  /** random delay before a scheduled sweep, so hosts do not all race for the lock; default 30 s */
  jitterMs?: number;
}

type Base = Omit<DaemonHandle, 'server' | 'stop'>;
/** What the daemon hands the sweeper (DaemonExtensions.cleanup). */
export type CleanupDeps = Parameters<NonNullable<DaemonExtensions['cleanup']>>[0];

/** Log one run: the summary line, and every file that failed. */
export function logReport(d: Pick<Base, 'log'>, trigger: string, r: SweepReport): void {
  const secs = (r.durationMs / 1000).toFixed(1);
  if (r.status === 'busy') {
    d.log.info(`cleanup (${trigger}): ${busyLine(r)}; skipped`);
    return;
  }
  const failed = r.files.filter((f) => f.class === 'error' || f.action === 'failed');
  const line = `cleanup (${trigger}${r.dryRun ? ', dry run' : ''}): ${r.summaryLine} in ${secs} s`;
  if (failed.length || r.errors.length) d.log.warning(line);
  else d.log.info(line);
  for (const f of failed) d.log.warning(`cleanup: ${f.name}: ${f.detail}`);
  for (const e of r.errors) d.log.warning(`cleanup: ${e}`);
}

/** The sweeper as the daemon plugs it in, plus what tests look at. */
export interface CleanupExtension {
  handlers: CleanupHandlers;
  /**
   * Stop the schedule and refuse new sweeps; resolves once every sweep in progress has ended:
   * each stops at its next file (the file in hand finishes its steps), releases the sweep lock
   * and answers its caller.
   */
  stop: () => Promise<void>;
  /** timers not yet fired or cleared (the jitter of a scheduled run, the leftover release) */
  pendingTimers: () => number;
}

/** Why a sweep is refused once the daemon is stopping. */
const STOPPING_TEXT = 'the agent is stopping; no sweep is started';

export function cleanupExtension(opts: CleanupExtensionOptions = {}): (d: CleanupDeps) => CleanupExtension {
  return (d) => {
    const { agent, config, log, store } = d;
    const recovering = () => d.recovering?.() ?? false;
    const abort = new AbortController();
    let job: Cron | undefined;
    /** live timers only: each removes itself when it fires or is cleared */
    const timers = new Set<NodeJS.Timeout>();
    /** work that stop() waits for (sweeps, and releases of an interrupted sweep's leases), settled */
    const inFlight = new Set<Promise<void>>();
    const track = <T>(p: Promise<T>): Promise<T> => {
      const settled = p.then(() => undefined, () => undefined);
      inFlight.add(settled);
      void settled.then(() => inFlight.delete(settled));
      return p;
    };

    const run = (trigger: string, dryRun: boolean, minAgeSeconds?: number): Promise<SweepReport> => {
      if (abort.signal.aborted) return Promise.reject(new LeaseError(SANLK.EBUSY, STOPPING_TEXT));
      // Refused here, before it counts as a run (sweep() refuses it too).
      if (!dryRun && recovering()) return Promise.reject(new LeaseError(SANLK.EBUSY, RECOVERING_TEXT));
      return track((async () => {
        const r = await sweep({ agent, config, log, store }, { dryRun, minAgeSeconds, signal: abort.signal, recovering: recovering() })
          .catch((e) => { d.metrics?.cleanupRun(undefined, true); throw e; });
        d.metrics?.cleanupRun(r);
        logReport(d, trigger, r);
        return r;
      })());
    };

    /** The random delay of a scheduled run; ends early when the daemon stops. */
    const jitterDelay = (ms: number) => new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        timers.delete(t);
        abort.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      t.unref();
      timers.add(t);
      abort.signal.addEventListener('abort', done);
    });

    const scheduled = async () => {
      if (abort.signal.aborted) return;
      if (recovering()) {
        log.warning(`cleanup (scheduled): skipped: ${RECOVERING}`);
        return;
      }
      const ls = agent.lockspaces.get(DISKS_LOCKSPACE);
      if (!ls || ls.state !== 'joined') {
        log.warning(`cleanup (scheduled): skipped: lockspace ${DISKS_LOCKSPACE} is ${ls ? ls.state : 'not configured'}`);
        return;
      }
      const jitter = Math.floor(Math.random() * (opts.jitterMs ?? 30000));
      if (jitter) await jitterDelay(jitter);
      if (abort.signal.aborted) return;
      await run('scheduled', false).catch((e) => log.error(`cleanup (scheduled) failed: ${(e as Error).message}`));
    };

    const schedule = config.cleanupSchedule.trim();
    if (cleanupScheduleOff(schedule)) {
      log.info('cleanup_schedule is off: lease files are swept only on request (lockagent cleanup)');
    } else if (!config.autoDiskLeases && !agent.lockspaces.has(DISKS_LOCKSPACE)) {
      log.info(`cleanup_schedule ignored: lockspace ${DISKS_LOCKSPACE} is not used on this host (auto_disk_leases = 0, and lockspaces does not list it)`);
    } else {
      try {
        job = cleanupCron(schedule, scheduled, { protect: true, unref: true, catch: (e) => log.error(`cleanup (scheduled) failed: ${(e as Error).message}`) });
        log.info(`cleanup sweeper scheduled "${schedule}"; next run ${job?.nextRun()?.toISOString() ?? 'never'}`);
      } catch (e) {
        // config check refuses these; the daemon reads them as earlier versions did (a warning there)
        log.error(`cleanup_schedule "${schedule}" is not a valid cron expression (${(e as Error).message}); the sweeper will not run on a schedule`);
      }
    }

    // Leases of a sweep interrupted by a crash are re-adopted by restart recovery; give them back
    // once that happened (recovery runs in the background after the join).
    const owner = sweeperOwner(agent);
    if (store.leases(owner.uuid).length) {
      const until = Date.now() + 10 * 60000;
      const t = setInterval(() => {
        if (abort.signal.aborted || Date.now() > until || !store.leases(owner.uuid).length) {
          clearInterval(t);
          timers.delete(t);
          return;
        }
        if (isSweeping(agent) || !agent.inquire(owner.uuid).length) return;
        void track(agent.release(owner)).then(
          (n) => log.info(`cleanup: released ${n} lease(s) left by a sweep interrupted before the restart`),
          (e) => log.warning(`cleanup: releasing leases of an interrupted sweep: ${(e as Error).message}`),
        );
      }, 2000);
      t.unref();
      timers.add(t);
    }

    const handlers: CleanupHandlers = {
      cleanup: (req, peer) => run(`requested${peer.pid ? ` by pid ${peer.pid}` : ''}`, req.dryRun, req.minAgeSeconds),
    };

    return {
      handlers,
      stop: async () => {
        abort.abort();
        job?.stop();
        for (const t of timers) clearTimeout(t);
        timers.clear();
        while (inFlight.size) await Promise.all([...inFlight]);
        // The control server writes a request's answer a few promise steps after its sweep ended.
        await new Promise<void>((r) => setImmediate(r));
      },
      pendingTimers: () => timers.size,
    };
  };
}
