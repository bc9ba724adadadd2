# SPDX-License-Identifier: GPL-2.0-only
"""Kernel splats as verdicts: the kernel log and taint read around every workload of a run (scenario,
--exec program, kselftest program) and what they say turned into the workload's verdict.

A splat logged while a workload ran (between the read just before it started and the read just after it
ended) makes its verdict WARN or OOPS (osutil.kmsg says which record is which; a new taint bit alone is
WARN), with the splat's lines as evidence and its own verdict kept beside them. A workload whose own
verdict is already a kernel problem (HANG, LEAK, ...) keeps it: the splat is added to its evidence and
its reason. A splat logged outside every workload (in a guest: from boot on) is reported against the boot
as one row of its own, KERNEL_LOG_ROW, once the run is over. Every workload's evidence says whether the
log could be read ("kernel_log"): where it cannot (the host without CAP_SYSLOG) it says why, and only the
taint is asked.
"""

from typing import Any, Dict, Optional

from uffdprobe.osutil import kmsg
from uffdprobe.scenarios.rows import KERNEL_LOG_ROW, NO_MEMORY
from uffdprobe.verdicts import Result, Verdict

_OUR_GUEST = "uffdprobe.transport="


def in_our_guest() -> bool:
    """Whether this is a guest uffdprobe booted (its kernel command line says so): its log is all ours."""
    try:
        with open("/proc/cmdline") as f:
            return _OUR_GUEST in f.read()
    except OSError:
        return False


class SplatWatch:
    """One run's kernel log. start() before each workload, then judge(result, window) once it ended;
    between_row() at the end of the run. `from_start` None: from boot on in our guest, else from now."""

    def __init__(self, from_start: Optional[bool] = None):
        whole = in_our_guest() if from_start is None else from_start
        self.since = "since the boot" if whole else "since the run began"
        self.log = kmsg.KernelLog(from_start=whole)
        self.taint = 0 if whole else kmsg.read_taint()
        self.between = kmsg.Window(taint_before=self.taint)

    def start(self) -> kmsg.Window:
        """Read what was logged since the last workload (it goes to the boot's row); a new window."""
        self.log.read(self.between)
        now = kmsg.read_taint()
        self.between.taint_now(now, self.taint)  # only what it gained since the last workload ended
        self.taint = now
        return kmsg.Window(seq_before=self.log.seq, taint_before=self.taint)

    def judge(self, result: Result, window: kmsg.Window) -> Result:
        """`result` with the window read into it: its kernel_log evidence, and WARN/OOPS for a splat."""
        self.log.read(window)
        self.taint = kmsg.read_taint()
        window.taint_now(self.taint, window.taint_before)
        result.evidence["kernel_log"] = self._facts(window)
        kind = splat_verdict(window)
        if kind is None:
            return result
        splat = splat_evidence(window)
        result.evidence["splat"] = splat
        said = f"the kernel logged {splat['first']}"
        if result.verdict.is_kernel_problem:
            result.reason = f"{result.reason}; {said}"
            splat["verdict_kept"] = f"{result.verdict.value} (already a kernel problem) over {kind.value}"
            return result
        result.evidence["own_verdict"] = {"verdict": result.verdict.value, "reason": result.reason}
        result.reason = f"{said} while it ran (its own verdict: {result.verdict.value}: {result.reason})"
        result.verdict = kind
        return result

    def between_row(self, kernel: Dict[str, Any]) -> Optional[Result]:
        """The boot's row when a splat was logged outside every workload (read up to now), else None."""
        self.start()
        window = self.between
        kind = splat_verdict(window)
        if kind is None:
            return None
        splat = splat_evidence(window)
        reason = f"the kernel logged {splat['first']} outside every workload ({self.since})"
        return Result(
            KERNEL_LOG_ROW,
            NO_MEMORY,
            kind,
            reason,
            {"splat": splat, "kernel_log": self._facts(window)},
            kernel,
            {},
            None,
        )

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> "SplatWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _facts(self, window: kmsg.Window) -> Dict[str, Any]:
        facts: Dict[str, Any] = {"read": self.log.error is None}
        if self.log.error:
            facts["why"] = self.log.error + ": a splat would not be seen, only a new taint bit"
        else:
            facts.update(
                seq_before=window.seq_before,
                records=window.records,
                first_seq=window.first_seq,
                last_seq=window.last_seq,
                lost=window.lost,
            )
        facts["taint"] = {
            "before": window.taint_before,
            "after": window.taint_after,
            "new": kmsg.taint_names(window.new_taint),
        }
        if window.taint_after is None:
            facts["taint"]["why"] = f"{kmsg.TAINTED} not readable"
        return facts


def splat_verdict(window: kmsg.Window) -> Optional[Verdict]:
    """OOPS when the window holds an Oops/BUG/KASAN report, WARN for a WARNING or a new taint bit, else None."""
    if "OOPS" in window.kinds:
        return Verdict.OOPS
    if window.kinds or window.new_taint:
        return Verdict.WARN
    return None


def splat_evidence(window: kmsg.Window) -> Dict[str, Any]:
    """The splat's lines (bounded, from just before its first report record on), its first report line,
    the new taint bits. Only for a window splat_verdict() found a splat in."""
    kind = splat_verdict(window)
    assert kind is not None, "no splat in this window"
    first = next((line for line in window.lines if kmsg.splat_kind(line.split("] ", 1)[-1])), None)
    if first is None:
        first = f"new taint {', '.join(kmsg.taint_names(window.new_taint))}"
    else:
        first = first.split("] ", 1)[-1]
    return {
        "kind": kind.value,
        "first": first,
        "reports": list(window.kinds),
        "lines": list(window.lines),
        "lines_cut": window.lines_cut,
        "new_taint": kmsg.taint_names(window.new_taint),
    }
