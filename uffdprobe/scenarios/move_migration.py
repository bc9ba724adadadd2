# SPDX-License-Identifier: GPL-2.0-only
"""move-pmd-migration (catalogue): UFFDIO_MOVE meets a THP whose PMD is a migration entry.

While move_pages(2) migrates a THP to another NUMA node, its PMD holds a migration entry: a swap entry,
no page. A move that has to split the source PMD (here: one 4 KiB page of the THP) first asks whether
the THP is exclusive to the mapping. Before aba6faec0103 it asked pmd_folio() of the PMD without
checking that it was present: a struct page made of the entry's bits, read under the PMD lock (an oops
in move_pages(); the dead thread keeps the lock). The fixed kernel splits the migration entry into PTE
migration entries, waits for the migration and answers for the page. On x86-64 6.12 neither is reached:
a pmd_devmap() test comes first, and the entry's inverted offset sets the devmap bit (57), so the move
is refused with ENOENT, with or without the fix (mainline dropped that test with devmap).

The THP is shared with a forked child, so it is not exclusive: a move that finds the PMD present is
refused (EBUSY) before any split and the THP stays PMD-mapped for the next migration. A move that met
the entry shows afterwards: ENOENT among the answers (6.12), or the PMD split in this process only
(AnonHugePages 0 here, the child's THP whole). A try is one victim process (victim.py: the oops kills
the moving thread while it holds the PMD lock) that migrates the THP between two nodes ROUNDS times
while its other thread moves the page in a loop. Needs two NUMA nodes and move_pages(2) (CAP_SYS_NICE
for a shared page); SKIP with the probed reason otherwise. Where the crash is reachable (model-move-pmd-migration: 6.12
with the revert and its pmd_devmap() test taken out) the guest does not come back from it: the oops is
in the console and the boot ends PANIC (soft lockup) before any verdict. The row comes last, so it is
the row running at the panic (run/guest.py), and the catalogue reads the oops' move_pages() frame.
"""

import errno
import os
import threading
import time
from typing import Any, Dict, List, Union

from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd import memory
from uffdprobe.uffd.memory import PAGE_SIZE
from uffdprobe.verdicts import Outcome, Verdict
from . import racy, victim
from .common import PATTERN
from .context import ScenarioContext
from .memkinds import SkipScenario, allocate, anon_huge_kb
from .move_scan import MOVE_FEATURE, uffd_with

ROUNDS = 4  #: migrations (node to node and back) per try
SETUP_S = 60.0  # fork, a THP, its sharer: slow under TCG
#: ROUNDS migrations of 2 MiB with a mover beside them take ~0.1 s under TCG. Where the crash is reachable
#: no answer comes back (measured on model-move-pmd-migration): the dead
#: mover exits with interrupts off, the migration spins on the PMD lock it held (the watchdog names it) and
#: no user space runs again: the soft-lockup watchdog panics the guest ~50 s after the oops (PANIC).
WATCH_S = 15.0


