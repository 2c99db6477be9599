#!/usr/bin/env bash
# Tests the shipped unit (systemd/syncd@.service, installed by scripts/install.sh) under a real
# systemd: systemd 252 boots as PID 1 of a systemd-nspawn container whose root is a throw-away
# overlay of this machine's own root (the upper layer is a tmpfs: nothing is written to the
# host's root). Recipe and caveats: ../shared/reference/systemd-in-a-container.md.
#
#   scripts/systemd-harness.sh [--bin-dir DIR] [--keep] [TEST...]
#   scripts/systemd-harness.sh --deb FILE [--bin-dir DIR] [--keep] [TEST...]
#
# --bin-dir DIR  where the built syncd and syncctl are (default: `swift build --show-bin-path`);
#                the harness never builds.
# --deb FILE     test the package instead (scripts/package-deb.sh): the Swift toolchain is hidden in
#                the container (an empty directory over it), `apt install ./FILE`, then the deb_*
#                tests; a --bin-dir of dynamically linked binaries is checked to fail there.
# --keep         leave the container running at the end and print how to enter it (debugging).
# TEST...        run only these tests (names as printed); default: all. `none` runs no test
#                (with --keep: a booted container with syncd installed, to look around in).
#
# Needs root (CI runs it as root). Installs systemd-container and openssh-server when missing.
# Prints one line per test (PASS/FAIL with the reason), then "N passed, M failed"; exits 1 on a
# failure. Where the kernel refuses to boot the container it prints one SKIP line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bin_dir=${SYNCD_BIN_DIR:-}
deb=
keep=0
only=()
while (($#)); do
    case $1 in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --deb) deb=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) echo "systemd-harness: unknown option $1 (see --help)" >&2; exit 64 ;;
    *) only+=("$1"); shift ;;
    esac
done

started=$SECONDS
say() { echo "systemd-harness: $*"; }
die() { echo "systemd-harness: $*" >&2; exit 1; }
skip() { echo "SKIP systemd harness: $*"; exit 0; }

if [ "$(id -u)" != 0 ]; then
    skip "needs root to boot a container (run scripts/test.sh as root, as CI does)"
fi
toolchain=
if [ -n "$deb" ]; then
    [ -f "$deb" ] || die "no package $deb: build it with scripts/package-deb.sh"
    deb=$(realpath "$deb")
    # The toolchain's root: swift is TOOLCHAIN/usr/bin/swift (/opt/swift here). Hidden in the container.
    if swift_path=$(command -v swift); then
        toolchain=$(dirname "$(dirname "$(dirname "$(realpath "$swift_path")")")")
        case $toolchain in / | /usr) die "the Swift toolchain is installed under $toolchain: it cannot be hidden from the container" ;; esac
    fi
fi
if [ -z "$bin_dir" ] && [ -z "$deb" ]; then bin_dir=$(swift build --show-bin-path 2>/dev/null) || die "cannot find the build directory: pass --bin-dir"; fi
if [ -n "$bin_dir" ]; then
    bin_dir=$(realpath "$bin_dir")
    for tool in syncd syncctl; do
        [ -x "$bin_dir/$tool" ] || die "no $tool in $bin_dir: build first (swift build) or pass --bin-dir DIR"
    done
fi
# What the container needs from the host: systemd-nspawn, and sshd for the ssh remote test
# (installing openssh-server where systemd is PID 1 also starts sshd on the host).
missing=()
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null ||
        die "cannot install ${missing[*]}: install them (apt-get install ${missing[*]}) and run again"
fi

# --- the container -----------------------------------------------------------------------------
machine=syncd-harness-$$
W=$(mktemp -d /tmp/syncd-harness.XXXXXX)
logs=$(mktemp -d /tmp/syncd-harness-logs.XXXXXX)
root=$W/root
nspawn_pid=
leader=
mounted_tmpfs=0
mounted_overlay=0

# Polls `CONDITION...` (a command) every 0.1 s until it succeeds or SECONDS pass; returns 1 then.
wait_for() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((keep)) && [ -n "$leader" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        say "kept: enter with \`nsenter -t $leader -a bash\`; logs in $logs. Clean up with:"
        echo "    kill $nspawn_pid; sleep 2; umount $root $W; rmdir $W; rm -rf $logs /run/systemd/nspawn/propagate/$machine;" \
            "for c in systemd unified; do find /sys/fs/cgroup/\$c/$machine -depth -type d -exec rmdir {} +; done"
        exit $status
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        kill -TERM "$nspawn_pid" 2>/dev/null
        # A clean halt takes under 2 s; then the hard way.
        local deadline=$((SECONDS + 15))
        while kill -0 "$nspawn_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    ((mounted_overlay)) && { umount "$root" 2>/dev/null || umount -l "$root"; }
    ((mounted_tmpfs)) && { umount "$W" 2>/dev/null || umount -l "$W"; }
    rmdir "$W" 2>/dev/null
    # The container's own cgroups (payload/…, supervisor) go first: depth first. The last
    # processes of the container may still be leaving them for a moment.
    remove_cgroups() {
        local controller gone=0
        for controller in systemd unified; do
            [ -d "/sys/fs/cgroup/$controller/$machine" ] && find "/sys/fs/cgroup/$controller/$machine" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "/sys/fs/cgroup/$controller/$machine" ] || gone=$((gone + 1))
        done
        ((gone == 2))
    }
    wait_for 10 remove_cgroups || echo "systemd-harness: could not remove the cgroups /sys/fs/cgroup/{systemd,unified}/$machine" >&2
    rm -rf "/run/systemd/nspawn/propagate/$machine" "$logs"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command inside the booted container, with a clean environment.
