"""The `--exec` row of a run on this kernel (the host, or the guest's own `uffdprobe run`), and the scratch
filesystem (`--scratch-fs`): a blank scratch device formatted and mounted for the program and for the
O_DIRECT scenarios of the same run."""
import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import lifetime
from uffdprobe.scenarios.rows import NO_MEMORY
from uffdprobe.supervise import workload
from uffdprobe.supervise.splat import SplatWatch
from uffdprobe.uffd import odirect
from uffdprobe.verdicts import Result

#: What the program finds in its environment: the scratch directory (also its working directory).
SCRATCH_DIR_ENV = "UFFDPROBE_SCRATCH_DIR"
MKFS_S = 120


def _tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        raise UsageError(f"--scratch-fs needs {name}: apt-get install e2fsprogs util-linux")
    return found


def _scratch_device(args: argparse.Namespace) -> str:
    """The blank device --scratch-fs may format: --odirect-target when it is a block device, else the
    guest's scratch disk ($UFFDPROBE_SCRATCH_DEV); refused (NotScratch) unless nothing is on it."""
    device = args.odirect_target if args.odirect_target and odirect.is_block_device(args.odirect_target) \
        else os.environ.get(odirect.SCRATCH_ENV)
    if not device:
        raise UsageError("--scratch-fs formats a blank scratch disk: run with --kernel KERNEL (the guest has "
                         "one) or give --odirect-target BLANK_BLOCK_DEVICE")
    return odirect.checked(device, "--scratch-fs")


def _run(argv: List[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=MKFS_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise UsageError(f"--scratch-fs: {what} failed: {said[0]}")


@contextlib.contextmanager
def scratch(args: argparse.Namespace) -> Iterator[Optional[str]]:
    """The run's scratch directory, or None: with --scratch-fs the scratch device formatted and mounted
    (unmounted afterwards); with only --exec a fresh directory in --odirect-target (a directory) or the
    temporary folder, removed afterwards."""
    fs = getattr(args, "scratch_fs", None)
    if fs:
        device = _scratch_device(args)
        _run([_tool(f"mkfs.{fs}"), "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", device],
             f"mkfs.{fs} {device}")
        mount_point = tempfile.mkdtemp(prefix="uffdprobe-scratch-")
        try:
            _run([_tool("mount"), "-t", fs, device, mount_point], f"mounting {device} on {mount_point}")
            try:
                yield mount_point
            finally:
                subprocess.run([_tool("umount"), mount_point], capture_output=True, timeout=MKFS_S)
        finally:
            with contextlib.suppress(OSError):
                os.rmdir(mount_point)
        return
    if getattr(args, "exec", None) is None:
        yield None
        return
    parent = args.odirect_target if args.odirect_target and os.path.isdir(args.odirect_target) else None
    folder = tempfile.mkdtemp(prefix=lifetime.temp_prefix("exec"), dir=parent)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def planned(row: Optional[str], runs: int) -> List[tuple]:
    """(row, memory, run) of every verdict the --exec program owes; run is None with a single run."""
    if row is None:
        return []
    return [(row, NO_MEMORY, None)] if runs <= 1 else [(row, NO_MEMORY, i) for i in range(1, runs + 1)]


def limits(args: argparse.Namespace) -> workload.ExecLimits:
    """The supervisor's bounds for the program, from the command line."""
    return workload.ExecLimits(hang_s=args.hang_timeout, stuck_s=args.stuck_timeout, total_s=args.scenario_timeout,
                               rescue_s=args.rescue_timeout)


def run_rows(args: argparse.Namespace, kernel: Dict[str, object], scratch_dir: Optional[str],
             on_result: Callable[[Result], None], splats: Optional[SplatWatch] = None) -> List[Result]:
    """The --exec program, --runs times, under the supervisor; each Result goes to on_result as it lands."""
    if getattr(args, "exec", None) is None:
        return []
    env = dict(os.environ)
    if scratch_dir:
        env[SCRATCH_DIR_ENV] = scratch_dir
    runs = getattr(args, "runs", 1)
    results = []
    for i in range(1, runs + 1):
        r = workload.run_program(args.exec_row, args.exec, kernel, limits(args), cwd=scratch_dir, env=env,
                                 splats=splats)
        if runs > 1:
            r.params["run"] = i
        on_result(r)
        results.append(r)
    return results


#: An --exec program in a guest gets its scratch disk as this filesystem unless --scratch-fs says
#: otherwise: the guest has a blank disk of its own, and its /tmp (tmpfs on 6.1) refuses O_DIRECT.
GUEST_EXEC_SCRATCH_FS = "ext4"


def guest_args(args: argparse.Namespace) -> List[str]:
    """What the guest's own `uffdprobe run` needs of --exec and --scratch-fs; the program goes last."""
    out: List[str] = []
    fs = getattr(args, "scratch_fs", None)
    if fs is None and getattr(args, "exec", None) is not None:
        fs = GUEST_EXEC_SCRATCH_FS
    if fs and fs != "none":
        out += ["--scratch-fs", fs]
    if getattr(args, "exec", None) is not None:
        out += ["--exec-label", args.exec_row, "--stuck-timeout", str(args.stuck_timeout),
                "--rescue-timeout", str(args.rescue_timeout)]
    return out


def guest_program(args: argparse.Namespace) -> List[str]:
    """`--exec -- PROGRAM ARGS` for the end of the guest's command line, after a check that the guest can
    see the program (its root is the host root, but it covers /tmp, /run, ... with its own)."""
    if getattr(args, "exec", None) is None:
        return []
    from uffdprobe.vm.boot import GUEST_PRIVATE_DIRS
    real = os.path.realpath(args.exec[0])
    hidden = [d for d in GUEST_PRIVATE_DIRS if real == d or real.startswith(d + "/")]
    if hidden:
        raise UsageError(f"--exec {args.exec[0]}: {real} is under {hidden[0]}, which the guest covers with its "
                         "own filesystem; put the program elsewhere (e.g. under your home)")
    return ["--exec", "--"] + list(args.exec)


def boot_options(args: argparse.Namespace) -> Dict[str, Any]:
    """boot() keywords: the scratch disk size, and the hung-task panic well after the supervisor's bounds."""
    bound = max(args.hang_timeout, getattr(args, "stuck_timeout", 0), getattr(args, "rescue_timeout", 0))
    options: Dict[str, Any] = {"hung_task_s": int(2 * bound + 30)}
    if getattr(args, "scratch_mb", None):
        options["scratch_mb"] = args.scratch_mb
    return options
