#!/usr/bin/env bash
# libvirt-host.sh -- one more libvirtd "host" on this machine, isolated in its own mount
# namespace, for tests that need two libvirt hosts (live migration: test/migration, through
# test/helpers/libvirthosts.ts). It never touches the machine's own libvirtd (qemu:///system,
# scripts/services.sh): its /etc, /var and /run are overlays, and libvirt's state directories in
# them are empty private directories.
#
#   start DIR UUID PORT_MIN PORT_MAX [QEMU_CONF_LINE...]
#                                      start the host whose state lives in DIR (absolute, disk-backed);
#                                      extra lines go into its qemu.conf (e.g. lock_manager = "lockagent",
#                                      with LIBVIRT_LOCK_MANAGER_PLUGIN_DIR in the environment, which
#                                      libvirtd inherits)
#   stop DIR                           stop every process of the host (by pid), remove DIR's mounts' data
#   uri DIR                            print the URI that reaches it from anywhere on the machine
#   pids DIR                           print the pids of every process in its mount namespace
#
# What `start` does: `unshare --mount --propagation private` runs DIR/inner.sh, which mounts
# overlays (upper/work dirs in DIR) on /etc, /var and /run -- `mount -n`, so no mount table file
# is written -- binds empty private directories over /etc/libvirt/{qemu,hooks}, /run/libvirt,
# /var/lib/libvirt and /var/log/libvirt (so it sees no domain, hook or status file of the machine's
# libvirtd), writes its qemu.conf (scripts/lib/libvirt-conf.sh, plus its migration port range),
# creates the libvirt-qemu user inside its /etc if missing, then execs `tini -s -- libvirtd`.
# The holder process (unshare -> bash -> tini: one pid, recorded in DIR/holder.pid) is the
# namespace; everything started in it (libvirtd, QEMU, agents started with nsenter) is found by
# its mount namespace and killed by pid at `stop`.
#
# The host's sockets are in DIR/sock (unix_sock_dir), reachable from every namespace:
#   virsh -c 'qemu+unix:///system?socket=DIR/sock/libvirt-sock' ...
# Its hook directory /etc/libvirt/hooks/qemu.d is DIR/priv/etc/libvirt/hooks/qemu.d seen from
# outside: install a hook there before `start` (then no SIGHUP is needed).
#
# libvirt refuses to migrate to a host whose UUID equals its own: every host needs its own UUID
# (host_uuid in its libvirtd.conf). migration_address must stay unset: libvirt rejects
# 127.0.0.1 ("must not be the address of the local machine"); migrate with
# --migrateuri tcp://127.0.0.1:PORT instead, PORT in the destination's range.
set -euo pipefail
# shellcheck source=lib/libvirt-conf.sh
. "$(dirname "$0")/lib/libvirt-conf.sh"

