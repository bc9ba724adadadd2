# SPDX-License-Identifier: GPL-2.0-only
"""A setup problem is one line and exit 2, never a traceback and never exit 1 (a kernel problem).

The caches and result folders sit on a real read-only tmpfs (`mount -t tmpfs -o ro`, or a tmpfs
remounted read-only with the folders already there); HOME is a folder that does not exist. Each
case runs the real command line in a subprocess and checks the status, the one line, and that
nothing was created or left running.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

import psutil
import pytest

from uffdprobe.exitcodes import Exit


def _mount(*opts: str) -> pathlib.Path:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where = pathlib.Path(tempfile.mkdtemp(prefix="uffdprobe-ro-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=4m",) + opts), "tmpfs", str(where)], check=True, timeout=30
    )
    return where


@pytest.fixture
def ro_empty():
    """A read-only tmpfs with nothing in it: no cache folder can be made there."""
    where = _mount("ro")
    yield where
    subprocess.run(["umount", str(where)], check=True, timeout=30)
    where.rmdir()


@pytest.fixture
def ro_cache():
    """A read-only tmpfs that already holds uffdprobe's cache folders (kernels, runs)."""
    where = _mount()
    (where / "uffdprobe" / "kernels").mkdir(parents=True)
    (where / "uffdprobe" / "runs").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, timeout=30)
    yield where
    subprocess.run(["umount", str(where)], check=True, timeout=30)
    where.rmdir()


def _uffdprobe(*argv, env: dict, unset=(), cwd="/"):
    full = {k: v for k, v in os.environ.items() if k not in unset}
    full.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "uffdprobe", *argv], capture_output=True, text=True, timeout=120, env=full, cwd=cwd
    )
    ours = [v for k, v in env.items() if k in ("XDG_CACHE_HOME", "HOME")]  # any QEMU of this run names it
    qemu = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if "qemu" in (p.info["name"] or "") and any(o in " ".join(p.info["cmdline"] or []) for o in ours)
    ]
    assert not qemu, qemu
    return proc


def _one_line_exit_2(proc, *words) -> str:
    assert proc.returncode == Exit.USAGE, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if x.strip()]
    for word in words:
        assert word in line, line
    return line


CACHE_COMMANDS = {
    "run --kernel": ["run", "--kernel", "stock", "cow-leak"],
    "kernel build": ["kernel", "build", "stock"],
}


@pytest.mark.parametrize("command", list(CACHE_COMMANDS))
@pytest.mark.reliability(
    "XDG_CACHE_HOME on a read-only file system (run --kernel, kernel build)",
    "one line naming the folder, 'Read-only file system' and XDG_CACHE_HOME, exit 2, nothing built or booted",
)
def test_a_read_only_cache_home_is_a_setup_error(ro_empty, command):
    proc = _uffdprobe(*CACHE_COMMANDS[command], env={"XDG_CACHE_HOME": str(ro_empty)})
    _one_line_exit_2(proc, str(ro_empty), "Read-only file system", "XDG_CACHE_HOME")
    assert list(ro_empty.iterdir()) == []


@pytest.mark.parametrize("command", list(CACHE_COMMANDS) + ["kernel clean --all"])
@pytest.mark.reliability(
    "an existing kernel cache remounted read-only (run --kernel, kernel build, kernel clean)",
    "one line naming the cache folder and 'read-only', exit 2",
)
def test_an_existing_read_only_cache_is_a_setup_error(ro_cache, command):
    argv = CACHE_COMMANDS.get(command, ["kernel", "clean", "--all"])
    proc = _uffdprobe(*argv, env={"XDG_CACHE_HOME": str(ro_cache)})
    _one_line_exit_2(proc, str(ro_cache / "uffdprobe"), "Read-only file system")


