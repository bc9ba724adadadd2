#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# uffdprobe guest init (PID 1 in the VM, running from the read-only host root):
# mount what a scenario needs (unless the initramfs did), run the requested command
# with a bound, write its exit status into the results channel, power off.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
CHANNEL=/run/uffdprobe/channel
BB=/bin/busybox  # static: each exec of it is much cheaper under TCG than dynamic tools
[ -x $BB ] || BB=

say() { echo "uffdprobe-guest: $*"; }

power_off() {
    $BB sync
    # reboot(2), not power-off: QEMU runs with -no-reboot, and a kernel without ACPI cannot power off
    [ -n "$BB" ] && $BB reboot -f
    echo b >/proc/sysrq-trigger
    sleep 30
}

fail() { say "init failed: $*"; power_off; exit 1; }

if [ ! -r "$CHANNEL/command.sh" ]; then  # booted without our initramfs: mount everything here
    if [ -n "$BB" ]; then
        mount() { $BB mount "$@"; }
        mkdir() { $BB mkdir "$@"; }
    fi
    mount -t proc proc /proc || fail "cannot mount /proc"
    proc_mounted=1
    transport=9p msize=262144
    read -r cmdline </proc/cmdline
    for word in $cmdline; do
        case "$word" in
            uffdprobe.transport=*) transport=${word#*=} ;;
            uffdprobe.msize=*) msize=${word#*=} ;;
        esac
    done
    . "${0%/*}/guest_mounts.sh"
    guest_mounts ""
fi
[ -r "$CHANNEL/command.sh" ] || fail "no $CHANNEL/command.sh from the host"

# command.sh (written by the host) sets BOUND and the argv with `set --`.
BOUND=60
. "$CHANNEL/command.sh"
# UFFDPROBE_TIED: the VM bounds every process in it (QEMU's end ends them), so no watchdog in the guest
export UFFDPROBE_RESULTS="$CHANNEL/results" HOME=/tmp PYTHONDONTWRITEBYTECODE=1 UFFDPROBE_TIED=vm
cd /tmp || fail "cannot cd /tmp"

# busybox timeout would run a bare name like `sh` as its own applet: give it the host's path.
prog=$(command -v "$1") && case "$prog" in /*) shift; set -- "$prog" "$@" ;; esac
read -r up_start _ </proc/uptime
say "init reached (uptime ${up_start}s); running: $*"
$BB timeout -k 5 "$BOUND" "$@" </dev/null
status=$?
read -r up_end _ </proc/uptime
if [ "${up_end%.*}" -ge $(( ${up_start%.*} + BOUND )) ]; then
    : >"$CHANNEL/command_timed_out"
fi
echo "$status" >"$CHANNEL/exit_status"
say "command done status=$status"
power_off
