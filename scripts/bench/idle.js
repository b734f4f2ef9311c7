#!/usr/bin/env node
'use strict';
/**
 * Benchmark 5: idle cost with N leases held (default 1000), io_timeout 1 (renewal every 2 s).
 * Both daemons hold their leases at the same time, side by side:
 *   sanlock:   N leases held by N/8 registered python3-sanlock processes (8 per process is
 *              sanlock's limit);
 *   lockagent: N leases held by N/8 owners of 8 leases each, acquired over the control socket.
 * Over the window (300 s; --quick 60 s; it starts 20 s after the last acquire): CPU seconds (utime+stime of all threads, /proc/PID/stat)
 * and RSS (/proc/PID/status: VmRSS at the end, the largest seen while sampling every 5 s, VmHWM).
 * Then storage I/O per renewal interval, with no lease and with N leases held, counted with
 * strace -f on each daemon (10 s windows outside the CPU window, since tracing costs CPU).
 *
 *   node scripts/bench/idle.js [--quick] [--seconds S] [--leases N] [--out FILE] [--keep]
 */
const path = require('path');
const c = require('./lib/common');

c.runMain('idle', async (args) => {
  const opt = (name, dflt) => {
    const i = args.rest.indexOf(name);
    return i >= 0 ? Number(args.rest[i + 1]) : dflt;
  };
  const N = opt('--leases', 1000);
  const SECONDS = opt('--seconds', args.quick ? 60 : 300);
  const IO = 1;
  const TRACE_S = args.quick ? 10 : 30;
  const SETTLE_S = 20;
  const W = c.workDir('idle');
  c.log(`idle: ${N} leases per tool, ${SECONDS} s window, io_timeout ${IO}, work dir ${W}`);

  const la = { ls: 'IDLE_LA', lsFile: path.join(W, 'la-lockspace'), res: path.join(W, 'la-leases') };
  const sl = { ls: 'IDLE_SL', lsFile: path.join(W, 'sl-lockspace'), res: path.join(W, 'sl-leases') };
  for (const t of [la, sl]) {
    c.initLockspace(t.lsFile, t.ls, IO);
    c.initResources(t.res, t.ls, N);
  }
  const sanlock = await new c.SanlockDaemon(path.join(W, 'sanlock'), 'idle-sl').start();
  const agent = new c.AgentDaemon(path.join(W, 'agent'), { ioTimeout: IO, lockspaces: [`${la.ls}:1:${la.lsFile}:0`] });
  await Promise.all([sanlock.py(['join', sl.ls, '1', sl.lsFile, String(IO)]), agent.start()]);
  c.log(`both joined (sanlock pid ${sanlock.pid}, lockagent pid ${agent.pid})`);

  /** strace both daemons for TRACE_S seconds: I/Os per renewal interval (2·io) per file. */
  const traceIo = async (label) => {
    const files = { sanlock: path.join(W, `strace-sl-${label}.log`), lockagent: path.join(W, `strace-la-${label}.log`) };
    const st = await Promise.all([c.startStrace(sanlock.pid, files.sanlock), c.startStrace(agent.pid, files.lockagent)]);
    await c.sleep(TRACE_S * 1000);
    await Promise.all(st.map((s) => s.stop()));
    const out = {};
    for (const tool of ['sanlock', 'lockagent']) {
      const ev = c.parseStraceIo(files[tool], st[tool === 'sanlock' ? 0 : 1].fds);
      const intervals = TRACE_S / (2 * IO);
      const lsFile = tool === 'sanlock' ? sl.lsFile : la.lsFile;
      const onLs = ev.filter((e) => e.path === lsFile);
      const onLeases = ev.filter((e) => e.path === (tool === 'sanlock' ? sl.res : la.res));
      const other = ev.filter((e) => e.path !== lsFile && e.path !== (tool === 'sanlock' ? sl.res : la.res));
      const renewals = onLs.filter((e) => e.op === 'write').length; // one delta write per renewal
      out[tool] = {
        renewals,
        iosPerRenewal: renewals ? onLs.length / renewals : 0,
        kibPerRenewal: renewals ? onLs.reduce((s, e) => s + e.bytes, 0) / 1024 / renewals : 0,
        iosPerInterval: onLs.length / intervals,
        readsPerInterval: onLs.filter((e) => e.op === 'read').length / intervals,
        writesPerInterval: onLs.filter((e) => e.op === 'write').length / intervals,
        kibPerInterval: onLs.reduce((s, e) => s + e.bytes, 0) / 1024 / intervals,
        leaseFileIos: onLeases.length,
        otherIos: other.length,
        otherPaths: [...new Set(other.map((e) => e.path || '(unknown fd)'))],
      };
    }
    c.log(`renewal I/O (${label}): sanlock ${out.sanlock.renewals} renewals in ${TRACE_S} s, ${out.sanlock.iosPerRenewal} I/Os / ${out.sanlock.kibPerRenewal.toFixed(1)} KiB each; ` +
      `lockagent ${out.lockagent.renewals} renewals, ${out.lockagent.iosPerRenewal} I/Os / ${out.lockagent.kibPerRenewal.toFixed(1)} KiB each`);
    return out;
  };

  const io0 = await traceIo('0-leases');
  const before = { sanlock: c.procSample(sanlock.pid), lockagent: c.procSample(agent.pid) };

  // ---- take N leases in each daemon, concurrently -------------------------------------------------
  const tAcq = c.hr();
  const holder = sanlock.pySpawn(['hold', sl.ls, sl.res, '0', String(N)]);
  const laAcquire = (async () => {
    const t = c.hr();
    const owners = Math.ceil(N / 8);
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (;;) {
        const o = next++;
        if (o >= owners) return;
        const leases = [];
        for (let i = o * 8; i < Math.min(N, o * 8 + 8); i++) leases.push({ lockspace: la.ls, resource: c.resName(i), path: la.res, offset: i * c.MiB });
        await agent.call({ op: 'acquire', owner: { uuid: `idle-owner-${o}`, name: `idle-owner-${o}` }, leases });
      }
    }));
    return (c.hr() - t) / 1000;
  })();
  const [slHeld, laSeconds] = await Promise.all([holder.first, laAcquire]);
  c.log(`held ${N} leases each (sanlock in ${slHeld.seconds.toFixed(1)} s by ${slHeld.procs} processes, lockagent in ${laSeconds.toFixed(1)} s) after ${((c.hr() - tAcq) / 1000).toFixed(1)} s`);
  const st = await agent.call({ op: 'status' });
  const laHeld = st.owners.reduce((s, o) => s + o.leases.length, 0);
  if (laHeld !== N) throw new Error(`lockagent holds ${laHeld} leases, expected ${N}`);
  const slStatus = await sanlock.client(['status']);
  const slHeldCount = slStatus.out.split('\n').filter((l) => l.startsWith('r ')).length;
  if (slHeldCount !== N) throw new Error(`sanlock holds ${slHeldCount} leases, expected ${N}`);

  // ---- the idle window ----------------------------------------------------------------------------
  // Steady state: it starts once both daemons are done with the burst. lockagent trims its memory
  // once after a burst (a full GC and malloc_trim, 5-8 s after the last request: ~0.1 CPU s, once
  // per burst, not per minute); a window starting 5 s after the burst caught it in some runs
  // and not in others (0.06 against 0.14 CPU s).
  await c.sleep(SETTLE_S * 1000);
  const s0 = { sanlock: c.procSample(sanlock.pid), lockagent: c.procSample(agent.pid) };
  const r0 = { sanlock: c.threadRunTimes(sanlock.pid), lockagent: c.threadRunTimes(agent.pid) };
  const maxRss = { sanlock: s0.sanlock.rssKiB, lockagent: s0.lockagent.rssKiB };
  const tEnd = Date.now() + SECONDS * 1000;
  while (Date.now() < tEnd) {
    await c.sleep(Math.min(5000, Math.max(0, tEnd - Date.now())));
    for (const [tool, pid] of [['sanlock', sanlock.pid], ['lockagent', agent.pid]]) maxRss[tool] = Math.max(maxRss[tool], c.procSample(pid).rssKiB);
  }
  const s1 = { sanlock: c.procSample(sanlock.pid), lockagent: c.procSample(agent.pid) };
  const run = {
    sanlock: c.runTimeBetween(r0.sanlock, c.threadRunTimes(sanlock.pid)),
    lockagent: c.runTimeBetween(r0.lockagent, c.threadRunTimes(agent.pid)),
  };
  const window = (s1.lockagent.t - s0.lockagent.t) / 1000;
  c.log(`window ${window.toFixed(1)} s: CPU sanlock ${(s1.sanlock.cpu - s0.sanlock.cpu).toFixed(2)} s (run time ${run.sanlock.toFixed(4)}), ` +
    `lockagent ${(s1.lockagent.cpu - s0.lockagent.cpu).toFixed(2)} s (run time ${run.lockagent.toFixed(4)}); ` +
    `RSS sanlock ${(s1.sanlock.rssKiB / 1024).toFixed(1)} MiB, lockagent ${(s1.lockagent.rssKiB / 1024).toFixed(1)} MiB`);

  const ioN = await traceIo(`${N}-leases`);
  await holder.stop();

  const mib = (k) => k / 1024;
  const cpu = (tool) => s1[tool].cpu - s0[tool].cpu;
  const metrics = [
    c.metric('idle.rss', `daemon RSS with ${N} leases held (end of the ${SECONDS} s window)`, 'MiB', [mib(s1.lockagent.rssKiB)], [mib(s1.sanlock.rssKiB)],
      { target: 'lockagent ≤ 60 MiB', pass: (a) => a.median <= 60 }),
    c.metric('idle.rss.max', `largest daemon RSS seen during the window (sampled every 5 s), ${N} leases`, 'MiB', [mib(maxRss.lockagent)], [mib(maxRss.sanlock)]),
    c.metric('idle.cpu', `daemon CPU time over ${SECONDS} s idle with ${N} leases held`, 'CPU s', [cpu('lockagent')], [cpu('sanlock')],
      { target: '≤ sanlock', pass: (a, b) => a.median <= b.median }),
    c.metric('idle.cpu.run', `same, as the threads' run time (ns-precise, /proc/PID/task/*/schedstat)`, 'CPU s', [run.lockagent], [run.sanlock],
      { target: '≤ sanlock', pass: (a, b) => a.median <= b.median }),
    c.metric('idle.cpu.pct', `daemon CPU use while idle with ${N} leases held`, '% of one CPU', [(100 * cpu('lockagent')) / window], [(100 * cpu('sanlock')) / window]),
    c.metric('idle.io.0', 'storage I/Os per renewal (every 2·io + 0.5 s in both tools), no lease held', 'I/Os', [io0.lockagent.iosPerRenewal], [io0.sanlock.iosPerRenewal]),
    c.metric(`idle.io.${N}`, `storage I/Os per renewal (every 2·io + 0.5 s in both tools), ${N} leases held`, 'I/Os', [ioN.lockagent.iosPerRenewal], [ioN.sanlock.iosPerRenewal],
      { target: 'independent of the lease count', pass: (a) => a.median === io0.lockagent.iosPerRenewal && ioN.lockagent.leaseFileIos === 0 }),
    c.metric(`idle.kib.${N}`, `storage bytes per renewal, ${N} leases held`, 'KiB', [ioN.lockagent.kibPerRenewal], [ioN.sanlock.kibPerRenewal]),
    c.metric('idle.rss.peak', `peak RSS (VmHWM) of the daemon, reached while acquiring the ${N} leases`, 'MiB', [mib(s1.lockagent.hwmKiB)], [mib(s1.sanlock.hwmKiB)],
      { target: 'lockagent ≤ 80 MiB', pass: (a) => a.median <= 80 }),
  ];
  return {
    params: { leases: N, seconds: SECONDS, ioTimeout: IO, straceWindowSeconds: TRACE_S },
    machine: c.machine(),
    metrics,
    extra: {
      renewalIo: { noLeases: io0, withLeases: ioN },
      rssBeforeLeasesMiB: { sanlock: mib(before.sanlock.rssKiB), lockagent: mib(before.lockagent.rssKiB) },
      vmHwmMiB: { sanlock: mib(s1.sanlock.hwmKiB), lockagent: mib(s1.lockagent.hwmKiB) },
      threads: { sanlock: s1.sanlock.threads, lockagent: s1.lockagent.threads },
      acquireAllSeconds: { sanlock: slHeld.seconds, lockagent: laSeconds },
      windowSeconds: window,
    },
    notes: [
      'sanlock daemon RSS is the main process only (its helper process is a few hundred KiB more)',
      'renewal I/O: both read the whole 1 MiB lockspace area and write their own delta sector once per 2·io',
    ],
  };
});
