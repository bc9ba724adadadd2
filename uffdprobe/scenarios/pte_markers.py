# SPDX-License-Identifier: GPL-2.0-only
"""uffd-wp pte markers (the protection of a page with nothing mapped) where the kernel mishandled them:
two catalogue defects of 6.1 before 6.1.8 / 6.1.11.

- wp-hugetlb-marker-reprotect (0e678153f5be, CVE-2022-49760): write-protecting an unpopulated shared
  hugetlb page installs a marker; protecting it a second time let hugetlb_change_protection() treat the
  marker as a present pte and rewrite it into a huge pte mapping pfn 0. The page then reads physical page
  0 instead of zeros, and unmapping it hands pfn 0 to page_remove_rmap() (a VM_BUG_ON_PAGE under
  CONFIG_DEBUG_VM). The work runs in a worker process of its own session: an oops inside
  fallocate(PUNCH_HOLE) leaves that task in D state in hugetlb_vma_lock_write() on the lock it holds
  itself (the guest's hung-task panic would end the boot), so once the page is wrong the worker does not
  punch and exits, and exit's unmap meets the same page_remove_rmap(); a worker that oopses that way
  never becomes a zombie, so it is polled, never waited for.
- fork-marker-no-event (49d6d7fb6313): a private shmem mapping with an anon_vma, its written pages
  write-protected and dropped by MADV_DONTNEED, keeps markers; fork() with a uffd lacking
  UFFD_FEATURE_EVENT_FORK copied them into the child, whose VMA has no uffd-wp, with a WARNING in
  copy_nonpresent_pte(). The scenario itself sees nothing wrong (the child's read works); the kernel
  log's WARNING is the answer (supervise.splat), the child's pagemap the evidence.
"""

import errno
import json
import os
import time
from typing import Any, Callable, Dict, Optional

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.flags import Feature, RegisterMode
from uffdprobe.uffd.memory import MEMFD
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .common import PATTERN, page_flags, read_exactly, reap
from .context import ScenarioContext
from .memkinds import hugepage_size, memfd_mapping

_PEEK = 16  #: bytes of the page read back (a never-written page reads zeros)


def run_hugetlb_reprotect(ctx: ScenarioContext) -> Outcome:
    """Protect an unpopulated shared hugetlb page twice, read it, punch its hole, read it again (in a worker)."""
    data_r, data_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(data_r)
        _worker(data_w)  # never returns
    os.close(data_w)
    steps: Dict[str, Any] = {}
    try:
        buf = b""
        deadline = time.monotonic() + float(ctx.params.get("worker_timeout_s", 120.0))
        while "exiting" not in steps and time.monotonic() < deadline:
            chunk = read_exactly(data_r, 1, max(0.1, deadline - time.monotonic()))
            if not chunk:
                break
            buf += chunk
            if chunk == b"\n":
                steps.update(json.loads(buf))
                buf = b""
    finally:
        os.close(data_r)
    end = _worker_end(pid, float(ctx.params.get("exit_timeout_s", 30.0)))
    evidence = {**steps, "worker_end": end}
    if "error" in steps:
        return Outcome(Verdict.SKIP if steps.get("skip") else Verdict.ERROR, steps["error"], evidence)
    before, peek = steps.get("pagemap_before_read"), steps.get("read")
    if before is None or peek is None:
        return Outcome(Verdict.ERROR, f"the worker reported no read ({end})", evidence)
    if before["present"] or peek != "00" * _PEEK:
        return Outcome(
            Verdict.LEAK,
            f"a never-touched hugetlb page protected twice is mapped before any access "
            f"(pfn {before['pfn']:#x}) and reads {peek}, not zeros: the process reads "
            f"memory that is not its file's; the worker then {end}",
            evidence,
        )
    if "punched" not in steps:
        return Outcome(Verdict.STUCK, f"fallocate(PUNCH_HOLE) of the page did not return: the worker {end}", evidence)
    if steps.get("read_after_punch") != "00" * _PEEK:
        return Outcome(
            Verdict.LEAK,
            f"the punched page reads {steps.get('read_after_punch')}, not zeros (the worker {end})",
            evidence,
        )
    return Outcome(
        Verdict.PASS,
        "protected twice, the unpopulated page stayed unmapped (a marker) and read "
        "zeros; its hole was punched and it read zeros again",
        evidence,
    )