@pytest.mark.reliability(
    "HOME on a read-only file system, XDG_CACHE_HOME unset (kernel build)",
    "one line naming the folder and the reason, exit 2",
)
def test_an_unwritable_home_is_a_setup_error(ro_empty):
    proc = _uffdprobe("kernel", "build", "stock", env={"HOME": str(ro_empty)}, unset=("XDG_CACHE_HOME",))
    _one_line_exit_2(proc, f"{ro_empty}/.cache", "Read-only file system")


@pytest.mark.parametrize("command", list(CACHE_COMMANDS))
@pytest.mark.reliability(
    "HOME names a folder that does not exist, XDG_CACHE_HOME unset",
    "one line saying so and what to set, exit 2, the home folder not created",
)
def test_a_missing_home_is_a_setup_error(tmp_path, command):
    home = tmp_path / "gone"
    proc = _uffdprobe(*CACHE_COMMANDS[command], env={"HOME": str(home)}, unset=("XDG_CACHE_HOME",))
    _one_line_exit_2(proc, str(home), "does not exist", "XDG_CACHE_HOME")
    assert not home.exists()


@pytest.mark.parametrize("how", ["--results-dir", "UFFDPROBE_RESULTS"])
@pytest.mark.reliability(
    "--results-dir or UFFDPROBE_RESULTS on a read-only file system",
    "one line naming the folder and the reason, exit 2, no scenario run",
)
def test_results_dir_on_a_read_only_fs_is_a_setup_error(ro_empty, how):
    target = ro_empty / "results"
    argv, env = (
        (["--results-dir", str(target)], {}) if how == "--results-dir" else ([], {"UFFDPROBE_RESULTS": str(target)})
    )
    proc = _uffdprobe("run", "cow-leak", *argv, env=env)
    _one_line_exit_2(proc, str(target), "Read-only file system")
    assert proc.stdout == ""


@pytest.mark.reliability(
    "--results-dir names an existing file", "one line saying it is a file, exit 2, the file untouched"
)
def test_results_dir_naming_a_file_is_a_setup_error(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("mine\n")
    proc = _uffdprobe("run", "cow-leak", "--results-dir", str(precious), env={})
    _one_line_exit_2(proc, str(precious), "is a file")
    assert precious.read_text() == "mine\n"


@pytest.mark.reliability(
    "an unforeseen exception inside a command (injected)",
    "the last-resort handler: one line naming the log, exit 2, the traceback in the log",
)
def test_the_last_resort_handler_logs_and_exits_2(tmp_path):
    code = (
        "import sys; from uffdprobe.cli import main, run\n"
        "def boom(args): raise RuntimeError('injected fault')\n"
        "run.cmd_list = boom\n"
        "sys.exit(main.main(['list']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    line = _one_line_exit_2(proc, "RuntimeError", "injected fault", "traceback in")
    log = pathlib.Path(line.rsplit("traceback in ", 1)[1])
    assert log.parent == tmp_path / "uffdprobe" / "crashes"
    assert "Traceback" in log.read_text() and "boom" in log.read_text()


@pytest.mark.parametrize("command", ["boot", "matrix"])
@pytest.mark.reliability(
    "XDG_CACHE_HOME on a read-only file system (boot KERNEL, matrix)",
    "one line naming the folder and 'Read-only file system', exit 2, nothing booted",
)
def test_a_read_only_cache_home_for_boot_and_matrix(ro_empty, command):
    from uffdprobe.kbuild import build as kbuild

    if command == "boot":
        kernels = kbuild.list_kernels()
        if not kernels:
            pytest.skip("no kernel in the cache")
        argv = ["boot", "-q", str(kernels[0].bzimage), "--", "true"]
    else:
        argv = ["matrix", "--kernel", "host", "--scenario", "cow-leak"]
    proc = _uffdprobe(*argv, env={"XDG_CACHE_HOME": str(ro_empty)})
    said = [x for x in proc.stderr.splitlines() if not x.startswith("matrix: ")]  # the matrix's plan line
    assert proc.returncode == Exit.USAGE, proc.stderr
    assert len(said) == 1 and str(ro_empty) in said[0] and "Read-only file system" in said[0], said
    assert "Traceback" not in proc.stderr
