#!/usr/bin/env node
'use strict';
/**
 * Benchmark 7: NFS-like storage latency. The lease files of both tools live on latencyfs
 * (native/bench/latencyfs.c): a FUSE passthrough of a directory under /tmp with direct_io on every
 * open and a fixed delay per read/write request (plus, in one profile, a per-request bandwidth
 * cap), multithreaded, so each I/O costs what an RPC to a filer would. Per profile, both tools
 * side by side (alternating, as throughput.js): acquire+release cycles/s with 1 and 8 clients,
 * the acquire latency p50/p99 and, with 1 client, the release latency p50. Once (the counts do not depend on the delay): the requests
 * and bytes per acquire and per release that reach the file system, counted by latencyfs per
 * file (lease file apart from the lockspace's renewals). From these, where time goes: round
 * trips (requests × delay) or bytes (bytes / cap).
 *
 *   node scripts/bench/nfs.js [--quick | --smoke] [--reps R] [--out FILE] [--keep]
 *
 * Profiles: local (no delay), 1 ms, 5 ms, 1 ms + 1 GbE cap (125 MB/s); --quick: local, 1 ms and
 * 1 ms + cap, fewer leases, one repetition; --smoke: 1 ms, 8 leases (CI: proves it still runs).
 */
const fs = require('fs');
const path = require('path');
const c = require('./lib/common');
const lfs = require('./lib/latencyfs');

const GBE = 125000000; // bytes/s of 1 Gbit/s

function pct(xs, p) {
  const a = xs.filter(Number.isFinite).sort((x, y) => x - y);
  return a.length ? a[Math.min(a.length - 1, Math.floor(p * a.length))] : undefined;
}

