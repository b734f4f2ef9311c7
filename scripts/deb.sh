#!/usr/bin/env bash
# Builds the Debian package from a build of this tree (npm run build), with dpkg-deb:
#   scripts/deb.sh [--version V] [--out DIR]     -> DIR/lockagent_V_ARCH.deb (path on stdout)
# V defaults to $LOCKAGENT_VERSION, else package.json's version. The layout is scripts/install.sh's
# (--prefix /usr); the maintainer scripts are packaging/deb/, their steps packaging/pkg-hooks.sh.
# Depends: nodejs (>= 20) and the packages of the shared libraries the addons and binaries link.
set -euo pipefail
# shellcheck source=lib/pkg-args.sh
. "$(dirname "$0")/lib/pkg-args.sh"
pkg_args deb.sh "$@"
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d /tmp/lockagent-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
P="$STAGE/lockagent"

bash "$SRC/scripts/install.sh" --prefix /usr --destdir "$P" --version "$VERSION" 2>/dev/null
install -m 644 "$SRC/packaging/deb/copyright" "$P/usr/share/doc/lockagent/copyright"

# Shared libraries linked by the ELF files -> their Debian packages (as dpkg-shlibdeps would).
shlibs=$(
  find "$P" -type f \( -name '*.node' -o -perm -u+x \) -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \; |
  while read -r f; do objdump -p "$f" | awk '/NEEDED/ { print $2 }'; done | sort -u |
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|aarch64|64bit|=>/ { print $NF; exit }')
    [ -n "$path" ] || { echo "deb.sh: $lib (needed by an addon) not found on this machine" >&2; exit 1; }
    dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null ||
      { echo "deb.sh: no package owns $path" >&2; exit 1; }
  done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g'
)
case "$shlibs" in *libvirt0*) ;; *) echo "deb.sh: expected libvirt0 among the dependencies, got: $shlibs" >&2; exit 1 ;; esac

install -d "$P/DEBIAN"
install -m 755 "$SRC/packaging/deb/postinst" "$SRC/packaging/deb/prerm" "$SRC/packaging/deb/postrm" "$P/DEBIAN/"
install -m 644 "$SRC/packaging/deb/conffiles" "$P/DEBIAN/"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SHLIBS@/$shlibs/" \
  -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$P" | cut -f1)/" "$SRC/packaging/deb/control.in" > "$P/DEBIAN/control"
(cd "$P" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$P/DEBIAN/md5sums"

mkdir -p "$OUT"
deb="$OUT/lockagent_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$P" "$deb" >/dev/null
echo "$deb"
