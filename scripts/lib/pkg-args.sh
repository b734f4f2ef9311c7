# Sourced by scripts/deb.sh and scripts/dist.sh: their shared arguments, [--version V] [--out DIR].
# Sets SRC (the tree), VERSION ($LOCKAGENT_VERSION, else package.json's) and OUT (default: SRC).
# $1 is the caller's name for messages; the rest are the caller's arguments.
pkg_args() {
  local me="$1"
  shift
  SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  VERSION="${LOCKAGENT_VERSION:-}"
  OUT="$SRC"
  while [ $# -gt 0 ]; do
    case "$1" in
      --version) VERSION="$2"; shift 2 ;;
      --out) OUT="$2"; shift 2 ;;
      *) echo "$me: unknown argument $1 (--version V, --out DIR)" >&2; exit 2 ;;
    esac
  done
  [ -n "$VERSION" ] || VERSION=$(node -p "require('$SRC/package.json').version")
}
