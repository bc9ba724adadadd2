# SPDX-License-Identifier: GPL-2.0-only
"""One error boundary: every expected error of every stage is a UffdprobeError carrying its exit status,
printed and mapped to that status once, in cli/main.py. No boots, no builds."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import uffdprobe
from uffdprobe.exitcodes import Exit, UffdprobeError, UsageError
from uffdprobe.kbuild.errors import BuildFailed, KbuildError, PatchDoesNotApply
from uffdprobe.vm.errors import VmInputError, VmSetupError

PACKAGE = Path(uffdprobe.__file__).parent
#: Who may read an error's exit_code: the mapping itself (cli/errors.py, used by main and by the run report),
#: and bisect-step's argparse hook (argparse errors come before main's mapping).
READERS = {"cli/errors.py", "cli/bisect.py"}


@pytest.mark.parametrize(
    "error, status",
    [
        (UsageError("x"), Exit.USAGE),
        (VmInputError("x"), Exit.USAGE),
        (VmSetupError("x"), Exit.SETUP),
        (KbuildError("x"), Exit.SETUP),
        (BuildFailed("x"), Exit.BUILD_FAILED),
        (PatchDoesNotApply("x"), Exit.PATCH_FAILED),
        (UffdprobeError("x", Exit.INTERRUPTED), Exit.INTERRUPTED),
    ],
)
def test_every_stage_error_carries_its_exit_status(error, status):
    assert isinstance(error, UffdprobeError) and error.exit_code == status
    assert error.context("--kernel k").exit_code == status and str(error.context("--kernel k")) == "--kernel k: x"


def test_only_the_boundary_turns_errors_into_exit_statuses():
    readers = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "exit_code"
                and isinstance(node.ctx, ast.Load)
                and not (isinstance(node.value, ast.Name) and node.value.id == "self")
            ):
                readers.add(str(path.relative_to(PACKAGE)))
    assert readers <= READERS, readers - READERS


@pytest.mark.parametrize(
    "argv, status, line",
    [
        (["boot", "/nonexistent/bzImage", "--", "true"], Exit.USAGE, "uffdprobe boot: "),
        (["boot", "host", "--", "true"], Exit.USAGE, "uffdprobe boot: boot host: the running kernel is not booted"),
        (["kernel", "build", "stock", "--source", "/x"], Exit.USAGE, "uffdprobe kernel build: give either a RECIPE"),
        (["run", "--kernel", "/nonexistent/bzImage"], Exit.USAGE, "uffdprobe: --kernel"),
    ],
)
def test_an_error_is_one_line_with_its_command_prefix_and_status(argv, status, line):
    proc = subprocess.run([sys.executable, "-m", "uffdprobe", *argv], capture_output=True, text=True, timeout=120)
    said = proc.stderr.strip().splitlines()
    assert proc.returncode == status and len(said) == 1 and said[0].startswith(line), proc.stderr
