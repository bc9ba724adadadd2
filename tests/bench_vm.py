# SPDX-License-Identifier: GPL-2.0-only
"""Boot-time numbers under TCG, ours next to virtme-ng's; prints, asserts nothing about speed.

Run: .venv/bin/python -m pytest -s -m benchmark tests/bench_vm.py
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from uffdprobe.osutil import children
from uffdprobe.vm import distro
from uffdprobe.vm.boot import boot
from uffdprobe.vm.leftovers import vm_processes
from uffdprobe.vm.paths import cache_root

pytestmark = [pytest.mark.benchmark, pytest.mark.vm]
REPEATS = int(os.environ.get("UFFDPROBE_BENCH_REPEATS", "3"))
PY = sys.executable
VNG_LIMIT = 240


def kernels():
    """(label, kernel) pairs to measure: the cloud .deb, plus any built bzImage and generic .deb at hand."""
    found = [("debian-cloud-deb", distro.debian_cloud_kernel(cache_root() / "debs"))]
    generic = sorted((cache_root() / "debs").glob("linux-image-6.1.0-*-amd64-unsigned_*.deb"))
    generic = [g for g in generic if "-cloud-" not in g.name]
    if generic:
        found.append(("debian-generic-deb", generic[-1]))
    built = os.environ.get("UFFDPROBE_TEST_BZIMAGE") or _stock_image()
    if built:
        found.append(("built-bzImage", Path(built)))
    return found


def _stock_image():
    """The stock recipe's bzImage (built now if the cache lacks it), the kernel every earlier number in
    docs/results.md was measured on; not the first cache entry by hash, which may be any recipe's (a
    NUMA 6.12 one, on which virtme-ng's init never finishes)."""
    from uffdprobe.run import kernel_arg

    return kernel_arg.bootable(kernel_arg.resolve("stock"), progress=False)


def vng_binary():
    """The vng command next to this Python, or on PATH."""
    beside = Path(PY).with_name("vng")
    return str(beside) if beside.exists() else shutil.which("vng")


#: What virtme-ng's guest prints when its power-off could not power off: a kernel without ACPI (our
#: fragment since 0bc589f) turns power-off into halt, and a halted guest never ends QEMU.
VNG_HALTED = "reboot: System halted"


def vng_boot_seconds(image: Path, flags=()):
    """Wall seconds of `vng --run IMAGE --disable-kvm [flags] --exec true`, and how it ended: "exit N", or
    "halted" when the guest halted instead of powering off (then vng is stopped at that line: the guest
    was done), or "killed at VNG_LIMIT"."""
    env = dict(os.environ, PATH=f"{Path(PY).parent}:{os.environ.get('PATH', '')}")
    console = tempfile.NamedTemporaryFile(prefix="vng-console-", suffix=".log")
    started = time.monotonic()
    proc = subprocess.Popen(
        [vng_binary(), "--run", str(image), "--disable-kvm", "--verbose", *flags, "--exec", "true"],
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    how = f"killed at {VNG_LIMIT}s"
    try:
        while time.monotonic() - started < VNG_LIMIT:
            if proc.poll() is not None:
                how = f"exit {proc.returncode}"
                break
            if VNG_HALTED.encode() in Path(console.name).read_bytes():
                how = "halted"
                break
            time.sleep(0.05)
        seconds = time.monotonic() - started
    finally:
        children.stop(proc)
        console.close()
    return seconds, how


def image_of(kernel: Path) -> Path:
    """The bzImage inside a .deb (unpacked in the cache), or the path itself."""
    if kernel.suffix == ".deb":
        return distro.unpack_kernel_deb(kernel, cache_root() / distro.UNPACK_SUBDIR).image
    return kernel


@pytest.mark.timeout(1800)  # nine boots plus virtme-ng on a busy 2-core machine
@pytest.mark.parametrize("label,kernel", kernels())
def test_boot_seconds(label, kernel, tmp_path):
    rows = []
    for i in range(REPEATS):
        for what, argv in (
            ("true", ["true"]),
            ("python -c pass", [PY, "-c", "pass"]),
            ("import uffdprobe", [PY, "-c", "import uffdprobe.uffd.userfaultfd"]),
        ):
            r = boot(kernel, argv, accel="tcg", run_dir=tmp_path / f"{i}-{what.split()[0]}", timeout=240)
            rows.append(
                (
                    what,
                    r.outcome,
                    r.timings["launch_to_init"],
                    r.timings["launch_to_command_done"],
                    r.timings["total"],
                    r.transport,
                )
            )
    print(f"\n== {label}: {kernel}")
    print(f"{'command':18} {'outcome':8} {'launch->init':>12} {'launch->done':>12} {'total':>7}  transport")
    for row in rows:
        print(f"{row[0]:18} {row[1]:8} {row[2] or 0:12.2f} {row[3] or 0:12.2f} {row[4]:7.2f}  {row[5]}")
    for what in ("true", "python -c pass", "import uffdprobe"):
        done = [r[3] for r in rows if r[0] == what and r[3]]
        if done:
            print(f"median launch->done for {what!r}: {statistics.median(done):.2f}s over {len(done)} boots")
    if vng_binary():
        # Plain vng first waits for a virtiofsd it cannot start here, then falls back to 9p.
        for flags in ((), ("--force-9p",)):
            seconds, how = vng_boot_seconds(image_of(kernel), flags)
            print(f"virtme-ng --disable-kvm {' '.join(flags)} --exec true: {seconds:.2f}s wall, {how}")
    else:
        print("virtme-ng: not installed (pip install virtme-ng)")
    assert not vm_processes()
