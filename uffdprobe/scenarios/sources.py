# SPDX-License-Identifier: GPL-2.0-only
"""Users' own scenarios: rows of the same table as the built-ins, from a Python file (`--scenarios-from
FILE.py`) or from the modules an installed distribution names in the entry point group
`uffdprobe.scenarios`. Each source is checked whole before it joins registry.SCENARIOS: a name that
clashes (with a built-in or another source), a bad row or a source that does not import is one line
(UsageError, exit 2) naming the source, never a traceback.
"""

import dataclasses
import functools
import importlib.util
import inspect
import json
import os
import re
import sys
import types
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from uffdprobe.exitcodes import UsageError
from uffdprobe.verdicts import Outcome, Verdict, plain
from . import import_trial
from .memkinds import KINDS
from .racy import Race
from .registry import SCENARIOS, Scenario

#: The entry point group an installed package adds its scenario rows through.
ENTRY_POINT_GROUP = "uffdprobe.scenarios"
#: Set to "none" in a guest's environment by the host whose scan found no entry point of the group: the
#: guest's run then skips the scan (importlib.metadata and every distribution's metadata over 9p).
ENTRY_POINTS_ENV = "UFFDPROBE_ENTRY_POINTS"
#: The needs registry.why_not knows how to probe (anything else would be silently "met").
KNOWN_NEEDS = ("uffd", "uffd-wp", "event-fork", "odirect")
#: The verdicts a scenario may conclude; the rest only a kernel build or boot gives.
SCENARIO_VERDICTS = ("PASS", "HANG", "LEAK", "WP_LOST", "FAIL", "STUCK", "SKIP", "ERROR")
#: Scenario names go into --expect keys (KERNEL:SCENARIO/MEMORY=V), KTAP names (SCENARIO.MEMORY) and JUnit.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}$")
BUILTIN = frozenset(SCENARIOS)


@dataclasses.dataclass
class Source:
    """Where user scenarios came from: a file or an entry point, and the files the guest must see."""

    kind: str  # "file" or "entry point"
    where: str  # the absolute file path, or "NAME = VALUE (DISTRIBUTION VERSION)"
    paths: Tuple[str, ...] = ()  # files a guest's `uffdprobe run` reads to load it again
    names: Tuple[str, ...] = ()
    sha256: Optional[str] = None  # a file's content hash when it was loaded

    @property
    def label(self) -> str:
        return f"--scenarios-from {self.where}" if self.kind == "file" else f"entry point {self.where}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "where": self.where, **({"sha256": self.sha256} if self.sha256 else {})}


_LOADED: Dict[str, Source] = {}  # key: resolved file path, or "ep:" + the entry point's name = value
_ORIGIN: Dict[str, Source] = {}  # user scenario name -> its source
_IDENTITY: Dict[str, Tuple[str, str]] = {}  # user scenario name -> (file, qualname) of its run function


def load(files: Sequence[str] = (), entry_points: bool = True) -> List[Source]:
    """Register the entry point group's scenarios (unless `entry_points` is False), then each file's,
    in order; loading a source again is a no-op. Returns every source loaded so far."""
    if entry_points and os.environ.get(ENTRY_POINTS_ENV) != "none" and may_declare_the_group():
        for ep in _entry_points():
            key = f"ep:{ep.name} = {ep.value}"
            if key not in _LOADED:
                _register(key, *_from_entry_point(ep))
    for given in files:
        path = _check_file(given)
        if path not in _LOADED:
            _register(path, *_from_file(path))
    return list(_LOADED.values())


def files() -> List[str]:
    """The absolute paths of every --scenarios-from file loaded, in order (for a child's argv)."""
    return [s.where for s in _LOADED.values() if s.kind == "file"]


def sources() -> List[Source]:
    return list(_LOADED.values())


def origin(name: str) -> Optional[Source]:
    """The source of a user scenario, None for a built-in (or an unknown name)."""
    return _ORIGIN.get(name)


def may_declare_the_group() -> bool:
    """Whether a distribution on sys.path may declare ENTRY_POINT_GROUP, from a look at the files
    importlib.metadata would read: the entry_points.txt of every *.dist-info, *.egg-info (and an .egg's
    EGG-INFO) folder in each sys.path folder. False spares importing importlib.metadata and parsing every
    distribution's metadata, a sixth of a `uffdprobe` command's start. True (then the real scan decides)
    whenever a file names the group, a sys.path entry is not a folder (a zip) or a finder other than the
    path finder can find distributions."""
    if any(hasattr(f, "find_distributions") and getattr(f, "__name__", "") != "PathFinder" for f in sys.meta_path):
        return True
    group = ENTRY_POINT_GROUP.encode()
    for entry in sys.path:
        folder = entry or "."
        egg = folder.lower().endswith(".egg")
        try:
            with os.scandir(folder) as children:
                infos = [
                    c.path
                    for c in children
                    if c.name.lower().endswith((".dist-info", ".egg-info")) or (egg and c.name.lower() == "egg-info")
                ]
        except NotADirectoryError:
            return True
        except OSError:  # not there (or unreadable): importlib.metadata finds nothing in it either
            continue
        for info in infos:
            try:
                with open(os.path.join(info, "entry_points.txt"), "rb") as f:
                    if group in f.read():
                        return True
            except OSError:
                continue
    return False


