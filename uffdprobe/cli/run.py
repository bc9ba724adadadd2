# SPDX-License-Identifier: GPL-2.0-only
"""`uffdprobe list` and `uffdprobe run`: the scenarios on the running kernel, or on one booted in QEMU."""

import argparse
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from uffdprobe.exitcodes import Exit, UsageError
from uffdprobe.run import host
from uffdprobe.scenarios.memkinds import ALL_KINDS
from uffdprobe.scenarios.registry import select
from .vocab import (
    add_accel,
    add_verbosity,
    check_kcidb,
    complete_kernel,
    complete_scenario,
    completes,
    kcidb_options,
    kselftest_from_option,
    whole_number,
)
from . import errors, user_scenarios


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="the scenarios, the question each asks, what each needs")
    p.add_argument("--all", action="store_true", help="include harness self-test scenarios")
    user_scenarios.add_option(p)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("run", help="run scenarios on the running kernel (or --kernel in QEMU)")
    completes(
        p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: every public scenario"),
        complete_scenario,
    )
    completes(
        p.add_argument(
            "--scenario",
            dest="more_scenarios",
            action="append",
            default=[],
            metavar="S",
            help="repeatable, as in matrix and bisect (the same as naming it positionally)",
        ),
        complete_scenario,
    )
    p.add_argument("--memory", action="append", choices=ALL_KINDS, help="memory kinds (default: all each supports)")
    p.add_argument(
        "--json", metavar="FILE", help="write all results as a JSON list (- for stdout; the table then goes to stderr)"
    )
    p.add_argument(
        "--ktap",
        metavar="FILE|-",
        help="write KTAP to FILE, a result line as each verdict lands (- for stdout; the table then goes to stderr)",
    )
    kcidb_options(p)
    p.add_argument(
        "--results-dir",
        metavar="DIR",
        default=os.environ.get("UFFDPROBE_RESULTS"),
        help="stream each result as a line of DIR/verdicts.jsonl (default: $UFFDPROBE_RESULTS)",
    )
    p.add_argument("--odirect-target", metavar="PATH", help="block device or directory that accepts O_DIRECT")
    p.add_argument(
        "--hang-timeout",
        type=_seconds,
        default=2.0,
        metavar="S",
        help="blocked this long on a uffd fault means HANG (default 2)",
    )
    p.add_argument(
        "--scenario-timeout",
        type=_seconds,
        default=120.0,
        metavar="S",
        help="a scenario with no verdict after this long and no uffd fault pending is killed "
        "(ERROR); also the time an --exec program may run in all (default 120)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scenario parameter (JSON value), e.g. data_pages=128",
    )
    p.add_argument(
        "--runs",
        type=runs_count,
        default=1,
        metavar="N",
        help="repeat the whole plan N times; each result carries params['run'] (default 1)",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="SCENARIO[/MEMORY]=VERDICT",
        help="declare a verdict this kernel is known to give (adds to a recipe's [expect]); a declared "
        "HANG/LEAK/WP_LOST that happens exits 0, one that no longer happens exits 7",
    )
    p.add_argument(
        "--kselftest",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="also run the kernel's own mm selftests after the scenarios, in the same boot: cow, "
        "gup_longterm, uffd-unit-tests (its wp-fork cases; uffd-unit-tests=all for every case) "
        "or any other mm selftest program by name; built once into the kernel cache from "
        "--kselftest-from's tree",
    )
    kselftest_from_option(p)
    completes(
        p.add_argument(
            "--kernel",
            metavar="[LABEL=]KERNEL",
            help="boot this kernel in QEMU and run there: a recipe name or .toml path, a "
            "bzImage/vmlinuz or a linux-image .deb, optionally LABEL=KERNEL; 'host' runs "
            "on the running kernel",
        ),
        complete_kernel,
    )
    add_accel(p)
    p.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="ARG",
        type=kernel_cmdline_arg,
        help="with --kernel: an extra kernel command-line argument, e.g. transparent_hugepage=never",
    )
    p.add_argument(
        "--vm-timeout",
        type=_seconds,
        default=900.0,
        metavar="S",
        help="overall limit for the boot and every scenario in it (default 900)",
    )
    user_scenarios.add_option(p)
    add_verbosity(p)
    from . import execopts

    execopts.add_options(p, _seconds)
    p.set_defaults(func=cmd_run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and at most 3600 seconds")
    return value


def kernel_cmdline_arg(text: str) -> str:
    """argparse type for --append: one kernel argument that leaves the harness's own ones alone."""
    if not text or text.split() != [text] or text.startswith(("uffdprobe.", "init=", "rdinit=", "root=")):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one kernel argument without spaces; uffdprobe.*, "
            "init=, rdinit= and root= are the harness's own"
        )
    return text


#: argparse type for --runs (and matrix --parallel): a whole number from 1 to 100.
runs_count = whole_number(1, 100)


def cmd_list(args: argparse.Namespace) -> int:
    user_scenarios.load(args)  # their scenarios listed too
    for s in select([], include_test_only=args.all):
        print(
            f"{s.name}\n  question: {s.question}\n  needs: {', '.join(s.needs) or 'nothing'}; memory: {', '.join(s.memory)}"
        )
        source = user_scenarios.sources.origin(s.name)
        if source:
            print(f"  from: {source.label}")
        if s.models:
            print(f"  models: {s.models}")
        if s.defect:
            print(f"  defect: {_defect_words(s.defect)}")
        if s.race:
            print(
                f"  racy: p_hit {s.race.p_hit:g} per try (measured on {s.race.measured_on}); up to "
                f"{s.race.tries} tries in {s.race.seconds:g} s (--param tries=N, race_s=S)"
            )
        if s.defaults:
            print(f"  parameters: {json.dumps(s.defaults)}")
    from uffdprobe.supervise.kselftest import PROGRAMS

    for p in PROGRAMS.values():  # the kernel's own, beside the scenarios with --kselftest
        print(
            f"{p.name} (mm selftest, --kselftest {p.name})\n  question: {p.question}\n  rows: '{p.name}' "
            f"(its run) and '{p.name}: CASE' for each case; memory: -"
        )
    from . import execopts

    execopts.list_programs()
    return Exit.OK


