#!/usr/bin/env bash
# Tests the Debian package (run by scripts/test.sh):
#  1. builds it with scripts/package-deb.sh (the static release build, once);
#  2. `dpkg-deb --info` has the right name, version (SyncdVersion.current), Depends and
#     maintainer scripts; `dpkg-deb --contents` lists every file the package must hold;
#  3. lintian reports no error and no warning beyond the accepted ones, which the package lists
#     with their reasons (packaging/deb/lintian-overrides, printed here);
#  4. the package installs and works where Swift is absent, under a real systemd
#     (scripts/systemd-harness.sh --deb: install, enable, a commit, man pages, a user's unit,
#     upgrade, removal committing the pending changes, purge).
#
#   scripts/test-deb.sh [--scratch-path DIR] [--no-build] [--deb FILE] [--bin-dir DIR]
#
# --scratch-path DIR  the static build's directory (default .build-deb)
# --no-build          package what DIR/release holds; --deb FILE tests that package as it is
# --bin-dir DIR       dynamically linked syncd/syncctl (the debug build): they must NOT start in
#                     the container, which shows that the Swift runtime is hidden there
#
# Installs what it needs (dpkg-dev, lintian, man-db) with apt-get; needs root for step 4 (it
# prints one SKIP line without). Prints PASS/FAIL per step; exits 1 on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scratch=.build-deb
build_args=()
deb=
bin_dir=
while (($#)); do
    case $1 in
    --scratch-path) scratch=$2; shift 2 ;;
    --no-build) build_args+=(--no-build); shift ;;
    --deb) deb=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "test-deb.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done
started=$SECONDS
failed=0
pass() { echo "PASS deb $1"; }
fail() { echo "FAIL deb $1"; failed=$((failed + 1)); }

need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v strip >/dev/null || need+=(binutils)
command -v lintian >/dev/null || need+=(lintian)
command -v man >/dev/null || need+=(man-db)
if ((${#need[@]})); then
    sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo)
    { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}"; } >/dev/null ||
        { echo "test-deb.sh: cannot install ${need[*]}" >&2; exit 1; }
fi

# --- 1. build --------------------------------------------------------------------------------
if [ -z "$deb" ]; then
    t0=$SECONDS
    out=$(mktemp -d "${TMPDIR:-/tmp}/syncd-deb-out.XXXXXX")
    trap 'rm -rf "$out"' EXIT
    if deb=$(./scripts/package-deb.sh --scratch-path "$scratch" --out "$out" "${build_args[@]}" 2>"$out/build.log" | tail -n 1) && [ -f "$deb" ]; then
        pass "build ($((SECONDS - t0)) s): $(grep '^package-deb: syncd ' "$out/build.log" | sed 's/^package-deb: //')"
    else
        fail "build: scripts/package-deb.sh failed"
        tail -n 20 "$out/build.log" | sed 's/^/    | /'
        exit 1
    fi
fi

# --- 2. what dpkg-deb shows --------------------------------------------------------------------
version=$(sed -n 's/.*static let current = "\([^"]*\)".*/\1/p' Sources/SyncCore/Version.swift)
info=$(dpkg-deb --info "$deb")
problems=()
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = syncd ] || problems+=("Package is $(field Package)")
[ "$(field Version)" = "$version" ] || problems+=("Version is $(field Version), Version.swift says $version")
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || problems+=("Architecture is $(field Architecture)")
depends=$(field Depends)
for dependency in 'git (>= 1:2.38)' 'libc6 (>= ' 'libstdc++6' 'libgcc-s1'; do
    [[ $depends == *"$dependency"* ]] || problems+=("Depends lacks $dependency: $depends")
done
[[ $depends == *swift* ]] && problems+=("Depends names a Swift package: $depends")
for script in postinst prerm postrm md5sums; do
    grep -E >/dev/null "^ +[0-9]+ bytes, +[0-9]+ lines .* $script( |$)" <<<"$info" || problems+=("no $script in the control archive")
done
contents=$(dpkg-deb --contents "$deb" | awk '{ print $NF }' | sed 's|^\./|/|')
unit_dir=$(grep -E '^/(usr/)?lib/systemd/system/syncd@\.service$' <<<"$contents" | sed 's|/syncd@\.service$||')
expected=(
    /usr/bin/syncd /usr/bin/syncctl
    "${unit_dir:-/lib/systemd/system}/syncd@.service" /usr/lib/systemd/user/syncd@.service
    /usr/share/doc/syncd/README.md /usr/share/doc/syncd/systemd.md /usr/share/doc/syncd/PROTOCOL.md
    /usr/share/doc/syncd/ARCHITECTURE.md /usr/share/doc/syncd/changelog.gz /usr/share/doc/syncd/copyright
    /usr/share/man/man1/syncd.1.gz /usr/share/man/man1/syncctl.1.gz
    /usr/share/bash-completion/completions/syncd /usr/share/bash-completion/completions/syncctl
    /usr/share/zsh/vendor-completions/_syncd /usr/share/zsh/vendor-completions/_syncctl
    /usr/share/fish/vendor_completions.d/syncd.fish /usr/share/fish/vendor_completions.d/syncctl.fish
    /usr/share/lintian/overrides/syncd
)
for path in "${expected[@]}"; do
    grep -Fx >/dev/null "$path" <<<"$contents" || problems+=("dpkg-deb --contents lacks $path")
done
# Nothing else: a file added to the package must be added here (and so to the README's list).
unexpected=$(grep -v '/$' <<<"$contents" | grep -Fxv -f <(printf '%s\n' "${expected[@]}" /usr/share/doc/syncd/examples/writer.sh))
[ -z "$unexpected" ] || problems+=("unexpected files in the package: $(echo $unexpected)")
if ((${#problems[@]})); then
    fail "contents: ${problems[*]}"
else
    pass "contents: dpkg-deb --info and --contents show every file ($(grep -vc '/$' <<<"$contents") files; Depends: $depends)"
fi

# --- 3. lintian ----------------------------------------------------------------------------------
lintian_log=$(mktemp)
# Root is fine here: lintian only unpacks the package into a temporary directory. The verdict
# comes from --fail-on (overridden tags do not count); the accepted ones are listed from a
# second run with --show-overrides (which makes lintian exit 2 for them).
lintian --fail-on error,warning --tag-display-limit 0 "$deb" >"$lintian_log" 2>&1
lintian_status=$?
grep -E '^(E|W): ' "$lintian_log" >"$lintian_log.bad"
if ((lintian_status == 0)) && ! [ -s "$lintian_log.bad" ]; then
    accepted=$(lintian --show-overrides --tag-display-limit 0 "$deb" 2>/dev/null | grep -E '^O: ' | awk '{print $3}' | sort | uniq -c | awk '{printf " %s (%s)", $2, $1}')
    pass "lintian: no errors, no warnings; accepted (packaging/deb/lintian-overrides):${accepted:- none}"
else
    fail "lintian (exit $lintian_status):"
    sed 's/^/    | /' "$lintian_log"
fi
rm -f "$lintian_log" "$lintian_log.bad"

# --- 4. installed where Swift is absent, under a real systemd --------------------------------------
harness=(./scripts/systemd-harness.sh --deb "$deb")
[ -n "$bin_dir" ] && harness+=(--bin-dir "$bin_dir")
if ! "${harness[@]}"; then
    failed=$((failed + 1))
fi
echo "deb tests: $((SECONDS - started)) s, $failed failed"
((failed == 0))
