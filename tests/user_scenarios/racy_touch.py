# SPDX-License-Identifier: GPL-2.0-only
"""A user's racy scenario, written only with uffdprobe.scenarios.api: a genuine race between two threads.

user-racy-touch  a toucher thread reads a missing page of a MISSING-registered range while the monitor
                 (this thread) looks at the uffd once and then fills the page with UFFDIO_COPY. The
                 toucher's fault reaches the uffd before the monitor looks only when the scheduler runs
                 the toucher inside the monitor's short window (the GIL is let go only by the read
                 syscall): a few tries in a hundred on the machine it was measured on. A try "hits" when
                 the monitor saw the fault; the scenario then ends FAIL (what a racy defect would show),
                 else it misses and racy.repeat tries again within the row's budget.
                 --param toucher=after-copy starts the toucher only once the page is filled: no
                 fault can reach the uffd, every try misses (what a kernel with the fix shows).
user-hang-on-try (test only) each try touches a page the monitor fills first, except try `hang_on_try`,
                 whose page nobody fills: a real hang in handle_userfault, caught by the supervisor,
                 which must say which try it was.
user-answer-on-try (test only) each try fills a page before a reader touches it (a miss, a PASS
                 Outcome), except try `answer_on_try`, whose reader faults first: the monitor sees the
                 fault and fills the page, the reader reads it: the race reached and answered right
                 (racy.Answered), which must end the run PASS on that try.

Measured on the 6.18 host, 2 loaded cores: standalone, 4 x 400 tries gave 9, 18, 14 and 6 hits; under
`uffdprobe run --runs 30`, 30 hits in 1351 tries (p 0.022), later 30 in 532 (p 0.056, load 14.6;
tests/bench_race_rate.py measures it again); in a matrix of 30 runs of 30 tries, 26 runs hit (p about
0.07). The row declares p_hit 0.015, the lowest rate seen, so the miss probability it reports is an
upper bound there.
"""

import threading

from uffdprobe.scenarios.api import (
    PAGE_SIZE,
    Answered,
    Outcome,
    PageFault,
    Race,
    RegisterMode,
    Scenario,
    ScenarioContext,
    Userfaultfd,
    Verdict,
    as_data,
    memory,
    repeat,
    watched,
)

RACE = Race(
    p_hit=0.015,
    measured_on="the 6.18 host, 2 loaded cores: 47 hits in 1600 tries, 6 in the worst 400",
    tries=2000,
    seconds=60.0,
)


def _one_try(uffd: Userfaultfd, source: memory.Mapping, racing: bool) -> Outcome:
    """One race: the toucher reads the missing page while the monitor reads the uffd, then copies (not
    racing: the monitor copies first, then lets the toucher go)."""
    page = memory.mmap_anonymous(PAGE_SIZE)
    try:
        uffd.register(page.addr, PAGE_SIZE, RegisterMode.MISSING)
        go = threading.Barrier(2, timeout=10.0)

        def toucher() -> None:
            go.wait()
            memory.touch(page.addr, PAGE_SIZE)  # blocks in handle_userfault until the copy, if it faults

        thread = threading.Thread(target=toucher, name="toucher", daemon=True)
        thread.start()
        if not racing:
            uffd.copy(page.addr, source.addr, PAGE_SIZE)
        go.wait()
        seen = [m for m in uffd.read() if isinstance(m, PageFault)]
        if racing:
            uffd.copy(page.addr, source.addr, PAGE_SIZE)  # answers the fault, or fills the page before it
        thread.join(10.0)
        if thread.is_alive():
            return Outcome(Verdict.ERROR, "the toucher did not finish within 10 s after the copy")
        if seen:
            return Outcome(
                Verdict.FAIL,
                "the toucher's fault reached the uffd before the monitor looked",
                {"messages": [as_data(m) for m in seen]},
            )
        return Outcome(Verdict.PASS, "the monitor looked before the toucher faulted")
    finally:
        page.close()


