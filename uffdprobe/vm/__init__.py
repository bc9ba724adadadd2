# SPDX-License-Identifier: GPL-2.0-only
"""VM runner: boot a kernel in QEMU with the host root read-only and run one command in it: the kernel
argument resolved (resolve, kernel, distro, modules, initramfs), the shares (shares), QEMU (qemu), KVM or
TCG (accel), the console read (console) and the boot classified (outcome); boot ties them together.

May import kbuild, results, osutil, exitcodes; never run, bisect or cli.
"""
