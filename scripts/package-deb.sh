#!/usr/bin/env bash
# Builds syncd_VERSION_ARCH.deb: syncd and syncctl with the Swift runtime linked statically (the
# package needs no Swift toolchain: glibc, libstdc++ and libgcc only), the systemd template unit
# for the system and the user managers, the docs, man pages generated from the commands' own
# help (swift-argument-parser's generate-manual), and bash, zsh and fish completions generated
# by the commands (--generate-completion-script). The version is SyncdVersion.current
# (Sources/SyncCore/Version.swift), the one `--version` prints.
#
#   scripts/package-deb.sh [--scratch-path DIR] [--out DIR] [--no-build]
#
# --scratch-path DIR  SwiftPM build directory (default .build-deb, apart from the debug .build)
# --out DIR           where the .deb goes (default: the top of the checkout)
# --no-build          package the static binaries built before in DIR/release (CI builds once)
#
# Prints the path of the .deb as its last line. Needs Swift 6.3 (unless --no-build), dpkg-deb,
# dpkg-shlibdeps (dpkg-dev) and gzip. Maintainer scripts and copyright: packaging/deb/.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
scratch=.build-deb
out=$repo
build=1
while (($#)); do
    case $1 in
    --scratch-path) scratch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "package-deb.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done
say() { echo "package-deb: $*" >&2; }
die() { echo "package-deb: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps gzip strip; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils gzip)"
done

version=$(sed -n 's/.*static let current = "\([^"]*\)".*/\1/p' Sources/SyncCore/Version.swift)
[[ $version =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || die "no version in Sources/SyncCore/Version.swift (found '$version')"
arch=$(dpkg --print-architecture)
# Timestamps (changelog, man pages, file times in the .deb) from the last commit: the same
# checkout packages to the same bytes.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
maintainer=${SYNCD_MAINTAINER:-syncd maintainers <maintainers@syncd.example.org>}

# --- build -----------------------------------------------------------------------------------
bin=$scratch/release
if ((build)); then
    say "building syncd and syncctl (release, Swift runtime linked statically) in $scratch"
    for product in syncd syncctl; do
        # -z now: every symbol bound at start, then the GOT read-only (full RELRO), as Debian builds daemons.
        swift build -c release --static-swift-stdlib -Xlinker -z -Xlinker now --scratch-path "$scratch" --product "$product" >&2
    done
fi
for tool in syncd syncctl; do
    [ -x "$bin/$tool" ] || die "no $tool in $bin: build it first (drop --no-build)"
    if ldd "$bin/$tool" | grep >/dev/null -i swift; then
        die "$bin/$tool links the Swift runtime dynamically: it was not built with --static-swift-stdlib (drop --no-build)"
    fi
done
# generate-manual (swift-argument-parser's tool behind its GenerateManual plugin) runs the
# commands with --experimental-dump-help. Built directly, in debug: the plugin would rebuild
# every product in release mode without --static-swift-stdlib, over the binaries above.
manual_tool=$scratch/debug/generate-manual
if [ ! -x "$manual_tool" ] || ((build)); then
    say "building generate-manual (swift-argument-parser)"
    swift build --scratch-path "$scratch" --product generate-manual >&2
fi

# --- the tree --------------------------------------------------------------------------------
umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/syncd-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
unit_dir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || true)
# Debian 12's systemd installs units under /lib (its lintian refuses /usr/lib); later ones under /usr/lib.
[ -n "$unit_dir" ] || unit_dir=/lib/systemd/system
user_unit_dir=$(pkg-config --variable=systemduserunitdir systemd 2>/dev/null || true)
[ -n "$user_unit_dir" ] || user_unit_dir=/usr/lib/systemd/user
doc=/usr/share/doc/syncd

install -d "$root/usr/bin" "$root$unit_dir" "$root$user_unit_dir" "$root$doc" "$root/usr/share/man/man1" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/DEBIAN"
for tool in syncd syncctl; do
    # As dh_strip does: no symbols or debug info (35 MB -> 17 MB each); the Swift backtracer that
    # would use them is part of the toolchain, which the target machine does not have.
    strip --strip-unneeded --remove-section=.comment --remove-section=.note -o "$root/usr/bin/$tool" "$bin/$tool"
    chmod 0755 "$root/usr/bin/$tool"
    "$root/usr/bin/$tool" --version >/dev/null || die "the stripped $tool does not run"
done

# The unit as install.sh installs it, with the package's paths, and the man pages named.
sed -e "s|/usr/local/bin/syncd|/usr/bin/syncd|" -e "s|file:///usr/local/share/doc/syncd/|file://$doc/|g" \
    -e '/^Documentation=/s|$| man:syncd(1) man:syncctl(1)|' systemd/syncd@.service >"$root$unit_dir/syncd@.service"
grep -q '^ExecStart=/usr/bin/syncd run %f$' "$root$unit_dir/syncd@.service" || die "the unit's ExecStart= did not become /usr/bin/syncd"
# The same file serves `syncctl enable` as a user (systemctl --user).
cp "$root$unit_dir/syncd@.service" "$root$user_unit_dir/syncd@.service"

# Docs: what the unit's Documentation= names stays uncompressed (systemd.md, README.md).
install -m 0644 README.md "$root$doc/README.md"
install -m 0644 systemd/README.md "$root$doc/systemd.md"
install -m 0644 docs/PROTOCOL.md "$root$doc/PROTOCOL.md"
install -m 0644 docs/ARCHITECTURE.md "$root$doc/ARCHITECTURE.md"
install -d "$root$doc/examples"
install -m 0644 docs/examples/writer.sh "$root$doc/examples/writer.sh"
install -m 0644 packaging/deb/copyright "$root$doc/copyright"
# The lintian warnings accepted, each with its reason.
install -d "$root/usr/share/lintian/overrides"
install -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/syncd"
# The changelog (Debian's format: the package is native): this version's entry lists what syncd
# does, from README.md's status table, so it cannot drift from the README.
date_rfc=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
{
    echo "syncd ($version) unstable; urgency=medium"
    echo
    sed -n '/^## Status/,/^## /p' README.md | grep '^| ' | sed -n '2,$p' |
        sed -E 's/^\| *(.*[^ ]) *\| *done \((.*)\) *\|$/\1 (\2)/' | tr -d '`' |
        while IFS= read -r entry; do printf '%s\n' "$entry" | fold -s -w 72 | sed -e 's/ *$//' -e '1s/^/  * /' -e '2,$s/^/    /'; done
    echo
    echo " -- $maintainer  $date_rfc"
} >"$work/changelog"
gzip -9n <"$work/changelog" >"$root$doc/changelog.gz"

# Man pages: generated from the commands (every subcommand, option and help text), one page each.
for tool in syncd syncctl; do
    "$manual_tool" "$root/usr/bin/$tool" --date "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)" --section 1 -o "$work" >&2 ||
        die "generate-manual failed for $tool"
    gzip -9n <"$work/$tool.1" >"$root/usr/share/man/man1/$tool.1.gz"
done
# Completions, from the commands.
for tool in syncd syncctl; do
    # bash-completion sources the file: no #! line (lintian: bash-completion-with-hashbang).
    "$root/usr/bin/$tool" --generate-completion-script bash | sed '1{/^#!/d}' >"$root/usr/share/bash-completion/completions/$tool"
    "$root/usr/bin/$tool" --generate-completion-script zsh >"$root/usr/share/zsh/vendor-completions/_$tool"
    "$root/usr/bin/$tool" --generate-completion-script fish >"$root/usr/share/fish/vendor_completions.d/$tool.fish"
done
chmod 0644 "$root"/usr/share/*-completion*/*/* "$root"/usr/share/zsh/vendor-completions/* "$root"/usr/share/fish/vendor_completions.d/*

# --- control ---------------------------------------------------------------------------------
# The shared libraries the binaries need, with the versions they need (dpkg-shlibdeps reads the
# symbols they use): libc6, libgcc-s1, libstdc++6.
mkdir -p "$work/shlibs/debian"
printf 'Source: syncd\n\nPackage: syncd\nArchitecture: any\n' >"$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "$root/usr/bin/syncd" "$root/usr/bin/syncctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries for the binaries"
# git 2.38: merge-tree --write-tree (Debian's git has epoch 1: without it any 1:x would do).
depends="$shlibs, git (>= 1:2.38)"

install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
installed_size=$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: syncd
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: systemd
Suggests: openssh-client
Section: vcs
Priority: optional
Description: keeps a git working tree committed and synced while programs write
 syncd watches a git working tree with inotify while agents, generators, note
 apps and cron jobs keep writing into it. It batches changes, coordinates with
 writers through lock files, commits each batch atomically and syncs with a
 remote: no commit storms, no reaction to its own writes, no work lost to a
 crash, a full disk, a dropped network or an edit on two machines.
 .
 This package holds syncd (the service), syncctl (status, pause, sync, writers,
 enable and disable), the systemd template unit syncd@.service and the docs.
 "syncctl enable PATH" keeps a workspace committed as a service.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

mkdir -p "$out"
deb=$(realpath "$out")/syncd_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
size() { stat -c %s "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }
say "syncd $(size "$root/usr/bin/syncd"), syncctl $(size "$root/usr/bin/syncctl") (stripped; built: $(size "$bin/syncd"), $(size "$bin/syncctl")); package $(size "$deb"), installed ${installed_size} KiB"
echo "$deb"
