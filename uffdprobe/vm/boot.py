# SPDX-License-Identifier: GPL-2.0-only
"""boot(): run one command in a kernel booted under QEMU and classify what happened."""

import errno
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Optional

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import children, datafiles
from uffdprobe.osutil.files import disk_full, usable_dir, write_atomic
from . import accel as accelmod
from . import console, outcome, qemu, shares
from .errors import VmInputError, VmSetupError
from .paths import cache_root, new_run_dir
from .resolve import resolve_kernel

GUEST_INIT = Path(__file__).resolve().with_name("guest_init.sh")
#: Host directories the guest covers with its own filesystems (guest_mounts.sh): whatever lives there
#: on the host, the guest cannot see.
GUEST_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/dev", "/proc", "/sys")
#: Where the guest sees the run folder's channel (guest_init.sh's CHANNEL): results, and files brought along.
GUEST_CHANNEL = "/run/uffdprobe/channel"
SCRATCH_MB = 64
#: A second sparse disk the guest makes its swap (anon-swap, the selftests' swapped-out cases), found by serial.
SWAP_MB, SWAP_SERIAL = 64, "uffdprobe-swap"
LOGS_NEED_MB = 16  # console and QEMU logs beside the sparse disks, which may fill
GUEST_BOUND_MARGIN = 15  # seconds of the overall limit left for boot and power-off


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM/SIGHUP during a boot, so cleanup runs as for Ctrl-C."""


@dataclass
class BootResult:
    """One boot: outcome with evidence, where its files are, how long it took."""

    outcome: str  # OK, PANIC, BOOT_FAIL, VM_TIMEOUT
    reason: str
    exit_status: Optional[int]
    console_log: Path
    results_dir: Path
    run_dir: Path
    panic_lines: list
    timings: dict
    accel: str
    kernel_identity: dict  # path, sha256, version (console banner if seen), release
    transport: str = ""
    qemu_argv: list = field(default_factory=list)
    #: after a PANIC, what the kernel said from its first splat after the guest's last output on
    #: (console.row_report): the oops a panic much later began with
    kernel_report: list = field(default_factory=list)

    def to_json(self) -> dict:
        """A JSON-ready dict of the result."""
        data = asdict(self)
        for key in ("console_log", "results_dir", "run_dir"):
            data[key] = str(data[key])
        return data


def host_paths_needed() -> tuple:
    """The host paths a guest command runs from: this interpreter (venv and base) and the folder holding
    the uffdprobe package (a checkout, where the guest init lives too, or site-packages)."""
    return sys.prefix, sys.base_prefix, str(datafiles.PACKAGE_PARENT)


def keep_visible() -> list:
    """uffdprobe.keep= for host_paths_needed() that sit under /tmp or /var/tmp, which the guest covers:
    guest_mounts.sh binds them back."""
    paths = sorted({p for p in host_paths_needed() if any(p.startswith(d + "/") for d in ("/tmp", "/var/tmp"))})
    return [f"uffdprobe.keep={','.join(paths)}"] if paths else []


def kernel_append(
    initrd: bool, transport: str, timeout: float, silence_timeout: float, extra=(), hung_task_s: Optional[int] = None
) -> str:
    """The kernel command line: console, panic handling, hang detectors below our limits, root, init.
    `hung_task_s`: the in-guest supervisor's own bounds need the hung-task panic no sooner than this (it
    classifies and rescues first; the kernel's detector stays the backstop)."""
    limit = min(timeout, silence_timeout)
    hung = max(int(max(10, min(60, limit / 4))), int(hung_task_s or 0))
    thresh = int(max(5, min(30, limit / 6)))
    # no_timer_check: under TCG on a loaded host the IO-APIC timer check can miss its ticks and panic
    # ("IO-APIC + timer doesn't work!"), a fault of the emulation, not of the kernel under test
    # random.trust_cpu=on: the CPU's RDRAND (QEMU's, from the host's getrandom, under TCG) seeds the
    # kernel's RNG at boot. Without it a kernel built without RANDOM_TRUST_CPU (stock 6.1) is not seeded
    # until the first blocking read, Python's start, waits about 1 s for jitter entropy under TCG.
    # pty.legacy_count=0: no BSD ptys (256 pairs of device nodes, 0.14 s of initcall under TCG).
    parts = [
        "console=ttyS0",
        "loglevel=6",
        "panic=-1",
        "no_timer_check",
        "random.trust_cpu=on",
        "pty.legacy_count=0",
        f"sysctl.kernel.hung_task_timeout_secs={hung}",
        "hung_task_panic=1",
        f"watchdog_thresh={thresh}",
        "softlockup_panic=1",
        f"uffdprobe.transport={transport}",
        f"uffdprobe.msize={shares.MSIZE}",
    ]
    if initrd:
        parts += ["rdinit=/init", f"uffdprobe.init={GUEST_INIT}"]
    else:
        parts += [
            f"root={shares.ROOT_TAG}",
            "rootfstype=9p",
            "ro",
            f"init={GUEST_INIT}",
            f"rootflags=trans=virtio,version=9p2000.L,msize={shares.MSIZE},cache=loose",
        ]
    return " ".join(parts + keep_visible() + list(extra))


