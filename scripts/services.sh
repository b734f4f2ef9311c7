#!/usr/bin/env bash
# services.sh -- the real libvirtd + QEMU (TCG) that lockagent's end-to-end tests (test/e2e) run
# against, on Debian 12 as root without systemd. The e2e tests call `start` themselves, so
# `npm test` works on a fresh machine after scripts/setup.sh; running it by hand is only needed to
# poke at the daemon (virsh -c qemu:///system ...).
#
#   install   the Debian packages (scripts/setup.sh installs them too)
#   start     write the configs, create the libvirt-qemu user if missing, start libvirtd in the
#             foreground under `tini -s` (setsid, in the background), wait until
#             `virsh -c qemu:///system version` answers. Does nothing if ours is already running.
#   stop      destroy running domains, stop libvirtd by its recorded pid; then remove what
#             `start` created (config files, hook placeholders, the user) -- recorded in
#             $STATE/created.list. Installed packages stay.
#   status    say whether libvirtd runs (exit 0) or not (exit 1)
#
# Environment:
#   LOCKAGENT_E2E_DIR  state directory (default /tmp/lockagent-e2e). Must be disk-backed: never
#                      /dev/shm (tmpfs accepts O_DIRECT and ignores it).
#
# Why each piece (measured; see docs/libvirt-integration.md):
#   - Debian 12 has no virtqemud and, without libvirt-daemon-system, no /etc/libvirt/qemu.conf, no
#     /var/log/libvirt and no libvirt-qemu user: libvirtd's qemu driver refuses to load without that
#     user even when qemu.conf says user = "root" (the compiled-in default is resolved first).
#   - the trimmed qemu.conf (no cgroups, namespaces, relabelling; stdio to files, so no virtlogd)
#     makes a TCG start take ~0.35 s instead of ~1 s.
#   - `tini -s` is a child subreaper: libvirtd double-forks QEMU, and PID 1 on these machines reaps
#     zombies ~1.6 s late, which virsh destroy waits for (0.25 s under tini, ~1.8 s without).
set -euo pipefail
# shellcheck source=lib/libvirt-conf.sh
. "$(dirname "$0")/lib/libvirt-conf.sh"