c.runMain('nfs', async (args) => {
  const smoke = args.rest.includes('--smoke');
  const all = [
    { id: 'local', label: 'no added delay', delayUs: 0, bw: 0 },
    { id: '1ms', label: '1 ms per I/O', delayUs: 1000, bw: 0 },
    { id: '5ms', label: '5 ms per I/O', delayUs: 5000, bw: 0 },
    { id: '1ms-1gbe', label: '1 ms per I/O + 1 GbE cap', delayUs: 1000, bw: GBE },
  ];
  const profiles = smoke ? all.filter((p) => p.id === '1ms') : args.quick ? all.filter((p) => p.id !== '5ms') : all;
  const N = smoke ? 8 : args.quick ? 48 : 200;
  const reps = args.reps ?? (smoke || args.quick ? 1 : 3);
  const clients = [1, 8];
  const BYTES_N = smoke ? 4 : 16; // leases acquired one by one for the byte count
  const W = c.workDir('nfs');
  const backing = path.join(W, 'backing');
  const mnt = path.join(W, 'mnt');
  c.log(`nfs: profiles ${profiles.map((p) => p.id).join(', ')}; ${N} leases per tool, ${reps} repetition(s), clients ${clients.join(' and ')}, work dir ${W}`);

  // lease areas written to the backing directory directly (fast), used through the mount
  fs.mkdirSync(backing, { recursive: true });
  const la = { ls: 'NFS_LA', name: 'la-lockspace', res: 'la-leases' };
  const sl = { ls: 'NFS_SL', name: 'sl-lockspace', res: 'sl-leases' };
  for (const t of [la, sl]) {
    c.initLockspace(path.join(backing, t.name), t.ls, 1);
    c.initResources(path.join(backing, t.res), t.ls, N);
    t.lsFile = path.join(mnt, t.name);
    t.resFile = path.join(mnt, t.res);
    // The same leases once more, one file each (as libvirt's automatic disk leases: one per disk).
    fs.mkdirSync(path.join(backing, `${t.res}.d`));
    c.initResourceFiles((i) => path.join(backing, `${t.res}.d`, `r${i}`), t.ls, N);
    t.resDir = path.join(mnt, `${t.res}.d`);
  }
  // mounted before the daemons start, so it is unmounted after they stop
  const fsys = await lfs.mount(W, backing, mnt, { delayUs: profiles[0].delayUs, bw: profiles[0].bw });
  c.log(`latencyfs mounted at ${mnt} (pid ${fsys.pid})`);

  const sanlock = await new c.SanlockDaemon(path.join(W, 'sanlock'), 'nfs-sl').start();
  const agent = new c.AgentDaemon(path.join(W, 'agent'), { lockspaces: [`${la.ls}:1:${la.lsFile}:0`] });
  await Promise.all([sanlock.py(['join', sl.ls, '1', sl.lsFile, '1']), agent.start()]);
  c.log(`both joined through latencyfs (sanlock pid ${sanlock.pid}, lockagent pid ${agent.pid})`);

  const runSanlock = async (procs, count) => {
    const r = await sanlock.py(['cycle', sl.ls, sl.resFile, '0', String(count), String(procs)]);
    return { seconds: r.seconds, acq: r.acquire_ms, rel: r.release_ms };
  };
  const laLease = (i) => ({ lockspace: la.ls, resource: c.resName(i), path: la.resFile, offset: i * c.MiB });
  const runAgent = (procs, count) => agent.pyCycles(procs, count, la.ls, la.resFile);
  // One lease file per lease. latencyfs (libfuse 3.14) cannot set FOPEN_PARALLEL_DIRECT_WRITES, so
  // the kernel holds a file's inode lock across each direct write: with one file for all leases,
  // every write of every client waits for the one before, whatever the tool. With a file each,
  // only a lease's own writes are in order, as on NFS (which takes that lock shared for O_DIRECT).
  const runSanlockFiles = async (procs, count) => {
    const r = await sanlock.py(['cycle', sl.ls, path.join(sl.resDir, 'r{i}'), '0', String(count), String(procs)]);
    return { seconds: r.seconds, acq: r.acquire_ms };
  };
  const runAgentFiles = (procs, count) => agent.pyCycles(procs, count, la.ls, path.join(la.resDir, 'r{i}'));

  // ---- requests and bytes per acquire / release (one client, one lease at a time) -------------
  // Leases 0..BYTES_N-1 have not been used yet: this is the first acquire of each on this host.
  const fileOf = (st, name) => st.files[name] || { reads: 0, readBytes: 0, writes: 0, writeBytes: 0 };
  const perOp = (st, name, n) => {
    const f = fileOf(st, name);
    return { requests: (f.reads + f.writes) / n, reads: f.reads / n, writes: f.writes / n, kib: (f.readBytes + f.writeBytes) / 1024 / n };
  };
  const countAgent = async () => {
    const owner = { uuid: 'nfs-count', name: 'nfs-count' };
    fsys.reset();
    for (let i = 0; i < BYTES_N; i++) await agent.call({ op: 'acquire', owner, leases: [laLease(i)] });
    const a = perOp(fsys.stats(), la.res, BYTES_N);
    fsys.reset();
    for (let i = 0; i < BYTES_N; i++) await agent.call({ op: 'release', owner, leases: [laLease(i)] });
    const r = perOp(fsys.stats(), la.res, BYTES_N);
    return { acquire: a, release: r };
  };
  const countSanlock = async () => {
    fsys.reset();
    const h = sanlock.pySpawn(['hold', sl.ls, sl.resFile, '0', String(BYTES_N)]);
    await h.first;
    const a = perOp(fsys.stats(), sl.res, BYTES_N);
    fsys.reset();
    await h.stop();
    const r = perOp(fsys.stats(), sl.res, BYTES_N);
    return { acquire: a, release: r };
  };
  const bytes = { lockagent: await countAgent(), sanlock: await countSanlock() };
  c.log(`per acquire (first use): lockagent ${bytes.lockagent.acquire.requests} requests / ${bytes.lockagent.acquire.kib} KiB, ` +
    `sanlock ${bytes.sanlock.acquire.requests} / ${bytes.sanlock.acquire.kib} KiB; per release: lockagent ${bytes.lockagent.release.requests} / ${bytes.lockagent.release.kib} KiB, ` +
    `sanlock ${bytes.sanlock.release.requests} / ${bytes.sanlock.release.kib} KiB`);
  // and once more, now that this host released them (lockagent skips a read then)
  const again = { lockagent: await countAgent(), sanlock: await countSanlock() };

  // ---- the profiles -----------------------------------------------------------------------------
  const res = {};
  for (const prof of profiles) {
    fsys.set({ delay_us: prof.delayUs, bw: prof.bw });
    await runAgent(1, Math.min(N, 8)); // warm-up at this delay
    await runSanlock(1, Math.min(N, 8));
    const r = (res[prof.id] = {});
    for (const p of clients) r[p] = { lockagent: [], sanlock: [], laAcq: [], slAcq: [], laRel: [], slRel: [] };
    for (let rep = 0; rep < reps; rep++) {
      for (const p of clients) {
        const order = (rep + p) % 2 ? ['sanlock', 'lockagent'] : ['lockagent', 'sanlock'];
        for (const tool of order) {
          const x = tool === 'sanlock' ? await runSanlock(p, N) : await runAgent(p, N);
          r[p][tool].push(N / x.seconds);
          r[p][tool === 'sanlock' ? 'slAcq' : 'laAcq'].push(...x.acq);
          r[p][tool === 'sanlock' ? 'slRel' : 'laRel'].push(...x.rel);
          c.log(`${prof.id.padEnd(8)} rep ${rep + 1}/${reps} ${String(p).padStart(2)} client(s) ${tool.padEnd(9)} ${(N / x.seconds).toFixed(1).padStart(7)} cycles/s ` +
            `(acquire p50 ${pct(x.acq, 0.5).toFixed(1)} ms, p99 ${pct(x.acq, 0.99).toFixed(1)} ms; release p50 ${pct(x.rel, 0.5).toFixed(1)} ms)`);
        }
      }
    }
    if (!prof.delayUs) continue;
    // 8 clients again, one lease file per lease (see runAgentFiles)
    await runAgentFiles(1, Math.min(N, 8));
    await runSanlockFiles(1, Math.min(N, 8));
    r.files = { lockagent: [], sanlock: [], laAcq: [], slAcq: [] };
    for (let rep = 0; rep < reps; rep++) {
      for (const tool of rep % 2 ? ['sanlock', 'lockagent'] : ['lockagent', 'sanlock']) {
        const x = tool === 'sanlock' ? await runSanlockFiles(8, N) : await runAgentFiles(8, N);
        r.files[tool].push(N / x.seconds);
        r.files[tool === 'sanlock' ? 'slAcq' : 'laAcq'].push(...x.acq);
        c.log(`${prof.id.padEnd(8)} rep ${rep + 1}/${reps}  8 client(s) ${tool.padEnd(9)} ${(N / x.seconds).toFixed(1).padStart(7)} cycles/s, one file per lease ` +
          `(acquire p50 ${pct(x.acq, 0.5).toFixed(1)} ms, p99 ${pct(x.acq, 0.99).toFixed(1)} ms)`);
      }
    }
  }

  // ---- metrics ----------------------------------------------------------------------------------
  const metrics = [];
  const one = (id, label, unit, laV, slV, o) => metrics.push(c.metric(id, label, unit, [laV], slV === undefined ? undefined : [slV], o));
  one('nfs.requests.acquire', 'requests per acquire reaching storage, first use of the lease (latencyfs count, lease file)', 'requests',
    bytes.lockagent.acquire.requests, bytes.sanlock.acquire.requests);
  one('nfs.requests.acquire.again', 'requests per acquire after this host released the lease', 'requests',
    again.lockagent.acquire.requests, again.sanlock.acquire.requests);
  one('nfs.requests.release', 'requests per release', 'requests', bytes.lockagent.release.requests, bytes.sanlock.release.requests);
  one('nfs.kib.acquire', 'bytes per acquire, first use (read+written)', 'KiB', bytes.lockagent.acquire.kib, bytes.sanlock.acquire.kib);
  one('nfs.kib.acquire.again', 'bytes per acquire after this host released the lease', 'KiB', again.lockagent.acquire.kib, again.sanlock.acquire.kib);
  one('nfs.kib.release', 'bytes per release', 'KiB', bytes.lockagent.release.kib, bytes.sanlock.release.kib);
  const local = res.local;
  for (const prof of profiles) {
    for (const p of clients) {
      const r = res[prof.id][p];
      const cl = `${p} client${p > 1 ? 's' : ''}`;
      metrics.push(c.metric(`nfs.${prof.id}.throughput.clients${p}`, `${prof.label}: acquire+release cycles/s, ${cl}`, 'cycles/s', r.lockagent, r.sanlock, { better: 'higher' }));
      one(`nfs.${prof.id}.acquire.p50.clients${p}`, `${prof.label}: acquire latency p50, ${cl}`, 'ms', pct(r.laAcq, 0.5), pct(r.slAcq, 0.5));
      one(`nfs.${prof.id}.acquire.p99.clients${p}`, `${prof.label}: acquire latency p99, ${cl}`, 'ms', pct(r.laAcq, 0.99), pct(r.slAcq, 0.99));
      if (p === 1) one(`nfs.${prof.id}.release.p50.clients1`, `${prof.label}: release latency p50, 1 client`, 'ms', pct(r.laRel, 0.5), pct(r.slRel, 0.5));
    }
    const f = res[prof.id].files;
    if (f) {
      metrics.push(c.metric(`nfs.${prof.id}.files.throughput.clients8`, `${prof.label}, one lease file per lease: acquire+release cycles/s, 8 clients`, 'cycles/s',
        f.lockagent, f.sanlock, { better: 'higher' }));
      one(`nfs.${prof.id}.files.acquire.p50.clients8`, `${prof.label}, one lease file per lease: acquire latency p50, 8 clients`, 'ms', pct(f.laAcq, 0.5), pct(f.slAcq, 0.5));
    }
    // Serial round trips an acquire waits for: the added p50 over the local p50, per delay.
    if (local && prof.delayUs && !prof.bw) {
      const d = prof.delayUs / 1000;
      one(`nfs.${prof.id}.roundtrips`, `${prof.label}: serial round trips per acquire ((p50 − local p50) / delay, 1 client)`, 'round trips',
        (pct(res[prof.id][1].laAcq, 0.5) - pct(local[1].laAcq, 0.5)) / d, (pct(res[prof.id][1].slAcq, 0.5) - pct(local[1].slAcq, 0.5)) / d);
      one(`nfs.${prof.id}.release.roundtrips`, `${prof.label}: serial round trips per release ((p50 − local p50) / delay, 1 client)`, 'round trips',
        (pct(res[prof.id][1].laRel, 0.5) - pct(local[1].laRel, 0.5)) / d, (pct(res[prof.id][1].slRel, 0.5) - pct(local[1].slRel, 0.5)) / d);
    }
  }
  const extra = { perOp: { firstUse: bytes, afterRelease: again }, fsTotals: fsys.stats() };
  return {
    params: { profiles, leases: N, reps, clients, ioTimeout: 1, bytesLeases: BYTES_N, smoke, layout: 'one lease file and one lockspace per tool on the same latencyfs mount (backing: ext4 under /tmp); lease i at i MiB; with a delay, 8 clients also with one lease file per lease' },
    machine: c.machine(),
    metrics,
    extra,
    notes: [
      'latencyfs: every read/write request sleeps delay (+ size / cap) in its own FUSE thread: concurrent requests overlap, as at a filer with that round-trip time; the cap is per request, not a shared link',
      'a 1 MiB O_DIRECT read is one FUSE request (max_pages 256), as one NFS READ with rsize=1M',
      'renewals of both lockspaces run on the same mount during the cycles and add their own requests',
      'cycles: both tools timed by the same Python harness (lib/cycles.py), one forked client process with one blocking connection per client',
      'libfuse 3.14 cannot set FOPEN_PARALLEL_DIRECT_WRITES: the kernel serialises direct writes to one file of latencyfs (measured at 1 ms: 8 concurrent writers 695 writes/s, one 677), which bounds every tool when all leases share one file; hence the one-file-per-lease rows',
    ],
  };
});
