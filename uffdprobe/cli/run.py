"""`uffdprobe list` and `uffdprobe run`: the scenarios on the running kernel, or on one booted in QEMU."""
import argparse
import json
import os
from typing import Dict, List, Optional, Tuple

from uffdprobe.exitcodes import Exit, UsageError
from uffdprobe.run import host
from uffdprobe.scenarios.memkinds import KINDS
from uffdprobe.scenarios.registry import select
from .vocab import add_accel, add_verbosity


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="the scenarios, the question each asks, what each needs")
    p.add_argument("--all", action="store_true", help="include harness self-test scenarios")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="run scenarios on the running kernel (or --kernel in QEMU)")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: every public scenario")
    p.add_argument("--scenario", dest="more_scenarios", action="append", default=[], metavar="S",
                   help="repeatable, as in matrix and bisect (the same as naming it positionally)")
    p.add_argument("--memory", action="append", choices=KINDS, help="memory kinds (default: all each supports)")
    p.add_argument("--json", metavar="FILE", help="write all results as a JSON list")
    p.add_argument("--ktap", action="store_true",
                   help="KTAP on stdout, a result line as each verdict lands (the table goes to stderr)")
    p.add_argument("--results-dir", metavar="DIR", default=os.environ.get("UFFDPROBE_RESULTS"),
                   help="stream each result as a line of DIR/verdicts.jsonl (default: $UFFDPROBE_RESULTS)")
    p.add_argument("--odirect-target", metavar="PATH", help="block device or directory that accepts O_DIRECT")
    p.add_argument("--hang-timeout", type=_seconds, default=2.0, metavar="S",
                   help="blocked this long on a uffd fault means HANG (default 2)")
    p.add_argument("--scenario-timeout", type=_seconds, default=120.0, metavar="S")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario parameter (JSON value), e.g. data_pages=128")
    p.add_argument("--runs", type=runs_count, default=1, metavar="N",
                   help="repeat the whole plan N times; each result carries params['run'] (default 1)")
    p.add_argument("--expect", action="append", default=[], metavar="SCENARIO[/MEMORY]=VERDICT",
                   help="declare a verdict this kernel is known to give (adds to a recipe's [expect]); a declared "
                        "HANG/LEAK/WP_LOST that happens exits 0, one that no longer happens exits 7")
    p.add_argument("--kernel", metavar="[LABEL=]KERNEL",
                   help="boot this kernel in QEMU and run there: bzImage/vmlinuz, linux-image .deb or recipe name")
    add_accel(p)
    p.add_argument("--append", action="append", default=[], metavar="ARG", type=kernel_arg,
                   help="with --kernel: an extra kernel command-line argument, e.g. transparent_hugepage=never")
    p.add_argument("--vm-timeout", type=_seconds, default=900.0, metavar="S",
                   help="overall limit for the boot and every scenario in it (default 900)")
    add_verbosity(p)
    p.set_defaults(func=cmd_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and at most 3600 seconds")
    return value


def kernel_arg(text: str) -> str:
    """argparse type for --append: one kernel argument that leaves the harness's own ones alone."""
    if not text or text.split() != [text] or text.startswith(("uffdprobe.", "init=", "rdinit=", "root=")):
        raise argparse.ArgumentTypeError(f"{text!r}: give one kernel argument without spaces; uffdprobe.*, "
                                         "init=, rdinit= and root= are the harness's own")
    return text


def runs_count(text: str) -> int:
    """argparse type for --runs: a whole number from 1 to 100."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} must be from 1 to 100")
    return value


def cmd_list(args: argparse.Namespace) -> int:
    for s in select([], include_test_only=args.all):
        print(f"{s.name}\n  question: {s.question}\n  needs: {', '.join(s.needs) or 'nothing'}; memory: {', '.join(s.memory)}")
        if s.models:
            print(f"  models: {s.models}")
        if s.defaults:
            print(f"  parameters: {json.dumps(s.defaults)}")
    return Exit.OK


def check_writable(*paths: Optional[str]) -> None:
    """Refuse, before any work and without creating anything, an output file that cannot be written:
    no result is lost at the end."""
    for path in filter(None, paths):
        where = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path) or not os.access(where, os.W_OK):
            raise UsageError(f"cannot write {path}; choose a writable file path")


def labelled(kernel: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """--kernel [LABEL=]KERNEL as (label or None, kernel); KERNEL=... that is a file stays a file."""
    from uffdprobe.run.kernels import LABEL
    label, eq, rest = (kernel or "").partition("=")
    if eq and rest and LABEL.match(label) and not os.path.exists(kernel):
        return label, rest
    return None, kernel


def expectations(kernel: Optional[str], items: List[str], label: Optional[str] = None) -> Dict[str, str]:
    """What is declared for this run's kernel: a recipe's [expect], then --expect (the same rule and syntax
    as `uffdprobe matrix --expect`; a KERNEL: prefix must name this kernel: its label or --kernel value)."""
    if not kernel and not items:
        return {}
    from uffdprobe.run.kernels import Target, declare, parse_expect
    target = Target(label=label or kernel or "host", given=kernel or "host")
    if kernel and not os.path.exists(kernel):
        from uffdprobe.kbuild import recipes
        if kernel in recipes.names():
            target.expect = dict(recipes.load(kernel).expect)
    declare([target], parse_expect(items, [target]))
    return target.expect


def cmd_run(args: argparse.Namespace) -> int:
    args.scenarios = list(args.scenarios) + list(getattr(args, "more_scenarios", []))
    check_writable(args.json)
    if args.append and not args.kernel:
        raise UsageError("--append changes a booted kernel's command line: add --kernel KERNEL")
    label, args.kernel = labelled(args.kernel)
    args.expectations = expectations(args.kernel, args.expect, label)
    if args.kernel:
        from uffdprobe.run.guest import run_in_vm
        return run_in_vm(args)
    return host.run_on_host(args)