cx() { nsenter -t "$leader" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
# The same, as a user of the container.
cx_as() { local user=$1; shift; cx runuser -u "$user" -- env HOME="/home/$user" USER="$user" "$@"; }


boot_failed() {
    local reason=$1
    local refusal
    refusal=$(grep -m1 -E 'Operation not permitted|Function not implemented|not supported|Permission denied' "$logs/nspawn.log" 2>/dev/null)
    if [ -n "$refusal" ]; then skip "the kernel refuses to boot a container here: $refusal"; fi
    echo "systemd-harness: $reason; systemd-nspawn said:" >&2
    tail -n 20 "$logs/nspawn.log" >&2
    exit 1
}

mount -t tmpfs -o size=2G,mode=755 tmpfs "$W" || skip "cannot mount a tmpfs for the overlay (mount refused)"
mounted_tmpfs=1
mkdir "$W/upper" "$W/work" "$root"
if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$W/upper,workdir=$W/work" "$root" 2>"$logs/overlay.log"; then
    skip "the kernel refuses an overlay of / ($(head -n1 "$logs/overlay.log"))"
fi
mounted_overlay=1
# nspawn refuses a pre-populated /dev (the on-disk /dev holds a 0-byte console).
rm -f "$root/dev/console"
if [ -n "$deb" ]; then
    # The package is tested alone: no syncd that install.sh put on this machine, no installed package.
    rm -rf "$root"/usr/local/bin/syncd "$root"/usr/local/bin/syncctl "$root"/usr/local/share/doc/syncd "$root"/etc/systemd/system/syncd@.service
    # Minimal images tell dpkg to skip man pages and docs (path-exclude); a real machine installs them.
    grep -l '^path-exclude' "$root"/etc/dpkg/dpkg.cfg.d/* 2>/dev/null | while read -r config; do rm -f "$config"; done
    mkdir "$W/empty"
fi
# Only what the tests need starts: none of the host's enabled units (a database, timers, getty).
find "$root/etc/systemd/system" -path '*.wants/*' -delete 2>/dev/null
ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"

# nspawn gets cgroups of its own (there is no systemd on the host to give it one).
(
    for controller in systemd unified; do
        mkdir -p "/sys/fs/cgroup/$controller/$machine" && echo "$BASHPID" >"/sys/fs/cgroup/$controller/$machine/cgroup.procs"
    done
    binds=(--bind-ro="$repo:/run/syncd-src")
    [ -n "$bin_dir" ] && binds+=(--bind-ro="$bin_dir:/run/syncd-bin")
    [ -n "$deb" ] && binds+=(--bind-ro="$deb:/run/syncd-deb/$(basename "$deb")")
    [ -n "$toolchain" ] && binds+=(--bind-ro="$W/empty:$toolchain")
    exec systemd-nspawn -D "$root" -M "$machine" -b --register=no --keep-unit --private-network --console=passive "${binds[@]}"
) </dev/null >"$logs/nspawn.log" 2>&1 &
nspawn_pid=$!

find_leader() {
    local child
    for child in $(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null); do
        if grep -qE '^NSpid:[[:space:]]+[0-9]+[[:space:]]+1$' "/proc/$child/status" 2>/dev/null; then
            leader=$child
            return 0
        fi
    done
    kill -0 "$nspawn_pid" 2>/dev/null || boot_failed "systemd-nspawn exited before systemd started"
    return 1
}
wait_for 30 find_leader || boot_failed "no systemd in the container after 30 s"
# is-system-running answers "offline" (or nothing) until PID 1 listens on its bus.
booted() {
    state=$(nsenter -t "$leader" -a systemctl is-system-running 2>/dev/null)
    case $state in running | degraded) return 0 ;; esac
    kill -0 "$nspawn_pid" 2>/dev/null || boot_failed "the container stopped while booting"
    return 1
}
state=
wait_for 60 booted
case $state in
running) ;;
degraded) say "booted degraded: $(cx systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')" ;;
*) boot_failed "the container's systemd did not finish booting within 60 s (state: ${state:-none})" ;;
esac
say "systemd $(cx systemctl --version | head -n1 | awk '{print $2}') booted in the container in $((SECONDS - started)) s"


# --- setup inside the container ------------------------------------------------------------------
# The shipped unit, binaries and docs, through the shipped installer (prebuilt binaries: no build);
# for --deb, the package test (deb_install) installs them.
if [ -z "$deb" ]; then
    if ! cx env SYNCD_BIN_DIR=/run/syncd-bin /run/syncd-src/scripts/install.sh >"$logs/install.log" 2>&1; then
        cat "$logs/install.log" >&2
        die "scripts/install.sh failed inside the container"
    fi
    cx syncd --help >/dev/null 2>&1 || die "the installed syncd does not run inside the container (its Swift runtime libraries must be visible there)"
fi
# The workspace owner: a plain user, as on a real machine.
cx useradd --create-home --user-group --shell /bin/bash alice || die "useradd alice failed"
cx_as alice git config --global user.name "Alice" && cx_as alice git config --global user.email "alice@example.invalid" &&
    cx_as alice git config --global init.defaultBranch main || die "cannot configure git for alice"

# --- helpers for the tests -----------------------------------------------------------------------
passed=0
failed=0
reason=
diag_unit=
fail() { reason=$*; return 1; }
unit_of() { cx systemd-escape --path --template=syncd@.service "$1"; }
prop() { cx systemctl show -P "$2" "$1"; }
is_running() { [ "$(cx systemctl show -P ActiveState -P SubState "$1" | tr '\n' ' ')" = "active running " ]; }
is_failed() { [ "$(prop "$1" ActiveState)" = failed ]; }
is_inactive() { [ "$(prop "$1" ActiveState)" = inactive ]; }
# A fresh workspace of alice's with one commit: /home/alice/NAME.
make_workspace() {
    local ws=/home/alice/$1
    cx_as alice sh -c "git init -q '$ws' && cd '$ws' && echo hello > README.md && git add README.md && git commit -qm init" ||
        fail "cannot create the workspace $ws"
}
# A drop-in by hand: runs the instance as alice, plus any extra lines.
drop_in() {
    local unit=$1; shift
    cx mkdir -p "/etc/systemd/system/$unit.d" &&
        printf '[Service]\nUser=alice\nGroup=alice\n%s' "$(printf '%s\n' "$@")" | cx tee "/etc/systemd/system/$unit.d/test.conf" >/dev/null &&
        cx systemctl daemon-reload
}
write_file() { cx_as alice sh -c "printf '%s\n' '$3' > '$1/$2'"; }
# True when FILE's content as written is in the last commit that touched it and nothing is left uncommitted.
committed() {
    local ws=$1 file=$2
    [ -n "$(cx_as alice git -C "$ws" log -1 --format=%H -- "$file" 2>/dev/null)" ] &&
        [ -z "$(cx_as alice git -C "$ws" status --porcelain -- "$file" 2>/dev/null)" ]
}
# Files under .git that alice does not own (printed, one per line).
foreign_files() { cx find "$1/.git" ! -user alice; }
journal() { cx journalctl -u "$1" --no-pager -o cat "${@:2}"; }
# (Pipelines into grep never use -q: with pipefail, grep quitting early fails the writer with SIGPIPE.)
state_phase() { cx cat "$1/.git/syncd/state.json" 2>/dev/null | grep -o '"phase":"[a-z-]*"'; }

run_test() {
    local test=$1
    if ((${#only[@]})) && ! printf '%s\n' "${only[@]}" | grep -x "$test" >/dev/null; then return 0; fi
    local t0=$SECONDS
    reason=
    diag_unit=
    if "t_$test"; then
        echo "PASS $test ($((SECONDS - t0)) s)"
        passed=$((passed + 1))
    else
        echo "FAIL $test: ${reason:-failed} ($((SECONDS - t0)) s)"
        if [ -n "$diag_unit" ]; then
            echo "    last journal lines of $diag_unit:"
            journal "$diag_unit" -n 15 | sed 's/^/    | /'
        fi
        failed=$((failed + 1))
    fi
}

# --- the tests -----------------------------------------------------------------------------------

# systemctl enable --now for a workspace of alice's (User= drop-in): READY, a write committed,
# everything under .git stays alice's; enabled means default.target pulls it in at boot.
t_owner() {
    local ws=/home/alice/notes unit
    make_workspace notes || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    drop_in "$unit" || fail "cannot write the drop-in" || return
    timeout 60 nsenter -t "$leader" -a systemctl enable --now "$unit" 2>/dev/null || fail "systemctl enable --now $unit failed" || return
    is_running "$unit" || fail "not active/running after enable --now: $(prop "$unit" ActiveState)/$(prop "$unit" SubState)" || return
    [ "$(prop "$unit" User)" = alice ] || fail "the unit does not run as alice" || return
    [ "$(cx ps -o user= -p "$(prop "$unit" MainPID)")" = alice ] || fail "syncd's process is not alice's" || return
    [[ "$(prop "$unit" StatusText)" == idle* ]] || fail "STATUS= not idle after READY: $(prop "$unit" StatusText)" || return
    cx systemctl list-dependencies --plain default.target | grep >/dev/null "$unit" ||
        fail "enabled, but default.target does not pull $unit in (not started at boot)" || return
    local doc
    for doc in $(prop "$unit" Documentation); do
        cx test -s "${doc#file://}" || fail "Documentation= names $doc, which install.sh did not install" || return
    done
    write_file "$ws" today.md "written while the unit runs" || fail "cannot write as alice" || return
    wait_for 15 committed "$ws" today.md || fail "today.md not committed within 15 s" || return
    local foreign
    foreign=$(foreign_files "$ws")
    [ -z "$foreign" ] || fail "files under .git not owned by alice: $(echo $foreign | head -c 300)" || return
}

# systemctl reload: SIGHUP re-reads the settings; the journal says so with the new value.
t_reload() {
    local ws=/home/alice/notes unit
    unit=$(unit_of "$ws") && diag_unit=$unit
    is_running "$unit" || fail "needs the unit of test owner running" || return
    cx_as alice git -C "$ws" config syncd.quietPeriod 7s || return
    cx systemctl reload "$unit" || fail "systemctl reload failed (no ExecReload=?)" || return
    wait_for 10 sh -c "nsenter -t $leader -a journalctl -u '$unit' -o cat --no-pager | grep >/dev/null 'settings reloaded: quietPeriod 7s'" ||
        fail "no 'settings reloaded: quietPeriod 7s' in the journal within 10 s" || return
    is_running "$unit" || fail "not running after the reload" || return
}

# kill -STOP the main pid: the watchdog (5 s here) ends it (SIGABRT, after a backtrace in the
# journal) and systemd restarts it (RestartSec=5) within WatchdogSec + RestartSec + 8 s; what was
# written meanwhile is committed by the new syncd.
t_watchdog() {
    local ws=/home/alice/watched unit pid t0 limit
    make_workspace watched || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    drop_in "$unit" "WatchdogSec=5" || fail "cannot write the drop-in" || return
    timeout 60 nsenter -t "$leader" -a systemctl start "$unit" || fail "systemctl start failed" || return
    is_running "$unit" || fail "not running after start" || return
    pid=$(prop "$unit" MainPID)
    cx kill -STOP "$pid" || fail "cannot stop pid $pid" || return
    t0=$SECONDS
    write_file "$ws" during-stop.md "written while syncd was stopped" || return
    limit=$((5 + $(prop "$unit" RestartUSec | sed "s/s$//;s/^$/0/" | cut -d. -f1) + 8))
    new_pid() { local now; now=$(prop "$unit" MainPID); [ "$now" != 0 ] && [ "$now" != "$pid" ] && is_running "$unit"; }
    wait_for "$limit" new_pid || fail "not restarted within $limit s of the stop (state $(prop "$unit" ActiveState)/$(prop "$unit" SubState), NRestarts $(prop "$unit" NRestarts))" || return
    local took=$((SECONDS - t0))
    [ "$(prop "$unit" NRestarts)" = 1 ] || fail "NRestarts is $(prop "$unit" NRestarts), expected 1" || return
    journal "$unit" | grep >/dev/null "Watchdog timeout" || fail "no watchdog timeout in the journal" || return
    journal "$unit" | grep >/dev/null "status=6/ABRT" || fail "the stopped syncd was not ended by its SIGABRT (no status=6/ABRT in the journal)" || return
    wait_for 15 committed "$ws" during-stop.md || fail "during-stop.md not committed within 15 s of the restart" || return
    echo "    restarted $took s after kill -STOP (WatchdogSec=5)"
    cx systemctl stop "$unit"
}

# systemctl stop with a change pending (quietPeriod 1h): committed before the unit is inactive.
t_stop() {
    local ws=/home/alice/stopping unit
    make_workspace stopping || return
    cx_as alice git -C "$ws" config syncd.quietPeriod 1h && cx_as alice git -C "$ws" config syncd.maxLatency 2h || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    drop_in "$unit" || return
    timeout 60 nsenter -t "$leader" -a systemctl start "$unit" || fail "systemctl start failed" || return
    write_file "$ws" pending.md "pending at stop" || return
    wait_for 10 sh -c "nsenter -t $leader -a cat '$ws/.git/syncd/state.json' | grep >/dev/null '\"pending_paths\":[1-9]'" ||
        fail "syncd did not see the write within 10 s" || return
    committed "$ws" pending.md && fail "committed before the stop: the quiet period did not hold it" && return 1
    timeout 60 nsenter -t "$leader" -a systemctl stop "$unit" || fail "systemctl stop failed or took over 60 s" || return
    is_inactive "$unit" || fail "not inactive after stop: $(prop "$unit" ActiveState)" || return
    committed "$ws" pending.md || fail "the pending change was not committed at stop" || return
    cx_as alice git -C "$ws" log -1 --format=%B | grep >/dev/null "Syncd-Trigger: shutdown" || fail "the last commit is not the shutdown batch" || return
    # A workspace removed before its service can still be disabled by its path.
    cx rm -rf "$ws" && cx syncctl disable "$ws" >/dev/null 2>&1 || fail "syncctl disable of a removed workspace failed" || return
}

# As root, without a drop-in, on alice's workspace: refuses at once (exit 78), not restarted,
# the reason (owner, uid, command) in systemctl status, nothing created in the repository.
# Then the command it names, `syncctl enable`, makes it run as alice and wait for READY.
t_root_refused_then_enable() {
    local ws=/home/alice/refused unit status
    make_workspace refused || return
    # Even where root trusts the directory (git would then work there as root), syncd refuses.
    cx git config --system --add safe.directory "$ws" || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    nsenter -t "$leader" -a systemctl start "$unit" >/dev/null 2>&1
    wait_for 15 is_failed "$unit" || fail "not failed within 15 s: $(prop "$unit" ActiveState)/$(prop "$unit" SubState)" || return
    [ "$(prop "$unit" ExecMainStatus)" = 78 ] || fail "exit status $(prop "$unit" ExecMainStatus), expected 78" || return
    [ "$(prop "$unit" NRestarts)" = 0 ] || fail "restarted $(prop "$unit" NRestarts) times" || return
    status=$(cx systemctl status --no-pager --full -n 20 "$unit")
    grep -q "belongs to alice (uid $(cx id -u alice))" <<<"$status" || fail "systemctl status does not name the owner and uid" || return
    grep -q "syncctl enable $ws" <<<"$status" || fail "systemctl status does not name the command to use" || return
    [ -z "$(cx find "$ws/.git" -user root)" ] || fail "root-owned files in alice's repository: $(cx find "$ws/.git" -user root | head -3)" || return
    cx test ! -e "$ws/.git/syncd" || fail "syncd created .git/syncd as root" || return

    local out
    out=$(cx syncctl enable "$ws" 2>&1) || fail "syncctl enable failed: $out" || return
    is_running "$unit" || fail "syncctl enable returned before the unit was active: $(prop "$unit" ActiveState)" || return
    [ "$(prop "$unit" User)" = alice ] || fail "not running as alice after syncctl enable" || return
    [ "$(cx systemctl is-enabled "$unit")" = enabled ] || fail "not enabled" || return
    cx grep -qx "User=alice" "/etc/systemd/system/$unit.d/owner.conf" || fail "no User=alice in owner.conf" || return
    write_file "$ws" after-enable.md "as alice now" || return
    wait_for 15 committed "$ws" after-enable.md || fail "after-enable.md not committed within 15 s" || return
    [ -z "$(foreign_files "$ws")" ] || fail "files under .git not owned by alice" || return

    out=$(cx syncctl disable "$ws" 2>&1) || fail "syncctl disable failed: $out" || return
    is_inactive "$unit" || fail "still $(prop "$unit" ActiveState) after syncctl disable" || return
    [ "$(cx systemctl is-enabled "$unit" 2>/dev/null)" = disabled ] || fail "still enabled after syncctl disable" || return
    cx test ! -e "/etc/systemd/system/$unit.d/owner.conf" || fail "owner.conf left behind" || return
}

# A file:// remote outside the workspace (under /srv, read-only under ProtectSystem=strict):
# `syncctl enable` adds it to ReadWritePaths=, and commits are pushed there.
t_file_remote() {
    local ws=/home/alice/pushing remote=/srv/remotes/pushing.git unit
    make_workspace pushing || return
    cx install -d -o alice -g alice /srv/remotes || return
    cx_as alice git init -q --bare "$remote" || return
    cx_as alice git -C "$ws" remote add origin "file://$remote" && cx_as alice git -C "$ws" push -q -u origin main 2>/dev/null ||
        fail "cannot push the first commit" || return
    cx_as alice git -C "$ws" config syncd.syncInterval 1s || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    local out
    out=$(cx syncctl enable "$ws" 2>&1) || fail "syncctl enable failed: $out" || return
    cx grep -q "ReadWritePaths=.*$remote" "/etc/systemd/system/$unit.d/owner.conf" || fail "owner.conf has no ReadWritePaths for $remote" || return
    write_file "$ws" pushed.md "to the remote" || return
    wait_for 15 committed "$ws" pushed.md || fail "pushed.md not committed within 15 s" || return
    local head
    head=$(cx_as alice git -C "$ws" rev-parse HEAD)
    pushed() { [ "$(cx_as alice git --git-dir="$remote" rev-parse main 2>/dev/null)" = "$head" ]; }
    wait_for 20 pushed || fail "the remote's main is not $head within 20 s: $(journal "$unit" -p warning -n 2 | tr '\n' ' ')" || return
    cx syncctl disable "$ws" >/dev/null 2>&1 || fail "syncctl disable failed" || return
}

# A bad setting: exit 78 once, no restart loop, the key and value in systemctl status; the
# journal's priorities: -p err shows the error and none of the info lines.
t_bad_setting() {
    local ws=/home/alice/banana unit status
    make_workspace banana || return
    cx_as alice git -C "$ws" config syncd.quietPeriod banana || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    drop_in "$unit" || return
    nsenter -t "$leader" -a systemctl start "$unit" >/dev/null 2>&1
    wait_for 15 is_failed "$unit" || fail "not failed within 15 s: $(prop "$unit" ActiveState)/$(prop "$unit" SubState)" || return
    [ "$(prop "$unit" ExecMainStatus)" = 78 ] || fail "exit status $(prop "$unit" ExecMainStatus), expected 78" || return
    [ "$(prop "$unit" NRestarts)" = 0 ] || fail "restarted $(prop "$unit" NRestarts) times" || return
    status=$(cx systemctl status --no-pager --full -n 20 "$unit")
    grep -q "syncd.quietPeriod" <<<"$status" && grep -q "banana" <<<"$status" || fail "systemctl status does not show the key and the value" || return
    journal "$unit" -p err | grep >/dev/null "syncd.quietPeriod" || fail "journalctl -p err does not show the error" || return
    # syncctl enable on it: exit 1 with syncd's own error line, not a wait until the timeout.
    local out code=0
    out=$(cx syncctl enable --timeout 30s "$ws" 2>&1) || code=$?
    [ "$code" = 1 ] || fail "syncctl enable exited $code on a bad setting, expected 1: $out" || return
    grep >/dev/null "exit status 78.*syncd.quietPeriod" <<<"$out" || fail "syncctl enable does not say why: $out" || return
    cx syncctl disable "$ws" >/dev/null 2>&1 || fail "syncctl disable of a failed unit failed" || return
    # A healthy unit's info lines are in the journal, and none of them under -p err.
    local notes
    notes=$(unit_of /home/alice/notes)
    journal "$notes" -p info | grep >/dev/null "watching /home/alice/notes" || fail "no info lines for $notes" || return
    [ -z "$(journal "$notes" -p err)" ] || fail "journalctl -p err shows lines of a healthy unit: $(journal "$notes" -p err | head -n 2)" || return
}

# The user manager: alice installs syncd for herself and runs `syncctl enable` as herself
# (systemctl --user, lingering so her manager runs without a login).
t_user_unit() {
    local ws=/home/alice/mine uid unit out
    uid=$(cx id -u alice)
    cx loginctl enable-linger alice || fail "loginctl enable-linger alice failed" || return
    wait_for 15 sh -c "[ \"\$(nsenter -t $leader -a systemctl is-active user@$uid.service)\" = active ]" ||
        fail "alice's user manager did not start" || return
    as_alice() { cx_as alice env XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
    as_alice env SYNCD_BIN_DIR=/run/syncd-bin PREFIX=/home/alice/.local /run/syncd-src/scripts/install.sh >"$logs/install-user.log" 2>&1 ||
        fail "install.sh as alice failed: $(tail -n 2 "$logs/install-user.log")" || return
    make_workspace mine || return
    unit=$(unit_of "$ws")
    out=$(as_alice /home/alice/.local/bin/syncctl enable "$ws" 2>&1) || fail "syncctl enable as alice failed: $out" || return
    [ "$(as_alice systemctl --user show -P ActiveState "$unit")" = active ] || fail "the user unit is not active after syncctl enable" || return
    write_file "$ws" mine.md "my own" || return
    wait_for 15 committed "$ws" mine.md || fail "mine.md not committed within 15 s" || return
    out=$(as_alice /home/alice/.local/bin/syncctl disable "$ws" 2>&1) || fail "syncctl disable as alice failed: $out" || return
    [ "$(as_alice systemctl --user show -P ActiveState "$unit")" = inactive ] || fail "the user unit is still running after syncctl disable" || return
}

# Pushing over ssh to a real sshd on 127.0.0.1 (the container's own network) works under the
# unit's hardening: git and ssh read alice's key and known_hosts; nothing else is needed.
t_ssh_remote() {
    local ws=/home/alice/viassh remote=/srv/ssh-remotes/viassh.git unit out head
    cx ssh-keygen -A >/dev/null || fail "cannot create sshd's host keys" || return
    cx systemctl start ssh.service || fail "sshd does not start: $(journal ssh.service -n 3 | tr '\n' ' ')" || return
    cx_as alice sh -c 'mkdir -p -m 700 ~/.ssh && ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519 && cp ~/.ssh/id_ed25519.pub ~/.ssh/authorized_keys' ||
        fail "cannot create alice's ssh key" || return
    keyscan() { cx_as alice sh -c 'ssh-keyscan -T 2 127.0.0.1 > ~/.ssh/known_hosts 2>/dev/null && test -s ~/.ssh/known_hosts'; }
    wait_for 15 keyscan || fail "sshd does not answer on 127.0.0.1:22 within 15 s" || return
    cx install -d -o alice -g alice /srv/ssh-remotes && cx_as alice git init -q --bare "$remote" || return
    make_workspace viassh || return
    cx_as alice git -C "$ws" remote add origin "ssh://alice@127.0.0.1$remote" &&
        cx_as alice env GIT_SSH_COMMAND="ssh -o BatchMode=yes" git -C "$ws" push -q -u origin main 2>"$logs/ssh-push.log" ||
        fail "the first push over ssh failed: $(cat "$logs/ssh-push.log")" || return
    cx_as alice git -C "$ws" config syncd.syncInterval 1s || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    out=$(cx syncctl enable "$ws" 2>&1) || fail "syncctl enable failed: $out" || return
    cx grep >/dev/null "ReadWritePaths" "/etc/systemd/system/$unit.d/owner.conf" && fail "an ssh remote got a ReadWritePaths= entry" && return 1
    write_file "$ws" over-ssh.md "pushed over ssh" || return
    wait_for 15 committed "$ws" over-ssh.md || fail "over-ssh.md not committed within 15 s" || return
    head=$(cx_as alice git -C "$ws" rev-parse HEAD)
    pushed() { [ "$(cx_as alice git --git-dir="$remote" rev-parse main 2>/dev/null)" = "$head" ]; }
    wait_for 20 pushed || fail "the remote's main is not $head within 20 s: $(journal "$unit" -p warning -n 2 | tr '\n' ' ')" || return
    cx syncctl disable "$ws" >/dev/null 2>&1 || fail "syncctl disable failed" || return
}

# --- the package (--deb) -------------------------------------------------------------------------
# The version inside the package, and its file name inside the container.
deb_version() { dpkg-deb -f "$deb" Version; }
deb_file() { echo "/run/syncd-deb/$(basename "$deb")"; }
# As alice, with her user manager's runtime directory (systemctl --user).
as_alice() { cx_as alice env XDG_RUNTIME_DIR="/run/user/$(cx id -u alice)" "$@"; }
user_prop() { as_alice systemctl --user show -P "$2" "$1"; }
# Waits until syncd counts a pending change in workspace $1 (its state.json).
pending_in() {
    wait_for 10 sh -c "nsenter -t $leader -a cat '$1/.git/syncd/state.json' 2>/dev/null | grep >/dev/null '\"pending_paths\":[1-9]'"
}
# Holds what is written in workspace $1 as pending (an hour's quiet period) in its running unit $2
# of the system or the user manager ($3): set, reloaded, and the reload in the journal.
hold_changes() {
    local ws=$1 unit=$2 manager=$3
    cx_as alice git -C "$ws" config syncd.quietPeriod 1h && cx_as alice git -C "$ws" config syncd.maxLatency 2h || return
    if [ "$manager" = user ]; then as_alice systemctl --user reload "$unit"; else cx systemctl reload "$unit"; fi || return
    reloaded() {
        if [ "$manager" = user ]; then cx journalctl --no-pager -o cat "_SYSTEMD_USER_UNIT=$unit"; else journal "$unit"; fi |
            grep >/dev/null 'settings reloaded: .*quietPeriod 1h'
    }
    wait_for 10 reloaded
}
shutdown_commit() { cx_as alice git -C "$1" log -1 --format=%B | grep >/dev/null "Syncd-Trigger: shutdown"; }

# apt install ./syncd_*.deb where Swift is absent (the toolchain hidden, a dynamically linked
# syncctl cannot start): installed, runs, links no Swift library, systemd knows the unit, and no
# instance is enabled or started.
t_deb_install() {
    if [ -n "$toolchain" ]; then
        [ -z "$(cx ls -A "$toolchain")" ] || fail "the toolchain $toolchain is visible inside the container" || return
    fi
    cx sh -c 'command -v swift' >/dev/null && fail "swift is on the PATH inside the container" && return 1
    if [ -n "$bin_dir" ]; then
        local dynamic
        dynamic=$(cx /run/syncd-bin/syncctl --version 2>&1) && fail "the dynamically linked syncctl runs: the Swift runtime is not hidden" && return 1
        grep >/dev/null 'libswift' <<<"$dynamic" || fail "the dynamically linked syncctl failed, but not for its Swift runtime: $dynamic" || return
    fi
    cx sh -c "cd /run/syncd-deb && DEBIAN_FRONTEND=noninteractive apt install -y ./$(basename "$deb")" >"$logs/apt-install.log" 2>&1 ||
        fail "apt install failed: $(grep -E '^(E|W):' "$logs/apt-install.log" | head -n 3 | tr '\n' ' ')" || return
    [ "$(cx dpkg-query -W -f='${Status} ${Version}' syncd)" = "install ok installed $(deb_version)" ] || fail "dpkg does not list syncd $(deb_version) as installed" || return
    [ "$(cx sh -c 'command -v syncd; command -v syncctl' | tr '\n' ' ')" = "/usr/bin/syncd /usr/bin/syncctl " ] || fail "syncd and syncctl are not the package's /usr/bin ones" || return
    [ "$(cx syncctl --version)" = "syncctl $(deb_version)" ] || fail "syncctl --version says $(cx syncctl --version 2>&1), expected $(deb_version)" || return
    cx ldd /usr/bin/syncd | grep >/dev/null -i swift && fail "/usr/bin/syncd links a Swift library: $(cx ldd /usr/bin/syncd | grep -i swift | head -n 1)" && return 1
    [ -z "$(cx systemctl list-units --all --plain --no-legend 'syncd@*')" ] || fail "the package started an instance: $(cx systemctl list-units --all --plain --no-legend 'syncd@*')" || return
    [ -z "$(cx find /etc/systemd/system -name 'syncd@*')" ] || fail "the package enabled something: $(cx find /etc/systemd/system -name 'syncd@*')" || return
    local probe=syncd@srv-probe.service
    [ "$(prop "$probe" LoadState)" = loaded ] || fail "systemd does not know syncd@.service after the install (LoadState $(prop "$probe" LoadState))" || return
    [[ "$(prop "$probe" FragmentPath)" == */lib/systemd/system/syncd@.service ]] || fail "the unit comes from $(prop "$probe" FragmentPath), not the package's unit directory" || return
    [[ "$(prop "$probe" ExecStart)" == *"path=/usr/bin/syncd "* ]] || fail "ExecStart is not /usr/bin/syncd: $(prop "$probe" ExecStart)" || return
    local doc
    for doc in $(prop "$probe" Documentation); do
        case $doc in file://*) cx test -s "${doc#file://}" || fail "Documentation= names $doc, which the package does not install" || return ;; esac
    done
}

