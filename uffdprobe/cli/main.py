# SPDX-License-Identifier: GPL-2.0-only
"""The uffdprobe command line: one subcommand per job, each returning an Exit status."""

import argparse
import contextlib
import importlib
import os
import signal
import sys
from typing import List, Optional

import uffdprobe
from uffdprobe.exitcodes import Exit
from . import errors

#: The module of uffdprobe.cli that adds each subcommand's parser, in the order --help lists them. Only the
#: module of the subcommand asked for is imported: the guest's `uffdprobe run` pays for no matrix,
#: builder or bisect code on its way to the first verdict.
SUBCOMMANDS = {
    "list": "run",
    "run": "run",
    "matrix": "matrix",
    "check": "check",
    "boot": "boot",
    "kernel": "kernel",
    "bisect": "bisect",
    "bisect-step": "bisect",
    "doctor": "doctor",
    "payload": "payload",
}


class _PrintVersion(argparse.Action):
    """--version, computed only when asked (from a checkout it runs git describe)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"uffdprobe {uffdprobe.version()}")
        parser.exit()


def _cmd_features(args: argparse.Namespace) -> int:
    from uffdprobe.uffd import features

    kf = features.probe()
    if args.json:
        from .vocab import write_json

        write_json(args.json, kf.to_dict())
    else:
        print(features.format_text(kf))
    return Exit.OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from uffdprobe.uffd import bench

    print(bench.compare(args.pages, args.rounds))
    return Exit.OK


def build_parser(argv: Optional[List[str]] = None) -> argparse.ArgumentParser:
    """The whole parser, or, given the command line `argv`, only what its subcommand needs."""
    parser = argparse.ArgumentParser(prog="uffdprobe", description=__doc__)
    parser.add_argument("--version", action=_PrintVersion, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("features", help="what the running kernel's userfaultfd offers")
    p.add_argument("--json", metavar="FILE|-", help="write JSON instead of text to FILE (- for stdout)")
    p.set_defaults(func=_cmd_features)
    for name in _modules_for(argv):
        module = importlib.import_module(f"uffdprobe.cli.{name}")
        (getattr(module, "add_parsers", None) or module.add_parser)(sub)
    p = sub.add_parser("bench", help="MISSING faults/s: Python handler next to a C handler")
    p.add_argument(
        "--pages",
        type=_positive,
        default=20000,
        metavar="N",
        help="pages faulted in and served per round (default 20000)",
    )
    p.add_argument(
        "--rounds",
        type=_positive,
        default=3,
        metavar="N",
        help="rounds of each handler, alternating; the best of each counts (default 3)",
    )
    p.set_defaults(func=_cmd_bench)
    return parser


def _modules_for(argv: Optional[List[str]]) -> List[str]:
    """The cli modules to load: the asked subcommand's, or all of them (help, completion, a typo)."""
    every = list(dict.fromkeys(SUBCOMMANDS.values()))
    words = [a for a in argv or () if not a.startswith("-")]
    if "_ARGCOMPLETE" in os.environ or not words:
        return every
    if words[0] in ("features", "bench"):
        return []
    return [SUBCOMMANDS[words[0]]] if words[0] in SUBCOMMANDS else every


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive whole number")
    return value


def _offer_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion when the shell asks and argcomplete is installed (the `completion` extra, or pip install
    argcomplete; then eval "$(register-python-argcomplete uffdprobe)"); nothing otherwise."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)  # exits after printing the completions


#: The subcommands that start processes: run by the `uffdprobe` command, everything they start is tied to
#: the command's lifetime (osutil.lifetime); `list`, `features`, `doctor` and help start nothing.
TIED_COMMANDS = {"run", "matrix", "boot", "bisect", "kernel", "bench"}