def nodes_online() -> List[int]:
    """The NUMA nodes /sys says are online ([] without NUMA support)."""
    try:
        with open("/sys/devices/system/node/online") as f:
            text = f.read().strip()
    except OSError:
        return []
    out: List[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def run_move_pmd_migration(ctx: ScenarioContext) -> Outcome:
    """Race UFFDIO_MOVE of one page of a shared THP against the THP's migration between two nodes."""
    uffd_with(Feature.MOVE, MOVE_FEATURE).close()  # SkipScenario on a kernel without UFFDIO_MOVE
    nodes = nodes_online()
    if len(nodes) < 2:
        raise SkipScenario(f"one NUMA node online ({nodes or 'no NUMA support'}): no node to migrate a THP to")

    def trigger(n: int) -> Union[None, Outcome, racy.Answered]:
        v = victim.run(lambda report: _race(nodes[:2], report), SETUP_S, WATCH_S, ctx)
        got = v.facts
        ctx.note("last_try", got)  # a run that never hit shows what its last try saw
        if v.state == "error":
            return Outcome(Verdict.ERROR, f"the race victim failed: {got['error']}", got)
        if v.state == "thread_gone":  # left asleep: its other thread may wait on what the dead one held
            return Outcome(
                Verdict.ERROR,
                "the thread moving a page of the THP under migration died inside the kernel (its process "
                "lives on): UFFDIO_MOVE crashed on the migration entry",
                got,
            )
        if v.state == "stuck":  # the supervisor's splat check makes it OOPS when the kernel logged one
            return Outcome(
                Verdict.ERROR,
                f"the thread moving a page of the THP under migration did not return in {WATCH_S:g} s",
                got,
            )
        if v.state == "silent":
            return Outcome(Verdict.ERROR, f"the race victim reported nothing in {SETUP_S:g} s", got)
        if got["moved"]:
            return Outcome(Verdict.ERROR, "UFFDIO_MOVE moved a page of a THP shared with a child", got)
        if got["split"]:  # a fixed kernel's try met the migration entry: the run is answered
            how = (
                "the PMD was split under it (AnonHugePages 0 here, the sharer's THP whole); the kernel waited "
                f"for the migration and refused the shared page ({got['errnos']})"
            )
        elif got["errnos"].get("ENOENT"):  # 6.12: pmd_devmap() reads the entry's inverted offset bits as devmap
            how = (
                f"it was refused with ENOENT {got['errnos']['ENOENT']} times (the PMD taken for a devmap one), "
                "before any folio is read"
            )
        else:
            return None
        return racy.Answered(f"a move met the THP's migration entry: {how}", got)

    return racy.repeat(ctx, trigger)


def _race(nodes: List[int], report: victim.Report) -> None:
    uffd = uffd_with(Feature.MOVE, MOVE_FEATURE)
    src = allocate("anon-thp", PATTERN)  # one PMD-mapped THP, or SkipScenario
    rfd, wfd = os.pipe()
    child = os.fork()
    if child == 0:  # the sharer: maps the THP too (not exclusive any more) until the victim ends
        os.close(wfd)
        os.read(rfd, 1)
        os._exit(0)
    os.close(rfd)
    dst = memory.mmap_anonymous(PAGE_SIZE)
    uffd.register(dst.addr, PAGE_SIZE, RegisterMode.MISSING)
    try:
        home = memory.move_page(src.addr, nodes[0])
    except OSError as exc:
        raise SkipScenario(f"move_pages(2) unavailable: {exc}") from None
    first = _move(uffd, dst.addr, src.addr)
    report(sharer=child, home=home, first_move=first, huge_kb_before=anon_huge_kb(src.addr))
    if first != "EBUSY":
        report(error=f"the first move of a page of the shared THP answered {first}, not EBUSY")
        return
    answers: Dict[str, int] = {}
    stop = threading.Event()

    def mover() -> None:  # a thread of its own: one that dies in the kernel leaves no zombie behind
        report(watch_tid=threading.get_native_id())
        while not stop.is_set():
            answer = _move(uffd, dst.addr, src.addr)
            answers[answer] = answers.get(answer, 0) + 1
        report(watch_done=True)

    thread = threading.Thread(target=mover, daemon=True)
    thread.start()
    time.sleep(0.05)
    start = time.monotonic()
    statuses: List[Any] = []
    for i in range(ROUNDS):  # to the other node and back: each migration a PMD migration entry
        try:
            statuses.append(memory.move_page(src.addr, nodes[(i + 1) % 2]))
        except OSError as exc:
            statuses.append(str(exc))
    stop.set()
    thread.join()
    huge_kb = anon_huge_kb(src.addr)
    sharer_kb = anon_huge_kb(src.addr, pid=child)
    report(
        moves=sum(answers.values()),
        errnos=answers,
        moved=answers.get("moved", 0),
        migrations=statuses,
        race_ms=round((time.monotonic() - start) * 1000, 1),
        huge_kb_after=huge_kb,
        # the PMD split in this process only: the sharer still maps the THP whole (a failed THP
        # allocation on the target node would have split the folio itself, in both)
        split=huge_kb < 2048 and sharer_kb == 2048,
        sharer_huge_kb_after=sharer_kb,
        done=True,
    )


def _move(uffd: Any, dst: int, src: int) -> str:
    """One UFFDIO_MOVE of the THP's first page: "moved" or the errno's name."""
    try:
        uffd.move(dst, src, PAGE_SIZE)
        return "moved"
    except UffdError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