def boot(
    kernel,
    argv,
    *,
    timeout: float = 300,
    silence_timeout: float = 120,
    accel: Optional[str] = None,
    memory_mb: int = 1024,
    cpus: int = 2,
    run_dir=None,
    extra_append=(),
    cache_dir=None,
    progress=None,
    scratch_mb: int = SCRATCH_MB,
    hung_task_s: Optional[int] = None,
    bring: Optional[Dict[str, Path]] = None,
) -> BootResult:
    """Boot kernel (bzImage, vmlinuz or linux-image .deb), run argv in it, and return the BootResult.
    `bring`: files copied into the channel first (NAME -> host file; the guest sees GUEST_CHANNEL/NAME).

    While it runs (main thread only) SIGTERM/SIGHUP raise Terminated; QEMU is killed on every exit path.
    """
    _check_args(argv, timeout, silence_timeout, memory_mb, cpus)
    with children.signals_raise(Terminated):
        return _boot(
            kernel,
            list(argv),
            timeout,
            silence_timeout,
            accel,
            memory_mb,
            cpus,
            run_dir,
            extra_append,
            cache_dir,
            progress,
            scratch_mb,
            hung_task_s,
            bring or {},
        )


def _boot(
    kernel,
    argv,
    timeout,
    silence_timeout,
    accel,
    memory_mb,
    cpus,
    run_dir,
    extra_append,
    cache_dir,
    progress,
    scratch_mb=SCRATCH_MB,
    hung_task_s=None,
    bring=None,
) -> BootResult:
    started = time.monotonic()
    if run_dir and Path(run_dir).exists() and any(Path(run_dir).iterdir()):
        raise VmInputError(f"run directory {run_dir} is not empty: give a new or empty one")
    try:  # the unpacked kernels, initramfs and run folders live there: refuse early, in one line
        usable_dir(
            Path(cache_dir) if cache_dir else cache_root(),
            "the VM cache",
            "point XDG_CACHE_HOME at a writable folder",
            create=False,
        )
    except UsageError as exc:
        raise VmInputError(str(exc)) from None
    if progress:
        progress(f"preparing kernel {kernel}")
    plan = resolve_kernel(kernel, cache_dir)
    chosen = accelmod.choose_accel(accel, _probe_boot(kernel, cache_dir), cache_dir, progress=progress)
    run_dir = Path(run_dir) if run_dir else new_run_dir()
    _check_space(run_dir, scratch_mb + SWAP_MB + LOGS_NEED_MB)
    run_dir.mkdir(parents=True, exist_ok=True)
    channel = run_dir / "channel"
    results = channel / "results"
    results.mkdir(parents=True, exist_ok=True)
    for name, source in (bring or {}).items():  # mode kept: a program stays executable
        (channel / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, channel / name)
    bound = max(1, int(timeout - GUEST_BOUND_MARGIN))
    (channel / "command.sh").write_text(f"BOUND={bound}\nset -- {shlex.join(argv)}\n")
    scratch, swap = run_dir / "scratch.img", run_dir / "swap.img"
    for disk, mb in ((scratch, scratch_mb), (swap, SWAP_MB)):
        with open(disk, "wb") as f:
            f.truncate(mb << 20)  # sparse: only what the guest writes takes space
    spec = qemu.QemuSpec(
        kernel=plan.identity.path,
        initrd=plan.initrd,
        append=kernel_append(
            plan.initrd is not None, plan.transport, timeout, silence_timeout, extra_append, hung_task_s
        ),
        accel=chosen,
        memory_mb=memory_mb,
        cpus=cpus,
        console_log=run_dir / "console.log",
        stderr_log=run_dir / "qemu.stderr",
        device_args=[
            "-drive",
            f"file={scratch},format=raw,if=none,id=scratch,cache=none",
            "-device",
            "virtio-blk-pci,drive=scratch",
            "-drive",
            f"file={swap},format=raw,if=none,id=swap,cache=unsafe",
            "-device",
            f"virtio-blk-pci,drive=swap,serial={SWAP_SERIAL}",
        ],
    )
    virtiofs = None
    try:
        if plan.transport == "9p":
            spec.device_args += shares.ninep_args(channel)
        else:
            virtiofs = shares.VirtiofsShares(run_dir, channel, memory_mb)
            spec.device_args += virtiofs.start()
        prepared = time.monotonic()
        if progress:
            progress(
                f"booting {plan.identity.release or plan.identity.path} under {chosen}; console: {spec.console_log}"
            )
        run = qemu.run(spec, timeout=timeout, silence_timeout=silence_timeout, progress=_marker_progress(progress))
    finally:
        if virtiofs:
            virtiofs.stop()
        scratch.unlink(missing_ok=True)
        swap.unlink(missing_ok=True)
    if disk_full(run_dir):  # under 1 MiB left: its files cannot be trusted to be whole
        raise OSError(
            errno.ENOSPC,
            "the disk filled while the VM ran, so its console log and verdicts may be "
            f"cut short; the verdicts that arrived are in {results}",
            str(run_dir),
        )
    text = spec.console_log.read_text(errors="replace")
    verdict = outcome.classify(
        text,
        spec.stderr_log.read_text(errors="replace"),
        run,
        channel,
        {"timeout": timeout, "silence_timeout": silence_timeout},
    )
    identity = {
        "path": str(plan.identity.path),
        "sha256": plan.identity.sha256,
        "version": console.linux_version(text) or plan.identity.version,
        "release": plan.identity.release,
    }
    result = BootResult(
        outcome=verdict.outcome,
        reason=verdict.reason,
        exit_status=verdict.exit_status,
        console_log=spec.console_log,
        results_dir=results,
        run_dir=run_dir,
        panic_lines=verdict.panic_lines,
        timings=_timings(run, started, prepared),
        accel=chosen,
        kernel_identity=identity,
        transport=plan.transport,
        qemu_argv=qemu.command_line(spec),
        kernel_report=verdict.kernel_report,
    )
    write_atomic(run_dir / "result.json", (json.dumps(result.to_json(), indent=1) + "\n").encode())
    return result


