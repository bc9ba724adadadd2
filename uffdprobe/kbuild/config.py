"""Kernel configuration: base target, fragments merged with merge_config.sh, olddefconfig, dropped-option check."""
import re
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
    bad = [line for line in text.splitlines()
           if line.strip() and not line.lstrip().startswith("#") and not _SET.match(line.strip())]
    if bad:
        raise BadInput(f"config fragment {path}: line {bad[0]!r} is not CONFIG_NAME=value; fix it")
    if not options:
        raise BadInput(f"config fragment {path} sets no option (expected CONFIG_NAME=value lines)")
    return options


def configure(make: list, tree: Path, build: Path, base: str, fragments: list, log) -> Path:
    """Write build/.config: `make <base>`, merge the fragments, olddefconfig; check nothing was dropped."""
    wanted = {}
    for fragment in fragments:
        wanted.update(read_fragment(fragment))
    build.mkdir(parents=True, exist_ok=True)
    _run(make + [base], tree, log, f"make {base}")
    if fragments:
        merge = [str(tree / "scripts/kconfig/merge_config.sh"), "-m", "-O", str(build), str(build / ".config")]
        _run(merge + [str(f) for f in fragments], tree, log, "merge_config.sh")
    _run(make + ["olddefconfig"], tree, log, "make olddefconfig")
    config = build / ".config"
    check_dropped(wanted, parse(config.read_text()), fragments)
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
        raise ConfigDropped(f"Kconfig dropped {len(dropped)} option(s) from {names}: {shown}; check the "
                            "spelling and the options' 'depends on' (make menuconfig, then /NAME)", dropped)


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
