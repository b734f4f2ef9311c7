#!/usr/bin/env node
'use strict';
/**
 * Benchmark 1: acquire/release throughput. N resource leases (1 MiB areas, one file per tool),
 * one host, io_timeout 1, uncontended. Both daemons are driven by the same Python harness
 * (lib/cycles.py): P forked client processes, each with one blocking connection, acquire +
 * release of each lease, one lease at a time, timed alike:
 *   sanlock:   python3-sanlock (libsanlock): register once per client process, then
 *              sanlock.acquire + sanlock.release (lib/sanlock_driver.py);
 *   lockagent: the control socket's JSON lines, one owner per client (lib/agent_driver.py).
 * Run with 1 client and with 8, alternating the tools, R repetitions. With 1 client lockagent is
 * also run through its node client (AgentConnection, one persistent connection, in the
 * benchmark's own process) as an extra row: its event loop adds to each call's time. And with 1
 * client, releases after a hold (8 leases acquired, held 0.3 s, released one by one), as a
 * domain's stop makes them long after its start.
 *
 *   node scripts/bench/throughput.js [--quick | --smoke] [--reps R] [--out FILE] [--keep]
 */
const path = require('path');
const c = require('./lib/common');

// Release after a hold: leases per repetition (8 held at a time) and the hold.
const HELD_PER_REP = 48;
const HOLD_SECONDS = 0.3;

