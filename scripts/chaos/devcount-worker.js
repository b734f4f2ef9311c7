#!/usr/bin/env node
/*
 * Lease holders with an overlap oracle, after sanlock's tests/devcount.c. Used by the
 * multi-host jest test (test/multihost/devcount.test.ts) and the chaos run (multihost.sh).
 *
 * While a holder holds resource RES it owns RES's "count file": it reads the record there
 * (writer, count), writes its own (me, count + 1), sleeps, and reads it again. Anything but its
 * own record means another holder wrote while this one held the lease: an overlap. Every hold
 * is also logged as an interval (monotonic clock, the one every process on this machine shares)
 * so the harness can check afterwards that no two holds of one resource intersect.
 *
 *   node devcount-worker.js lanes CONFIG.json
 *       One driver process per host: a "lane" per resource, each an async loop of
 *       acquire / hold+check / release through the lockagent daemon's control socket (lane mode
 *       "loop"), or acquire once and hold until killed, checking every 100 ms ("hold").
 *       With config.sanlock, lanes use `sanlock client command -r RES -c node THIS hold-once ...`
 *       instead: sanlock acquires, runs the holder, and releases when it exits.
 *       SIGTERM: finish the current holds, release, write a summary line, exit 0.
 *   node devcount-worker.js hold-once COUNTFILE LABEL HOLD_MS LOGFILE RES
 *       One hold (run by sanlock client command while sanlock holds RES). Exit 3 on overlap.
 *
 * Log lines (JSON, one per line, appended): {t, ev, host, res, ...} with ev one of
 *   acq (hold starts; t after the acquire returned), rel (hold ends; t before the release is
 *   sent), overlap, err, busy (counted, written with stats), stats, summary.
 */
'use strict';
/* eslint-disable @typescript-eslint/no-require-imports */
/* global require, process, Buffer, setTimeout, clearTimeout, setInterval, clearInterval, console, __filename */
const fs = require('fs');
const net = require('net');
const { spawn } = require('child_process');

const now = () => Number(process.hrtime.bigint()) / 1e9;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rand = ([a, b]) => a + Math.floor(Math.random() * (b - a + 1));

const REC = 64;

function readCount(fd) {
  const b = Buffer.alloc(REC);
  fs.readSync(fd, b, 0, REC, 0);
  const s = b.toString('latin1').replace(/\0/g, '').trim();
  const m = /^(\S+) (\d+)$/.exec(s);
  return m ? { who: m[1], count: Number(m[2]), raw: s } : { who: '', count: 0, raw: s };
}

function writeCount(fd, who, count) {
  const b = Buffer.alloc(REC, 0x20);
  b.write(`${who} ${count}`, 0, 'latin1');
  b[REC - 1] = 0x0a;
  fs.writeSync(fd, b, 0, REC, 0);
  fs.fdatasyncSync(fd);
}

function openCount(file) {
  try {
    return fs.openSync(file, 'r+');
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
    fs.writeFileSync(file, Buffer.alloc(REC, 0x20), { flag: 'a' });
    return fs.openSync(file, 'r+');
  }
}

class Log {
  constructor(file, host) {
    this.fd = fs.openSync(file, 'a');
    this.host = host;
  }
  write(ev, fields) {
    fs.writeSync(this.fd, `${JSON.stringify({ t: Number(now().toFixed(4)), ev, host: this.host, ...fields })}\n`);
  }
}

/** One request on the lockagent control socket (protocol v1: a JSON line each way). */
function call(socket, req, timeoutMs) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socket);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(Object.assign(new Error('no answer'), { rv: -110 })); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(`${JSON.stringify({ v: 1, id: 1, ...req })}\n`));
    sock.on('data', (c) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      let r;
      try { r = JSON.parse(buf.slice(0, nl)); } catch { return reject(Object.assign(new Error('bad reply'), { rv: -201 })); }
      if (r.ok) resolve(r.result);
      else reject(Object.assign(new Error(r.error.message), { rv: r.error.rv }));
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(Object.assign(e, { rv: -111 })); });
    sock.on('close', () => { clearTimeout(timer); if (!buf.includes('\n')) reject(Object.assign(new Error('closed'), { rv: -201 })); });
  });
}

/** Refusals that mean "someone else holds it": normal contention, not errors. */
const BUSY = new Set([-243, -244, -245, -246, -247, -11, -212, -213]);

