#!/usr/bin/env bash
# Installs a build of lockagent (npm run build) in the layout of the packages:
#   PREFIX/lib/lockagent/         package.json, dist/ (the built JS), production node_modules,
#                                 native/build/Release/ (addons, hook client, lock-driver plugin, guard) and the
#                                 stable paths lockagent-guard and lockagent-hook beside them;
#                                 pkg-hooks.sh (the package scripts' steps)
#   PREFIX/bin/lockagent          wrapper: the system node >= 20 running lib/lockagent/dist/cli/main.js
#   SYSCONFDIR/lockagent.conf     the example config (packages mark it a conffile: never overwritten)
#   SYSCONFDIR/logrotate.d/lockagent
#   PREFIX/lib/systemd/system/    lockagent.service, lockagent-guard.service
#   PREFIX/share/doc/lockagent/   README, docs/*.md, the example config
#   PREFIX/share/man/man8/lockagent.8.gz
# SYSCONFDIR is /etc for PREFIX /usr, else PREFIX/etc. DESTDIR is prepended to every path (for
# packaging); the files refer to each other by their paths without it.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--version V] [--no-config]
#
# --version V writes V into the installed package.json (what `lockagent --version` says);
# default: package.json's, or $LOCKAGENT_VERSION. Needs node, and the production dependencies in
# node_modules (copied from there, pruned to what runs: no network).
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/usr
DESTDIR=
VERSION="${LOCKAGENT_VERSION:-}"
CONFIG=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --prefix=*) PREFIX="${1#*=}"; shift ;;
    --destdir) DESTDIR="$2"; shift 2 ;;
    --destdir=*) DESTDIR="${1#*=}"; shift ;;
    --version) VERSION="$2"; shift 2 ;;
    --version=*) VERSION="${1#*=}"; shift ;;
    --no-config) CONFIG=0; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PREFIX="${PREFIX%/}"
if [ "$PREFIX" = /usr ]; then SYSCONFDIR=/etc; else SYSCONFDIR="$PREFIX/etc"; fi
LIBDIR="$PREFIX/lib/lockagent"
R="$SRC/native/build/Release"

for f in dist/cli/main.js dist/libvirt/hook.js; do
  [ -f "$SRC/$f" ] || { echo "install.sh: $SRC/$f missing: run npm run build first" >&2; exit 1; }
done
for f in lockagent_native.node lockagent_virt.node lockagent.so lockagent-hook lockagent-guard; do
  [ -f "$R/$f" ] || { echo "install.sh: $R/$f missing: run npm run build:native first" >&2; exit 1; }
done
[ -d "$SRC/node_modules" ] || { echo "install.sh: $SRC/node_modules missing: run npm ci first" >&2; exit 1; }

L="$DESTDIR$LIBDIR"
rm -rf "$L"
install -d "$L" "$L/native/build/Release" "$DESTDIR$PREFIX/bin"

# package.json: what findPackageRoot() looks for, and the version; nothing for a build.
node -e '
  const [src, out, v] = process.argv.slice(1);
  const p = require(src);
  const keep = { name: p.name, version: v || p.version, description: p.description, license: p.license,
    private: true, bin: p.bin, engines: p.engines, dependencies: p.dependencies };
  require("fs").writeFileSync(out, JSON.stringify(keep, null, 2) + "\n");
' "$SRC/package.json" "$L/package.json" "$VERSION"

# The built JS, without type declarations and source maps.
(cd "$SRC" && find dist -type f -name '*.js') | while read -r f; do
  install -D -m 644 "$SRC/$f" "$L/$f"
done
chmod 755 "$L/dist/cli/main.js" "$L/dist/libvirt/hook.js"

# Native parts in the place the code looks for them (findPackageRoot()/native/build/Release);
# the units and the installed hook use the stable paths lib/lockagent/lockagent-{guard,hook}.
install -m 644 "$R/lockagent_native.node" "$R/lockagent_virt.node" "$R/lockagent.so" "$L/native/build/Release/"
install -m 755 "$R/lockagent-hook" "$R/lockagent-guard" "$L/native/build/Release/"
ln -sf native/build/Release/lockagent-guard "$L/lockagent-guard"
ln -sf native/build/Release/lockagent-hook "$L/lockagent-hook"
# The steps the package scripts share (hook, restart on upgrade, the lease check at removal).
install -m 755 "$SRC/packaging/pkg-hooks.sh" "$L/pkg-hooks.sh"

# Production dependencies: the packages package-lock.json does not mark dev, copied from
# node_modules, without build leftovers (better-sqlite3 needs only its .node and lib/).
node -e '
  const fs = require("fs"), path = require("path");
  const [src, out] = process.argv.slice(1);
  const lock = require(path.join(src, "package-lock.json"));
  for (const [k, v] of Object.entries(lock.packages)) {
    if (!k.startsWith("node_modules/") || v.dev || v.link) continue;
    const from = path.join(src, k);
    if (!fs.existsSync(from)) { if (v.optional) continue; throw new Error(`install.sh: ${from} missing: run npm ci`); }
    fs.cpSync(from, path.join(out, k), {
      recursive: true, dereference: true,
      // nested node_modules are entries of their own in the lock file
      filter: (s) => path.relative(from, s).split(path.sep).indexOf("node_modules") < 0,
    });
  }