c.runMain('throughput', async (args) => {
  const smoke = args.rest.includes('--smoke'); // CI: proves it still runs, measures nothing
  const N = smoke ? 16 : args.quick ? 200 : 1000;
  const reps = args.reps ?? (smoke ? 1 : args.quick ? 3 : 5);
  const HELD = smoke ? 8 : HELD_PER_REP;
  const HOLD_S = smoke ? 0.05 : HOLD_SECONDS;
  const clients = [1, 8];
  const W = c.workDir('tput');
  c.log(`throughput: ${N} leases per tool, ${reps} repetitions, clients ${clients.join(' and ')}, work dir ${W}`);

  const la = { ls: 'BENCH_LA', lsFile: path.join(W, 'la-lockspace'), res: path.join(W, 'la-leases') };
  const sl = { ls: 'BENCH_SL', lsFile: path.join(W, 'sl-lockspace'), res: path.join(W, 'sl-leases') };
  for (const t of [la, sl]) {
    c.initLockspace(t.lsFile, t.ls, 1);
    c.initResources(t.res, t.ls, N);
  }
  c.log('lease areas written');

  const sanlock = await new c.SanlockDaemon(path.join(W, 'sanlock'), 'bench-sl').start();
  const agent = new c.AgentDaemon(path.join(W, 'agent'), { lockspaces: [`${la.ls}:1:${la.lsFile}:0`] });
  await Promise.all([sanlock.py(['join', sl.ls, '1', sl.lsFile, '1']), agent.start()]);
  c.log(`both joined (sanlock pid ${sanlock.pid}, lockagent pid ${agent.pid})`);

  const runSanlock = async (procs, start, count, hold = 0) => {
    const p0 = c.procSample(sanlock.pid);
    const r = await sanlock.py(['cycle', sl.ls, sl.res, String(start), String(count), String(procs), ...(hold ? [`hold=${hold}`] : [])]);
    const p1 = c.procSample(sanlock.pid);
    return { seconds: r.seconds, acq: r.acquire_ms, rel: r.release_ms, cpuMs: ((p1.cpu - p0.cpu) * 1000) / count };
  };
  const runAgent = async (procs, start, count, hold = 0) => {
    const p0 = c.procSample(agent.pid);
    const r = await agent.pyCycles(procs, count, la.ls, la.res, { start, hold });
    const p1 = c.procSample(agent.pid);
    return { ...r, cpuMs: ((p1.cpu - p0.cpu) * 1000) / count };
  };
  const runAgentNodeClient = (count) => agent.cycles(1, count, (i) => ({ lockspace: la.ls, resource: c.resName(i), path: la.res, offset: i * c.MiB }));

  // warm-up: first opens, JIT, page tables
  await runAgent(1, 0, Math.min(20, N));
  await runAgentNodeClient(Math.min(20, N));
  await runSanlock(1, 0, Math.min(20, N));

  const res = {};
  for (const p of clients) res[p] = { lockagent: [], sanlock: [], laAcq: [], laRel: [], slAcq: [], slRel: [], laCpu: [], slCpu: [] };
  const nodeClient = { rate: [], acq: [], rel: [] };
  const afterHold = { lockagent: [], sanlock: [] };
  for (let rep = 0; rep < reps; rep++) {
    for (const p of clients) {
      const order = (rep + p) % 2 ? ['sanlock', 'lockagent'] : ['lockagent', 'sanlock'];
      for (const tool of order) {
        const r = tool === 'sanlock' ? await runSanlock(p, 0, N) : await runAgent(p, 0, N);
        const rate = N / r.seconds;
        res[p][tool].push(rate);
        res[p][tool === 'sanlock' ? 'slAcq' : 'laAcq'].push(...r.acq);
        res[p][tool === 'sanlock' ? 'slRel' : 'laRel'].push(...r.rel);
        res[p][tool === 'sanlock' ? 'slCpu' : 'laCpu'].push(r.cpuMs);
        c.log(`rep ${rep + 1}/${reps} ${String(p).padStart(2)} client(s) ${tool.padEnd(9)} ${rate.toFixed(1).padStart(7)} cycles/s ` +
          `(acquire median ${c.stats(r.acq).median.toFixed(2)} ms, release ${c.stats(r.rel).median.toFixed(2)} ms; daemon CPU ${r.cpuMs.toFixed(2)} ms/cycle)`);
      }
    }
    // Releases as a domain's stop makes them: long after the acquire.
    for (const tool of rep % 2 ? ['sanlock', 'lockagent'] : ['lockagent', 'sanlock']) {
      const h = tool === 'sanlock' ? await runSanlock(1, 0, HELD, HOLD_S) : await runAgent(1, 0, HELD, HOLD_S);
      afterHold[tool].push(...h.rel);
      c.log(`rep ${rep + 1}/${reps}  1 client(s) ${tool.padEnd(9)} release after a ${HOLD_S} s hold: median ${c.stats(h.rel).median.toFixed(2)} ms`);
    }
    const r = await runAgentNodeClient(N);
    nodeClient.rate.push(N / r.seconds);
    nodeClient.acq.push(...r.acq);
    nodeClient.rel.push(...r.rel);
    c.log(`rep ${rep + 1}/${reps}  1 client(s) lockagent through its node client ${(N / r.seconds).toFixed(1).padStart(7)} cycles/s ` +
      `(acquire median ${c.stats(r.acq).median.toFixed(2)} ms, release ${c.stats(r.rel).median.toFixed(2)} ms)`);
  }

  const metrics = [];
  for (const p of clients) {
    const r = res[p];
    metrics.push(c.metric(`throughput.clients${p}`, `acquire+release cycles/s, ${N} leases, ${p} client${p > 1 ? 's' : ''}`, 'cycles/s',
      r.lockagent, r.sanlock, { better: 'higher', target: p === 1 ? '≥ 1.5× sanlock' : undefined, pass: p === 1 ? (a, s, ratio) => ratio >= 1.5 : undefined }));
    metrics.push(c.metric(`cpu.clients${p}`, `daemon CPU time (user+sys, all threads) per cycle, ${p} client${p > 1 ? 's' : ''}`, 'ms', r.laCpu, r.slCpu));
    metrics.push(c.metric(`latency.acquire.clients${p}`, `acquire latency, ${p} client${p > 1 ? 's' : ''} (all ops of all reps)`, 'ms', r.laAcq, r.slAcq, { summaryOnly: true }));
    metrics.push(c.metric(`latency.release.clients${p}`, `release latency, ${p} client${p > 1 ? 's' : ''} (all ops of all reps)`, 'ms', r.laRel, r.slRel, { summaryOnly: true }));
  }
  metrics.push(c.metric('latency.release.afterhold.clients1', `release latency after a ${HOLD_S} s hold, 1 client (${HELD} leases per rep, 8 held at a time)`, 'ms',
    afterHold.lockagent, afterHold.sanlock, { summaryOnly: true }));
  metrics.push(c.metric('latency.release.clients1.nodeclient', 'release latency, 1 client; lockagent through its node client (AgentConnection), sanlock as above', 'ms',
    nodeClient.rel, res[1].slRel, { summaryOnly: true }));
  metrics.push(c.metric('throughput.clients1.nodeclient', `acquire+release cycles/s, ${N} leases, 1 client; lockagent through its node client, sanlock as above`, 'cycles/s',
    nodeClient.rate, res[1].sanlock, { better: 'higher' }));
  // per-op latency lists are long: keep only their statistics
  for (const m of metrics) if (m.id.startsWith('latency.')) { delete m.lockagent.runs; delete m.sanlock.runs; }

  const laProc = c.procSample(agent.pid);
  const slProc = c.procSample(sanlock.pid);
  return {
    params: { leases: N, reps, clients, ioTimeout: 1, layout: 'one file per tool, lease i at i MiB, dense 1 MiB areas, 512 B sectors, 2000 host slots' },
    machine: c.machine(),
    metrics,
    extra: { lockagentCpuSeconds: laProc.cpu, sanlockCpuSeconds: slProc.cpu, lockagentRssKiB: laProc.rssKiB, sanlockRssKiB: slProc.rssKiB },
    notes: [
      'one cycle = acquire + release of one lease (2 operations)',
      'both tools timed by the same Python harness (lib/cycles.py) in forked client processes, each with one blocking connection: sanlock through python3-sanlock (C library, registered once), lockagent through its control socket (lib/agent_driver.py)',
      'the .nodeclient rows: lockagent through AgentConnection (node, one persistent unix connection) in the benchmark process',
    ],
  };
});