# syncctl enable (the system manager, as root) for alice's workspace: running as alice, a write committed.
t_deb_enable() {
    local ws=/home/alice/notes unit out
    make_workspace notes || return
    unit=$(unit_of "$ws") && diag_unit=$unit
    out=$(cx syncctl enable "$ws" 2>&1) || fail "syncctl enable failed: $out" || return
    is_running "$unit" || fail "not running after syncctl enable: $(prop "$unit" ActiveState)" || return
    [ "$(prop "$unit" User)" = alice ] || fail "not running as alice" || return
    write_file "$ws" today.md "written while the packaged syncd runs" || return
    wait_for 15 committed "$ws" today.md || fail "today.md not committed within 15 s" || return
    [ -z "$(foreign_files "$ws")" ] || fail "files under .git not owned by alice" || return
}

# man syncctl and man syncd render (man-db, no warnings); bash completion loads.
t_deb_man() {
    local page out warnings
    for page in syncctl syncd; do
        out=$(cx env MANPAGER=cat MANWIDTH=80 man "$page" 2>"$logs/man-$page.err") || fail "man $page failed: $(head -n 2 "$logs/man-$page.err")" || return
        warnings=$(cx env MANPAGER=cat MANWIDTH=80 man --warnings "$page" 2>&1 >/dev/null)
        [ -z "$warnings" ] || fail "man $page warns: $(head -n 2 <<<"$warnings")" || return
        grep >/dev/null "^${page^^}(1)" <<<"$out" || fail "man $page has no ${page^^}(1) header" || return
        # What --help says is in the page: the overview, and every subcommand.
        local overview
        overview=$(cx "$page" --help | sed -n 's/^OVERVIEW: //p' | cut -c1-40)
        grep -F >/dev/null "$overview" <<<"$(tr -s ' \n' ' ' <<<"$out")" || fail "man $page lacks the overview of --help ($overview)" || return
        local sub
        for sub in $(cx "$page" --help | sed -n '/^SUBCOMMANDS:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\)\( .*\)\{0,1\}$/\1/p'); do
            grep -E >/dev/null "^     $sub( |$)" <<<"$out" || fail "man $page does not document $page $sub" || return
        done
    done
    cx bash -c '. /usr/share/bash-completion/completions/syncctl && complete -p syncctl' >/dev/null ||
        fail "the bash completion for syncctl does not load" || return
}

