# SPDX-License-Identifier: GPL-2.0-only
"""What a run is asked to do, as typed values: the CLI (and the pytest plugin) build one RunRequest, every
stage of run/ reads it, and every process hop (a matrix's child, a guest's own run, a bisect step's guest)
is given the same request again as one command line, from RunRequest.to_argv().

A field that is a command-line option names it in its metadata (`option`); to_argv() writes every field
that differs from its default, so a new run option is one field here plus its add_argument in cli/run.py
(whose dest is the field's name)."""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

#: An --exec program in a guest gets its scratch disk as this filesystem unless --scratch-fs says
#: otherwise: the guest has a blank disk of its own, and its /tmp (tmpfs on 6.1) refuses O_DIRECT.
GUEST_EXEC_SCRATCH_FS = "ext4"


def _option(flag: Optional[str], default: Any = None, **more: Any) -> Any:
    """A dataclass field given on the command line as `flag` (None: never passed on)."""
    return field(default=default, metadata={"option": flag, **more})


@dataclass(frozen=True)
class Workload:
    """What runs: the scenarios (on which memory kinds, with which parameters, how many times), the
    kernel's own selftests, users' scenario files, and an --exec program with its row name."""

    scenarios: Tuple[str, ...] = _option(None, (), positional=True)
    memory: Tuple[str, ...] = _option("--memory", ())
    param: Tuple[str, ...] = _option("--param", ())
    runs: int = _option("--runs", 1)
    kselftest: Tuple[str, ...] = _option("--kselftest", ())
    kselftest_from: Optional[str] = _option("--kselftest-from")
    scenarios_from: Tuple[str, ...] = _option("--scenarios-from", ())
    exec_row: Optional[str] = _option("--exec-label")
    exec: Optional[Tuple[str, ...]] = _option(None, program=True)  # the --exec program and its arguments

    @property
    def program_row(self) -> str:
        """The --exec program's row name: --exec-label, else the program's file name ('' without --exec)."""
        if self.exec is None:
            return ""
        return self.exec_row or os.path.basename(self.exec[0])

    @property
    def exec_only(self) -> bool:
        """--exec without a scenario named: the program's row only, no built-in scenarios."""
        return self.exec is not None and not self.scenarios


@dataclass(frozen=True)
class Limits:
    """The bounds, in seconds: a uffd fault blocked (HANG), one scenario, an --exec program stuck and
    rescued, and a whole boot."""

    hang_timeout: float = _option("--hang-timeout", 2.0)
    scenario_timeout: float = _option("--scenario-timeout", 120.0)
    stuck_timeout: float = _option("--stuck-timeout", 30.0)
    rescue_timeout: float = _option("--rescue-timeout", 30.0)
    vm_timeout: float = _option("--vm-timeout", 900.0)


@dataclass(frozen=True)
class Machine:
    """Where it runs: the kernel (None: the running one), how QEMU boots it, and the scratch storage."""

    kernel: Optional[str] = _option("--kernel")
    accel: Optional[str] = _option("--accel")
    append: Tuple[str, ...] = _option("--append", ())
    scratch_fs: Optional[str] = _option("--scratch-fs")
    scratch_mb: Optional[int] = _option("--scratch-mb")
    odirect_target: Optional[str] = _option("--odirect-target")


@dataclass(frozen=True)
class Outputs:
    """Where the verdicts go besides the table: a JSON file, a KTAP file (- for stdout), a results folder (its
    verdicts.jsonl and the child report run.json), a KCIDB report (its origin, the URL the folder is
    published at); and how much progress is said (-1 -q, 0, 1 -v)."""

    json: Optional[str] = _option("--json")
    ktap: Optional[str] = _option("--ktap")
    results_dir: Optional[str] = _option("--results-dir")
    kcidb: Optional[str] = _option("--kcidb")
    origin: Optional[str] = _option("--origin")
    kcidb_url: Optional[str] = _option("--kcidb-url")
    verbosity: int = _option(None, 0, flags={-1: "--quiet", 1: "--verbose"})


@dataclass(frozen=True)
class RunRequest:
    """One `uffdprobe run`: its parts, the --expect items as given, and what is declared for its kernel
    (a recipe's [expect] plus --expect, resolved by the CLI; the verdict rule judges by it)."""

    workload: Workload = Workload()
    limits: Limits = Limits()
    machine: Machine = Machine()
    outputs: Outputs = Outputs()
    expect: Tuple[str, ...] = _option("--expect", ())
    declared: Mapping[str, str] = field(default_factory=dict, metadata={"option": None}, hash=False, compare=False)

    def to_argv(self) -> List[str]:
        """The `uffdprobe run` options that ask for this request again (after the word `run`): every
        option that differs from its default, the scenarios, then `--exec -- PROGRAM ARGS` last."""
        argv: List[str] = []
        positional: List[str] = []
        program: List[str] = []
        for part in (self.workload, self.limits, self.machine, self.outputs, self):
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                if f.metadata.get("positional"):
                    positional += list(value)
                elif f.metadata.get("program"):
                    program = [] if value is None else ["--exec", "--", *value]
                elif f.metadata.get("flags"):
                    flag = f.metadata["flags"].get(value)
                    argv += [flag] if flag else []
                elif f.metadata.get("option") and value != f.default and not dataclasses.is_dataclass(value):
                    argv += _words(f.metadata["option"], value)
        return argv + positional + program

    def replace(self, **parts: Any) -> "RunRequest":
        """A copy with whole parts or fields of parts changed: replace(limits=..., machine={"kernel": K})
        (a dict changes the named fields of that part)."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **value)
            if isinstance(value, dict) and name != "declared"
            else value
            for name, value in parts.items()
        }
        return dataclasses.replace(self, **changed)

    def for_guest(self) -> "RunRequest":
        """The same run inside the guest this request boots: no kernel, no outputs of ours (it streams to
        its results channel, $UFFDPROBE_RESULTS), nothing declared (the host judges), and an --exec
        program's scratch disk as ext4 unless --scratch-fs said otherwise."""
        fs = self.machine.scratch_fs
        if fs is None and self.workload.exec is not None:
            fs = GUEST_EXEC_SCRATCH_FS
        return RunRequest(
            workload=self.workload,
            limits=dataclasses.replace(self.limits, vm_timeout=Limits.vm_timeout),
            machine=Machine(scratch_fs=None if fs == "none" else fs),
        )


def _words(flag: str, value: Any) -> List[str]:
    if value is True:
        return [flag]
    if isinstance(value, (tuple, list)):
        return [word for item in value for word in (flag, str(item))]
    return [flag, str(value)]


def build(values: Mapping[str, Any], **overrides: Any) -> RunRequest:
    """A RunRequest from option values by field name (an argparse Namespace's vars(), a dict), with
    `overrides` (by field name) taking precedence; lists become tuples, absent names (and None values)
    keep the default, but an override of None sets None."""
    given: Dict[str, Any] = {**{k: v for k, v in values.items() if v is not None}, **overrides}
    parts: Dict[str, Any] = {}
    for name, kind in (("workload", Workload), ("limits", Limits), ("machine", Machine), ("outputs", Outputs)):
        fields: Dict[str, Any] = {}
        for f in dataclasses.fields(kind):
            if f.name in given:
                value = given[f.name]
                fields[f.name] = tuple(value) if isinstance(value, list) else value
        parts[name] = kind(**fields)
    expect = tuple(given.get("expect") or ())
    return RunRequest(expect=expect, declared=dict(given.get("declared") or {}), **parts)
