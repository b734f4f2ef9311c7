#!/usr/bin/env node
'use strict';
/**
 * Benchmark 7: memory under sustained work. One client does acquire+release cycles over L
 * leases (default 100,000 cycles), with owners that come and go (a new owner every 100 cycles),
 * and the daemon's RSS is sampled every C cycles; then 30 s idle. The same for sanlock in the
 * same run (python3-sanlock, one registered process per chunk). The claim: RSS reaches a
 * plateau after the warm-up (the first 10% of the cycles) instead of growing with the work.
 *
 *   node scripts/bench/memplateau.js [--quick] [--cycles N] [--leases L] [--idle S] [--no-sanlock] [--out FILE] [--keep]
 *
 * --quick: 20,000 cycles. The CI smoke test runs it with tiny sizes and --no-sanlock.
 */
const path = require('path');
const c = require('./lib/common');

c.runMain('memplateau', async (args) => {
  const opt = (name, dflt) => {
    const i = args.rest.indexOf(name);
    return i >= 0 ? Number(args.rest[i + 1]) : dflt;
  };
  const CYCLES = opt('--cycles', args.quick ? 20000 : 100000);
  const L = opt('--leases', 200);
  const IDLE = opt('--idle', 30);
  const withSanlock = !args.rest.includes('--no-sanlock');
  const CHUNK = Math.max(1, Math.round(CYCLES / 20));
  const OWNER_EVERY = 100;
  const W = c.workDir('mem');
  c.log(`memplateau: ${CYCLES} cycles over ${L} leases, RSS every ${CHUNK} cycles, ${IDLE} s idle after, work dir ${W}`);

  const la = { ls: 'MEM_LA', lsFile: path.join(W, 'la-lockspace'), res: path.join(W, 'la-leases') };
  const sl = { ls: 'MEM_SL', lsFile: path.join(W, 'sl-lockspace'), res: path.join(W, 'sl-leases') };
  for (const t of withSanlock ? [la, sl] : [la]) {
    c.initLockspace(t.lsFile, t.ls, 1);
    c.initResources(t.res, t.ls, L);
  }
  const agent = new c.AgentDaemon(path.join(W, 'agent'), { lockspaces: [`${la.ls}:1:${la.lsFile}:0`] });
  const sanlock = withSanlock ? await new c.SanlockDaemon(path.join(W, 'sanlock'), 'mem-sl').start() : undefined;
  await Promise.all([sanlock?.py(['join', sl.ls, '1', sl.lsFile, '1']), agent.start()]);
  const mib = (k) => Math.round((k / 1024) * 10) / 10;

  /** RSS after each chunk of cycles, then every 5 s of idle. */
  const series = async (pid, chunk) => {
    const rss = [{ cycles: 0, rssMiB: mib(c.procSample(pid).rssKiB) }];
    const t0 = c.hr();
    for (let done = 0; done < CYCLES;) {
      const n = Math.min(CHUNK, CYCLES - done);
      await chunk(done, n);
      done += n;
      rss.push({ cycles: done, rssMiB: mib(c.procSample(pid).rssKiB) });
    }
    const seconds = (c.hr() - t0) / 1000;
    const idle = [];
    for (let s = 5; s <= IDLE; s += 5) {
      await c.sleep(5000);
      idle.push({ seconds: s, rssMiB: mib(c.procSample(pid).rssKiB) });
    }
    return { rss, idle, seconds, hwmMiB: mib(c.procSample(pid).hwmKiB) };
  };

  const conn = await agent.connect();
  const laRun = await series(agent.pid, async (start, n) => {
    for (let k = start; k < start + n; k++) {
      const owner = { uuid: `mem-owner-${Math.floor(k / OWNER_EVERY)}`, name: `mem-owner-${Math.floor(k / OWNER_EVERY)}` };
      const i = k % L;
      const lease = { lockspace: la.ls, resource: c.resName(i), path: la.res, offset: i * c.MiB };
      await conn.call({ op: 'acquire', owner, leases: [lease] });
      await conn.call({ op: 'release', owner, leases: [lease] });
    }
  });
  conn.close();
  c.log(`lockagent: ${CYCLES} cycles in ${laRun.seconds.toFixed(1)} s; RSS ${laRun.rss.map((r) => r.rssMiB).join(' ')} MiB; idle ${laRun.idle.map((r) => r.rssMiB).join(' ')}`);
  // sanlock: one registered process per chunk (its owners come and go too), leases cycled in order
  const slRun = sanlock ? await series(sanlock.pid, async (start, n) => {
    for (let done = 0; done < n;) {
      const m = Math.min(L, n - done);
      await sanlock.py(['cycle', sl.ls, sl.res, '0', String(m), '1']);
      done += m;
    }
  }) : undefined;
  if (slRun) c.log(`sanlock: ${CYCLES} cycles in ${slRun.seconds.toFixed(1)} s; RSS ${slRun.rss.map((r) => r.rssMiB).join(' ')} MiB`);

  /** Growth after warm-up: RSS at the end minus RSS after the first 10% of the cycles. */
  const growth = (r) => {
    const warm = r.rss.find((x) => x.cycles >= CYCLES / 10) ?? r.rss[1];
    return Math.round((r.rss[r.rss.length - 1].rssMiB - warm.rssMiB) * 10) / 10;
  };
  const sv = (r, f) => (r ? [f(r)] : undefined);
  const metrics = [
    c.metric('mem.rss.end', `daemon RSS after ${CYCLES} acquire+release cycles (owners come and go)`, 'MiB',
      [laRun.rss[laRun.rss.length - 1].rssMiB], sv(slRun, (r) => r.rss[r.rss.length - 1].rssMiB)),
    c.metric('mem.rss.growth', `RSS growth from 10% to 100% of ${CYCLES} cycles (plateau: ≈ 0)`, 'MiB',
      [growth(laRun)], sv(slRun, growth), { target: 'plateau: ≤ 5 MiB after warm-up', pass: (a) => a.median <= 5 }),
    c.metric('mem.rss.idle', `daemon RSS after ${IDLE} s idle following the cycles`, 'MiB',
      [laRun.idle.length ? laRun.idle[laRun.idle.length - 1].rssMiB : laRun.rss[laRun.rss.length - 1].rssMiB],
      sv(slRun, (r) => (r.idle.length ? r.idle[r.idle.length - 1].rssMiB : r.rss[r.rss.length - 1].rssMiB))),
    c.metric('mem.rss.peak', 'peak RSS (VmHWM) of the daemon over the run', 'MiB', [laRun.hwmMiB], sv(slRun, (r) => r.hwmMiB)),
  ];
  return {
    params: { cycles: CYCLES, leases: L, chunk: CHUNK, ownerEvery: OWNER_EVERY, idleSeconds: IDLE, ioTimeout: 1 },
    machine: c.machine(),
    metrics,
    extra: { lockagent: laRun, sanlock: slRun },
    notes: ['one client; a new owner every 100 cycles (lockagent) / a new registered process every chunk (sanlock)'],
  };
});