# A user's own service (systemctl --user, the package's user unit): syncctl enable as alice.
t_deb_user() {
    local ws=/home/alice/mine uid unit out
    uid=$(cx id -u alice)
    cx loginctl enable-linger alice || fail "loginctl enable-linger alice failed" || return
    wait_for 15 sh -c "[ \"\$(nsenter -t $leader -a systemctl is-active user@$uid.service)\" = active ]" ||
        fail "alice's user manager did not start" || return
    make_workspace mine || return
    unit=$(unit_of "$ws")
    out=$(as_alice syncctl enable "$ws" 2>&1) || fail "syncctl enable as alice failed: $out" || return
    [ "$(user_prop "$unit" ActiveState)" = active ] || fail "the user unit is not active after syncctl enable" || return
    [[ "$(user_prop "$unit" FragmentPath)" == /usr/lib/systemd/user/syncd@.service ]] || fail "the user unit comes from $(user_prop "$unit" FragmentPath)" || return
    write_file "$ws" mine.md "my own" || return
    wait_for 15 committed "$ws" mine.md || fail "mine.md not committed within 15 s" || return
}

# An upgrade (the same package, a higher version) restarts the running instances, system and
# user, each stopping gracefully (its pending change committed); nothing else starts.
t_deb_upgrade() {
    local notes=/home/alice/notes mine=/home/alice/mine system_unit user_unit system_pid user_pid up
    system_unit=$(unit_of "$notes") user_unit=$(unit_of "$mine") && diag_unit=$system_unit
    is_running "$system_unit" && [ "$(user_prop "$user_unit" ActiveState)" = active ] || fail "needs the units of deb_enable and deb_user running" || return
    hold_changes "$notes" "$system_unit" system && hold_changes "$mine" "$user_unit" user || fail "cannot hold changes (quietPeriod 1h, reload)" || return
    write_file "$notes" before-upgrade.md "pending at the upgrade" && write_file "$mine" before-upgrade.md "pending at the upgrade" || return
    pending_in "$notes" && pending_in "$mine" || fail "syncd did not count the pending writes within 10 s" || return
    system_pid=$(prop "$system_unit" MainPID) user_pid=$(user_prop "$user_unit" MainPID)
    up="$(deb_version)+harness1"
    cx sh -c "rm -rf /var/tmp/syncd-up && dpkg-deb -R $(deb_file) /var/tmp/syncd-up &&
        sed -i 's/^Version: .*/Version: $up/' /var/tmp/syncd-up/DEBIAN/control &&
        dpkg-deb --root-owner-group -Znone -b /var/tmp/syncd-up /var/tmp/syncd_up.deb >/dev/null" || fail "cannot repack the package as $up" || return
    cx sh -c "cd /var/tmp && DEBIAN_FRONTEND=noninteractive apt install -y ./syncd_up.deb" >"$logs/apt-upgrade.log" 2>&1 ||
        fail "apt install of $up failed: $(grep -E '^(E|W):' "$logs/apt-upgrade.log" | head -n 3 | tr '\n' ' ')" || return
    [ "$(cx dpkg-query -W -f='${Version}' syncd)" = "$up" ] || fail "not upgraded to $up" || return
    is_running "$system_unit" || fail "the system instance is not running after the upgrade" || return
    [ "$(prop "$system_unit" MainPID)" != "$system_pid" ] || fail "the system instance was not restarted (same pid $system_pid)" || return
    [ "$(user_prop "$user_unit" ActiveState)" = active ] || fail "the user instance is not running after the upgrade" || return
    [ "$(user_prop "$user_unit" MainPID)" != "$user_pid" ] || fail "the user instance was not restarted (same pid $user_pid)" || return
    committed "$notes" before-upgrade.md && shutdown_commit "$notes" || fail "the system instance's pending change was not committed at its stop" || return
    committed "$mine" before-upgrade.md && shutdown_commit "$mine" || fail "the user instance's pending change was not committed at its stop" || return
    [ -z "$(cx systemctl list-units --state=active,activating --plain --no-legend 'syncd@*' | grep -v -e "$system_unit")" ] ||
        fail "the upgrade started other instances: $(cx systemctl list-units --state=active,activating --plain --no-legend 'syncd@*')" || return
}

