#!/usr/bin/env bash
# The test command of the README: builds everything and runs every unit and integration test.
# Works on a fresh machine with Swift 6.3 and git; installs what else the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)
command -v flock >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${need[@]}"
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq "${need[@]}"
    fi
fi
# Tests commit into temporary repositories: give git an identity when the machine has none.
git config --global user.name >/dev/null 2>&1 || git config --global user.name "syncd tests"
git config --global user.email >/dev/null 2>&1 || git config --global user.email "syncd-tests@localhost"

swift build --build-tests
swift test --skip-build "$@"
