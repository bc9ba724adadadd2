# Sourced by both inits: mount what a guest needs under the root prefix $1 ("" or /newroot).
# Needs: a `mount` command, $transport, $msize, and a fail function. No redirections before /dev.
# Leaves /proc alone when $proc_mounted is set.
guest_mounts() {
    r=$1
    # Always mount: over 9p the host's own /proc and /dev show through the read-only root.
    [ -n "$proc_mounted" ] || mount -t proc proc "$r/proc" || fail "cannot mount /proc"
    # CONFIG_DEVTMPFS_MOUNT kernels put devtmpfs on /dev already; mounting it there again is EBUSY.
    grep -q "^devtmpfs $r/dev " "$r/proc/mounts" || mount -t devtmpfs devtmpfs "$r/dev" || fail "cannot mount /dev"
    mount -t sysfs sysfs "$r/sys"
    mount -t tmpfs -o mode=1777 tmpfs "$r/tmp" || fail "cannot mount tmpfs on /tmp"
    mount -t tmpfs -o mode=755 tmpfs "$r/run" || fail "cannot mount tmpfs on /run"
    mount -t tmpfs -o mode=1777 tmpfs "$r/var/tmp" 2>/dev/null
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
