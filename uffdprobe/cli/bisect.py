# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe bisect` and `uffdprobe bisect-step` (the latter for `git bisect run`)."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from uffdprobe.bisect import git as bisect_git, step as bisect_step
from uffdprobe.kbuild import cache as kbuild_cache, config as kbuild_config
from uffdprobe.exitcodes import Exit, UffdprobeError, UsageError
from uffdprobe.run import guest as guest_run
from uffdprobe.kbuild.errors import BadInput, BuildFailed, KbuildError
from uffdprobe.scenarios.memkinds import ALL_KINDS
from uffdprobe.osutil import files
from uffdprobe.verdicts import KERNEL_PROBLEMS
from .vocab import complete_scenario, completes, deprecated

BISECT_TEXT = """\
Check that --good is good and --bad is bad, then run `git bisect run uffdprobe bisect-step ...`.
Every step builds in one build directory (WORK_DIR/build, one .config), boots the kernel under
QEMU --runs times and decides. The tree must have no uncommitted changes to tracked files; it is
always put back on the branch (or commit) it was on. Log: WORK_DIR/bisect.txt and bisect.jsonl.
With --find-fix it bisects the other way round, to the commit that fixed the defect (the one to
backport): --bad is the older commit that has the defect, --good the newer one that does not, and
git bisect runs with the terms broken (old) and fixed (new).
Exit: 0 culprit or fix (or candidate list) found, 2 bad input or an endpoint that is not what it
should be, 130 stopped by Ctrl-C/SIGTERM (the tree is reset, the log keeps the finished steps)."""

STEP_TEXT = """\
Build HEAD of --tree incrementally, boot it, run the scenario; exit 0 good, 1 bad, 125 skip
(with --find-fix 0 broken, i.e. the defect shows, and 1 fixed; build failure, boot failure, no verdict, harness error). Never 128 or more, except: Ctrl-C
exits 130, which makes git bisect run stop (run `git bisect reset` afterwards), and a bad command
line inside a bisection exits 128 (exit 2 would mark the commit bad). Example:
  git bisect start BAD GOOD && git bisect run uffdprobe bisect-step --tree . --scenario wp-gup-vmsplice"""

ABORT = 128  # the exit status that makes git bisect run stop: bisect-step's answer to a bad command line


