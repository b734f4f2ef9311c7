'use strict';
/**
 * Which lockagent build the benchmarks run: $LOCKAGENT_DIST if set; else dist/ when it is newer
 * than every src/**\/*.ts; else a private build of the whole src/ under
 * node_modules/.cache/lockagent-bench/dist-<newest src mtime> (made once, reused while src/ is
 * unchanged). Private so that a concurrent `npm run build` cannot rewrite files under a running
 * benchmark, and so that a stale dist/ is never measured by mistake.
 *
 *   node scripts/bench/lib/build.js     prints the directory (the build's cli/main.js is in it)
 */
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..', '..', '..');

function newestTs(dir) {
  let newest = 0;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) newest = Math.max(newest, newestTs(p));
    else if (ent.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

function resolveBuild(log = (m) => process.stderr.write(`${m}\n`)) {
  if (process.env.LOCKAGENT_DIST) return path.resolve(process.env.LOCKAGENT_DIST);
  const native = path.join(ROOT, 'native', 'build', 'Release', 'lockagent_native.node');
  if (!fs.existsSync(native)) throw new Error(`the native addon is not built (${native}): run npm run build:native`);
  const src = newestTs(path.join(ROOT, 'src'));
  const distMain = path.join(ROOT, 'dist', 'cli', 'main.js');
  if (fs.existsSync(distMain) && fs.statSync(distMain).mtimeMs >= src) {
    // dist/cli/main.js is newer than every source file; check the rest of dist too
    let stale = false;
    const walk = (d) => {
      for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, ent.name);
        if (ent.isDirectory()) walk(p);
        else if (ent.name.endsWith('.ts')) {
          const js = path.join(ROOT, 'dist', path.relative(path.join(ROOT, 'src'), p)).replace(/\.ts$/, '.js');
          if (!fs.existsSync(js) || fs.statSync(js).mtimeMs < fs.statSync(p).mtimeMs) stale = true;
        }
      }
    };
    walk(path.join(ROOT, 'src'));
    if (!stale) return path.join(ROOT, 'dist');
  }
  const cache = path.join(ROOT, 'node_modules', '.cache', 'lockagent-bench');
  const out = path.join(cache, `dist-${Math.floor(src)}`);
  if (fs.existsSync(path.join(out, 'cli', 'main.js'))) return out;
  log(`bench: dist/ is missing or older than src/: building a private copy in ${path.relative(ROOT, out)} (~30 s)`);
  fs.mkdirSync(cache, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  const cfg = path.join(cache, `tsconfig-${process.pid}.json`);
  fs.writeFileSync(cfg, JSON.stringify({
    extends: path.join(ROOT, 'tsconfig.build.json'),
    include: [path.join(ROOT, 'src')],
    compilerOptions: {
      rootDir: path.join(ROOT, 'src'), outDir: tmp, sourceMap: false, incremental: false,
      // a half-edited file elsewhere must not stop the benchmark: emit anyway
      noEmitOnError: false, noUnusedLocals: false, noUnusedParameters: false,
    },
  }));
  try {
    execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', cfg], { stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (e) {
    if (!fs.existsSync(path.join(tmp, 'cli', 'main.js'))) throw e;
    log('bench: tsc reported type errors in src/ (emitted anyway)');
  } finally {
    fs.rmSync(cfg, { force: true });
  }
  fs.rmSync(out, { recursive: true, force: true });
  fs.renameSync(tmp, out);
  // keep the cache small: drop older private builds
  for (const d of fs.readdirSync(cache)) {
    if (/^dist-\d+$/.test(d) && path.join(cache, d) !== out) fs.rmSync(path.join(cache, d), { recursive: true, force: true });
  }
  return out;
}

/**
 * The native I/O addon the benchmarks load ($LOCKAGENT_NATIVE_ADDON): a private build of
 * native/ keyed by a hash of its sources (the compiled hook client, lockagent-hook, is built
 * beside it, as is the guard), under node_modules/.cache/lockagent-bench/native-<hash>.
 * The shared native/build/ is rebuilt by anyone's `npm run build` at any time, possibly from
 * other sources; a measurement must not change addon halfway or silently run an old one.
 */
function resolveNative(log = (m) => process.stderr.write(`${m}\n`)) {
  if (process.env.LOCKAGENT_NATIVE_ADDON) return path.resolve(process.env.LOCKAGENT_NATIVE_ADDON);
  const src = path.join(ROOT, 'native');
  const h = crypto.createHash('sha256');
  // every source directory binding.gyp builds from (src, hook, guard, ...): all but build/
  const dirs = fs.readdirSync(src, { withFileTypes: true }).filter((d) => d.isDirectory() && d.name !== 'build').map((d) => d.name).sort();
  const files = ['binding.gyp', ...dirs.flatMap((d) => fs.readdirSync(path.join(src, d)).sort().map((f) => path.join(d, f)))];
  for (const f of files) h.update(f).update(fs.readFileSync(path.join(src, f)));
  const cache = path.join(ROOT, 'node_modules', '.cache', 'lockagent-bench');
  const dir = path.join(cache, `native-${h.digest('hex').slice(0, 16)}`);
  const addon = path.join(dir, 'build', 'Release', 'lockagent_native.node');
  if (fs.existsSync(addon)) return addon;
  log(`bench: building a private copy of the native addon in ${path.relative(ROOT, dir)} (~20 s)`);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  fs.copyFileSync(path.join(src, 'binding.gyp'), path.join(tmp, 'binding.gyp'));
  for (const d of dirs) fs.cpSync(path.join(src, d), path.join(tmp, d), { recursive: true });
  const gyp = path.join(ROOT, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  // Debian's nodejs ships its headers in /usr/include/node (no download needed)
  const nodedir = fs.existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  try {
    execFileSync(process.execPath, [gyp, 'rebuild', ...nodedir], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    process.stderr.write(`${e.stdout || ''}${e.stderr || ''}`);
    throw new Error('building the native addon failed (see above)');
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  for (const d of fs.readdirSync(cache)) {
    if (/^native-[0-9a-f]+$/.test(d) && path.join(cache, d) !== dir) fs.rmSync(path.join(cache, d), { recursive: true, force: true });
  }
  return addon;
}

module.exports = { resolveBuild, resolveNative, ROOT };

if (require.main === module) {
  process.stdout.write(`${process.argv[2] === 'native' ? resolveNative() : resolveBuild()}\n`);
}