log() { echo "[libvirt-host] $*" >&2; }
die() { log "$*"; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { [ -s "$1" ] && tr -dc 0-9 < "$1" || true; }

check_dir() {
  case "$1" in
    /dev/shm|/dev/shm/*|/run/*|/etc/*|/var/*) die "DIR=$1: use a disk-backed directory outside /etc, /var and /run (e.g. under /tmp)" ;;
    /*) ;;
    *) die "DIR must be an absolute path (got $1)" ;;
  esac
}

uri() { echo "qemu+unix:///system?socket=$1/sock/libvirt-sock"; }

# The namespace is named by its inode number (DIR/mntns), which the kernel gives to a new
# namespace once the old one is freed: a pin process (DIR/pin.pid, outside the namespace) holds it
# open on fd 9 from start until stop has seen every process of it gone, so the number names only
# this host's namespace while it is used. Without a live pin holding that namespace, no pids.
pinned_ns() {
  local dir=$1 ns pin; ns=$(cat "$dir/mntns" 2>/dev/null || true); pin=$(pid_of "$dir/pin.pid")
  [ -n "$ns" ] && alive "$pin" && [ "$(readlink "/proc/$pin/fd/9" 2>/dev/null || true)" = "$ns" ] && echo "$ns"
  return 0
}

# The pids whose mount namespace is the host's.
ns_pids() {
  local dir=$1 ns; ns=$(pinned_ns "$dir")
  [ -n "$ns" ] || return 0
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null || true)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

start() {
  local dir=$1 uuid=$2 pmin=$3 pmax=$4; shift 4
  local extra="" l
  for l in "$@"; do extra+=" $(printf '%q' "$l")"; done
  [ "$(id -u)" = 0 ] || die "start needs root"
  check_dir "$dir"
  command -v unshare >/dev/null && command -v tini >/dev/null && command -v libvirtd >/dev/null \
    || die "unshare, tini or libvirtd missing: run scripts/setup.sh"
  alive "$(pid_of "$dir/holder.pid")" && die "a host already runs in $dir (holder pid $(pid_of "$dir/holder.pid"))"
  mkdir -p "$dir/sock" "$dir/logs" "$dir/ov" "$dir/priv/etc/libvirt/hooks/qemu.d"
  for d in etc/libvirt/qemu run/libvirt var/lib/libvirt var/log/libvirt; do mkdir -p "$dir/priv/$d"; done
  write_libvirtd_conf "$dir/libvirtd.conf" "$dir/logs/libvirtd.log" \
    "unix_sock_dir = \"$dir/sock\"" "host_uuid = \"$uuid\""
  cat > "$dir/inner.sh" <<INNER
#!/usr/bin/env bash
# runs in the host's new mount namespace (written by scripts/libvirt-host.sh)
set -euo pipefail
. '$(cd "$(dirname "$0")" && pwd)/lib/libvirt-conf.sh'
for d in etc var run; do
  mkdir -p '$dir'/ov/\$d.upper '$dir'/ov/\$d.work
  mount -n -t overlay overlay -o lowerdir=/\$d,upperdir='$dir'/ov/\$d.upper,workdir='$dir'/ov/\$d.work /\$d
done
for d in etc/libvirt/qemu etc/libvirt/hooks run/libvirt var/lib/libvirt var/log/libvirt; do
  mkdir -p /\$d
  mount -n --bind '$dir'/priv/\$d /\$d
done
ensure_libvirt_qemu_user >/dev/null
write_qemu_conf /etc/libvirt/qemu.conf '# written by lockagent scripts/libvirt-host.sh' \
  'migration_port_min = $pmin' 'migration_port_max = $pmax'$extra
rm -f /etc/libvirt/qemu-sanlock.conf
cd /
exec tini -s -- libvirtd -f '$dir/libvirtd.conf' --pid-file '$dir/libvirtd.pid'
INNER
  rm -f "$dir/libvirtd.pid" "$dir/mntns" "$dir/pin.pid"
  # Not a process-group leader (no job control here), so setsid does not fork: $! is the holder.
  (exec setsid unshare --mount --propagation private -- bash "$dir/inner.sh" \
     > "$dir/logs/holder.log" 2>&1 < /dev/null) &
  local holder=$!
  echo "$holder" > "$dir/holder.pid"
  # The holder's namespace is new once unshare ran: wait until it differs from ours.
  local mine; mine=$(readlink /proc/self/ns/mnt)
  for _ in $(seq 1 50); do
    local ns; ns=$(readlink "/proc/$holder/ns/mnt" 2>/dev/null || true)
    if [ -n "$ns" ] && [ "$ns" != "$mine" ]; then
      # The pin opens the holder's namespace, then checks it is still the one seen (the holder
      # could have died and its pid been reused in between).
      ( exec 9<"/proc/$holder/ns/mnt" && [ "$(readlink /proc/self/fd/9)" = "$ns" ] && exec sleep infinity ) \
        > /dev/null 2>&1 < /dev/null &
      echo $! > "$dir/pin.pid"
      echo "$ns" > "$dir/mntns"
      break
    fi
    alive "$holder" || break
    sleep 0.05
  done
  for _ in $(seq 1 50); do [ -n "$(pinned_ns "$dir")" ] && break; alive "$(pid_of "$dir/pin.pid")" || break; sleep 0.02; done
  [ -n "$(pinned_ns "$dir")" ] || { cat "$dir/logs/holder.log" >&2; stop "$dir" || true; die "the namespace holder did not start"; }
  local t0; t0=$(date +%s%N)
  for _ in $(seq 1 600); do
    virsh -c "$(uri "$dir")" version >/dev/null 2>&1 && break
    alive "$holder" || { tail -20 "$dir/logs/holder.log" "$dir/logs/libvirtd.log" >&2 || true; die "libvirtd in $dir exited"; }
    sleep 0.1
  done
  virsh -c "$(uri "$dir")" version >/dev/null 2>&1 || { stop "$dir"; die "libvirtd in $dir did not answer within 60 s"; }
  for _ in $(seq 1 50); do [ -s "$dir/libvirtd.pid" ] && break; sleep 0.1; done
  log "host in $dir up after $(( ($(date +%s%N) - t0) / 1000000 )) ms (holder pid $holder, libvirtd pid $(pid_of "$dir/libvirtd.pid"))"
}

# Poll (every 0.1 s, at most N times) until no process of the host is left; print those left.
wait_gone() {
  local dir=$1 n=$2 pids
  for _ in $(seq 1 "$n"); do
    pids=$(ns_pids "$dir")
    [ -z "$pids" ] && return 0
    sleep 0.1
  done
  echo "$pids"
}

stop() {
  local dir=$1
  check_dir "$dir"
  local holder; holder=$(pid_of "$dir/holder.pid")
  if [ -s "$dir/mntns" ] && alive "$holder"; then
    local u; u=$(uri "$dir")
    for d in $(timeout 10 virsh -c "$u" list --name 2>/dev/null || true); do
      timeout 10 virsh -c "$u" destroy "$d" >/dev/null 2>&1 || true
    done
  fi
  # Everything in the namespace, by pid: TERM, then KILL what is left after 5 s.
  local pids; pids=$(ns_pids "$dir")
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
  pids=$(wait_gone "$dir" 50)
  if [ -n "$pids" ]; then
    log "still running after SIGTERM, SIGKILL: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # A SIGKILLed QEMU may take seconds to exit on a loaded machine (I/O in flight).
    pids=$(wait_gone "$dir" 200)
  fi
  if [ -n "$pids" ]; then
    # Kept pinned (mntns, pin.pid), so that `pids` and another `stop` still find them.
    log "processes still running 20 s after SIGKILL:"
    # shellcheck disable=SC2086
    ps -o pid,ppid,stat,etime,args -p "$(echo $pids | tr ' ' ',')" >&2 || true
    return 1
  fi
  local pin; pin=$(pid_of "$dir/pin.pid")
  alive "$pin" && kill -KILL "$pin" 2>/dev/null || true
  rm -f "$dir/mntns" "$dir/pin.pid"
  rm -f "$dir/holder.pid" "$dir/libvirtd.pid"
  # The overlays' upper dirs hold what the host wrote; the mounts died with the namespace.
  rm -rf "$dir/ov" "$dir/priv/run" "$dir/priv/var" "$dir/priv/etc/libvirt/qemu" "$dir/sock"
}

case "${1:-}" in
  start) [ $# -ge 5 ] || die "usage: $0 start DIR UUID PORT_MIN PORT_MAX [QEMU_CONF_LINE...]"; shift; start "$@" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  uri) uri "$2" ;;
  pids) ns_pids "$2" ;;
  *) echo "usage: $0 start DIR UUID PORT_MIN PORT_MAX [QEMU_CONF_LINE...] | stop DIR | uri DIR | pids DIR" >&2; exit 2 ;;
esac
