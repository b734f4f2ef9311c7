#!/usr/bin/env bash
# Installs everything lockagent's build and tests need on a fresh Debian 12 machine (as root):
# Debian packages (sanlock, libvirt, QEMU for the end-to-end tests; build tools for the native
# addon), then npm dependencies and the build. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(
  sanlock libsanlock-dev                 # the real sanlock 3.8.5: interop tests and benchmarks
  python3-sanlock                        # sanlock's client API for scripts/bench (throughput, hold)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-sanlock libvirt-dev
  qemu-system-x86 qemu-utils tini        # real libvirtd + QEMU (TCG) for end-to-end tests
  python3 make g++ pkg-config            # node-gyp toolchain for native/
  strace util-linux                      # I/O counting in benchmarks; losetup
  rpm                                    # rpmbuild, rpm -qlp: the RPM test (test/install)
  libfuse3-dev fuse3                     # latencyfs (native/bench): scripts/bench/nfs.js and its smoke test (test/bench)
)

missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build