def _worker(out: int) -> None:
    """The worker: every step a JSON line on `out`; never returns."""
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.dup2(out, 3)
        os.closerange(4, 1 << 16)  # nothing of the scenario's (its supervisor socket) may outlive it here
        _reprotect(lambda **step: os.write(3, json.dumps(step).encode() + b"\n"))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - a worker reports, never raises into the scenario
        try:
            os.write(3, json.dumps({"error": f"worker: {type(exc).__name__}: {exc}"}).encode() + b"\n")
        except OSError:
            pass
    finally:
        os._exit(code)


def _reprotect(say: Callable[..., Any]) -> None:
    size = hugepage_size()
    fd = memory.memfd_create("uffdprobe-hugetlb", MEMFD["MFD_CLOEXEC"] | MEMFD["MFD_HUGETLB"])
    os.ftruncate(fd, size)
    try:
        m = memory.mmap_fd(fd, size, shared=True)
    except OSError as exc:
        if exc.errno != errno.ENOMEM:
            raise
        say(error=f"no huge page to map: {exc}", skip=True)
        return
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)
    uffd.register(m.addr, size, RegisterMode.WP)
    uffd.writeprotect(m.addr, size, protect=True)
    say(pagemap_after_protect=page_flags(pagemap.read(m.addr)[0]))
    uffd.writeprotect(m.addr, size, protect=True)
    before = pagemap.read(m.addr)[0]
    say(pagemap_before_read=page_flags(before))
    say(read=m.read(0, _PEEK).hex())
    if before.present:  # the marker became a mapping: an oops in fallocate() would leave this task in D
        say(punched=False, exiting=True)
        return
    memory.fallocate(fd, 0, size, punch_hole=True)
    say(punched=True, read_after_punch=m.read(0, _PEEK).hex())
    say(exiting=True)


def _worker_end(pid: int, timeout: float) -> str:
    """How the worker ended, polled for `timeout` seconds: reaped with its status, or (a task the kernel
    killed while it exited never becomes a zombie) its state in /proc."""
    deadline = time.monotonic() + timeout
    state: Optional[str] = None
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # dead (EXIT_DEAD) without a status: wait() no longer counts it
            done, status = 0, 0
        if done:
            return f"exited with status {os.waitstatus_to_exitcode(status)}"
        state = _proc_state(pid)
        if state and state.startswith("X"):
            return f"died in the kernel and was never reaped (state {state})"
        time.sleep(0.1)
    return f"was still there after {timeout:.0f} s (state {state})"


def _proc_state(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def run_fork_no_event(ctx: ScenarioContext) -> Outcome:
    """Leave markers in a private shmem mapping with an anon_vma, then fork() with a uffd lacking EVENT_FORK."""
    uffd = Userfaultfd.open()
    uffd.api(Feature.PAGEFAULT_FLAG_WP)  # no UFFD_FEATURE_EVENT_FORK: the child's VMA loses uffd-wp
    m = memfd_mapping(ctx.memory, shared=False)
    m.write(0, PATTERN)  # a private copy: the VMA gets an anon_vma, so fork() copies its page table
    uffd.register(m.addr, m.length, RegisterMode.WP)
    uffd.writeprotect(m.addr, m.length, protect=True)
    memory.madvise(m.addr, m.length, "MADV_DONTNEED")
    ctx.note("pagemap_parent", page_flags(pagemap.read(m.addr)[0]))  # the marker: uffd-wp, not present
    data_r, data_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(data_r)
            entry = pagemap.read(m.addr)[0]
            seen = {
                "pagemap_child": {**page_flags(entry), "swapped": entry.swapped},
                "child_read": m.read(0, _PEEK).hex(),
            }
            os.write(data_w, json.dumps(seen).encode() + b"\n")
        except BaseException:  # noqa: BLE001 - the parent reports what it did not get
            code = 1
        os._exit(code)
    os.close(data_w)
    try:
        got = read_exactly(data_r, 1 << 12, float(ctx.params.get("child_timeout_s", 60.0)))
    finally:
        os.close(data_r)
        status = reap(pid)
    if status != 0 or not got.endswith(b"\n"):
        return Outcome(Verdict.ERROR, f"the child of fork() reported nothing (exit {status})")
    seen = json.loads(got)
    child = seen["pagemap_child"]
    seen["child_inherited_marker"] = bool(child["uffd_wp"] and not child["present"])
    if seen["child_read"] != "00" * _PEEK:
        return Outcome(Verdict.ERROR, f"the child read {seen['child_read']}, not the file's zeros", seen)
    return Outcome(
        Verdict.PASS,
        "fork() without UFFD_FEATURE_EVENT_FORK: the child read the file's zeros "
        + (
            "through a stale uffd-wp marker it inherited"
            if seen["child_inherited_marker"]
            else "and inherited no uffd-wp marker"
        ),
        seen,
    )