def _entry_points() -> list:
    from importlib import metadata

    found = metadata.entry_points()
    group = found.select(group=ENTRY_POINT_GROUP) if hasattr(found, "select") else found.get(ENTRY_POINT_GROUP, [])
    unique = {}
    for ep in group:  # a distribution seen twice on sys.path lists its entry points twice
        unique.setdefault((ep.name, ep.value), ep)
    return sorted(unique.values(), key=lambda ep: ep.name)


def _from_entry_point(ep) -> Tuple[Source, List[Scenario]]:
    dist = getattr(ep, "dist", None)
    about = f" ({dist.metadata['Name']} {dist.version})" if dist is not None else ""
    source = Source("entry point", f"{ep.name} = {ep.value}{about} in group {ENTRY_POINT_GROUP}")
    import_trial.check(source.label, ep.load)
    try:
        obj = ep.load()
    except (Exception, SystemExit) as exc:  # anything the user's module raises; Ctrl-C stays Ctrl-C
        raise UsageError(f"{source.label}: cannot import it: {_say(exc, None)}") from None
    module = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", ""))
    where = str(dist.locate_file("")) if dist is not None else None  # the sys.path entry holding its metadata
    source.paths = tuple(os.path.realpath(p) for p in (_module_file(module), where) if p)
    return source, _rows(obj, source)


def _check_file(given: str) -> str:
    path = os.path.realpath(os.path.expanduser(given))
    if not os.path.exists(path):
        raise UsageError(f"--scenarios-from {given}: no such file; name a Python file that defines SCENARIOS")
    if not os.path.isfile(path) or not path.endswith(".py"):
        raise UsageError(
            f"--scenarios-from {given}: not a .py file; name a Python file that defines "
            f"SCENARIOS (a package registers through the entry point group {ENTRY_POINT_GROUP})"
        )
    if not os.access(path, os.R_OK):
        raise UsageError(f"--scenarios-from {given}: cannot read it; chmod a+r {path}")
    return path


def _exec_module(spec: Any, module: types.ModuleType) -> None:
    spec.loader.exec_module(module)


def _from_file(path: str) -> Tuple[Source, List[Scenario]]:
    import hashlib  # here, as in _sha256: only a user's file needs it, and it loads OpenSSL

    source = Source("file", path, paths=(path,), sha256=_sha256(path))
    stem = re.sub(r"\W", "_", os.path.basename(path)[:-3])
    name = f"uffdprobe_user_{stem}_{hashlib.sha256(path.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a class's module up here
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the user's folder
    try:
        import_trial.check(source.label, functools.partial(_exec_module, spec, module))  # os._exit, hang: exit 2
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise UsageError(f"{source.label}: cannot import it: {_say(exc, path)}") from None
    finally:
        sys.dont_write_bytecode = keep
    if not hasattr(module, "SCENARIOS"):
        raise UsageError(
            f"{source.label}: defines no SCENARIOS; add SCENARIOS = [Scenario(...), ...] "
            "(from uffdprobe.scenarios.api import Scenario)"
        )
    return source, _rows(module, source)


def _rows(obj: Any, source: Source) -> List[Scenario]:
    """The Scenario rows a module (its SCENARIOS), a callable or an iterable stands for."""
    if isinstance(obj, types.ModuleType):
        if not hasattr(obj, "SCENARIOS"):
            raise UsageError(
                f"{source.label}: module {obj.__name__} defines no SCENARIOS; add SCENARIOS = "
                "[Scenario(...), ...] or name a callable that returns them"
            )
        obj = obj.SCENARIOS
    try:
        if callable(obj) and not isinstance(obj, Scenario):
            obj = obj()
        rows = [obj] if isinstance(obj, Scenario) else list(obj)
    except (Exception, SystemExit) as exc:
        raise UsageError(f"{source.label}: cannot list its scenarios: {_say(exc, None)}") from None
    return [_checked_row(row, source) for row in rows]


def _checked_row(s: Any, source: Source) -> Scenario:
    """The row as the table holds it (tuples, a run that checks its Outcome), or UsageError."""
    if not isinstance(s, Scenario):
        raise UsageError(
            f"{source.label}: SCENARIOS holds a {type(s).__name__}, not a Scenario "
            "(from uffdprobe.scenarios.api import Scenario)"
        )
    bad = _fault(s)
    if bad:
        raise UsageError(f"{source.label}: scenario {s.name!r}: {bad}")
    return dataclasses.replace(
        s,
        needs=tuple(s.needs),
        memory=tuple(s.memory),
        run=_checked_run(s.name, s.run, source),
        defaults=dict(s.defaults),
    )


