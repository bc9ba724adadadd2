# SPDX-License-Identifier: GPL-2.0-only
# Sourced by both inits: mount what a guest needs under the root prefix $1 ("" or /newroot).
# Needs: a `mount` command, $transport, $msize, and a fail function. No redirections before /dev.
# Leaves /proc alone when $proc_mounted is set.
guest_mounts() {
    r=$1
    # Always mount: over 9p the host's own /proc and /dev show through the read-only root.
    [ -n "$proc_mounted" ] || mount -t proc proc "$r/proc" || fail "cannot mount /proc"
    # CONFIG_DEVTMPFS_MOUNT kernels put devtmpfs on /dev already; mounting it there again is EBUSY.
    # Shell builtins, not grep/cat/tr: under TCG every exec of a dynamic tool costs about 0.1 s.
    devtmpfs=
    while read -r source target _; do
        [ "$source $target" = "devtmpfs $r/dev" ] && devtmpfs=1
    done <"$r/proc/mounts"
    [ -n "$devtmpfs" ] || mount -t devtmpfs devtmpfs "$r/dev" || fail "cannot mount /dev"
    mount -t sysfs sysfs "$r/sys"
    # the mm selftests' pin cases use /sys/kernel/debug/gup_test (CONFIG_GUP_TEST): harmless without it
    mount -t debugfs debugfs "$r/sys/kernel/debug" 2>/dev/null
    mount -t tmpfs -o mode=755 tmpfs "$r/run" || fail "cannot mount tmpfs on /run"
    # Host paths the command needs under /tmp or /var/tmp (a checkout in /tmp, say) come as
    # uffdprobe.keep=P1,P2: bound aside before those are covered, and back in place after.
    keep= n=0
    read -r words <"$r/proc/cmdline"
    for word in $words; do
        case "$word" in uffdprobe.keep=*) keep=${word#*=} ;; esac
    done
    ifs=$IFS IFS=,
    set -f
    set -- $keep  # the kept paths, split at commas (r holds the old $1)
    IFS=$ifs
    set +f
    for path in "$@"; do
        n=$((n + 1))
        mkdir -p "$r/run/uffdprobe/keep/$n"
        mount -o bind "$r$path" "$r/run/uffdprobe/keep/$n" || fail "cannot keep $path visible"
    done
    mount -t tmpfs -o mode=1777 tmpfs "$r/tmp" || fail "cannot mount tmpfs on /tmp"
    mount -t tmpfs -o mode=1777 tmpfs "$r/var/tmp" 2>/dev/null
    n=0
    for path in "$@"; do
        n=$((n + 1))
        mkdir -p "$r$path"
        mount -o bind "$r/run/uffdprobe/keep/$n" "$r$path" || fail "cannot put $path back"
    done
    mkdir -p "$r/dev/pts" "$r/dev/shm" "$r/run/uffdprobe/channel"
    mount -t devpts devpts "$r/dev/pts" 2>/dev/null
    mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
    case "$transport" in
        9p) mount -t 9p -o trans=virtio,version=9p2000.L,msize=$msize,cache=none uffdprobe-channel \
                "$r/run/uffdprobe/channel" ;;
        virtiofs) mount -t virtiofs uffdprobe-channel "$r/run/uffdprobe/channel" ;;
        *) false ;;
    esac || fail "cannot mount the results channel over $transport"
}
