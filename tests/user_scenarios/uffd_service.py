# SPDX-License-Identifier: GPL-2.0-only
"""A user's own scenarios, written only with uffdprobe.scenarios.api (the user guide's example).

user-missing-copy     a uffd service thread answers every MISSING fault with UFFDIO_COPY; the data the
                      faulting thread reads back must be exactly what was copied in.
user-service-vmsplice the same service thread "evicts" a page: write-protects it and vmsplice()s it to a
                      pipe itself. Where read-GUP forces COW (v5.8, model-5.8) the splice raises a WP
                      fault that only this very thread could answer: it hangs in handle_userfault.
user-self-deadlock    (test only) the service thread writes to its own protected page: a real
                      deadlock on every kernel, for proving the supervisor on the running one.
"""

import os
import threading

from uffdprobe.scenarios.api import (
    PAGE_SIZE,
    Feature,
    Outcome,
    PageFault,
    RegisterMode,
    Scenario,
    ScenarioContext,
    Userfaultfd,
    Verdict,
    as_data,
    gettid,
    memory,
    read_exactly,
    watched,
)


def page_bytes(index: int) -> bytes:
    """What page `index` holds once its fault is answered: its number, then a rolling pattern."""
    head = f"user page {index:04d} ".encode()
    return (head + bytes((index + i) % 251 for i in range(PAGE_SIZE - len(head))))[:PAGE_SIZE]