def run_racy_touch(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api()
    source = memory.mmap_anonymous(PAGE_SIZE)
    source.write(0, b"racy page")
    try:
        racing = ctx.params["toucher"] == "racing"
        return repeat(ctx, lambda index: _one_try(uffd, source, racing))
    finally:
        source.close()
        uffd.close()


def run_hang_on_try(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api()
    pages = memory.mmap_anonymous(PAGE_SIZE * 2)
    source = memory.mmap_anonymous(PAGE_SIZE)
    uffd.register(pages.addr, pages.length, RegisterMode.MISSING)
    ctx.hand_over(uffd, pages.addr, pages.length, rescue="unregister")

    def trigger(index: int):
        if index == ctx.params["hang_on_try"]:
            with watched(ctx, f"touch of an unanswered page on try {index}"):
                memory.touch(pages.page(1), PAGE_SIZE)
            return Outcome(Verdict.PASS, "the touch returned after the rescue")
        memory.madvise(pages.addr, PAGE_SIZE, "MADV_DONTNEED")
        uffd.copy(pages.addr, source.addr, PAGE_SIZE)
        memory.touch(pages.addr, PAGE_SIZE)
        return None

    return repeat(ctx, trigger)


def run_answer_on_try(ctx: ScenarioContext) -> Outcome:
    uffd = Userfaultfd.open()
    uffd.api()
    source = memory.mmap_anonymous(PAGE_SIZE)
    source.write(0, b"answered page")

    def trigger(index: int):
        page = memory.mmap_anonymous(PAGE_SIZE)
        try:
            uffd.register(page.addr, PAGE_SIZE, RegisterMode.MISSING)
            if index != ctx.params["answer_on_try"]:
                uffd.copy(page.addr, source.addr, PAGE_SIZE)  # filled first: the reader cannot fault
                return Outcome(Verdict.PASS, f"read {page.read(0, 13)!r} without a fault")
            got = []
            reader = threading.Thread(target=lambda: got.append(page.read(0, 13)), name="reader", daemon=True)
            reader.start()
            seen = [m for m in uffd.wait(10.0) if isinstance(m, PageFault)]
            if not seen:
                return Outcome(Verdict.ERROR, "the reader's fault did not reach the uffd in 10 s")
            uffd.copy(page.addr, source.addr, PAGE_SIZE)
            reader.join(10.0)
            if got != [b"answered page"]:
                return Outcome(Verdict.ERROR, f"the reader got {got} after the copy")
            return Answered("the reader's fault reached the uffd and the copy answered it", {"read": got[0].decode()})
        finally:
            page.close()

    try:
        return repeat(ctx, trigger)
    finally:
        source.close()
        uffd.close()


SCENARIOS = [
    Scenario(
        "user-racy-touch",
        "Does the monitor find no fault pending when it fills a page another thread is touching "
        "at the same moment? (a genuine two-thread race; FAIL when the fault won)",
        run_racy_touch,
        ("uffd",),
        memory=("anon-4k",),
        defaults={"toucher": "racing"},
        race=RACE,
    ),
    Scenario(
        "user-hang-on-try",
        "Harness self-test: does a hang on try N of a racy trigger come out HANG naming try N?",
        run_hang_on_try,
        ("uffd",),
        memory=("anon-4k",),
        defaults={"hang_on_try": 3},
        test_only=True,
        race=Race(p_hit=1.0, measured_on="by construction: try hang_on_try always hangs", tries=5),
    ),
    Scenario(
        "user-answer-on-try",
        "Harness self-test: does a racy trigger's answered try N end the run PASS on try N?",
        run_answer_on_try,
        ("uffd",),
        memory=("anon-4k",),
        defaults={"answer_on_try": 3},
        test_only=True,
        race=Race(p_hit=1.0, measured_on="by construction: try answer_on_try always faults", tries=5),
    ),
]
