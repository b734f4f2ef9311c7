#!/usr/bin/env bash
# The README's main command: installs and builds what is needed (scripts/setup.sh), then runs
# two lockagent hosts on a local lease directory with libvirt's test:///default driver and shows
# a gated start: allowed, refused because the other host holds the disk, released on stop.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node dist/cli/main.js demo "$@"