STATE=${LOCKAGENT_E2E_DIR:-/tmp/lockagent-e2e}
V=(virsh -c qemu:///system)
CREATED="$STATE/created.list"
PIDFILE="$STATE/libvirtd.pid"    # written by libvirtd itself
TINIPID="$STATE/tini.pid"
LOCK="$STATE/services.lock"

log() { echo "[services] $*" >&2; }
die() { log "$*"; exit 1; }

case "$STATE" in
  /dev/shm|/dev/shm/*|/run/*) die "LOCKAGENT_E2E_DIR=$STATE is on tmpfs; use a disk-backed directory such as /tmp" ;;
  /*) ;;
  *) die "LOCKAGENT_E2E_DIR must be an absolute path (got $STATE)" ;;
esac

# record a path (or user:NAME) that we are about to create, so `stop` can remove it again
mark() { [ -e "$1" ] || grep -qxF "$1" "$CREATED" 2>/dev/null || echo "$1" >> "$CREATED"; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc 0-9 < "$1" || true; }

wait_for() { # wait_for <tenths of a second> <command...>
  local n=$1; shift
  for _ in $(seq 1 "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

running() { alive "$(pid_of "$TINIPID")" && "${V[@]}" version >/dev/null 2>&1; }

install_pkgs() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  local pkgs=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils tini sanlock util-linux)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "packages present"; return 0; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

write_configs() {
  mkdir -p "$STATE/logs"
  getent passwd libvirt-qemu >/dev/null || mark user:libvirt-qemu
  ensure_libvirt_qemu_user >/dev/null
  write_libvirtd_conf "$STATE/libvirtd.conf" "$STATE/logs/libvirtd.log"
  if [ -e /etc/libvirt/qemu.conf ] && ! grep -q '^# written by lockagent scripts/services.sh' /etc/libvirt/qemu.conf; then
    log "keeping the existing /etc/libvirt/qemu.conf (not written by this script)"
  else
    mark /etc/libvirt/qemu.conf
    write_qemu_conf /etc/libvirt/qemu.conf '# written by lockagent scripts/services.sh'
  fi
  # Directories libvirtd creates on first start: removed again by `stop`.
  for d in /etc/libvirt/hooks /etc/libvirt/qemu /etc/libvirt/secrets /etc/libvirt/nwfilter \
           /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
    mark "$d"
  done
}

start() {
  [ "$(id -u)" = 0 ] || die "start needs root"
  command -v libvirtd >/dev/null && command -v tini >/dev/null && command -v virsh >/dev/null \
    || die "libvirtd, virsh or tini missing: run $0 install (or scripts/setup.sh)"
  mkdir -p "$STATE"
  : >> "$CREATED"
  exec 9> "$LOCK"
  flock -w 120 9 || die "another 'services.sh start/stop' holds $LOCK"
  if running; then
    log "libvirtd already running (tini pid $(pid_of "$TINIPID"))"
    return 0
  fi
  if "${V[@]}" version >/dev/null 2>&1; then
    log "a libvirtd not started by this script answers on qemu:///system; using it as it is"
    return 0
  fi
  # A libvirtd of ours that died, or that is still starting up: clean up after it.
  local old; old=$(pid_of "$TINIPID")
  if alive "$old"; then
    log "libvirtd (tini pid $old) does not answer; waiting for it"
    wait_for 300 "${V[@]}" version && return 0
    die "libvirtd (tini pid $old) is running but does not answer; see $STATE/logs/libvirtd.log"
  fi
  write_configs
  rm -f "$PIDFILE" "$TINIPID"
  local t0; t0=$(date +%s%N)
  # Start from / : libvirtd's hooks inherit its working directory, and a removed one (a test's
  # temporary clone) makes every hook's /bin/sh print "getcwd() failed" into virsh's error.
  (cd / && exec setsid tini -s -- libvirtd -f "$STATE/libvirtd.conf" --pid-file "$PIDFILE" \
    > "$STATE/logs/libvirtd.stdout" 2>&1 < /dev/null 9>&-) &
  echo $! > "$TINIPID"
  # The first call also probes QEMU's capabilities (~8 s on a fresh machine).
  if ! wait_for 600 "${V[@]}" version; then
    tail -20 "$STATE/logs/libvirtd.log" "$STATE/logs/libvirtd.stdout" >&2 || true
    die "libvirtd did not answer within 60 s"
  fi
  wait_for 50 test -s "$PIDFILE" || true
  log "libvirtd up after $(( ($(date +%s%N) - t0) / 1000000 )) ms (tini pid $(pid_of "$TINIPID"), libvirtd pid $(pid_of "$PIDFILE"))"
}

stop() {
  [ -d "$STATE" ] || { log "nothing to stop ($STATE does not exist)"; return 0; }
  exec 9> "$LOCK"
  flock -w 120 9 || die "another 'services.sh start/stop' holds $LOCK"
  local p; p=$(pid_of "$TINIPID")
  if alive "$p"; then
    for d in $("${V[@]}" list --name 2>/dev/null); do "${V[@]}" destroy "$d" >/dev/null 2>&1 || true; done
    kill -TERM "$p"
    wait_for 100 sh -c "! kill -0 $p 2>/dev/null" || { log "libvirtd (tini $p) ignored SIGTERM; SIGKILL"; kill -KILL "$p" 2>/dev/null || true; }
    log "libvirtd stopped"
  else
    log "libvirtd not running (no live pid in $TINIPID)"
  fi
  rm -f "$TINIPID" "$PIDFILE"
  if [ -s "$CREATED" ]; then
    tac "$CREATED" | while read -r x; do
      case "$x" in
        user:*) userdel "${x#user:}" 2>/dev/null || true; groupdel "${x#user:}" 2>/dev/null || true ;;
        /*) rm -rf -- "$x" ;;
      esac
    done
    : > "$CREATED"
  fi
  for c in /sys/fs/cgroup/*/machine; do [ -d "$c" ] && rmdir "$c" 2>/dev/null || true; done
}

status() {
  if running; then
    echo "libvirtd running: tini pid $(pid_of "$TINIPID"), libvirtd pid $(pid_of "$PIDFILE"), state $STATE"
    "${V[@]}" list --all
    return 0
  fi
  if "${V[@]}" version >/dev/null 2>&1; then
    echo "a libvirtd not started by this script answers on qemu:///system"
    return 0
  fi
  echo "libvirtd not running"
  return 1
}

case "${1:-}" in
  install) install_pkgs ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
