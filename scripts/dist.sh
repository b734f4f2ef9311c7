#!/usr/bin/env bash
# Source tarball for the RPM (packaging/rpm/lockagent.spec) and for building elsewhere:
#   scripts/dist.sh [--version V] [--out DIR]   -> DIR/lockagent-V.tar.gz (path on stdout)
# Holds the files git tracks plus new ones it does not ignore, as they are in this tree (no
# node_modules, no build output), under lockagent-V/.
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="${LOCKAGENT_VERSION:-}"
OUT="$SRC"
while [ $# -gt 0 ]; do
  case "$1" in
    --version) VERSION="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "dist.sh: unknown argument $1 (--version V, --out DIR)" >&2; exit 2 ;;
  esac
done
[ -n "$VERSION" ] || VERSION=$(node -p "require('$SRC/package.json').version")
mkdir -p "$OUT"
tarball="$(cd "$OUT" && pwd)/lockagent-$VERSION.tar.gz"
cd "$SRC"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && [ "$f" != node_modules ] && printf '%s\0' "$f"
done | tar --null -T - --transform "s,^,lockagent-$VERSION/," --owner=0 --group=0 --numeric-owner -czf "$tarball"
echo "$tarball"
