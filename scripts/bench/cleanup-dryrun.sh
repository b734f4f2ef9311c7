#!/usr/bin/env bash
# Benchmark of the cleanup sweeper (docs/cleanup.md):
#
#   1. `lockagent cleanup --dry-run --standalone` over N lease files (default 10,000), no daemon;
#   2. `lockagent cleanup --dry-run` over the same directory through a running agent;
#   3. `virt-sanlock-cleanup` (Debian's, through a real sanlock daemon) over a subset of S files
#      (default 200) — it runs one `sanlock client command` per file, so the whole directory would
#      take long: its time is measured on the subset and extrapolated linearly to N (said so in
#      the output);
#   4. `lockagent cleanup` (a real sweep, deleting) over the same subset, for comparison.
#
# Lease files are created directly (no subprocess per file): the bytes sanlock's paxos init
# writes — leader sector and request sector — in a 1 MiB file whose remaining zeros are a hole
# (sparse). --dense writes all 1 MiB, as libvirt does. Every measurement is repeated R times
# (default 5) and the median printed (with min and max). Wall clock, process start included.
#
# usage: scripts/bench/cleanup-dryrun.sh [-n FILES] [-s SUBSET] [-r RUNS] [--dense] [--no-sanlock] [--keep]
# needs: a built lockagent (npm run build; else a private build is made), root for the sanlock part.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

N=10000; SUBSET=200; RUNS=5; DENSE=0; SANLOCK=1; KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -s) SUBSET=$2; shift 2 ;;
    -r) RUNS=$2; shift 2 ;;
    --dense) DENSE=1; shift ;;
    --no-sanlock) SANLOCK=0; shift ;;
    --keep) KEEP=1; shift ;;
    *) echo "usage: $0 [-n FILES] [-s SUBSET] [-r RUNS] [--dense] [--no-sanlock] [--keep]" >&2; exit 2 ;;
  esac
done
[ "$RUNS" -ge 1 ] || { echo "-r must be at least 1" >&2; exit 2; }

# ---- the lockagent build to run ---------------------------------------------------------------
if [ -n "${LOCKAGENT_CLI:-}" ]; then
  BUILD=$(cd "$(dirname "$LOCKAGENT_CLI")/.." && pwd)
elif [ -f dist/cli/main.js ] && [ -z "$(find src -name '*.ts' -newer dist/cli/main.js -print -quit)" ]; then
  BUILD=$ROOT/dist
else
  stamp=$(find src -name '*.ts' -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1)
  BUILD=$ROOT/node_modules/.cache/lockagent-bench/build-$stamp
  if [ ! -f "$BUILD/cli/main.js" ]; then
    echo "bench: dist/ is missing or older than src/: building a private copy in $BUILD" >&2
    mkdir -p "$(dirname "$BUILD")"
    cfg=$(dirname "$BUILD")/tsconfig-$$.json
    cat > "$cfg" <<EOF
{ "extends": "$ROOT/tsconfig.build.json",
  "compilerOptions": { "rootDir": "$ROOT/src", "outDir": "$BUILD.tmp", "sourceMap": false, "incremental": false },
  "files": ["$ROOT/src/cli/main.ts"], "include": [] }
EOF
    node node_modules/typescript/bin/tsc -p "$cfg"
    rm -f "$cfg"
    mv "$BUILD.tmp" "$BUILD"
  fi
fi
CLI=$BUILD/cli/main.js
[ -f native/build/Release/lockagent_native.node ] || { echo "bench: the native addon is not built: npm run build:native" >&2; exit 1; }

# ---- work area and teardown -------------------------------------------------------------------
W=$(mktemp -d /tmp/la-bench-XXXXXX)
PIDS=()
SANLOCK_RUN=$W/sanlock-run
cleanup() {
  if [ -S "$SANLOCK_RUN/sanlock.sock" ]; then SANLOCK_RUN_DIR=$SANLOCK_RUN sanlock client shutdown -f 1 >/dev/null 2>&1 || true; fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "$KEEP" = 0 ]; then rm -rf "$W"; else echo "bench: kept $W" >&2; fi
}
trap cleanup EXIT

LS=__LIBVIRT__DISKS__
now_ms() { date +%s%3N; }
# median/min/max of the numbers given (ms)
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d %d %d", m, a[1], a[NR]}'; }