def _defect_words(d) -> str:
    """The catalogue's words for a scenario's defect: id, CVE, where it came from, the fix to backport."""
    from uffdprobe.scenarios.catalogue import describe_fix

    since = ", ".join(f"{c.id} (\"{c.title}\")" for c in d.introduced) or d.first_affected
    return (
        f"{d.id}{' (' + d.cve + ')' if d.cve else ''}"
        f"{'; introduced by ' + since if since else ''}"
        f"{' in ' + d.first_affected if d.introduced and d.first_affected else ''}; fixed by {describe_fix(d)}"
    )


def check_writable(*named: Tuple[str, Optional[str]]) -> None:
    """Refuse, before any work and without creating anything, an output (option, path) that cannot be
    written the way it will be (osutil.outputs), or two options naming one file: no result is lost at
    the end."""
    from uffdprobe.osutil import outputs

    outputs.check_all(named)


def expectations(spec, items: List[str]) -> Dict[str, str]:
    """What is declared for this run's kernel (a resolved kernel_arg.KernelSpec, None: the running one):
    a recipe's [expect], then --expect (the same rule and syntax as `uffdprobe matrix --expect`; a KERNEL:
    prefix must name this kernel: its label or --kernel value)."""
    if spec is None and not items:  # the guest's run: nothing declared, and run.kernels (tomllib) not loaded
        return {}
    from uffdprobe.run.kernels import Target, declare, parse_expect

    if spec is None:
        target = Target(label="host", given="host")
    else:
        target = Target(label=spec.label, given=spec.arg)
        if spec.recipe is not None:
            target.expect = dict(spec.recipe.expect)
    declare([target], parse_expect(items, [target]))
    return target.expect


def check_results_dir(path: Optional[str]) -> None:
    """--results-dir (or $UFFDPROBE_RESULTS) made and checked writable before any work."""
    if path:
        from uffdprobe.osutil.files import usable_dir

        usable_dir(Path(path), "--results-dir (or UFFDPROBE_RESULTS)", "name a writable folder", create=False)


def cmd_run(args: argparse.Namespace) -> int:
    from uffdprobe.run.child_report import Reporter

    reporter = Reporter(args.results_dir)  # run.json: how this run went, for a matrix (or anyone) to read
    try:
        request, spec = run_request(args)
        if spec is not None and spec.kind != "host":
            from uffdprobe.run.guest import run_in_vm

            status = run_in_vm(request, spec, reporter)
        else:
            status = host.run_on_host(request, reporter)
    except KeyboardInterrupt:
        reporter.update(error="interrupted", exit_status=int(Exit.INTERRUPTED))
        raise
    except Exception as exc:  # said and mapped to its status by cli/main.py, the same line recorded here
        said = errors.expected(exc)
        reporter.update(
            error=said[1] if said else f"unexpected {type(exc).__name__}: {exc}",
            exit_status=said[2] if said else int(Exit.SETUP),
        )
        raise
    reporter.update(exit_status=status)
    return status


def run_request(args: argparse.Namespace):
    """The RunRequest (run/request.py) the parsed command line asks for, every input checked (a UsageError
    or KbuildError before anything runs), and the resolved --kernel (None: the running kernel).
    The Namespace is left as parsed."""
    scenarios_from = user_scenarios.load(args)  # before any scenario name (positional, --expect, [expect])
    from . import execopts

    program, row = execopts.check(args)  # before --expect, which may name the program's row
    check_writable(("--json", args.json), ("--ktap", args.ktap), ("--kcidb", args.kcidb))
    check_kcidb(args)
    if args.json == "-" and args.ktap == "-":
        raise UsageError("--json - and --ktap - both want stdout: write one of them to a file")
    check_results_dir(args.results_dir)
    spec = None
    if args.kernel is not None:
        from uffdprobe.run import kernel_arg

        spec = kernel_arg.resolve(args.kernel)  # before anything runs: a bad or empty --kernel is exit 2
    if args.append and (spec is None or spec.kind == "host"):
        raise UsageError("--append changes a booted kernel's command line: add --kernel KERNEL (not host)")
    from uffdprobe.run import selftests

    kselftest = selftests.chosen(args.kselftest + list(getattr(spec and spec.recipe, "kselftest", ()) or ()))
    kselftest_from = args.kselftest_from
    if kselftest:  # built once into the kernel cache (well under a minute), before any kernel build or boot
        from uffdprobe.kbuild.errors import KbuildError

        try:
            kselftest_from = str(selftests.binaries(kselftest, args.kselftest_from, spec))
        except KbuildError as exc:
            raise exc.context("--kselftest") from None
    from uffdprobe.run import request

    return request.build(
        vars(args),
        scenarios=list(args.scenarios) + list(args.more_scenarios),
        exec=program,
        exec_row=row,
        scenarios_from=scenarios_from,
        kselftest=kselftest,
        kselftest_from=kselftest_from,
        declared=expectations(spec, args.expect),
    ), spec
