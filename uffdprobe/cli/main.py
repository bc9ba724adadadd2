"""The uffdprobe command line: one subcommand per job, each returning an Exit status."""
import argparse
import errno
import json
import os
import signal
import sys
from typing import List, Optional

import uffdprobe
from . import bisect, boot, doctor, kernel, matrix, run
from uffdprobe.exitcodes import Exit, UsageError


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
    print(json.dumps(kf.to_dict(), indent=2) if args.json else features.format_text(kf))
    return Exit.OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from uffdprobe.uffd import bench
    print(bench.compare(args.pages, args.rounds))
    return Exit.OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uffdprobe", description=__doc__)
    parser.add_argument("--version", action=_PrintVersion, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("features", help="what the running kernel's userfaultfd offers")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_features)
    run.add_parsers(sub)
    matrix.add_parser(sub)
    boot.add_parser(sub)
    kernel.add_parser(sub)
    bisect.add_parsers(sub)
    doctor.add_parser(sub)
    p = sub.add_parser("bench", help="MISSING faults/s: Python handler next to a C handler")
    p.add_argument("--pages", type=_positive, default=20000)
    p.add_argument("--rounds", type=_positive, default=3)
    p.set_defaults(func=_cmd_bench)
    return parser


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


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    _offer_completion(parser)
    args = parser.parse_args(argv)
    from uffdprobe.osutil.children import DIE_WITH_PARENT, die_with_parent
    parent = os.environ.pop(DIE_WITH_PARENT, "")
    if parent.isdigit():
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: scenario children and QEMU too
        if not die_with_parent(int(parent)):
            print("uffdprobe: the matrix that started this run is gone; not starting", file=sys.stderr)
            return Exit.INTERRUPTED
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"uffdprobe: {exc}", file=sys.stderr)
        return Exit.USAGE
    except KeyboardInterrupt:
        print("uffdprobe: interrupted; results written so far are kept", file=sys.stderr)
        return Exit.INTERRUPTED
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = exc.filename or "a file"
        print(f"uffdprobe: no space left writing {where} ({exc.strerror}); free space there or point "
              "XDG_CACHE_HOME at a larger disk; files written before are kept", file=sys.stderr)
        return Exit.NO_SPACE
