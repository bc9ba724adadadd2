# SPDX-License-Identifier: GPL-2.0-only
"""Kernel configuration: base target, fragments merged with merge_config.sh, olddefconfig, dropped-option check.

One fragment serves kernels of several versions: an option the tree's Kconfig does not define
at all is left out with one line saying so; an option it defines but drops is an error (exit 4).
The final .config is then checked for what a uffdprobe guest needs (guestneeds.py).
"""

import os
import re
import sys
from pathlib import Path

from . import make as kbuild_make
from .errors import BadInput, BuildFailed, ConfigDropped, SetupError

CONFIG_TIMEOUT = 600
_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def parse(text: str) -> dict:
    """CONFIG_X -> value for `CONFIG_X=v` lines and None for `# CONFIG_X is not set` lines."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        m = _SET.match(line)
        if m:
            options[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            options[m.group(1)] = None
    return options


def read_fragment(path: Path) -> dict:
    """Options a fragment asks for; BadInput when unreadable or holding no option at all."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BadInput(f"config fragment {path}: {exc.strerror}; give a readable Kconfig fragment") from None
    options = parse(text)
    bad = [
        line
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#") and not _SET.match(line.strip())
    ]
    if bad:
        raise BadInput(f"config fragment {path}: line {bad[0]!r} is not CONFIG_NAME=value; fix it")
    if not options:
        raise BadInput(f"config fragment {path} sets no option (expected CONFIG_NAME=value lines)")
    return options


_DEFINE = re.compile(r"^[ \t]*(?:menu)?config[ \t]+([A-Za-z0-9_]+)\b", re.M)


def defined_symbols(tree: Path, arch: str = "x86") -> set:
    """CONFIG_ names every Kconfig file of `tree` defines (arch/ only for `arch`); a plain read, no make."""
    tree = Path(tree)
    found = set()
    for top, dirs, files in os.walk(tree):
        rel = os.path.relpath(top, tree)
        if rel == "arch":
            dirs[:] = [d for d in dirs if d == arch]
        elif rel == ".":
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("Kconfig"):
                with open(os.path.join(top, name), errors="replace") as f:
                    found.update("CONFIG_" + m for m in _DEFINE.findall(f.read()))
    return found


def split_known(wanted: dict, defined: set) -> tuple:
    """(options the tree's Kconfig defines, names of the ones it does not define at all)."""
    known = {k: v for k, v in wanted.items() if k in defined}
    return known, sorted(k for k in wanted if k not in defined)


def say_left_out(unknown: list, log=None) -> None:
    """The one line for fragment options this kernel's Kconfig does not have (stderr and the build log)."""
    if not unknown:
        return
    line = f"kbuild: not in this kernel's Kconfig: {', '.join(unknown)}, left out"
    print(line, file=sys.stderr, flush=True)
    if log is not None:
        log.write(line + "\n")
        log.flush()


def configure(make: list, tree: Path, build: Path, base: str, fragments: list, log) -> Path:
    """Write build/.config: `make <base>`, merge the fragments, olddefconfig; check nothing was dropped.

    Options the tree's Kconfig does not define are left out (one line says which); the final
    .config must then hold what the guest needs (guestneeds.check: GuestUnbootable otherwise).
    """
    wanted = {}
    for fragment in fragments:
        wanted.update(read_fragment(fragment))
    wanted, unknown = split_known(wanted, defined_symbols(tree))
    say_left_out(unknown, log)
    build.mkdir(parents=True, exist_ok=True)
    _run(make + [base], tree, log, f"make {base}")
    if fragments:
        merge = [str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(build), str(build / ".config")]
        _run(merge + [str(f) for f in fragments], tree, log, "merge_config.sh")
    _run(make + ["olddefconfig"], tree, log, "make olddefconfig")
    config = build / ".config"
    final = parse(config.read_text())
    check_dropped(wanted, final, fragments)
    from . import guestneeds

    guestneeds.check(final, config, log)
    return config


def check_dropped(wanted: dict, final: dict, fragments: list) -> None:
    """Raise ConfigDropped listing every fragment option whose value did not survive into .config."""
    dropped = []
    for name, value in wanted.items():
        got = final.get(name)
        if value is None or value == "n":
            if got not in (None, "n"):
                dropped.append((name, "not set", got))
        elif got != value:
            dropped.append((name, value, "not set" if got is None else got))
    if dropped:
        shown = ", ".join(f"{n}={w} (got {g})" for n, w, g in dropped)
        names = ", ".join(str(f) for f in fragments)
        raise ConfigDropped(
            f"Kconfig dropped {len(dropped)} option(s) from {names}: {shown}; check the "
            "spelling and the options' 'depends on' (make menuconfig, then /NAME)",
            dropped,
        )


def _run(argv: list, cwd: Path, log, what: str) -> None:
    """One configure step, logged and bounded; its process group is stopped and reaped if interrupted."""
    try:
        status, timed_out = kbuild_make.run_logged(argv, log, what, CONFIG_TIMEOUT, Path(log.name).parent, cwd=cwd)
    except FileNotFoundError:
        raise SetupError(f"{argv[0]} is not installed (needed for {what}): apt-get install make") from None
    if timed_out:
        raise SetupError(f"{what} took longer than {CONFIG_TIMEOUT} s")
    if status != 0:
        raise BuildFailed(f"{what} failed (exit {status}); build log: {log.name}", log=log.name)
