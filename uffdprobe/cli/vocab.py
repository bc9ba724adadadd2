# SPDX-License-Identifier: GPL-2.0-only
"""One vocabulary across subcommands: -q/-v, and old option spellings that still work for one release with a
deprecation line on stderr; the KCIDB output options run and matrix share; what shell completion offers for
a kernel or a scenario."""

import argparse
import os
import sys
from typing import Any, List

from uffdprobe.exitcodes import UsageError


def whole_number(low: int, high: int, unit: str = ""):
    """An argparse type: a whole number from `low` to `high` (`unit` names what it counts, in the errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number{' of ' + unit if unit else ''}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be from {low} to {high}{' ' + unit if unit else ''}")
        return value

    return parse


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """-q/--quiet (no progress lines on stderr) and -v/--verbose (also how each boot was made); dest verbosity:
    -1 quiet, 0 normal, 1 verbose."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=-1,
        default=0,
        help="no progress lines on stderr (verdicts, tables and errors still print)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=1,
        help="also the QEMU command line and run directory of each boot",
    )


def deprecated(new: str):
    """An argparse action for an old spelling: stores like `new` and says once on stderr to use `new`."""

    class Deprecated(argparse._StoreAction):
        def __call__(self, parser, namespace, values, option_string=None):
            print(
                f"uffdprobe: {option_string} is deprecated here and goes in the next release; say {new}",
                file=sys.stderr,
            )
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def add_accel(p: argparse.ArgumentParser) -> None:
    """--accel auto|kvm|tcg, the same choices everywhere (auto: probe KVM once, cached, else TCG)."""
    p.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default=None,
        help="QEMU acceleration (default auto: probe KVM once, cached, else TCG)",
    )


def kcidb_options(p) -> None:
    """--kcidb FILE, --origin NAME and --kcidb-url URL (run and matrix)."""
    p.add_argument(
        "--kcidb",
        metavar="FILE",
        help="write a KCIDB v5 report (checkouts, builds, tests) for submission to KernelCI's database; needs --origin",
    )
    p.add_argument(
        "--origin",
        metavar="NAME",
        help="the KCIDB origin (your CI system's name: lower-case letters, digits, _) that prefixes every id",
    )
    p.add_argument(
        "--kcidb-url",
        metavar="URL",
        help="where the results folder will be published: log and "
        "file links are URL/PATH-IN-FOLDER (default: file:// URLs of the folder as it is now)",
    )


def check_kcidb(args: argparse.Namespace) -> None:
    """--kcidb needs a valid --origin, refused before any work."""
    if not args.kcidb:  # every run passes here, the guest's too: results.kcidb (hashlib, datetime) only when asked
        return
    from uffdprobe.results.kcidb import ORIGIN

    if not (args.origin and ORIGIN.match(args.origin)):
        raise UsageError(
            "--kcidb needs --origin NAME: your CI system's KCIDB origin (lower-case letters, digits and _)"
        )


def kselftest_from_option(p) -> None:
    """--kselftest-from (run and matrix); --kselftest-dir, its hidden older name, still works."""
    p.add_argument(
        "--kselftest-from",
        metavar="TREE|TARBALL|DIR",
        help="where --kselftest's programs come from: a kernel source tree or tarball (built), a "
        "folder of built selftests (kselftest_install), or a tuxmake folder with "
        "kselftest.tar.xz (default: a tuxmake kernel's own, a recipe's own source tree when "
        "it has them all, else /usr/src/linux-source-6.12.tar.xz)",
    )
    p.add_argument(
        "--kselftest-dir", dest="kselftest_from", action=deprecated("--kselftest-from"), help=argparse.SUPPRESS
    )


def _paths(prefix: str) -> List[str]:
    """Files and folders for a prefix that looks like a path (a kernel file, a recipe .toml, a tuxmake folder)."""
    if not prefix.startswith(("/", ".", "~")):
        return []
    try:
        from argcomplete.completers import FilesCompleter
    except ImportError:
        return []
    return list(FilesCompleter()(prefix))


def complete_kernel(prefix: str, **_: Any) -> List[str]:
    """--kernel's completions: `host` and every recipe name (after LABEL= too), or paths for a path."""
    from uffdprobe.kbuild import recipes

    label, eq, name = prefix.rpartition("=")
    offered = [f"{label}{eq}{n}" for n in ["host", *recipes.names()] if n.startswith(name)]
    return offered + _paths(name if eq else prefix)


def complete_scenario(prefix: str, **_: Any) -> List[str]:
    """A scenario argument's completions: the public scenario names."""
    from uffdprobe.scenarios.registry import SCENARIOS

    return [s.name for s in SCENARIOS.values() if not s.test_only and s.name.startswith(prefix)]


def completes(action: argparse.Action, completer) -> argparse.Action:
    """`action` with argcomplete's completer set (an attribute argcomplete reads; argparse ignores it)."""
    action.completer = completer  # type: ignore[attr-defined]
    return action


#: Stdout flags of old that take FILE (- for stdout) now, as --json and --ktap do everywhere: subcommand -> option.
WERE_FLAGS = {"run": "--ktap", "features": "--json", "doctor": "--json", "boot": "--json"}


def _an_operand(command: str, word: str) -> bool:
    """Whether `word` after a bare old flag is the subcommand's own operand, not the flag's new FILE. Where
    it could be either, it is taken as the operand, so a word meant as a name is never written over as a
    file (a FILE given then is refused by the parser or the kernel lookup, exit 2): for run, a scenario
    name or any word without '/' or '.' (a scenario of a --scenarios-from file); for boot, anything but
    - or a .json file that exists or names a recipe (its KERNEL); features and doctor take none."""
    if word == "-" or command in ("features", "doctor"):
        return False
    if command == "boot":
        from uffdprobe.kbuild import recipes

        return not word.endswith(".json") and (os.path.exists(word) or word in recipes.names())
    from uffdprobe.scenarios.registry import SCENARIOS

    return word in SCENARIOS or not any(c in word for c in "/.")


def old_flags(argv: List[str]) -> List[str]:
    """`argv` with an old stdout flag given bare (`run --ktap`, `features|doctor|boot --json`: followed by
    nothing, an option or an operand) spelled as now, `OPTION -`, and one line on stderr saying so."""
    words = [w for w in argv if not w.startswith("-")]
    command = words[0] if words else None
    option = WERE_FLAGS.get(command or "")
    if option is None:
        return argv
    out = list(argv)
    end = out.index("--") if "--" in out else len(out)
    for i in range(end):
        if out[i] != option:
            continue
        after = out[i + 1] if i + 1 < end else None
        if after is None or (after.startswith("-") and after != "-") or _an_operand(command or "", after):
            print(
                f"uffdprobe: {command} {option} without a FILE is deprecated and goes in the next release; "
                f"say {option} - (stdout) or {option} FILE",
                file=sys.stderr,
            )
            out.insert(i + 1, "-")
        break
    return out


def write_json(where: str, value: Any) -> None:
    """`value` as JSON to --json's FILE (whole, as osutil.outputs writes every report) or stdout for -."""
    import json

    text = json.dumps(value, indent=2) + "\n"
    if where == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from uffdprobe.osutil import outputs

    outputs.write(where, text.encode())