def _fault(s: Scenario) -> Optional[str]:
    if not isinstance(s.name, str) or not NAME.match(s.name):
        return "a name is 1-64 letters, digits, '_', '+' or '-' (it goes into --expect keys and KTAP names)"
    if not isinstance(s.question, str) or not s.question.strip():
        return "question must say, in a sentence, what the scenario asks of the kernel"
    if not callable(s.run):
        return "run must be a function taking the ScenarioContext and returning an Outcome"
    if isinstance(s.needs, str) or not all(n in KNOWN_NEEDS for n in s.needs):
        return f"needs must be a tuple of {', '.join(KNOWN_NEEDS)} (got {s.needs!r})"
    if isinstance(s.memory, str) or not s.memory or not all(m in KINDS for m in s.memory):
        return f"memory must be a non-empty tuple of {', '.join(KINDS)} (got {s.memory!r})"
    if not isinstance(s.defaults, dict) or not all(isinstance(k, str) and "=" not in k for k in s.defaults):
        return "defaults must be a dict of parameter names (no '=') to JSON values"
    try:
        json.dumps(s.defaults)
    except (TypeError, ValueError) as exc:
        return f"defaults must be JSON values (as --param gives them): {exc}"
    if not isinstance(s.models, str) or not isinstance(s.test_only, bool):
        return "models must be a string and test_only a bool"
    if s.race is not None and not isinstance(s.race, Race):
        return "race must be a Race(p_hit, measured_on, tries, seconds) (from uffdprobe.scenarios.api import Race)"
    return None


def _checked_run(name: str, run: Callable[[Any], Outcome], source: Source) -> Callable[[Any], Outcome]:
    """`run` as the supervised child calls it: the source goes into the evidence first (it survives a
    kill), and what comes back must be an Outcome with a scenario's verdict and JSON-able evidence."""

    @functools.wraps(run)
    def checked(ctx) -> Outcome:
        ctx.note("scenario_source", source.to_dict())
        out = run(ctx)
        if not isinstance(out, Outcome):
            return Outcome(Verdict.ERROR, f"{name}: run returned {type(out).__name__}, not an Outcome")
        try:
            verdict = Verdict(out.verdict)
        except ValueError:
            verdict = None
        if verdict is None or verdict.value not in SCENARIO_VERDICTS:
            return Outcome(
                Verdict.ERROR,
                f"{name}: run returned verdict {out.verdict!r}; a scenario ends {', '.join(SCENARIO_VERDICTS)}",
                plain(out.evidence),
            )
        return Outcome(verdict, str(out.reason), plain(out.evidence))

    checked.uffdprobe_identity = _identity(run)
    return checked


def _identity(run: Callable) -> Tuple[str, str]:
    """(file, qualified name) of a run function: the same scenario loaded through two sources."""
    try:
        where = os.path.realpath(inspect.getsourcefile(run) or "")
    except TypeError:
        where = ""
    return where, getattr(run, "__qualname__", repr(run))


def _register(key: str, source: Source, rows: Iterable[Scenario]) -> None:
    """Check every row of one source against the table, then add them all (or none)."""
    rows = list(rows)
    fresh, seen = [], set()
    for s in rows:
        if s.name in seen:
            raise UsageError(f"{source.label}: defines scenario {s.name!r} twice; rename one")
        seen.add(s.name)
        if s.name in BUILTIN:
            raise UsageError(
                f"{source.label}: scenario {s.name!r} clashes with uffdprobe's built-in {s.name!r}; rename yours"
            )
        if s.name in _ORIGIN:
            if _IDENTITY[s.name] == s.run.uffdprobe_identity:
                continue  # the same function reached twice (its file named and its entry point installed)
            raise UsageError(
                f"scenario {s.name!r} comes from both {_ORIGIN[s.name].label} and {source.label}; rename one"
            )
        fresh.append(s)
    source.names = tuple(s.name for s in fresh)
    for s in fresh:
        SCENARIOS[s.name] = s
        _ORIGIN[s.name] = source
        _IDENTITY[s.name] = s.run.uffdprobe_identity
    _LOADED[key] = source


def _say(exc: BaseException, path: Optional[str]) -> str:
    """One line for an exception raised while importing: its type, message and the user's line."""
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"{text.split(' (')[0]} ({os.path.basename(exc.filename or path or '?')} line {exc.lineno})"
    import traceback  # only for a source that failed to import

    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if path and os.path.realpath(f.filename) == path] or frames[-1:]
    return f"{text} ({os.path.basename(mine[-1].filename)} line {mine[-1].lineno})" if mine else text


def _module_file(module: Optional[types.ModuleType]) -> Optional[str]:
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if path else None


def _sha256(path: str) -> Optional[str]:
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None
