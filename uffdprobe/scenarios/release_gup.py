# SPDX-License-Identifier: GPL-2.0-only
"""close() of a userfaultfd while another thread's GUP walks its range (fixed by fe4cdc2c4e24).

The deterministic trigger: an anonymous range registered MISSING whose pages are all present but the
last (the shared zero page, mapped by a first MADV_POPULATE_READ with MADV_NOHUGEPAGE, so nothing is
allocated), a thread that MADV_POPULATE_READs the whole range (a GUP walk that holds mmap_lock across
the present pages), and the uffd closed while the walk runs. userfaultfd_release() marks the
context released and waits for mmap_write_lock; the walk then meets the missing page. A kernel without
the fix answers that fault VM_FAULT_NOPAGE, GUP faults again without dropping mmap_lock, and neither
thread ever moves: the closer sits in D in userfaultfd_release, the GUP thread spins. The supervisor
sees the close never return and kills the process (GUP honours fatal signals). A fixed kernel returns
VM_FAULT_RETRY, the walk drops mmap_lock, the close completes and the populate fills the last page.

The walk must outlast the delay before the close by far: it is timed on the same range first, and
lengthened (doubled) until it takes `min_walk_ms`, and the close comes a quarter into it (1 ms, as first
tried, lands before the walking thread is even scheduled on a loaded machine; a 12 ms walk under TCG let
one close in five set `released` only after the walk had reached the missing page: no hang on a kernel
that has the defect). A close that did not start in the walk's first half, or did not wait for the walk
(it came before the walk took mmap_lock, or after it reached the missing page), asked nothing: the
trigger is tried again, up to `attempts` times, with a walk twice as long (timed again) after one that
reached the missing page before the close (the machine's load changed since the timing), and ERROR if
it never landed.
"""

import errno
import threading
import time
from typing import Any, Dict

from uffdprobe.uffd import memory
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .context import ScenarioContext, watched
from .memkinds import SkipScenario

DEFAULTS = {
    "walk_mib": 64,  #: first walk length tried; doubled until the walk takes min_walk_ms
    "max_walk_mib": 4096,  #: never more (8 MiB of page tables: the present pages are all the zero page)
    "min_walk_ms": 100.0,  #: the walk must take this long: the close comes a quarter in, the rest is margin
    "attempts": 5,  #: triggers tried until one close lands inside the walk
    "close_bound_s": 4.0,  #: a close blocked this long (its task in D or R) is the hang
}


def _zero_page_range(length: int) -> Mapping:
    """`length` bytes of anonymous memory, 4 KiB-mapped, present (the zero page) but for the last page."""
    m = memory.mmap_anonymous(length)
    try:
        memory.madvise(m.addr, length, "MADV_NOHUGEPAGE")
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a kernel without THP, where every page is 4 KiB anyway
            raise
    memory.madvise(m.addr, length - PAGE_SIZE, "MADV_POPULATE_READ")
    return m


def _timed_walk(m: Mapping) -> float:
    """Seconds one MADV_POPULATE_READ takes over the present part of `m` (nothing left to fault)."""
    start = time.monotonic()
    memory.madvise(m.addr, m.length - PAGE_SIZE, "MADV_POPULATE_READ")
    return time.monotonic() - start


def _calibrated_range(p: Dict[str, Any]) -> tuple:
    """(mapping, walk seconds): the shortest power-of-two walk from walk_mib up that takes min_walk_ms."""
    mib = int(p["walk_mib"])
    while True:
        m = _zero_page_range(mib << 20)
        walk_s = _timed_walk(m)
        if walk_s * 1000 >= p["min_walk_ms"] or mib * 2 > p["max_walk_mib"]:
            return m, walk_s
        m.close()
        mib *= 2


class _Populate(threading.Thread):
    """MADV_POPULATE_READ of the whole range in its own thread, timed; the error if it failed."""

    def __init__(self, m: Mapping):
        super().__init__(name="populate", daemon=True)
        self.m, self.started_at, self.ended_at, self.error, self.tid = m, 0.0, 0.0, "", 0
        self.entered = threading.Event()

    def run(self) -> None:
        self.tid = memory.gettid()
        self.started_at = time.monotonic()
        self.entered.set()
        try:
            memory.madvise(self.m.addr, self.m.length, "MADV_POPULATE_READ")
        except (OSError, UffdError) as exc:
            self.error = str(exc)
        self.ended_at = time.monotonic()


