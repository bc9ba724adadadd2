# SPDX-License-Identifier: GPL-2.0-only
"""MISSING faults served per second: the Python handler through the bindings next to a C handler."""

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import datafiles

from . import memory
from .memory import PAGE_SIZE
from .messages import PageFault
from .userfaultfd import Userfaultfd
from .flags import RegisterMode


@dataclass
class Rate:
    handler: str
    pages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.pages / self.seconds


def python_rate(pages: int) -> Rate:
    """One C faulting thread (GIL released) touches `pages` fresh pages; a Python thread copies each in."""
    with (
        Userfaultfd.open() as uffd,
        memory.mmap_anonymous(pages * PAGE_SIZE) as area,
        memory.mmap_anonymous(PAGE_SIZE) as src,
    ):
        uffd.api()
        src.write(0, b"\x5a" * PAGE_SIZE)
        uffd.register(area.addr, area.length, RegisterMode.MISSING)
        mask = ~(PAGE_SIZE - 1)
        errors = []

        def handler() -> None:
            served = 0
            copy, wait, src_addr = uffd.copy, uffd.wait, src.addr
            try:
                while served < pages:
                    msgs = wait(5.0)
                    if not msgs:
                        raise TimeoutError("no fault for 5 s")
                    for msg in msgs:
                        if isinstance(msg, PageFault):
                            copy(msg.address & mask, src_addr, PAGE_SIZE)
                            served += 1
            except Exception as exc:  # reported below; the faulter is released by unregister
                errors.append(exc)
                uffd.unregister(area.addr, area.length)

        thread = threading.Thread(target=handler, name="uffd-bench-handler")
        thread.start()
        start = time.perf_counter()
        memory.touch(area.addr, area.length)
        seconds = time.perf_counter() - start
        thread.join(10)
        if errors:
            raise errors[0]
    return Rate("python", pages, seconds)


def c_rate(pages: int) -> Rate:
    """Run the C handler on the same number of pages: the one an installed package built at install time,
    else bench_missing.c (datafiles.native()) compiled now."""
    built = datafiles.native() / "bench_missing"
    with tempfile.TemporaryDirectory(prefix="uffdprobe-bench-") as tmp:
        exe = str(built) if os.access(built, os.X_OK) else _compile(tmp)
        out = subprocess.run([exe, str(pages)], check=True, capture_output=True, text=True, timeout=120).stdout.split()
    return Rate("c", int(out[0]), float(out[1]))


def _compile(tmp: str) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UsageError("bench compiles its C handler here and finds no C compiler: apt-get install gcc")
    exe = os.path.join(tmp, "bench_missing")
    subprocess.run(
        [cc, "-O2", "-pthread", "-o", exe, str(datafiles.native() / "bench_missing.c")], check=True, timeout=120
    )
    return exe


def compare(pages: int = 20000, rounds: int = 3) -> str:
    """Alternate C and Python rounds in one run (the machine is noisy) and report best rates and ratio."""
    py, c = [], []
    for _ in range(rounds):
        c.append(c_rate(pages))
        py.append(python_rate(pages))
    best_py = max(r.per_second for r in py)
    best_c = max(r.per_second for r in c)
    lines = [
        f"MISSING faults served per second, {pages} pages x {rounds} rounds (best of each):",
        f"  C handler      {best_c:12,.0f}/s   rounds: " + ", ".join(f"{r.per_second:,.0f}" for r in c),
        f"  Python handler {best_py:12,.0f}/s   rounds: " + ", ".join(f"{r.per_second:,.0f}" for r in py),
        f"  ratio Python/C {best_py / best_c:12.2f}   (goal: >= 0.50)",
    ]
    return "\n".join(lines)