# make_leases DIR COUNT PREFIX: COUNT never-used leases named md5(PREFIX<i>)
make_leases() {
  node - "$BUILD" "$1" "$2" "$3" "$DENSE" <<'EOF'
const [build, dir, count, prefix, dense] = process.argv.slice(2);
const fs = require('fs'); const path = require('path'); const crypto = require('crypto');
const od = require(path.join(build, 'ondisk'));
const g = od.DEFAULT_GEOMETRY;
const zeros = dense === '1' ? Buffer.alloc(g.alignSize) : undefined;
for (let i = 0; i < Number(count); i++) {
  const name = crypto.createHash('md5').update(`${prefix}${i}`).digest('hex');
  const head = Buffer.alloc(2 * g.sectorSize);
  od.sealLeaderInto(od.freshPaxosLeader({ spaceName: '__LIBVIRT__DISKS__', resourceName: name, geometry: g }), head, 0);
  od.encodeRequestInto(od.freshRequest(), head, g.sectorSize);
  const fd = fs.openSync(path.join(dir, name), 'w', 0o600);
  if (zeros) fs.writeSync(fd, zeros, 0, zeros.length, 0);
  fs.writeSync(fd, head, 0, head.length, 0);
  if (!zeros) fs.ftruncateSync(fd, g.alignSize);
  fs.closeSync(fd);
}
EOF
}

# init_lockspace DIR
init_lockspace() {
  truncate -s 1M "$1/$LS"
  node "$CLI" direct init -o 1 -s "$LS:0:$1/$LS:0" >/dev/null
}

# write_conf NAME DIR HOST_ID -> path of the config
write_conf() {
  local d=$W/agent-$1
  mkdir -p "$d"
  cat > "$d/lockagent.conf" <<EOF
auto_disk_leases = 1
disk_lease_dir = "$2"
host_id = $3
io_timeout = 1
socket_path = "$d/sock"
state_path = "$d/state.db"
log_file = "$d/agent.log"
log_stderr = 0
host_name = "bench-$1"
libvirt_uri = ""
cleanup_schedule = "off"
EOF
  echo "$d/lockagent.conf"
}

# start_agent CONF: runs `lockagent daemon` and waits until the lockspace is joined
start_agent() {
  node "$CLI" daemon -c "$1" >/dev/null 2>&1 &
  PIDS+=($!)
  local sock; sock=$(dirname "$1")/sock
  for _ in $(seq 1 100); do
    if node "$CLI" status --json --socket "$sock" 2>/dev/null | grep -q '"state": "joined"'; then return 0; fi
    sleep 0.2
  done
  echo "bench: agent with $1 did not join" >&2; exit 1
}

echo "lockagent build: ${BUILD#"$ROOT"/}"
echo "machine: $(nproc) CPU, $(uname -r), /tmp on $(df --output=fstype /tmp | tail -1); files: $([ $DENSE = 1 ] && echo 'dense 1 MiB' || echo 'sparse 1 MiB (init bytes only)')"
echo

# ---- 1 + 2: dry runs over N files --------------------------------------------------------------
BIG=$W/big; mkdir -p "$BIG"
init_lockspace "$BIG"
t0=$(now_ms); make_leases "$BIG" "$N" /var/lib/libvirt/images/vm-; t1=$(now_ms)
# Written back before measuring: an O_DIRECT read of a range still dirty in the page cache
# waits for its writeback, which a lease directory in use does not have (and which made the
# first dry run after the creation twice as slow as the next).
sync -f "$BIG/$LS"; t2=$(now_ms)
echo "created $N lease files in $((t1 - t0)) ms (written back in $((t2 - t1)) ms)"
CONF_BIG=$(write_conf big "$BIG" 1)

times=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(now_ms)
  node "$CLI" cleanup --dry-run --standalone --min-age 0 --json -c "$CONF_BIG" > "$W/dry.json"
  t1=$(now_ms); times+=($((t1 - t0)))
done
grep -q "\"summaryLine\": \"$((N + 1)) files (dry run): $N free" "$W/dry.json" || { echo "bench: unexpected dry-run result:" >&2; grep summaryLine "$W/dry.json" >&2; exit 1; }
read -r med lo hi <<< "$(stats "${times[@]}")"
printf '%-62s median %6d ms  (min %d, max %d; %.3f ms/file)\n' "lockagent cleanup --dry-run --standalone, $N files:" "$med" "$lo" "$hi" "$(echo "$med / $N" | bc -l)"
DRY_STANDALONE=$med

start_agent "$CONF_BIG"
times=()
for _ in $(seq 1 "$RUNS"); do
  t0=$(now_ms)
  node "$CLI" cleanup --dry-run --min-age 0 --json --socket "$W/agent-big/sock" > "$W/dry2.json"
  t1=$(now_ms); times+=($((t1 - t0)))
