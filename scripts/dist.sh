#!/usr/bin/env bash
# Source tarball for the RPM (packaging/rpm/lockagent.spec) and for building elsewhere:
#   scripts/dist.sh [--version V] [--out DIR]   -> DIR/lockagent-V.tar.gz (path on stdout)
# Holds the files git tracks plus new ones it does not ignore, as they are in this tree (no
# node_modules, no build output), under lockagent-V/.
set -euo pipefail
# shellcheck source=lib/pkg-args.sh
. "$(dirname "$0")/lib/pkg-args.sh"
pkg_args dist.sh "$@"
mkdir -p "$OUT"
tarball="$(cd "$OUT" && pwd)/lockagent-$VERSION.tar.gz"
cd "$SRC"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && [ "$f" != node_modules ] && printf '%s\0' "$f"
done | tar --null -T - --transform "s,^,lockagent-$VERSION/," --owner=0 --group=0 --numeric-owner -czf "$tarball"
echo "$tarball"