class Service:
    """A uffd service thread: answers MISSING faults with UFFDIO_COPY, and runs the jobs it is given
    (umap's evictions) itself, between two reads of the uffd."""

    def __init__(self, uffd: Userfaultfd, base: int):
        self.uffd, self.base = uffd, base
        self.faults, self.errors = [], []
        self.jobs, self.stop = [], threading.Event()
        self.source = memory.mmap_anonymous(PAGE_SIZE)
        self.thread = threading.Thread(target=self._loop, name="uffd-service", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with open(f"/proc/self/task/{gettid()}/comm", "w") as comm:  # the name the HANG evidence shows
            comm.write("uffd-service")
        while not self.stop.is_set():
            while self.jobs:
                self.jobs.pop(0)()
            for msg in self.uffd.wait(0.05):
                if isinstance(msg, PageFault) and not msg.is_wp:
                    self.answer(msg)

    def answer(self, msg: PageFault) -> None:
        page = (msg.address - self.base) // PAGE_SIZE
        self.faults.append(as_data(msg))
        self.source.write(0, page_bytes(page))
        try:
            self.uffd.copy(self.base + page * PAGE_SIZE, self.source.addr, PAGE_SIZE)
        except OSError as exc:  # EEXIST: another fault on the same page raced in; anything else is kept
            self.errors.append(str(exc))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.source.close()


def run_missing_copy(ctx: ScenarioContext) -> Outcome:
    pages = int(ctx.params["pages"])
    uffd = Userfaultfd.open()
    uffd.api()
    region = memory.mmap_anonymous(pages * PAGE_SIZE)
    uffd.register(region.addr, region.length, RegisterMode.MISSING)
    ctx.hand_over(uffd, region.addr, region.length, rescue="unregister")
    service = Service(uffd, region.addr)
    try:
        with watched(ctx, f"reading {pages} missing pages"):
            wrong = [i for i in range(pages) if region.read(i * PAGE_SIZE, PAGE_SIZE) != page_bytes(i)]
    finally:
        service.close()
    evidence = {
        "faults": len(service.faults),
        "first_fault": service.faults[:1],
        "copy_errors": service.errors,
        "wrong_pages": wrong,
    }
    if wrong:
        return Outcome(
            Verdict.FAIL, f"{len(wrong)} of {pages} pages read back other bytes than UFFDIO_COPY put there", evidence
        )
    if len(service.faults) != pages:
        return Outcome(Verdict.FAIL, f"{pages} missing pages raised {len(service.faults)} MISSING faults", evidence)
    return Outcome(
        Verdict.PASS, f"{pages} MISSING faults, each answered with UFFDIO_COPY; every page read back exactly", evidence
    )


def run_service_vmsplice(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    region = memory.mmap_anonymous(PAGE_SIZE)
    uffd.register(region.addr, PAGE_SIZE, RegisterMode.MISSING | RegisterMode.WP)
    ctx.hand_over(uffd, region.addr, PAGE_SIZE, rescue="unprotect")
    service = Service(uffd, region.addr)
    with watched(ctx, "reading the missing page"):
        first = region.read(0, PAGE_SIZE)  # a MISSING fault, answered by the service thread
    done = threading.Event()
    outcome = {}

    def evict() -> None:  # a job of the service thread: the only reader of the uffd splices the page
        r, w = os.pipe()
        try:
            uffd.writeprotect(region.addr, PAGE_SIZE, protect=True)
            with watched(ctx, "vmsplice() of its own write-protected page by the uffd service thread"):
                n = memory.vmsplice(w, region.addr, PAGE_SIZE)
            outcome["spliced"] = read_exactly(r, n, 5.0)
            outcome["pending_after"] = [as_data(m) for m in uffd.read()]
            uffd.writeprotect(region.addr, PAGE_SIZE, protect=False)
        except BaseException as exc:
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            os.close(r), os.close(w)
            done.set()

    service.jobs.append(evict)
    finished = done.wait(float(ctx.params["evict_timeout_s"]))
    service.close()
    evidence = {"faults": service.faults, **{k: v for k, v in outcome.items() if k != "spliced"}}
    if not finished:
        return Outcome(Verdict.ERROR, "the eviction neither finished nor was seen blocked", evidence)
    if "error" in outcome:
        return Outcome(Verdict.ERROR, f"eviction failed: {outcome['error']}", evidence)
    if first != page_bytes(0) or outcome["spliced"] != page_bytes(0):
        return Outcome(Verdict.FAIL, "the page or the spliced bytes differ from what UFFDIO_COPY put there", evidence)
    if outcome["pending_after"]:
        return Outcome(Verdict.FAIL, "vmsplice() returned but left a uffd fault pending", evidence)
    return Outcome(
        Verdict.PASS,
        "the service thread vmsplice()d its own write-protected page without a uffd "
        "fault; the pipe holds the page's bytes",
        evidence,
    )


def run_self_deadlock(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    region = memory.mmap_anonymous(PAGE_SIZE)
    region.write(0, page_bytes(0))
    uffd.register(region.addr, PAGE_SIZE, RegisterMode.WP)
    uffd.writeprotect(region.addr, PAGE_SIZE, protect=True)
    ctx.hand_over(uffd, region.addr, PAGE_SIZE, rescue="unprotect")
    with watched(ctx, "a write by the only uffd reader to its own protected page"):
        region.write(0, b"written")
    return Outcome(Verdict.PASS, "the write completed: nobody trapped it (or it was rescued)")


SCENARIOS = [
    Scenario(
        "user-missing-copy",
        "Does every MISSING fault reach the service thread once, and does UFFDIO_COPY put exactly "
        "the copied bytes under the faulting reader?",
        run_missing_copy,
        needs=("uffd",),
        memory=("anon-4k",),
        defaults={"pages": 16},
        models="a CRIU/QEMU-postcopy style fault service",
    ),
    Scenario(
        "user-service-vmsplice",
        "Can a uffd service thread vmsplice() a page it has just write-protected without raising a "
        "fault that only it could answer?",
        run_service_vmsplice,
        needs=("uffd", "uffd-wp"),
        memory=("anon-4k",),
        defaults={"evict_timeout_s": 60.0},
        models="umap's eviction from the fault-service thread; hangs under 17839856fd58's forced COW",
    ),
    Scenario(
        "user-self-deadlock",
        "Self-test of a user file: the only uffd reader writes to its own protected page; HANG, "
        "rescued, on every kernel.",
        run_self_deadlock,
        needs=("uffd", "uffd-wp"),
        memory=("anon-4k",),
        test_only=True,
    ),
]