' "$SRC" "$L"
B="$L/node_modules/better-sqlite3"
if [ -d "$B" ]; then
  [ -f "$B/build/Release/better_sqlite3.node" ] || { echo "install.sh: better-sqlite3 is not built" >&2; exit 1; }
  mv "$B/build/Release/better_sqlite3.node" "$L/better_sqlite3.node.tmp"
  rm -rf "$B/build" "$B/deps" "$B/src" "$B/binding.gyp"
  install -D -m 644 "$L/better_sqlite3.node.tmp" "$B/build/Release/better_sqlite3.node"
  rm -f "$L/better_sqlite3.node.tmp"
fi
# node-addon-api is only a build-time header library of native/; nothing requires it at run time.
rm -rf "$L/node_modules/node-addon-api" "$L/node_modules/.bin"
find "$L/node_modules" -type d -exec chmod 755 {} + ; find "$L/node_modules" -type f -exec chmod go+r,u+w {} +

# /usr/bin/lockagent: finds lib/lockagent beside its own bin/ directory (so a tree unpacked
# under another root works too), checks node.
install -m 755 /dev/stdin "$DESTDIR$PREFIX/bin/lockagent" <<'EOF'
#!/bin/sh
# lockagent: runs the agent's CLI with the system node (>= 20).
self=$(readlink -f "$0")
lib="${self%/bin/*}/lib/lockagent"
node="${LOCKAGENT_NODE:-}"
if [ -z "$node" ]; then
  node=$(command -v node || command -v nodejs || true)
fi
if [ -z "$node" ]; then
  echo "lockagent: node (Node.js >= 20) not found in PATH; install the nodejs package (>= 20)" >&2
  exit 127
fi
major=$("$node" -p 'process.versions.node.split(".")[0]' 2>/dev/null || true)
case "$major" in ''|*[!0-9]*) major=0 ;; esac
if [ "$major" -lt 20 ]; then
  echo "lockagent: $node is Node.js $("$node" --version 2>/dev/null || echo '(unknown)'); lockagent needs Node.js >= 20" >&2
  exit 127
fi
# The daemon's node flags and environment (src/daemon/nodeflags.ts), filled in at install time.
daemon_flags="@DAEMON_NODE_FLAGS@"
daemon_env="@DAEMON_ENV@"
if [ "${1:-}" = daemon ]; then
  # shellcheck disable=SC2086 # the flags and NAME=value settings are words
  exec env $daemon_env "$node" $daemon_flags "$lib/dist/cli/main.js" "$@"
fi
exec "$node" "$lib/dist/cli/main.js" "$@"
EOF
flags=$(node -p "require('$L/dist/daemon/nodeflags.js').DAEMON_NODE_FLAGS.join(' ')")
denv=$(node -p "Object.entries(require('$L/dist/daemon/nodeflags.js').DAEMON_ENV).map(([k, v]) => k + '=' + v).join(' ')")
sed -i -e "s#@DAEMON_NODE_FLAGS@#$flags#" -e "s#@DAEMON_ENV@#$denv#" "$DESTDIR$PREFIX/bin/lockagent"

# systemd units, config, logrotate, docs, man page.
install -d "$DESTDIR$PREFIX/lib/systemd/system"
install -m 644 "$SRC/conf/lockagent.service" "$SRC/conf/lockagent-guard.service" "$DESTDIR$PREFIX/lib/systemd/system/"
if [ "$PREFIX" != /usr ]; then
  sed -i "s#/usr/bin/lockagent#$PREFIX/bin/lockagent#; s#/usr/lib/lockagent/#$LIBDIR/#; s#/etc/lockagent.conf#$SYSCONFDIR/lockagent.conf#; s#/usr/share/doc/lockagent#$PREFIX/share/doc/lockagent#" \
    "$DESTDIR$PREFIX/lib/systemd/system/"*.service
fi
if [ "$CONFIG" = 1 ]; then
  install -D -m 644 "$SRC/conf/lockagent.conf" "$DESTDIR$SYSCONFDIR/lockagent.conf"
fi
install -D -m 644 "$SRC/conf/lockagent.logrotate" "$DESTDIR$SYSCONFDIR/logrotate.d/lockagent"
D="$DESTDIR$PREFIX/share/doc/lockagent"
install -d "$D"
install -m 644 "$SRC/README.md" "$SRC"/docs/*.md "$D/"
install -m 644 "$SRC/conf/lockagent.conf" "$D/lockagent.conf.example"
install -d "$DESTDIR$PREFIX/share/man/man8"
node "$SRC/scripts/manpage.js" "$L/dist/cli/main.js" "$SRC/docs/cli.md" "$(node -p "require('$L/package.json').version")" \
  | gzip -9n > "$DESTDIR$PREFIX/share/man/man8/lockagent.8.gz"
echo "install.sh: installed lockagent $(node -p "require('$L/package.json').version") into ${DESTDIR}${PREFIX}" >&2
