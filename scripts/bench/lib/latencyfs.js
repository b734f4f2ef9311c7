'use strict';
/**
 * native/bench/latencyfs.c for the benchmarks: build it (into the benchmark's work directory),
 * mount a backing directory with it, read its counters, change its delay and bandwidth cap, and
 * unmount it (fusermount3 -u) when the benchmark ends, whichever way it ends.
 */
const fs = require('fs');
const path = require('path');
const { execFileSync, spawn } = require('child_process');
const c = require('./common');

const SRC = path.join(c.ROOT, 'native', 'bench', 'latencyfs.c');

function build(outDir) {
  let flags;
  try {
    flags = execFileSync('pkg-config', ['--cflags', '--libs', 'fuse3']).toString().trim().split(/\s+/);
  } catch {
    throw new Error('libfuse3 is not installed (pkg-config fuse3 failed): apt-get install libfuse3-dev fuse3 (scripts/setup.sh)');
  }
  const bin = path.join(outDir, 'latencyfs');
  execFileSync('cc', ['-std=gnu11', '-O2', '-Wall', '-o', bin, SRC, ...flags], { stdio: ['ignore', 'ignore', 'inherit'] });
  return bin;
}

function mounted(mnt) {
  try {
    return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mnt);
  } catch {
    return false;
  }
}

async function unmount(mnt) {
  for (let i = 0; i < 20 && mounted(mnt); i++) {
    const r = await c.run('fusermount3', ['-u', mnt]);
    if (r.code === 0) return;
    await c.sleep(250); // a daemon may still be closing its files
  }
  if (mounted(mnt)) await c.run('fusermount3', ['-uz', mnt]);
}

/**
 * Mounts `backing` at `mnt` through latencyfs (foreground, multithreaded) and resolves a handle.
 * The mount is tracked first by the caller's order: stop it after the daemons that use it.
 */
async function mount(workDir, backing, mnt, { delayUs = 0, bw = 0 } = {}) {
  if (!fs.existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: latencyfs needs FUSE');
  const bin = build(workDir);
  fs.mkdirSync(backing, { recursive: true });
  fs.mkdirSync(mnt, { recursive: true });
  const logFile = path.join(workDir, 'latencyfs.log');
  const out = fs.openSync(logFile, 'a');
  const p = spawn(bin, [backing, mnt, '-f', '-o', `delay_us=${delayUs},bw=${bw},allow_other`], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const ctl = path.join(mnt, '.latencyfs');
  const exited = new Promise((resolve) => p.once('exit', resolve));
  const handle = {
    pid: p.pid, mnt, ctl,
    stats() {
      const t = fs.readFileSync(ctl, 'utf8');
      const o = { files: {} };
      for (const l of t.split('\n')) {
        let m = /^file (\S+) reads (\d+) read_bytes (\d+) writes (\d+) write_bytes (\d+)$/.exec(l);
        if (m) o.files[m[1]] = { reads: Number(m[2]), readBytes: Number(m[3]), writes: Number(m[4]), writeBytes: Number(m[5]) };
        else if ((m = /^(\w+) (\d+)$/.exec(l))) o[m[1]] = Number(m[2]);
      }
      return o;
    },
    set(what) {
      for (const [k, v] of Object.entries(what)) fs.writeFileSync(ctl, `${k}=${v}\n`);
    },
    reset() {
      fs.writeFileSync(ctl, 'reset\n');
    },
    async stop() {
      c.untrack(entry);
      await unmount(mnt);
      if (c.pidAlive(p.pid) && p.exitCode === null) {
        p.kill('SIGTERM');
        await Promise.race([exited, c.sleep(3000)]);
      }
    },
  };
  const entry = c.track({ pid: p.pid, name: `latencyfs ${mnt}`, stop: () => handle.stop() });
  await c.waitFor(`latencyfs mounted at ${mnt}`, () => {
    if (p.exitCode !== null) throw new Error(`latencyfs exited (${p.exitCode}): ${fs.readFileSync(logFile, 'utf8').trim()}`);
    return mounted(mnt) && fs.existsSync(ctl);
  }, 10000, 50);
  return handle;
}

module.exports = { build, mount, unmount, mounted };
