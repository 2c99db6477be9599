#!/usr/bin/env bash
# The test command of the README: builds everything, runs every unit and integration test, then
# the systemd harness (scripts/systemd-harness.sh: the shipped unit under a real systemd), then
# the Debian package (scripts/test-deb.sh: one static release build, dpkg-deb, lintian, and the
# package installed under a real systemd where Swift is absent).
# Works on a fresh machine with Swift 6.3 and git; installs what else the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)
command -v flock >/dev/null || need+=(util-linux)
command -v systemd-analyze >/dev/null || need+=(systemd)
# The systemd harness boots the shipped unit under a real systemd in a container.
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
# sshd for the ssh remote test (where systemd is PID 1, installing it also starts sshd on the host).
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
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

# SYNCD_SCRATCH_PATH: another build directory than .build (a second checkout building alongside).
scratch=()
[ -n "${SYNCD_SCRATCH_PATH:-}" ] && scratch=(--scratch-path "$SYNCD_SCRATCH_PATH")
swift build "${scratch[@]}" --build-tests
status=0
swift test "${scratch[@]}" --skip-build "$@" || status=$?

# The shipped unit under a real systemd (skips with one line where no container can boot).
./scripts/systemd-harness.sh --bin-dir "$(swift build "${scratch[@]}" --show-bin-path)" || status=$?

# The package, from its own static release build (.build-deb, kept between runs); the debug
# binaries must fail to start in its container (the Swift runtime is hidden there).
deb_scratch=.build-deb
[ -n "${SYNCD_SCRATCH_PATH:-}" ] && deb_scratch="$SYNCD_SCRATCH_PATH-deb"
./scripts/test-deb.sh --scratch-path "$deb_scratch" --bin-dir "$(swift build "${scratch[@]}" --show-bin-path)" || status=$?
exit $status