def _attempt(ctx: ScenarioContext, m: Mapping, walk_s: float, close_bound_s: float) -> Dict[str, Any]:
    """One trigger: register, start the walk, close the uffd a quarter into it (watched); what was seen."""
    memory.madvise(m.addr + m.length - PAGE_SIZE, PAGE_SIZE, "MADV_DONTNEED")  # the last page missing again
    uffd = Userfaultfd.open()
    uffd.api()
    uffd.register(m.addr, m.length, RegisterMode.MISSING)
    gup = _Populate(m)
    gup.start()
    if not gup.entered.wait(10.0):
        uffd.close()
        raise RuntimeError("the populate thread did not start within 10 s")
    time.sleep(walk_s / 4)
    fault_raised_before_close = uffd.poll(0)
    ctx.note(
        "closing",
        {
            "ms_after_walk_start": round((time.monotonic() - gup.started_at) * 1000, 2),
            "fault_raised_before_close": fault_raised_before_close,
            "gup_tid": gup.tid,
        },
    )
    with watched(ctx, "close(uffd) while MADV_POPULATE_READ walks its range", spin_s=close_bound_s, rescue="kill"):
        close_at = time.monotonic()
        uffd.close()
        close_s = time.monotonic() - close_at
    gup.join(30.0)
    return {
        "close_started_ms_after_walk": round((close_at - gup.started_at) * 1000, 2),
        "close_ms": round(close_s * 1000, 2),
        "fault_raised_before_close": fault_raised_before_close,
        # inside the walk: it began in the walk's first half (the context was released long before the
        # walk could reach the missing page) and waited for the walk to let go of mmap_lock
        "landed": (
            not fault_raised_before_close and close_at - gup.started_at <= walk_s / 2 and close_s >= walk_s / 10
        ),
        "populate": (
            "still running after 30 s"
            if gup.is_alive()
            else {"ms": round((gup.ended_at - gup.started_at) * 1000, 2), "error": gup.error or None}
        ),
    }


def run(ctx: ScenarioContext) -> Outcome:
    p = {**DEFAULTS, **ctx.params}
    try:
        m, walk_s = _calibrated_range(p)
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # before v5.14 there is no MADV_POPULATE_READ to walk with
            raise SkipScenario("kernel lacks MADV_POPULATE_READ (v5.14+): no GUP walk to ask with") from None
        raise
    ctx.note(
        "walk", {"mib": m.length >> 20, "present_pages": m.length // PAGE_SIZE - 1, "walk_ms": round(walk_s * 1000, 2)}
    )
    if walk_s * 1000 < p["min_walk_ms"]:
        return Outcome(
            Verdict.ERROR,
            f"a {m.length >> 20} MiB walk takes only {walk_s * 1000:.1f} ms, "
            f"less than min_walk_ms={p['min_walk_ms']:g}: the close could miss it",
            {},
        )
    tries = []
    for _ in range(int(p["attempts"])):
        seen = _attempt(ctx, m, walk_s, p["close_bound_s"])
        tries.append({**seen, "walk_mib": m.length >> 20, "walk_ms": round(walk_s * 1000, 2)})
        ctx.note("attempts", tries)
        if seen["landed"] or not isinstance(seen["populate"], dict):
            break
        if seen["fault_raised_before_close"] and 2 * m.length <= p["max_walk_mib"] << 20:
            # the walk reached the missing page before the close came: on a machine whose load changed
            # since the timing, this walk is too short; twice as long (timed again) for the next try
            m.close()
            m = _zero_page_range(2 * m.length)
            walk_s = _timed_walk(m)
    evidence = {"attempts": tries}
    if not isinstance(seen["populate"], dict):
        return Outcome(Verdict.HANG, "the close returned but MADV_POPULATE_READ did not within 30 s", evidence)
    if not seen["landed"]:
        return Outcome(
            Verdict.ERROR,
            f"in {len(tries)} attempts the close never waited for the walk (it "
            f"needs >= {walk_s * 100:.0f} ms of a {walk_s * 1000:.0f} ms walk): the trigger did not "
            "fire, nothing was asked",
            evidence,
        )
    if seen["populate"]["error"]:
        return Outcome(
            Verdict.ERROR, f"MADV_POPULATE_READ failed after the close: {seen['populate']['error']}", evidence
        )
    return Outcome(
        Verdict.PASS,
        f"close() waited {seen['close_ms']:.0f} ms for the GUP walk to let go of "
        f"mmap_lock, then returned (attempt {len(tries)}); the populate completed",
        evidence,
    )
