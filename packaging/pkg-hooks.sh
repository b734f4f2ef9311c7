#!/bin/sh
# The package steps the .deb maintainer scripts and the RPM scriptlets share, installed as
# /usr/lib/lockagent/pkg-hooks.sh (docs/operator-guide.md "Install", "Upgrade", "Uninstall"):
#   pkg-hooks.sh configure [PREVIOUS_VERSION]   after the files are in place (install or upgrade)
#   pkg-hooks.sh remove                         before the files go (not on an upgrade)
# $DPKG_ROOT (dpkg --root with --force-script-chrootless) is the root of the target system: then
# nothing of the running system is touched (no systemctl, no signal to libvirtd).
set -e
ROOT="${DPKG_ROOT:-}"
CLI="$ROOT/usr/bin/lockagent"
CONF="$ROOT/etc/lockagent.conf"
HOOKDIR="$ROOT/etc/libvirt/hooks/qemu.d"
HOOK="$HOOKDIR/50-lockagent"

systemd_running() {
  [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# libvirtd reads new or removed hooks only after a SIGHUP (its units' ExecReload sends it), as
# the libvirt packages' own scriptlets reload it; a stopped libvirtd reads them at its start.
reload_libvirt() {
  [ -z "$ROOT" ] || return 0
  for d in libvirtd virtqemud; do
    if systemd_running; then
      if systemctl is-active --quiet "$d.service"; then systemctl reload "$d.service" || true; fi
    elif pids=$(pidof "$d" 2>/dev/null); then
      kill -HUP $pids || true
    fi
  done
}

# The copies of the lock-driver plugin install-lockdriver made in libvirt's lock-driver directories.
plugin_copies() {
  for f in "$ROOT"/usr/lib/*/libvirt/lock-driver/lockagent.so "$ROOT"/usr/lib64/libvirt/lock-driver/lockagent.so "$ROOT"/usr/lib/libvirt/lock-driver/lockagent.so; do
    [ -f "$f" ] && grep -q 'installed by "lockagent install-lockdriver"' "$f" && echo "$f"
  done
  return 0
}

# One line per owner that holds leases: "NAME (pid PID): N lease(s)". Empty when none, or when
# no agent answers (then it holds nothing that it renews).
held_owners() {
  [ -f "$CONF" ] || return 0
  "$CLI" status --json -c "$CONF" 2>/dev/null | "${LOCKAGENT_NODE:-node}" -e '
    let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => {
      try {
        for (const o of JSON.parse(s).owners || []) {
          if (o.leases && o.leases.length) console.log(`${o.name} (${o.pid ? `pid ${o.pid}` : `owner ${o.uuid}`}): ${o.leases.length} lease(s)`);
        }
      } catch { /* no answer: nothing held */ }
    });' || true
}

case "$1" in
  configure)
    previous="${2:-}"
    mkdir -p "$ROOT/var/lib/lockagent"
    chmod 0700 "$ROOT/var/lib/lockagent"
    # The start gate: (re)written at every install and upgrade, a copy of the compiled hook
    # client of this version.
    "$CLI" install-hook --dir "$HOOKDIR" --client "$ROOT/usr/lib/lockagent/lockagent-hook" >/dev/null
    reload_libvirt
    # The lock-driver plugin, where `lockagent install-lockdriver` put it: replaced by this
    # version's (atomically: a running libvirtd keeps the one it loaded until its restart).
    for f in $(plugin_copies); do
      install -m 644 "$ROOT/usr/lib/lockagent/native/build/Release/lockagent.so" "$f.tmp-$$" && mv -f "$f.tmp-$$" "$f"
    done
    if systemd_running; then
      systemctl daemon-reload || true
      if [ -n "$previous" ]; then
        # Upgrade: restart only the agent, once the new files are in place (never stopped before
        # the unpack). The restarted agent continues its delta lease with the same generation
        # and re-adopts every lease; lockagent-guard.service keeps its deadlines meanwhile.
        # A config the new daemon refuses would leave no agent renewing, and the guard would then
        # fence the running domains: the running agent is left as it is instead.
        if why=$("$CLI" config check --as-daemon -c "$CONF" 2>&1 >/dev/null); then
          systemctl try-restart lockagent.service || true
          if ! why=$("$CLI" config check -c "$CONF" 2>&1 >/dev/null); then
            echo "lockagent: $CONF: $why" >&2
            echo "lockagent: the agent accepts it as earlier versions did; fix it (lockagent config check -c $CONF)" >&2
          fi
        else
          echo "lockagent: upgraded from $previous, but the config check failed for $CONF: $why" >&2
          echo "lockagent: the running agent was NOT restarted (it keeps renewing its leases; the new hook and plugin" \
            "are in place already); fix the file (lockagent config check -c $CONF), then: systemctl restart lockagent" >&2
        fi
      fi
    elif [ -n "$previous" ]; then
      echo "lockagent: upgraded from $previous; systemd is not running here: restart the running 'lockagent daemon' yourself" \
        "(SIGTERM, then start it again within 8 x io_timeout: it keeps its generation and every lease)" >&2
    fi
    if [ -z "$previous" ]; then
      echo "lockagent: set host_id (unique) and disk_lease_dir (shared) in /etc/lockagent.conf, check it with" \
        "'lockagent config check', then: systemctl enable --now lockagent-guard lockagent" >&2
    fi
    ;;
  remove)
    owners=$(held_owners)
    if [ -n "$owners" ]; then
      if [ "${LOCKAGENT_REMOVE_FORCE:-0}" != 1 ]; then
        {
          echo "lockagent: not removed: the agent holds leases for these owners (running domains):"
          echo "$owners" | sed 's/^/  /'
          echo "Removing lockagent stops the agent; their leases would no longer be renewed, and other hosts could start"
          echo "them after host_dead (8 x io_timeout + 60 s) while they still run here. Stop or migrate them first, or"
          echo "confirm that they lose lease protection: LOCKAGENT_REMOVE_FORCE=1 apt remove lockagent (or dnf remove)."
        } >&2
        exit 1
      fi
      echo "lockagent: LOCKAGENT_REMOVE_FORCE=1: these owners lose lease protection now (their leases are no longer renewed):" >&2
      echo "$owners" | sed 's/^/  /' >&2
    fi
    # The start gate goes first: with it and no agent, every domain start would be refused.
    # (the hook is a copy of the compiled client, which carries the mark too, or a script)
    if [ -f "$HOOK" ] && grep -q 'installed by "lockagent install-hook"' "$HOOK"; then
      rm -f "$HOOK" "$HOOKDIR/.50-lockagent.conf"
      reload_libvirt
    fi
    # The plugin stays: libvirtd's QEMU driver does not start without the plugin qemu.conf names.
    for f in $(plugin_copies); do
      echo "lockagent: $f stays: while qemu.conf says lock_manager = \"lockagent\", every domain start is refused" \
        "(lockagent is not running). Remove that line, restart libvirtd, then delete $f" >&2
    done
    if systemd_running; then
      systemctl disable --now lockagent.service lockagent-guard.service >/dev/null 2>&1 || true
    elif "$CLI" status -c "$CONF" >/dev/null 2>&1; then
      echo "lockagent: systemd is not running here: stop the running 'lockagent daemon' yourself (SIGTERM)" >&2
    fi
    ;;
  *)
    echo "pkg-hooks.sh: unknown step '$1' (configure | remove)" >&2
    exit 2
    ;;
esac
exit 0
