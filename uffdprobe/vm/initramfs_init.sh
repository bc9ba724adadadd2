#!/bin/busybox sh
# SPDX-License-Identifier: GPL-2.0-only
# uffdprobe initramfs /init: load the drivers the shares need, mount the host root
# read-only plus everything the guest needs under it (static busybox is fast under TCG),
# then hand PID 1 over to the guest init found on that root.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "uffdprobe-guest: init failed: $*"
    reboot -f
    sleep 10
}

for m in $(cat /modules/order); do
    insmod "/modules/$m.ko" || echo "uffdprobe-initramfs: insmod $m failed"
done

transport=9p msize=262144 init=
for word in $(cat /proc/cmdline); do
    case "$word" in
        uffdprobe.transport=*) transport=${word#*=} ;;
        uffdprobe.msize=*) msize=${word#*=} ;;
        uffdprobe.init=*) init=${word#*=} ;;
    esac
done
[ -n "$init" ] || fail "no uffdprobe.init= on the kernel command line"

case "$transport" in
    9p) mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=$msize,cache=loose /dev/root /newroot ;;
    virtiofs) mount -t virtiofs -o ro /dev/root /newroot ;;
    *) fail "unknown transport $transport" ;;
esac || fail "cannot mount the host root over $transport"

umount /proc
umount /dev
. /guest_mounts.sh
guest_mounts /newroot
exec switch_root /newroot "$init"
