# SPDX-License-Identifier: GPL-2.0-only
"""The `--exec` row of a run on this kernel (the host, or the guest's own `uffdprobe run`), and the scratch
filesystem (`--scratch-fs`): a blank scratch device formatted and mounted for the program and for the
O_DIRECT scenarios of the same run."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import lifetime
from uffdprobe.supervise import workload
from uffdprobe.supervise.splat import SplatWatch
from uffdprobe.uffd import odirect
from uffdprobe.verdicts import Result
from .request import RunRequest

#: What the program finds in its environment: the scratch directory (also its working directory).
SCRATCH_DIR_ENV = "UFFDPROBE_SCRATCH_DIR"
MKFS_S = 120


def _tool(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/sbin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if not found:
        raise UsageError(f"--scratch-fs needs {name}: apt-get install e2fsprogs util-linux")
    return found


def _scratch_device(odirect_target: Optional[str]) -> str:
    """The blank device --scratch-fs may format: --odirect-target when it is a block device, else the
    guest's scratch disk ($UFFDPROBE_SCRATCH_DEV); refused (NotScratch) unless nothing is on it."""
    device = (
        odirect_target
        if odirect_target and odirect.is_block_device(odirect_target)
        else os.environ.get(odirect.SCRATCH_ENV)
    )
    if not device:
        raise UsageError(
            "--scratch-fs formats a blank scratch disk: run with --kernel KERNEL (the guest has "
            "one) or give --odirect-target BLANK_BLOCK_DEVICE"
        )
    return odirect.checked(device, "--scratch-fs")


def _run(argv: List[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=MKFS_S, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise UsageError(f"--scratch-fs: {what} failed: {said[0]}")


@contextlib.contextmanager
def scratch(request: RunRequest) -> Iterator[Optional[str]]:
    """The run's scratch directory, or None: with --scratch-fs the scratch device formatted and mounted
    (unmounted afterwards); with only --exec a fresh directory in --odirect-target (a directory) or the
    temporary folder, removed afterwards."""
    fs = request.machine.scratch_fs if request.machine.scratch_fs != "none" else None
    odirect_target = request.machine.odirect_target
    if fs:
        device = _scratch_device(odirect_target)
        _run(
            [_tool(f"mkfs.{fs}"), "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", device],
            f"mkfs.{fs} {device}",
        )
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
    if request.workload.exec is None:
        yield None
        return
    parent = odirect_target if odirect_target and os.path.isdir(odirect_target) else None
    folder = tempfile.mkdtemp(prefix=lifetime.temp_prefix("exec"), dir=parent)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def limits(request: RunRequest) -> workload.ExecLimits:
    """The supervisor's bounds for the program, from the request."""
    bounds = request.limits
    return workload.ExecLimits(
        hang_s=bounds.hang_timeout,
        stuck_s=bounds.stuck_timeout,
        total_s=bounds.scenario_timeout,
        rescue_s=bounds.rescue_timeout,
    )


def run_rows(
    request: RunRequest,
    kernel: Dict[str, object],
    scratch_dir: Optional[str],
    on_result: Callable[[Result], None],
    splats: Optional[SplatWatch] = None,
) -> List[Result]:
    """The --exec program, --runs times, under the supervisor; each Result goes to on_result as it lands."""
    work = request.workload
    if work.exec is None:
        return []
    env = dict(os.environ)
    if scratch_dir:
        env[SCRATCH_DIR_ENV] = scratch_dir
    results = []
    for i in range(1, work.runs + 1):
        r = workload.run_program(
            work.program_row, list(work.exec), kernel, limits(request), cwd=scratch_dir, env=env, splats=splats
        )
        if work.runs > 1:
            r.params["run"] = i
        on_result(r)
        results.append(r)
    return results


#: Host folders the guest covers with its own tmpfs, where people build throwaway reproducers: a program
#: there is brought along into the guest (copied into the run's channel) instead of refused.
BROUGHT_FROM = ("/tmp", "/var/tmp")


def _under(path: str, folders) -> Optional[str]:
    return next((d for d in folders if path == d or path.startswith(d + "/")), None)


def check_guest_sees_program(request: RunRequest) -> None:
    """Refuse an --exec program the guest cannot see (its root is the host root, but it covers /run, /dev,
    ... with its own) and cannot be brought along (as one under /tmp or /var/tmp is)."""
    if request.workload.exec is None:
        return
    from uffdprobe.vm.boot import GUEST_PRIVATE_DIRS

    program = request.workload.exec[0]
    real = os.path.realpath(program)
    hidden = None if _under(real, BROUGHT_FROM) else _under(real, GUEST_PRIVATE_DIRS)
    if hidden:
        raise UsageError(
            f"--exec {program}: {real} is under {hidden}, which the guest covers with its "
            "own filesystem; put the program elsewhere (e.g. under your home or /tmp)"
        )


def bring_along(request: RunRequest) -> "tuple[RunRequest, Dict[str, Any]]":
    """An --exec program under /tmp or /var/tmp, which the guest covers with its own: the request as the
    guest must see it (the program's copy in the run's channel, its row name unchanged) and the file to
    copy there ({name in the channel: host path}); otherwise the request as it was and nothing."""
    work = request.workload
    if work.exec is None:
        return request, {}
    real = os.path.realpath(work.exec[0])
    if not _under(real, BROUGHT_FROM):
        return request, {}
    import dataclasses
    from pathlib import Path
    from uffdprobe.vm.boot import GUEST_CHANNEL

    name = f"exec/{os.path.basename(real)}"
    guest = dataclasses.replace(work, exec=(f"{GUEST_CHANNEL}/{name}", *work.exec[1:]), exec_row=work.program_row)
    return dataclasses.replace(request, workload=guest), {name: Path(real)}


def boot_options(request: RunRequest) -> Dict[str, Any]:
    """boot() keywords: the scratch disk size, and the hung-task panic well after the supervisor's bounds."""
    bounds = request.limits
    bound = max(bounds.hang_timeout, bounds.stuck_timeout, bounds.rescue_timeout)
    options: Dict[str, Any] = {"hung_task_s": int(2 * bound + 30)}
    if request.machine.scratch_mb:
        options["scratch_mb"] = request.machine.scratch_mb
    return options
