#!/usr/bin/env bash
# Builds syncd in release mode and installs its binaries into $PREFIX/bin (default /usr/local).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${PREFIX:-/usr/local}"
command -v git >/dev/null || { apt-get update -qq && apt-get install -y -qq git; }
swift build -c release --product syncd
install -d "$prefix/bin"
install -m 0755 .build/release/syncd "$prefix/bin/syncd"
echo "installed $prefix/bin/syncd"