def probe_kvm(
    kernel,
    cache_dir=None,
    timeout: float = accelmod.PROBE_TIMEOUT,
    silence_timeout: float = accelmod.PROBE_SILENCE,
    progress=None,
) -> dict:
    """Whether `kernel` boots under KVM here (accel.probe_kvm: cached, one probe at a time per cache)."""
    return accelmod.probe_kvm(_probe_boot(kernel, cache_dir), cache_dir, timeout, silence_timeout, progress)


def _probe_boot(kernel, cache_dir):
    """The KVM probe: an ordinary boot of `true`, only shorter and smaller."""
    return lambda timeout, silence_timeout: boot(
        kernel,
        ["true"],
        accel="kvm",
        timeout=timeout,
        silence_timeout=silence_timeout,
        cache_dir=cache_dir,
        memory_mb=512,
        cpus=1,
    )


def _timings(run, started, prepared) -> dict:
    def since_launch(marker):
        at = run.marker_times.get(marker)
        return round(at - run.launched_at, 3) if at else None

    return {
        "prepare": round(prepared - started, 3),
        "launch_to_init": since_launch(console.INIT_REACHED),
        "launch_to_command_done": since_launch(console.COMMAND_DONE),
        "launch_to_exit": round(run.ended_at - run.launched_at, 3),
        "total": round(run.ended_at - started, 3),
    }


def _check_space(run_dir: Path, need_mb: int) -> None:
    """Refuse to boot onto a (nearly) full disk: the scratch disks and logs would fail mid-run, unexplained."""
    existing = next(p for p in [run_dir, *run_dir.parents] if p.exists())
    free_mb = shutil.disk_usage(existing).free >> 20
    if free_mb < need_mb:
        raise OSError(
            errno.ENOSPC,
            f"{free_mb} MiB free, a boot needs {need_mb} MiB for its scratch disks and logs",
            str(existing),
        )


def _check_args(argv, timeout, silence_timeout, memory_mb, cpus):
    if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
        raise VmInputError("the guest command must be a non-empty list of strings")
    if timeout <= 0 or silence_timeout <= 0:
        raise VmInputError("timeout and silence_timeout must be positive seconds")
    if memory_mb < 128 or cpus < 1:
        raise VmInputError("memory_mb must be at least 128 and cpus at least 1")
    if not os.access(GUEST_INIT, os.X_OK) or " " in str(GUEST_INIT):
        raise VmSetupError(f"{GUEST_INIT} must be executable and its path free of spaces")


def _marker_progress(progress):
    if not progress:
        return None
    names = {
        console.INIT_REACHED: "guest init reached",
        console.COMMAND_DONE: "guest command done",
        console.PANIC_LINE: "kernel panic",
    }
    return lambda marker, seconds: progress(f"{seconds:6.1f}s {names.get(marker, marker or 'still running')}")
