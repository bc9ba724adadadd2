# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe bisect`: check both endpoints, drive `git bisect run` with bisect-step, reset the tree.

To the culprit (the default), --good is older than --bad; to the fix (--find-fix), --bad (has the
defect) is older than --good (fixed), and git bisect runs with the terms broken/fixed, so what it
names is the first fixed commit: the one to backport.

Ctrl-C (or SIGTERM/SIGHUP) stops the whole bisection: the running step is interrupted (its QEMU
and make are killed), git bisect run is stopped, and the tree is put back with `git bisect reset`
on the branch or commit it was on; the exit status is 130. The log keeps every finished step.
"""

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from . import build as bisect_build, git as bisect_git, step as bisect_step
from uffdprobe.kbuild import cache as kbuild_cache
from uffdprobe.osutil import children
from .log import BisectLog
from uffdprobe.kbuild.errors import BadInput, SetupError

STOP_WAIT = 60.0  # seconds a stopped git bisect run gets to finish its step's cleanup


class Interrupted(KeyboardInterrupt):
    """The bisection was stopped by Ctrl-C or a termination signal."""


class EndpointError(BadInput):
    """--good is not good or --bad is not bad (or cannot be tested); says which and what to do."""


@dataclass
class BisectResult:
    """The outcome: the first commit of the new term, bad or fixed (or the candidates skips left), and
    where the log is."""

    first: Optional[str]
    term: str
    candidates: List[dict]
    steps: List[dict]
    log_dir: Path
    total_s: float
    output: str = field(default="", repr=False)


def bisect(
    spec: bisect_step.StepSpec, good_ref: str, bad_ref: str, step_argv: List[str], timeout: float
) -> BisectResult:
    """Run the whole bisection for `spec` between good_ref and bad_ref; the tree is always reset."""
    started = time.monotonic()
    tree = spec.tree
    bisect_git.check_clean(tree)
    good = bisect_git.resolve(tree, good_ref, "--good")
    bad = bisect_git.resolve(tree, bad_ref, "--bad")
    if good == bad:
        raise BadInput(f"--good {good_ref} and --bad {bad_ref} are the same commit ({good[:12]}): give an older --good")
    if spec.find_fix and not bisect_git.is_ancestor(tree, bad, good):
        raise BadInput(
            f"--find-fix: --bad {bad_ref} is not an ancestor of --good {good_ref}: give an older --bad "
            "(a commit with the defect) and a newer --good (one with the fix)"
        )
    if not spec.find_fix and not bisect_git.is_ancestor(tree, good, bad):
        raise BadInput(
            f"--good {good_ref} is not an ancestor of --bad {bad_ref}: give an older --good "
            "(or --find-fix to look for the commit that fixed it)"
        )
    with kbuild_cache.Lock(spec.work, "bisect", wait=2, what=f"the bisection work dir {spec.work}"):
        return _bisect_locked(spec, good, bad, good_ref, bad_ref, step_argv, timeout, started)


def _bisect_locked(spec, good, bad, good_ref, bad_ref, step_argv, timeout, started) -> BisectResult:
    """bisect() once the work dir is ours: endpoints, git bisect run, reset, result."""
    tree = spec.tree
    log = BisectLog(spec.work)
    if bisect_build.start_fresh_if_changed(spec.work, spec.base, list(spec.fragments)):
        log.event("reconfigure", reason="base or config fragments changed since the last bisection here")
    old, new = (bad, good) if spec.find_fix else (good, bad)
    term_old, term_new = bisect_git.TERMS[spec.find_fix]
    log.event(
        "start",
        tree=str(tree),
        good=good,
        bad=bad,
        scenario=spec.scenario,
        memory=spec.memory,
        runs=spec.runs,
        bad_if=spec.bad_if,
        bad_verdicts=list(spec.bad_verdicts),
        find_fix=spec.find_fix,
        candidates=bisect_git.count_between(tree, old, new),
        work=str(spec.work),
    )
    original = bisect_git.where(tree)
    with children.signals_raise(Interrupted, (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)):
        try:
            bisect_git.run(tree, "bisect", "start", f"--term-old={term_old}", f"--term-new={term_new}", new, old)
            _check_endpoint(spec, good, "check-good", bisect_step.GOOD, good_ref)
            _check_endpoint(spec, bad, "check-bad", bisect_step.BAD, bad_ref)
            bisect_git.run(tree, "bisect", "next")
            output = _run_bisect(tree, step_argv, timeout)
            first, candidates = bisect_git.parse_outcome(output, term_new)
            if not candidates:
                raise SetupError(
                    "git bisect run ended without naming a commit: "
                    + (output.strip().splitlines()[-1:] or ["no output"])[0]
                )
            bisect_log = bisect_git.run(tree, "bisect", "log", check=False).stdout
        except Interrupted as exc:
            log.event("interrupted", reason=str(exc))
            raise
        finally:
            bisect_git.reset(tree, original)
    found = [{"commit": c, "subject": bisect_git.subject(tree, c)} for c in candidates]
    total = round(time.monotonic() - started, 2)
    log.event(
        "result",
        term=term_new,
        candidates=found,
        total_s=total,
        git_bisect_log=bisect_log,
        **{f"first_{term_new}": found[0] if first else None},
    )
    return BisectResult(first, term_new, found, log.events("step"), spec.work, total, output)


def _check_endpoint(spec: bisect_step.StepSpec, commit: str, role: str, want: int, ref: str) -> None:
    """Check out an endpoint inside the bisection and run one step there in-process."""
    bisect_git.run(spec.tree, "checkout", "--quiet", "--detach", commit)
    spec_here = bisect_step.StepSpec(**{**spec.__dict__, "role": role})
    code = bisect_step.run_step(spec_here, standalone=False)
    if code == bisect_step.STOP:
        raise Interrupted("Ctrl-C during the endpoint check")
    if code == want:
        return
    step = BisectLog(spec.work).events("step")[-1]
    name = "--good" if want == bisect_step.GOOD else "--bad"
    if code == bisect_step.SKIP:
        raise EndpointError(
            f"{name} {ref} cannot be tested ({step.get('reason', '')[:200]}); fix that or choose another {name}"
        )
    seen = "bad" if code == bisect_step.BAD else "good"
    fix = "give an older --good" if want == bisect_step.GOOD else "give a newer --bad, or check --scenario/--memory"
    raise EndpointError(f"{name} {ref} is {seen} for {spec.scenario} ({step.get('reason', '')[:150]}): {fix}")


def _run_bisect(tree: Path, step_argv: List[str], timeout: float) -> str:
    """`git bisect run STEP...`, output shown and kept; stopped (and waited for) on Ctrl-C or timeout."""
    proc = subprocess.Popen(
        ["git", "-C", str(tree), "bisect", "run", *step_argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: List[str] = []
    reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise SetupError(f"git bisect run took longer than {timeout:.0f} s: raise --timeout") from None
    except BaseException:
        _stop(proc)
        raise
    finally:
        reader.join(10)
    return "".join(lines)


def _pump(stream, lines: List[str]) -> None:
    for line in stream:
        lines.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to git bisect run's process group (the step cleans up and exits 130), then SIGKILL."""
    children.stop_group(proc, signal.SIGINT, grace=STOP_WAIT, wait_for_group=True)
