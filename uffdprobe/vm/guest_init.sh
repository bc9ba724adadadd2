#!/bin/sh
# uffdprobe guest init (PID 1 in the VM, running from the read-only host root):
# mount what a scenario needs, run the requested command with a bound,
# write its exit status into the results channel, power off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
CHANNEL=/run/uffdprobe/channel

say() { echo "uffdprobe-guest: $*" >/dev/console 2>/dev/null || echo "uffdprobe-guest: $*"; }

power_off() {
    sync
    if [ -x /bin/busybox ]; then /bin/busybox poweroff -f; fi
    echo o >/proc/sysrq-trigger 2>/dev/null
    sleep 30
}

fail() { say "init failed: $*"; power_off; exit 1; }

# No redirections until /dev is mounted: on the read-only root they would fail the command.
[ -c /dev/null ] || mount -t devtmpfs devtmpfs /dev || fail "cannot mount /dev"
mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm 2>/dev/null
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp || fail "cannot mount tmpfs on /tmp"
mount -t tmpfs -o mode=755 tmpfs /run || fail "cannot mount tmpfs on /run"
mount -t tmpfs -o mode=1777 tmpfs /var/tmp 2>/dev/null

transport=9p msize=262144
for word in $(cat /proc/cmdline); do
    case "$word" in
        uffdprobe.transport=*) transport=${word#*=} ;;
        uffdprobe.msize=*) msize=${word#*=} ;;
    esac
done
mkdir -p "$CHANNEL" || fail "cannot create $CHANNEL"
case "$transport" in
    9p) mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize,cache=none uffdprobe-channel "$CHANNEL" ;;
    virtiofs) mount -t virtiofs uffdprobe-channel "$CHANNEL" ;;
    *) false ;;
esac || fail "cannot mount the results channel over $transport"
[ -r "$CHANNEL/command.sh" ] || fail "no $CHANNEL/command.sh from the host"

# command.sh (written by the host) sets BOUND and the argv with `set --`.
BOUND=60
. "$CHANNEL/command.sh"
export UFFDPROBE_RESULTS="$CHANNEL/results" HOME=/tmp PYTHONDONTWRITEBYTECODE=1
cd /tmp || fail "cannot cd /tmp"

read -r up_start _ </proc/uptime
say "init reached; running: $*"
timeout -k 5 "$BOUND" "$@" </dev/null
status=$?
read -r up_end _ </proc/uptime
if [ "$status" -eq 124 ] && [ "${up_end%.*}" -ge $(( ${up_start%.*} + BOUND )) ]; then
    : >"$CHANNEL/command_timed_out"
fi
echo "$status" >"$CHANNEL/exit_status.tmp" && mv "$CHANNEL/exit_status.tmp" "$CHANNEL/exit_status"
sync
say "command done status=$status"
power_off
