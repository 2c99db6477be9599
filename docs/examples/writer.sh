#!/bin/sh
# A writer that follows syncd's protocol (docs/PROTOCOL.md) with flock(1) and POSIX tools only.
# Usage: writer.sh WORKSPACE COMMAND [ARGS...]   (COMMAND runs in WORKSPACE, under the shared lock)
set -eu
WS=$1; shift
cd "$WS"
LOCKDIR=$(git config syncd.lockDir || true)
case "$LOCKDIR" in
  "") LOCKDIR=$(git rev-parse --path-format=absolute --git-path syncd) ;;
  /*) ;;
  *) LOCKDIR="$(git rev-parse --show-toplevel)/$LOCKDIR" ;;
esac
mkdir -p "$LOCKDIR"

# True while syncd's writer pause lease is in force: not expired, and its holder is the very
# process that wrote it (same boot, same pid, same start time). Anything else is ignored.
lease_in_force() {
  f="$LOCKDIR/writer-pause.json"
  [ -f "$f" ] && [ ! -L "$f" ] || return 1
  exp=$(sed -n 's/.*"expires_at":\([0-9]*\).*/\1/p' "$f")
  pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$f")
  start=$(sed -n 's/.*"start_time":\([0-9]*\).*/\1/p' "$f")
  boot=$(sed -n 's/.*"boot_id":"\([^"]*\)".*/\1/p' "$f")
  [ -n "$exp" ] && [ -n "$pid" ] && [ -n "$start" ] || return 1    # garbage or truncated
  [ "$exp" -gt "$(date +%s)" ] || return 1                          # expired
  [ "$boot" = "$(cat /proc/sys/kernel/random/boot_id)" ] || return 1 # written before a reboot
  [ -r "/proc/$pid/stat" ] || return 1                              # holder dead
  [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)" = "$start" ] # pid not reused
}

[ -e "$LOCKDIR/emergency-stop.json" ] && { echo "writer: syncd is under an emergency stop; not writing" >&2; exit 75; }

exec 9>>"$LOCKDIR/sync.lock"        # open (never delete) the sync lock
while :; do
  while lease_in_force; do sleep 0.2; done
  flock -s 9                         # shared: other writers may write too; syncd waits
  lease_in_force || break            # a lease that appeared meanwhile goes first
  flock -u 9
done
"$@"                                 # the multi-file change, all under the lock
status=$?
flock -u 9
exit $status