def console() -> int:
    """The `uffdprobe` command (and `python -m uffdprobe`): main() with every process it starts, daemons
    included, tied to this process's lifetime, whatever ends it. In-process callers (tests, the pytest
    plugin) call main() and are never tied."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    if words and words[0] in TIED_COMMANDS and not os.environ.get("UFFDPROBE_TIED"):  # set: covered already
        from uffdprobe.osutil import lifetime

        try:
            lifetime.tie()
        except Exception as exc:  # a run is never refused for this: say so and go on untied
            print(
                f"uffdprobe: warning: processes of this run are not tied to it ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
    return main()


def main(argv: Optional[List[str]] = None) -> int:
    from .execopts import split

    argv, program = split(sys.argv[1:] if argv is None else list(argv))  # --exec PROGRAM ARGS: the program's
    from .vocab import old_flags

    argv = old_flags(argv)  # `run --ktap` and `--json` without FILE: deprecated, said once
    parser = build_parser(argv)
    _offer_completion(parser)
    args = parser.parse_args(argv)
    if program is not None:
        args.exec = program
    from uffdprobe.osutil.children import DIE_WITH_PARENT, die_with_parent, signals_raise

    parent = os.environ.pop(DIE_WITH_PARENT, "")
    if parent.isdigit() and not die_with_parent(int(parent)):
        print("uffdprobe: the matrix that started this run is gone; not starting", file=sys.stderr)
        return Exit.INTERRUPTED
    try:  # a matrix's child stops on SIGTERM as on Ctrl-C: scenario children and QEMU too
        with signals_raise(KeyboardInterrupt, (signal.SIGTERM,)) if parent.isdigit() else contextlib.nullcontext():
            status = int(args.func(args))
        sys.stdout.flush()  # here, not at exit: a reader gone away meets the BrokenPipeError handler below
        return status
    except KeyboardInterrupt:
        print(f"uffdprobe: interrupted; {_kept(args)}", file=sys.stderr)
        return Exit.INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away (`uffdprobe list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return Exit.BROKEN_PIPE
    except Exception as exc:  # every expected error of every stage: its one line and its exit status (errors.py)
        said = errors.expected(exc, getattr(args, "error_prefix", errors.PREFIX))
        if said is None:  # a safety net: every known failure has its own one line before this
            return _last_resort(exc)
        who, line, status = said
        print(f"{who}: {line}", file=sys.stderr)
        return status


def _kept(args: argparse.Namespace) -> str:
    """Where an interrupted command's results are, or that none were kept (never a vague promise)."""
    results_dir = getattr(args, "results_dir", None)
    if getattr(args, "command", None) != "run":
        return "what was written before the interrupt is kept"
    json_out = getattr(args, "json", None)
    unwritten = f"; {json_out} is written only when a run ends, so it was not" if json_out and json_out != "-" else ""
    if results_dir:
        return f"the verdicts so far are kept in {results_dir} (verdicts.jsonl){unwritten}"
    return f"no results were kept (give --results-dir DIR to keep each verdict as it lands){unwritten}"


def _last_resort(exc: BaseException) -> int:
    """One line naming the error and where its traceback was logged, exit 2: never a traceback, never
    exit 1 (which says the kernel has a problem)."""
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(exc))
    log = None
    for folder in filter(None, (_crash_dir(), tempfile.gettempdir())):
        try:
            os.makedirs(folder, exist_ok=True)
            fd, log = tempfile.mkstemp(prefix=f"crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder)
            with os.fdopen(fd, "w") as f:
                f.write(" ".join(sys.argv) + "\n" + text)
            break
        except OSError:
            log = None
    what = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
    print(
        f"uffdprobe: unexpected {type(exc).__name__}: {what}; this is a harness or set-up problem, not a "
        f"kernel one; traceback in {log or 'nowhere (no writable folder)'}",
        file=sys.stderr,
    )
    return Exit.SETUP


def _crash_dir() -> Optional[str]:
    try:
        from uffdprobe.osutil.files import cache_home

        return str(cache_home() / "uffdprobe" / "crashes")
    except Exception:
        return None
