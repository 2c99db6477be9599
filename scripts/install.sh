#!/usr/bin/env bash
# Installs syncd and syncctl into $PREFIX/bin (default /usr/local), their docs into
# $PREFIX/share/doc/syncd (what the unit's Documentation= names), and the systemd template unit
# syncd@.service: for the system manager when run as root, else for the user's manager
# (~/.config/systemd/user).
#
#   ./scripts/install.sh                 build in release mode, then install
#   ./scripts/install.sh --no-build      install what .build/release holds (built before)
#   SYNCD_BIN_DIR=DIR ./scripts/install.sh   install the syncd and syncctl found in DIR (no build)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
bin_dir="${SYNCD_BIN_DIR:-}"
build=1
for argument in "$@"; do
    case $argument in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $argument (see --help)" >&2; exit 64 ;;
    esac
done
[ -n "$bin_dir" ] && build=0
[ -n "$bin_dir" ] || bin_dir=.build/release

command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }
if ((build)); then
    swift build -c release --product syncd
    swift build -c release --product syncctl
fi
for tool in syncd syncctl; do
    [ -x "$bin_dir/$tool" ] || { echo "install.sh: no $tool in $bin_dir: build it first (swift build -c release) or drop --no-build" >&2; exit 1; }
done
install -d "$prefix/bin"
install -m 0755 "$bin_dir/syncd" "$prefix/bin/syncd"
install -m 0755 "$bin_dir/syncctl" "$prefix/bin/syncctl"
echo "installed $prefix/bin/syncd and $prefix/bin/syncctl"

docs="$prefix/share/doc/syncd"
install -d "$docs"
install -m 0644 README.md "$docs/README.md"
install -m 0644 systemd/README.md "$docs/systemd.md"
install -m 0644 docs/PROTOCOL.md "$docs/PROTOCOL.md"
echo "installed $docs/{README.md,systemd.md,PROTOCOL.md}"

if [ "$(id -u)" = 0 ]; then units=/etc/systemd/system; else units="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"; fi
install -d "$units"
sed -e "s|/usr/local/bin/syncd|$prefix/bin/syncd|" -e "s|file:///usr/local/share/doc/syncd/|file://$docs/|g" \
    systemd/syncd@.service >"$units/syncd@.service.tmp"
chmod 0644 "$units/syncd@.service.tmp"
mv "$units/syncd@.service.tmp" "$units/syncd@.service"
echo "installed $units/syncd@.service"
if [ -d /run/systemd/system ]; then
    if [ "$(id -u)" = 0 ]; then systemctl daemon-reload; else systemctl --user daemon-reload || true; fi
fi
