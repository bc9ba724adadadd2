"""--kselftest on run and matrix: which selftest programs a kernel runs, where their binaries are (built
once into the kernel cache, kbuild.kselftest), and the rows each owes before it has run."""
import argparse
from pathlib import Path
from typing import List, Optional, Tuple

from uffdprobe.exitcodes import UsageError
from uffdprobe.scenarios.memkinds import NO_MEMORY
from uffdprobe.supervise import kselftest


def chosen(items: List[str]) -> List[str]:
    """The --kselftest values (repeatable, comma-separated) checked: unknown names are a UsageError."""
    for item in items:
        if not all(part.strip() for part in item.split(",")):
            raise UsageError(f"--kselftest {item!r}: an empty name; choose from {', '.join(kselftest.PROGRAMS)} "
                             "(comma-separated)")
    wanted = kselftest.requests(items)
    names = [item.partition("=")[0] for item in wanted]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # its rows would be one program's twice over
        raise UsageError(f"--kselftest names {', '.join(twice)} more than once; give each selftest once")
    for item in wanted:
        try:
            kselftest.parse_request(item)
        except KeyError:
            raise UsageError(f"--kselftest {item}: unknown selftest; choose from "
                             f"{', '.join(kselftest.PROGRAMS)} (comma-separated)") from None
        except ValueError as exc:
            raise UsageError(f"--kselftest {item}: {exc}") from None
    return wanted


def owed(items: List[str]) -> List[Tuple[str, str, Optional[int]]]:
    """The run row every requested program owes (its cases are only known once it has run)."""
    return [(kselftest.parse_request(item)[0].name, NO_MEMORY, None) for item in items]


def binaries(args: argparse.Namespace, progress=None) -> Path:
    """Where the built selftests are: --kselftest-dir (a guest is told by its host), else built now or
    taken from the kernel cache (kbuild.kselftest raises KbuildError with its own exit status)."""
    given = getattr(args, "kselftest_dir", None)
    if given:
        return Path(given)
    from uffdprobe.kbuild import kselftest as build
    return build.ensure(progress=progress).bin
