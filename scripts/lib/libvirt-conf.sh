# libvirt-conf.sh -- sourced by scripts/services.sh (the one shared libvirtd of test/e2e) and
# scripts/libvirt-host.sh (the two-host migration test bed): the one place that writes the
# daemon and QEMU driver configs the tests run libvirtd with, and creates the libvirt-qemu user.
# Why each setting: see the comments in scripts/services.sh and docs/testing.md.

# write_libvirtd_conf FILE LOGFILE [EXTRA_LINE...]
#   auth off on the unix sockets (root only), debug logs of hooks and the QEMU process code.
write_libvirtd_conf() {
  local file=$1 logfile=$2; shift 2
  {
    echo "# written by lockagent scripts/lib/libvirt-conf.sh"
    echo 'auth_unix_ro = "none"'
    echo 'auth_unix_rw = "none"'
    echo 'unix_sock_group = "root"'
    echo 'unix_sock_rw_perms = "0770"'
    echo 'log_level = 3'
    echo 'log_filters = "1:util.hook 1:qemu.qemu_process 1:qemu.qemu_migration 3:qemu.qemu_monitor"'
    echo "log_outputs = \"1:file:$logfile\""
    local l; for l in "$@"; do echo "$l"; done
  } > "$file"
}

# write_qemu_conf FILE MARKER [EXTRA_LINE...]
#   the trimmed QEMU driver config: no cgroups, namespaces or relabelling, stdio to files (no
#   virtlogd). MARKER is the first line, so the writer can recognise its own file.
write_qemu_conf() {
  local file=$1 marker=$2; shift 2
  {
    echo "$marker"
    echo 'user = "root"'
    echo 'group = "root"'
    echo 'dynamic_ownership = 0'
    echo 'remember_owner = 0'
    echo 'security_driver = "none"'
    echo 'cgroup_controllers = [ ]'
    echo 'namespaces = [ ]'
    echo 'stdio_handler = "file"'
    local l; for l in "$@"; do echo "$l"; done
  } > "$file"
}

# ensure_libvirt_qemu_user: libvirtd's QEMU driver does not load without it, even with
# user = "root" in qemu.conf (the compiled-in default is resolved first). Returns 0 and prints
# "created" when it created the user.
ensure_libvirt_qemu_user() {
  getent passwd libvirt-qemu >/dev/null && return 0
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  useradd --system --no-create-home --home-dir /var/lib/libvirt -g libvirt-qemu -s /usr/sbin/nologin libvirt-qemu
  echo created
}
