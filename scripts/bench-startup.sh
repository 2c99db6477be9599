#!/usr/bin/env bash
# Start-up time and size of builds of syncd and syncctl (BENCHMARKS.md, "Package"): for each
# DIR, `syncd --version` and `syncctl --version` run N times each, alternating between the DIRs
# (so a busy moment of the machine hits all of them); prints the median and the 90th percentile
# of one run (process start to exit: loading, the Swift runtime, argument parsing), the
# binaries' sizes and the size of the Swift libraries they load from elsewhere.
#
#   scripts/bench-startup.sh [--runs N] DIR...
#
# For example, static (as packaged) against dynamic, both stripped (BENCHMARKS.md):
#   dpkg-deb -x syncd_0.11.0_amd64.deb /tmp/static
#   swift build -c release --scratch-path .build-dyn
#   mkdir -p /tmp/dynamic && for t in syncd syncctl; do strip -o /tmp/dynamic/$t .build-dyn/release/$t; done
#   scripts/bench-startup.sh /tmp/static/usr/bin /tmp/dynamic
set -euo pipefail
runs=200
dirs=()
while (($#)); do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
    *) dirs+=("$1"); shift ;;
    esac
done
((${#dirs[@]})) || { echo "bench-startup.sh: name at least one build directory (see --help)" >&2; exit 64; }

declare -A samples
for ((run = 0; run < runs; run++)); do
    for dir in "${dirs[@]}"; do
        for tool in syncd syncctl; do
            t0=$EPOCHREALTIME
            "$dir/$tool" --version >/dev/null
            t1=$EPOCHREALTIME
            samples[$dir/$tool]+="$(((${t1/./} - ${t0/./})))"$'\n'
        done
    done
done
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
for dir in "${dirs[@]}"; do
    for tool in syncd syncctl; do
        sorted=$(sort -n <<<"${samples[$dir/$tool]}" | sed '/^$/d')
        count=$(wc -l <<<"$sorted")
        median=$(sed -n "$(((count + 1) / 2))p" <<<"$sorted")
        p90=$(sed -n "$(((count * 9 + 9) / 10))p" <<<"$sorted")
        libs=$(ldd "$dir/$tool" | awk '/swift|Foundation|dispatch|BlocksRuntime/ { print $3 }' | sort -u)
        lib_bytes=0
        for lib in $libs; do lib_bytes=$((lib_bytes + $(stat -L -c %s "$lib"))); done
        printf '%s: --version median %.2f ms, p90 %.2f ms (%d runs); binary %s; Swift libraries loaded from elsewhere: %d, %s\n' \
            "$dir/$tool" "$(awk -v u="$median" 'BEGIN { print u / 1000 }')" "$(awk -v u="$p90" 'BEGIN { print u / 1000 }')" "$count" \
            "$(mb "$(stat -c %s "$dir/$tool")")" "$(wc -w <<<"$libs")" "$(mb "$lib_bytes")"
    done
done