done
read -r med lo hi <<< "$(stats "${times[@]}")"
printf '%-62s median %6d ms  (min %d, max %d; %.3f ms/file)\n' "lockagent cleanup --dry-run (through the agent), $N files:" "$med" "$lo" "$hi" "$(echo "$med / $N" | bc -l)"

# ---- 3 + 4: deleting sweeps over a subset ------------------------------------------------------
SMALL=$W/small; mkdir -p "$SMALL"
init_lockspace "$SMALL"
CONF_SMALL=$(write_conf small "$SMALL" 1)
start_agent "$CONF_SMALL"

times=()
for _ in $(seq 1 "$RUNS"); do
  make_leases "$SMALL" "$SUBSET" /var/lib/libvirt/images/sub-
  t0=$(now_ms)
  node "$CLI" cleanup --min-age 0 --json --socket "$W/agent-small/sock" > "$W/sweep.json"
  t1=$(now_ms); times+=($((t1 - t0)))
  grep -q "\"deleted\": $SUBSET" "$W/sweep.json" || { echo "bench: lockagent did not delete all $SUBSET files" >&2; grep summaryLine "$W/sweep.json" >&2; exit 1; }
done
read -r med lo hi <<< "$(stats "${times[@]}")"
LA_SWEEP=$med
printf '%-62s median %6d ms  (min %d, max %d; %.2f ms/file)\n' "lockagent cleanup (deleting), $SUBSET files:" "$med" "$lo" "$hi" "$(echo "$med / $SUBSET" | bc -l)"

if [ "$SANLOCK" = 1 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v sanlock >/dev/null || [ ! -x /usr/sbin/virt-sanlock-cleanup ]; then
    echo "virt-sanlock-cleanup: skipped (needs root, sanlock and libvirt-sanlock)"
  else
    mkdir -p "$SANLOCK_RUN" "$W/augeas/etc/libvirt"
    echo "disk_lease_dir = \"$SMALL\"" > "$W/augeas/etc/libvirt/qemu-sanlock.conf"
    SANLOCK_RUN_DIR=$SANLOCK_RUN SANLOCK_PRIVILEGED=0 setsid sanlock daemon -D -w 0 -L -1 -S -1 -e bench-sanlock >"$W/sanlock.log" 2>&1 < /dev/null &
    PIDS+=($!)
    for _ in $(seq 1 50); do SANLOCK_RUN_DIR=$SANLOCK_RUN sanlock client status >/dev/null 2>&1 && break; sleep 0.1; done
    SANLOCK_RUN_DIR=$SANLOCK_RUN sanlock client add_lockspace -o 1 -s "$LS:2:$SMALL/$LS:0" >/dev/null
    times=()
    for _ in $(seq 1 "$RUNS"); do
      make_leases "$SMALL" "$SUBSET" /var/lib/libvirt/images/sub-
      rm -f "$SMALL/__lockagent_cleanup__"   # the script would delete it too; keep the count exact
      t0=$(now_ms)
      SANLOCK_RUN_DIR=$SANLOCK_RUN AUGEAS_ROOT=$W/augeas /usr/sbin/virt-sanlock-cleanup -q
      t1=$(now_ms); times+=($((t1 - t0)))
      left=$(find "$SMALL" -maxdepth 1 -type f ! -name "$LS" | wc -l)
      [ "$left" = 0 ] || { echo "bench: virt-sanlock-cleanup left $left files" >&2; exit 1; }
    done
    read -r med lo hi <<< "$(stats "${times[@]}")"
    printf '%-62s median %6d ms  (min %d, max %d; %.2f ms/file)\n' "virt-sanlock-cleanup (deleting), $SUBSET files:" "$med" "$lo" "$hi" "$(echo "$med / $SUBSET" | bc -l)"
    printf '%-62s ~%d s (extrapolated linearly from %d files, not measured)\n' "virt-sanlock-cleanup, $N files:" "$(echo "$med * $N / $SUBSET / 1000" | bc)" "$SUBSET"
    printf '%-62s ~%d s (extrapolated linearly from %d files, not measured)\n' "lockagent cleanup (deleting), $N files:" "$(echo "$LA_SWEEP * $N / $SUBSET / 1000" | bc)" "$SUBSET"
  fi
fi
echo
echo "runs per measurement: $RUNS (median shown); standalone dry run of $N files: $DRY_STANDALONE ms"
