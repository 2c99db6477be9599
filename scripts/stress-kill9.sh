#!/bin/sh
# More kill -9 trials than the suite's 20: syncd is killed at random moments of a busy workload,
# restarted, and must lose nothing with git fsck clean. Usage: scripts/stress-kill9.sh [TRIALS] [SEED]
set -eu
cd "$(dirname "$0")/.."
swift build --build-tests
SYNCD_KILL9_TRIALS="${1:-200}" SYNCD_KILL9_SEED="${2:-$(date +%s)}" \
    swift test --skip-build --filter 'SyncdRunTests/killNineTrials'