# apt remove: every running instance (system and user) is stopped, after committing its
# pending change; the binaries and units are gone, what syncctl enable wrote stays until purge.
t_deb_remove() {
    local notes=/home/alice/notes mine=/home/alice/mine system_unit user_unit out
    system_unit=$(unit_of "$notes") user_unit=$(unit_of "$mine") && diag_unit=$system_unit
    is_running "$system_unit" && [ "$(user_prop "$user_unit" ActiveState)" = active ] || fail "needs the units of deb_enable and deb_user running" || return
    hold_changes "$notes" "$system_unit" system && hold_changes "$mine" "$user_unit" user || fail "cannot hold changes (quietPeriod 1h, reload)" || return
    write_file "$notes" at-removal.md "pending at the removal" && write_file "$mine" at-removal.md "pending at the removal" || return
    pending_in "$notes" && pending_in "$mine" || fail "syncd did not count the pending writes within 10 s" || return
    committed "$notes" at-removal.md && fail "committed before the removal: the quiet period did not hold it" && return 1
    timeout 120 nsenter -t "$leader" -a env DEBIAN_FRONTEND=noninteractive apt remove -y syncd >"$logs/apt-remove.log" 2>&1 ||
        fail "apt remove failed: $(grep -E '^(E|W):' "$logs/apt-remove.log" | head -n 3 | tr '\n' ' ')" || return
    grep >/dev/null "stopping .*$system_unit" "$logs/apt-remove.log" || fail "the removal did not say it stops $system_unit" || return
    is_inactive "$system_unit" || fail "the system instance is $(prop "$system_unit" ActiveState) after the removal" || return
    [ "$(user_prop "$user_unit" ActiveState)" != active ] || fail "the user instance still runs after the removal" || return
    committed "$notes" at-removal.md && shutdown_commit "$notes" || fail "the system instance's pending change was not committed at the removal" || return
    committed "$mine" at-removal.md && shutdown_commit "$mine" || fail "the user instance's pending change was not committed at the removal" || return
    cx test ! -e /usr/bin/syncd || fail "/usr/bin/syncd is still there" || return
    [ "$(prop "$system_unit" LoadState)" = not-found ] || fail "systemd still has the unit (LoadState $(prop "$system_unit" LoadState)): no daemon-reload?" || return
    cx test -e "/etc/systemd/system/$system_unit.d/owner.conf" || fail "the removal (not a purge) deleted owner.conf" || return
}

