#!/usr/bin/env bash
# Builds syncd and syncctl in release mode, installs them into $PREFIX/bin (default /usr/local),
# and installs the systemd template unit syncd@.service: for the system manager when run as
# root, else for the user's manager (~/.config/systemd/user).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }
swift build -c release --product syncd
swift build -c release --product syncctl
install -d "$prefix/bin"
install -m 0755 .build/release/syncd "$prefix/bin/syncd"
install -m 0755 .build/release/syncctl "$prefix/bin/syncctl"
echo "installed $prefix/bin/syncd and $prefix/bin/syncctl"

if [ "$(id -u)" = 0 ]; then units=/etc/systemd/system; else units="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"; fi
install -d "$units"
sed "s|/usr/local/bin/syncd|$prefix/bin/syncd|" systemd/syncd@.service > "$units/syncd@.service"
echo "installed $units/syncd@.service"
if [ -d /run/systemd/system ]; then
    if [ "$(id -u)" = 0 ]; then systemctl daemon-reload; else systemctl --user daemon-reload || true; fi
fi
