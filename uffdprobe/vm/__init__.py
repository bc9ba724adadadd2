"""VM runner: boot a kernel in QEMU with the host root read-only and run one command in it."""