# apt purge: the enablement links and the owner.conf drop-ins that syncctl enable wrote go too;
# a drop-in of the administrator's stays.
t_deb_purge() {
    local unit
    unit=$(unit_of /home/alice/notes)
    cx sh -c "printf '[Service]\nNice=5\n' > /etc/systemd/system/$unit.d/admin.conf" || return
    cx env DEBIAN_FRONTEND=noninteractive apt purge -y syncd >"$logs/apt-purge.log" 2>&1 || fail "apt purge failed: $(tail -n 2 "$logs/apt-purge.log")" || return
    cx dpkg-query -W -f='${Status}' syncd 2>/dev/null | grep >/dev/null installed && fail "syncd is still installed" && return 1
    [ -z "$(cx find /etc/systemd/system -name 'syncd@*.service' -path '*.wants/*')" ] || fail "enablement links left: $(cx find /etc/systemd/system -path '*.wants/syncd@*')" || return
    cx test ! -e "/etc/systemd/system/$unit.d/owner.conf" || fail "owner.conf left after the purge" || return
    cx test -e "/etc/systemd/system/$unit.d/admin.conf" || fail "the purge deleted the administrator's drop-in" || return
}

tests=(owner reload watchdog stop root_refused_then_enable file_remote ssh_remote bad_setting user_unit)
# watchdog again with the package: the static runtime without a toolchain must still die by the SIGABRT.
[ -n "$deb" ] && tests=(deb_install deb_enable deb_man watchdog deb_user deb_upgrade deb_remove deb_purge)
for test in "${only[@]}"; do
    [ "$test" = none ] || printf '%s\n' "${tests[@]}" | grep -x "$test" >/dev/null || die "no test $test; the tests are: ${tests[*]}"
done
for test in "${tests[@]}"; do run_test "$test"; done
echo "systemd harness: $passed passed, $failed failed in $((SECONDS - started)) s"
((failed == 0))
