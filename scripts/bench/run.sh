#!/usr/bin/env bash
# Benchmarks of lockagent side by side with the real sanlock 3.8.5 (docs/benchmarks.md).
#
#   scripts/bench/run.sh [--quick] [--keep] [name...]
#
# names (default: all but memplateau, in this order):
#   throughput   acquire+release cycles/s over 1,000 leases, 1 and 8 clients      (throughput.js)
#   ios          storage I/Os (= round trips) per acquire and per release          (ios.js)
#   failover     join time; failover after kill -9, io_timeout 1 and 2            (failover.js)
#   virsh        virsh start: no locking / libvirt-sanlock / lockagent hook       (virsh-start.js)
#   idle         RSS, CPU and renewal I/O with 1,000 leases held                   (idle.js)
#   cleanup      scripts/bench/cleanup-dryrun.sh (the cleanup engineer's)         (cleanup.js)
#   nfs          throughput, acquire p50/p99, requests and bytes per acquire on a   (nfs.js)
#                FUSE mount adding 0, 1 or 5 ms per I/O (native/bench/latencyfs.c)
#   scale        1/8/64 clients; 10,000 leases; 2,000 live hosts; cleanup dry run (scale.js)
#                over 100,000 files; domain_prepare with 64 disks
#   memplateau   RSS over 100,000 acquire+release cycles, owners coming and going  (memplateau.js)
#
# Each benchmark runs both tools in the same run, alternating, and prints progress on stderr.
# Results: scripts/bench/results/latest.json (a benchmark not run keeps its previous entry) and
# the table on stdout. --quick: fewer repetitions and smaller sizes (about 8-10 minutes in all);
# the full run takes about 25 minutes.
#
# Needs root (sanlock daemons, strace, libvirtd in a private mount namespace), the packages of
# scripts/setup.sh (sanlock, python3-sanlock, libvirt, QEMU, tini, strace) and the native addon
# (npm run build:native). The TypeScript is taken from dist/ if it is up to date with src/, else
# compiled privately, and the native addon is always built privately from native/ (both by
# scripts/bench/lib/build.js, cached); LOCKAGENT_DIST=<dir> / LOCKAGENT_NATIVE_ADDON=<file> override.
set -euo pipefail
cd "$(dirname "$0")/../.."

QUICK=()
KEEP=()
NAMES=()
for a in "$@"; do
  case "$a" in
    --quick) QUICK=(--quick) ;;
    --keep) KEEP=(--keep) ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    throughput|ios|failover|virsh|idle|cleanup|nfs|scale|memplateau) NAMES+=("$a") ;;
    *) echo "run.sh: unknown argument $a (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#NAMES[@]} -gt 0 ] || NAMES=(throughput ios failover virsh idle cleanup nfs scale)

die() { echo "run.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (sanlock daemons, strace -p, libvirtd)"
command -v sanlock >/dev/null || die "sanlock is not installed: scripts/setup.sh"
command -v strace >/dev/null || die "strace is not installed: scripts/setup.sh"
/usr/bin/python3 -c 'import sanlock' 2>/dev/null || die "python3-sanlock is not installed: apt-get install python3-sanlock (scripts/setup.sh)"
if [[ " ${NAMES[*]} " == *" nfs "* ]]; then
  command -v fusermount3 >/dev/null && pkg-config --exists fuse3 || die "nfs needs libfuse3-dev and fuse3: scripts/setup.sh"
fi

LOCKAGENT_DIST=$(node scripts/bench/lib/build.js)
LOCKAGENT_NATIVE_ADDON=$(node scripts/bench/lib/build.js native)
export LOCKAGENT_DIST LOCKAGENT_NATIVE_ADDON
echo "lockagent build: $LOCKAGENT_DIST, native addon: $LOCKAGENT_NATIVE_ADDON" >&2

OUT=$(mktemp -d /tmp/la-bench-results-XXXXXX)
# A benchmark killed hard cannot unmount its latencyfs: do it here, for our work dirs only.
unmount_leftovers() {
  local m
  for m in $(findmnt -rn -t fuse.latencyfs -o TARGET 2>/dev/null); do
    case "$m" in "${BENCH_WORK:-/tmp}"/la-bench-nfs-*) fusermount3 -uz "$m" || true ;; esac
  done
}
trap 'unmount_leftovers; rm -rf "$OUT"' EXIT
script_of() {
  case "$1" in
    virsh) echo virsh-start.js ;;
    *) echo "$1.js" ;;
  esac
}

t0=$(date +%s)
files=()
for n in "${NAMES[@]}"; do
  s=$(date +%s)
  echo "=== $n ===" >&2
  f="$OUT/$n.json"
  if node "scripts/bench/$(script_of "$n")" "${QUICK[@]}" "${KEEP[@]}" --out "$f"; then
    echo "=== $n: done in $(( $(date +%s) - s )) s ===" >&2
  else
    echo "=== $n: FAILED after $(( $(date +%s) - s )) s (see above) ===" >&2
    # leave a marker so the report says so
    printf '{"name":"%s","error":"failed, see the run output","metrics":[]}\n' "$( [ "$n" = virsh ] && echo virsh-start || echo "$n")" > "$f"
  fi
  files+=("$f")
done
echo "=== all done in $(( $(date +%s) - t0 )) s ===" >&2
echo
node scripts/bench/lib/report.js "${QUICK[@]}" --out scripts/bench/results/latest.json "${files[@]}"