async function lanes(cfgFile) {
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  const log = new Log(cfg.log, cfg.host);
  const holdMs = cfg.holdMs || [50, 200];
  const pauseMs = cfg.pauseMs || [0, 200];
  const stats = { acq: 0, busy: 0, err: 0, overlap: 0, rel: 0 };
  // termDelayMs: on SIGTERM keep holding (and checking) that long before releasing, like a
  // guest that takes a while to shut down; longHold: {pct, ms: [min, max]} makes some holds long
  const termDelayMs = cfg.termDelayMs || 0;
  const longHold = cfg.longHold || { pct: 0, ms: [0, 0] };
  let stopping = false;
  let stopAt = 0;
  const onStop = () => {
    if (!stopping) stopAt = now() + termDelayMs / 1000;
    stopping = true;
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  /** hold for ms, checking every 100 ms; stop early on SIGTERM (after termDelayMs) */
  const holdFor = async (ms, fd, lane, mine) => {
    const until = now() + ms / 1000;
    let clean = true; // one overlap line per hold
    while (now() < until) {
      if (stopping && now() >= stopAt) break;
      await sleep(Math.min(100, Math.max(1, (until - now()) * 1000)));
      if (clean) clean = check(fd, lane, mine);
    }
    if (stopping) {
      while (now() < stopAt) {
        await sleep(100);
        if (clean) clean = check(fd, lane, mine);
      }
    }
  };
  log.write('start', { pid: process.pid, lanes: cfg.lanes.map((l) => `${l.res}:${l.mode}`) });

  const check = (fd, lane, mine) => {
    const after = readCount(fd);
    if (after.who !== cfg.label || after.count !== mine) {
      stats.overlap++;
      log.write('overlap', { res: lane.res, wrote: `${cfg.label} ${mine}`, found: after.raw });
      return false;
    }
    return true;
  };

  const lockagentLane = async (lane) => {
    // one owner per host and resource, the same for every incarnation of the driver: a restarted
    // driver takes over (and releases) what the daemon still holds for its predecessor
    const owner = { uuid: `h${cfg.host}-${lane.res}`, name: `${cfg.label}-${lane.res}`, pid: process.pid };
    const fd = openCount(lane.countFile);
    while (!stopping) {
      try {
        await call(cfg.socket, { op: 'acquire', owner, leases: [lane.spec] }, cfg.acquireTimeoutMs || 600000);
      } catch (e) {
        if (BUSY.has(e.rv)) stats.busy++;
        else { stats.err++; log.write('err', { res: lane.res, op: 'acquire', rv: e.rv, msg: String(e.message).slice(0, 300) }); await sleep(500); }
        await sleep(rand(pauseMs));
        continue;
      }
      const t0 = now();
      const before = readCount(fd);
      const mine = before.count + 1;
      writeCount(fd, cfg.label, mine);
      stats.acq++;
      log.write('acq', { res: lane.res, t0, count: mine, prev: before.who });
      if (lane.mode === 'hold') {
        // hold until killed (or SIGTERM), checking all the time
        await holdFor(Infinity, fd, lane, mine);
      } else {
        const long = longHold.pct > 0 && Math.random() * 100 < longHold.pct;
        await holdFor(long ? rand(longHold.ms) : rand(holdMs), fd, lane, mine);
      }
      log.write('rel', { res: lane.res });
      try {
        await call(cfg.socket, { op: 'release', owner }, 120000);
        stats.rel++;
      } catch (e) {
        stats.err++;
        log.write('err', { res: lane.res, op: 'release', rv: e.rv, msg: String(e.message).slice(0, 300) });
      }
      await sleep(rand(pauseMs));
    }
    fs.closeSync(fd);
  };

  const sanlockLane = async (lane) => {
    const s = lane.spec;
    const esc = (p) => p.replace(/([\\: ])/g, '\\$1');
    const res = `${s.lockspace}:${s.resource}:${esc(s.path)}:${s.offset}`;
    while (!stopping) {
      const hold = rand(holdMs);
      const r = await new Promise((resolve) => {
        const p = spawn(cfg.sanlock.bin || 'sanlock', ['client', 'command', '-r', res, '-c', process.execPath, __filename,
          'hold-once', lane.countFile, cfg.label, String(hold), cfg.log, lane.res, String(cfg.host)], {
          env: { ...process.env, SANLOCK_RUN_DIR: cfg.sanlock.runDir }, stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        p.stdout.on('data', (b) => { out += b; });
        p.stderr.on('data', (b) => { out += b; });
        p.on('close', (code) => resolve({ code, out }));
      });
      const m = /acquire done (-?\d+)/.exec(r.out);
      if (r.code === 0) { stats.acq++; stats.rel++; } else if (r.code === 3) { stats.acq++; stats.overlap++; } else if (m && BUSY.has(Number(m[1]))) stats.busy++;
      else { stats.err++; log.write('err', { res: lane.res, op: 'command', rv: m ? Number(m[1]) : r.code, msg: r.out.trim().slice(-300) }); await sleep(500); }
      await sleep(rand(pauseMs));
    }
  };

  const statsTimer = setInterval(() => log.write('stats', { ...stats }), 10000);
  await Promise.all(cfg.lanes.map((l) => (cfg.sanlock ? sanlockLane(l) : lockagentLane(l))));
  clearInterval(statsTimer);
  log.write('summary', { ...stats });
  process.exit(0);
}

async function holdOnce(countFile, label, holdMs, logFile, res, host) {
  const log = new Log(logFile, Number(host));
  const fd = openCount(countFile);
  const t0 = now();
  const before = readCount(fd);
  const mine = before.count + 1;
  writeCount(fd, label, mine);
  log.write('acq', { res, t0, count: mine, prev: before.who, pid: process.pid });
  await sleep(Number(holdMs));
  const after = readCount(fd);
  let rc = 0;
  if (after.who !== label || after.count !== mine) {
    log.write('overlap', { res, wrote: `${label} ${mine}`, found: after.raw });
    rc = 3;
  }
  log.write('rel', { res, pid: process.pid });
  process.exit(rc);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'lanes') lanes(args[0]).catch((e) => { console.error(e); process.exit(1); });
else if (mode === 'hold-once') holdOnce(...args).catch((e) => { console.error(e); process.exit(1); });
else {
  console.error('usage: devcount-worker.js lanes CONFIG.json | hold-once COUNTFILE LABEL HOLD_MS LOGFILE RES HOST');
  process.exit(2);
}
