# SPDX-License-Identifier: GPL-2.0-only
"""The typed run request (run/request.py): built once from the command line, asked for again by every process
hop from one to_argv(), and run/ never sees an argparse Namespace. No boots, no builds: the fast lane."""

import ast
import copy
from pathlib import Path

import pytest

import uffdprobe
from uffdprobe.cli.main import build_parser
from uffdprobe.cli.run import run_request
from uffdprobe.run.kernels import Target
from uffdprobe.run.matrix import child_request
from uffdprobe.run.request import GUEST_EXEC_SCRATCH_FS, RunRequest, Workload, build

TRUE = "/bin/true"


def _parsed(words):
    """The Namespace `uffdprobe run WORDS` parses to, --exec's program split off as main() does."""
    from uffdprobe.cli.execopts import split

    argv, program = split(["run", *words])
    args = build_parser(argv).parse_args(argv)
    if program is not None:
        args.exec = program
    return args


def _request(words) -> RunRequest:
    return run_request(_parsed(words))[0]


EVERYTHING = [
    "cow-leak",
    "--scenario",
    "wp-real-write",
    "--memory",
    "anon-4k",
    "--memory",
    "anon-thp",
    "--param",
    "data_pages=8",
    "--runs",
    "3",
    "--hang-timeout",
    "5",
    "--scenario-timeout",
    "60",
    "--kernel",
    "stock",
    "--accel",
    "tcg",
    "--append",
    "transparent_hugepage=never",
    "--vm-timeout",
    "300",
    "--expect",
    "cow-leak=LEAK",
    "--scratch-fs",
    "ext4",
    "--scratch-mb",
    "128",
    "--stuck-timeout",
    "9",
    "--rescue-timeout",
    "8",
    "--exec-label",
    "mine",
    "--ktap",
    "-",
    "-v",
    "--exec",
    "--",
    TRUE,
    "--memory",
    "x",
]


def test_every_option_survives_the_hop_to_argv_and_back():
    first = _request(EVERYTHING)
    assert first.workload.scenarios == ("cow-leak", "wp-real-write")
    assert first.workload.exec == (TRUE, "--memory", "x")  # the program's own words stay its own
    assert first.machine.kernel == "stock" and first.limits.vm_timeout == 300.0
    assert first.declared.get("cow-leak") == "LEAK"
    again = _request(first.to_argv())
    assert again == first
    assert first.to_argv()[-5:] == ["--exec", "--", TRUE, "--memory", "x"]


def test_defaults_are_not_written_and_a_plain_run_is_an_empty_argv():
    assert _request([]).to_argv() == []
    assert _request(["--runs", "1", "--hang-timeout", "2"]).to_argv() == []


def test_building_the_request_leaves_the_namespace_as_parsed():
    args = _parsed(["cow-leak", "--scenario", "wp-real-write", "--exec", "--", "true"])
    before = copy.deepcopy(vars(args))
    request = run_request(args)[0]
    assert vars(args) == before
    program = Path(request.workload.exec[0])
    assert program.is_absolute() and program.name == "true" and request.workload.exec_row == "true"


def test_the_guest_gets_the_workload_and_bounds_but_no_kernel_outputs_or_declarations():
    guest = _request(EVERYTHING).for_guest()
    argv = guest.to_argv()
    for absent in (
        "--kernel",
        "--accel",
        "--append",
        "--vm-timeout",
        "--ktap",
        "--json",
        "--expect",
        "--verbose",
        "--scratch-mb",
    ):
        assert absent not in argv, absent
    assert argv[argv.index("--hang-timeout") + 1] == "5.0"
    assert argv[argv.index("--scratch-fs") + 1] == "ext4"
    assert argv[-5:] == ["--exec", "--", TRUE, "--memory", "x"]


def test_selftests_and_where_they_come_from_survive_the_hop():
    """The CLI finds (or builds) the selftests before the request exists; the request carries where they are."""
    request = RunRequest(Workload(kselftest=("cow", "uffd-unit-tests=all"), kselftest_from="/built/selftests"))
    argv = request.for_guest().to_argv()
    assert argv == ["--kselftest", "cow", "--kselftest", "uffd-unit-tests=all", "--kselftest-from", "/built/selftests"]
    args = build_parser(["run", *argv]).parse_args(["run", *argv])
    assert build(vars(args)) == request


@pytest.mark.parametrize("words, fs", [([], GUEST_EXEC_SCRATCH_FS), (["--scratch-fs", "none"], None)])
def test_a_guest_program_gets_ext4_unless_scratch_fs_none(words, fs):
    argv = _request(["--kernel", "stock", *words, "--exec", "--", TRUE]).for_guest().to_argv()
    assert (argv[argv.index("--scratch-fs") + 1] if "--scratch-fs" in argv else None) == fs


def test_a_matrix_child_is_the_matrix_request_for_one_kernel(tmp_path):
    matrix = build({"scenarios": ["cow-leak"], "runs": 2, "verbosity": 1, "accel": "tcg"})
    target = Target("mine", path="/boot/vmlinuz-x", expect={"cow-leak": "LEAK", "b/anon-4k": "PASS"}, kselftest=["cow"])
    child = child_request(target, matrix, tmp_path)
    assert child.machine.kernel == "/boot/vmlinuz-x" and child.workload.kselftest == ("cow",)
    argv = child.to_argv()
    assert argv[argv.index("--json") + 1] == str(tmp_path / "results.json")
    assert argv[argv.index("--results-dir") + 1] == str(tmp_path)
    assert [argv[i + 1] for i, w in enumerate(argv) if w == "--expect"] == ["b/anon-4k=PASS", "cow-leak=LEAK"]
    assert "--verbose" in argv and argv[-1] == "cow-leak"
    host = child_request(Target("host"), matrix, tmp_path)
    assert "--kernel" not in host.to_argv()


def test_a_request_is_frozen():
    with pytest.raises(AttributeError):
        Workload().runs = 2


def test_run_stage_never_imports_argparse():
    run_dir = Path(uffdprobe.__file__).parent / "run"
    importing = []
    for path in run_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if "argparse" in names:
                importing.append(path.name)
    assert not importing


def test_the_engines_use_only_public_names_of_other_modules():
    """The Dask engine keeps to the Engine protocol (run/engine.py) and public helpers: no private attribute
    of another object, no private name imported from another module."""
    run_dir = Path(uffdprobe.__file__).parent / "run"
    reaching = []
    for name in ("engine_dask.py", "dask_cell.py", "engine_local.py", "matrix.py"):
        for node in ast.walk(ast.parse((run_dir / name).read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                reaching.append(f"{name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom):
                reaching += [
                    f"{name}:{node.lineno} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not reaching