def add_parsers(sub) -> None:
    """Register both subcommands."""
    p = sub.add_parser(
        "bisect",
        help="find the commit that made a scenario fail (git bisect run driver)",
        description=BISECT_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--good",
        required=True,
        metavar="REF",
        help="a commit where the scenario passes (older than --bad; newer with --find-fix)",
    )
    p.add_argument(
        "--bad", required=True, metavar="REF", help="a commit where it fails (newer than --good; older with --find-fix)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0,
        metavar="S",
        help="bound for git bisect run (default: per-step bound x (candidates + 2))",
    )
    _common(p)
    p.set_defaults(func=cmd_bisect, error_prefix="uffdprobe bisect")
    s = sub.add_parser(
        "bisect-step",
        help="one step for `git bisect run`: exit 0 good, 1 bad, 125 skip",
        description=STEP_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(s)
    s.add_argument("--role", default="bisect", help=argparse.SUPPRESS)
    s.error = _step_usage_error
    s.set_defaults(func=cmd_step, error_prefix="uffdprobe bisect-step")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", required=True, metavar="PATH", help="the kernel git checkout to bisect")
    completes(
        p.add_argument("--scenario", required=True, metavar="NAME", help="the scenario that decides (uffdprobe list)"),
        complete_scenario,
    )
    p.add_argument("--memory", action="append", choices=ALL_KINDS, help="memory kind(s) (default: all it supports)")
    p.add_argument("--runs", type=int, default=1, metavar="N", help="boots per step (default 1)")
    p.add_argument(
        "--bad-if",
        choices=bisect_step.BAD_IF,
        default="any",
        help="how many runs must be bad for a bad step (default any)",
    )
    p.add_argument(
        "--bad-verdict",
        action="append",
        metavar="V",
        choices=tuple(sorted(KERNEL_PROBLEMS)) + ("PANIC", "VM_TIMEOUT"),
        help="verdicts that make a run bad (default: every kernel problem, " + ", ".join(sorted(KERNEL_PROBLEMS)) + ")",
    )
    p.add_argument(
        "--config-fragment",
        action="append",
        metavar="FILE",
        help="Kconfig fragment(s) merged into the base (default vm-images/fragments/x86_64.config)",
    )
    p.add_argument("--base", default="tinyconfig", metavar="TARGET", help="base config target (default tinyconfig)")
    p.add_argument(
        "--results-dir",
        metavar="DIR",
        help="the bisection's folder, kept throughout: its build directory, logs and each step's "
        "results (default: one in the kernel cache per tree, base and fragments)",
    )
    p.add_argument("--work-dir", dest="results_dir", action=deprecated("--results-dir"), help=argparse.SUPPRESS)
    p.add_argument("--vm-timeout", type=float, default=300.0, metavar="S", help="bound for one boot")
    p.add_argument("--jobs", "-j", type=int, default=0, metavar="N", help="make -j (default: CPUs + 1)")
    p.add_argument(
        "--find-fix",
        action="store_true",
        help="bisect to the commit that fixed the defect (--bad older than --good), not the culprit",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")


def spec_of(args) -> bisect_step.StepSpec:
    """Validate the shared options (BadInput with the fix) and make the StepSpec."""
    from uffdprobe.kbuild import build as kbuild
    from uffdprobe.scenarios.registry import select

    tree = Path(args.tree).resolve()
    if not tree.is_dir():
        raise BadInput(f"--tree {args.tree} is not a directory: give the top of a kernel git checkout")
    bisect_git.git_dir(tree)
    _check_kernel_checkout(tree)
    try:
        scenario = select([args.scenario])[0]
    except KeyError as exc:
        raise BadInput(f"unknown scenario {exc.args[0]}: `uffdprobe list` shows them") from None
    for kind in args.memory or []:
        if kind not in scenario.memory:
            raise BadInput(f"--memory {kind}: {args.scenario} runs on {', '.join(scenario.memory)} only")
    if args.runs < 1 or args.jobs < 0 or args.vm_timeout <= 0:
        raise BadInput("--runs must be at least 1, --jobs at least 0 and --vm-timeout positive")
    try:
        guest_run.check_visible_in_guest()
    except UsageError as exc:
        raise BadInput(str(exc)) from None
    fragments = tuple(Path(f).resolve() for f in (args.config_fragment or [kbuild.DEFAULT_FRAGMENT]))
    hashes = []
    for fragment in fragments:
        kbuild_config.read_fragment(fragment)
        hashes.append(files.sha256_file(fragment))
    work = Path(args.results_dir).resolve() if args.results_dir else default_work_dir(tree, args.base, hashes)
    return bisect_step.StepSpec(
        tree=tree,
        work=work,
        scenario=args.scenario,
        memory=list(args.memory or []),
        runs=args.runs,
        bad_if=args.bad_if,
        bad_verdicts=tuple(args.bad_verdict or bisect_step.DEFAULT_BAD),
        base=args.base,
        fragments=fragments,
        vm_timeout=args.vm_timeout,
        jobs=args.jobs,
        role=getattr(args, "role", "bisect"),
        progress=not args.quiet,
        find_fix=args.find_fix,
    )


def _check_kernel_checkout(tree: Path) -> None:
    """BadInput unless the checked-out tree is a Linux kernel (else every step's make fails and the
    bisection blames an endpoint)."""
    missing = [n for n in ("Makefile", "Kconfig", "arch", "mm") if not (tree / n).exists()]
    try:
        makefile = (tree / "Makefile").read_text(errors="replace") if not missing else ""
    except OSError:
        makefile = ""
    if missing or not all(re.search(rf"^{v}\s*=", makefile, re.M) for v in ("VERSION", "PATCHLEVEL")):
        found = f"no {', '.join(missing)}" if missing else "its Makefile sets no VERSION/PATCHLEVEL"
        raise BadInput(f"--tree {tree} is not a Linux kernel checkout ({found}): give the top of a kernel git checkout")


def _check_step_clean(tree: Path) -> None:
    """BadInput when tracked files have uncommitted changes: the step would build them but log HEAD."""
    dirty = bisect_git.run(tree, "status", "--porcelain", "--untracked-files=no").stdout.splitlines()
    if dirty:
        raise BadInput(
            f"--tree {tree} has uncommitted changes ({dirty[0].strip()}, ...): a step would build "
            f"them but record commit {bisect_git.head(tree)[:12]}; commit or stash them"
        )


def default_work_dir(tree: Path, base: str, fragment_hashes: list) -> Path:
    """~/.cache/uffdprobe/bisect/<id of tree path, base and fragments>: one per tree and config."""
    key = kbuild_cache.sha256_json({"tree": str(tree), "base": base, "fragments": fragment_hashes})[:16]
    return kbuild_cache.default_root().parent / "bisect" / key


def step_argv(spec: bisect_step.StepSpec) -> list:
    """The bisect-step command line git bisect run executes for `spec`."""
    argv = [
        sys.executable,
        "-m",
        "uffdprobe",
        "bisect-step",
        "--tree",
        str(spec.tree),
        "--results-dir",
        str(spec.work),
        "--scenario",
        spec.scenario,
        "--runs",
        str(spec.runs),
        "--bad-if",
        spec.bad_if,
        "--base",
        spec.base,
        "--vm-timeout",
        str(spec.vm_timeout),
        "--jobs",
        str(spec.jobs),
    ]
    for kind in spec.memory:
        argv += ["--memory", kind]
    for verdict in spec.bad_verdicts:
        argv += ["--bad-verdict", verdict]
    for fragment in spec.fragments:
        argv += ["--config-fragment", str(fragment)]
    return argv + ([] if spec.progress else ["--quiet"]) + (["--find-fix"] if spec.find_fix else [])


def cmd_step(args) -> int:
    """bisect-step: 0 good, 1 bad (the other way round with --find-fix), 125 skip; 130 on Ctrl-C; a bad
    command line stops git bisect run."""
    try:
        spec = spec_of(args)
        _check_step_clean(spec.tree)
    except KbuildError as exc:
        raise _step_error(str(exc)) from None
    return bisect_step.exit_for_git(bisect_step.run_step(spec), spec.find_fix)


def _step_error(message: str) -> UffdprobeError:
    """Under git bisect run, exit 2 would mark every commit bad: a bad command line exits 128 there."""
    if _bisecting(os.getcwd()):
        return UffdprobeError(f"{message} (exit 128 stops git bisect run)", ABORT)
    return UffdprobeError(message, Exit.USAGE)


def _step_usage_error(message: str):
    """bisect-step's argparse error hook (it must not return): the line and status _step_error gives."""
    error = _step_error(message)
    print(f"uffdprobe bisect-step: {error}", file=sys.stderr)
    sys.exit(error.exit_code)


def _bisecting(path: str) -> bool:
    try:
        return bisect_git.bisecting(path)
    except Exception:
        return False


def _default_timeout(spec: bisect_step.StepSpec, good_ref: str, bad_ref: str) -> float:
    """A bound for git bisect run: one step's worst case (build + every boot) per candidate, plus two."""
    good = bisect_git.resolve(spec.tree, good_ref, "--good")
    bad = bisect_git.resolve(spec.tree, bad_ref, "--bad")
    old, new = (bad, good) if spec.find_fix else (good, bad)
    per_step = 3600 + spec.runs * (spec.vm_timeout + 30)
    return per_step * (bisect_git.count_between(spec.tree, old, new) + 2)


def _drop_if_empty(spec, made: bool) -> None:
    """A refused bisection leaves no empty --results-dir it made (one that holds anything stays)."""
    if spec is not None and made:
        try:
            spec.work.rmdir()
        except OSError:
            pass


def cmd_bisect(args) -> int:
    """bisect: check the endpoints, bisect, print the first bad commit (or the candidates)."""
    from uffdprobe.bisect import driver

    spec, made = None, False
    try:
        spec = spec_of(args)
        made = not spec.work.exists()
        spec.work.mkdir(parents=True, exist_ok=True)
        timeout = args.timeout or _default_timeout(spec, args.good, args.bad)
        result = driver.bisect(spec, args.good, args.bad, step_argv(spec), timeout)
    except driver.Interrupted as exc:
        raise UffdprobeError(
            f"stopped ({exc}); the tree is back where it was; steps so far are in {spec.work / 'bisect.txt'}",
            Exit.INTERRUPTED,
        ) from None
    except KbuildError as exc:
        _drop_if_empty(spec, made)
        if isinstance(exc, BuildFailed):  # not a kernel verdict here: the bisection itself could not go on
            raise UffdprobeError(str(exc), Exit.SETUP) from None
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        _drop_if_empty(spec, made)
        raise UffdprobeError(f"{exc}; the tree was reset") from None
    if result.first:
        c = result.candidates[0]
        print(f"first {result.term} commit: {c['commit']} {c['subject']}")
        if spec.find_fix:
            print(f"the fix to backport: {c['commit'][:12]} (\"{c['subject']}\")")
    else:
        print(f"skipped commits leave {len(result.candidates)} candidates for the first {result.term} commit:")
        for c in result.candidates:
            print(f"  {c['commit']} {c['subject']}")
    print(f"bisect log: {result.log_dir / 'bisect.txt'} (JSON lines: {result.log_dir / 'bisect.jsonl'})")
    return Exit.OK
