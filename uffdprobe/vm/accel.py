# SPDX-License-Identifier: GPL-2.0-only
"""Choose KVM or TCG: a short bounded probe boot decides, cached per host kernel and QEMU version."""

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Callable

from uffdprobe.osutil import filelock
from uffdprobe.osutil.files import write_atomic
from .errors import VmInputError
from .paths import cache_root
from .qemu import qemu_binary

CHOICES = ("kvm", "tcg")
PROBE_TIMEOUT = 20.0  # a working KVM boots to our init in a few seconds
PROBE_SILENCE = 8.0  # broken nested KVM prints nothing at all
#: How long a second process waits for the first one's probe (its boot, bounded above, plus unpacking).
PROBE_LOCK_WAIT = PROBE_TIMEOUT + 60.0


def host_key() -> str:
    """Cache key: host kernel release plus QEMU version line."""
    proc = subprocess.run([qemu_binary(), "--version"], capture_output=True, text=True, timeout=30)
    qemu_version = proc.stdout.splitlines()[0] if proc.stdout else "unknown"
    return f"{os.uname().release} | {qemu_version}"


def kvm_device_usable() -> bool:
    """True when /dev/kvm exists and opens read-write."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def cache_file(cache_dir: Path = None) -> Path:
    """Where probe answers are kept."""
    return Path(cache_dir or cache_root()) / "accel.json"


def cached_answer(cache_dir: Path = None):
    """The cached probe answer for this host ({'accel', 'reason', ...}) or None."""
    try:
        return json.loads(cache_file(cache_dir).read_text()).get(host_key())
    except (OSError, ValueError):
        return None


def probe_kvm(
    probe_boot: Callable,
    cache_dir: Path = None,
    timeout: float = PROBE_TIMEOUT,
    silence_timeout: float = PROBE_SILENCE,
    progress=None,
) -> dict:
    """Boot `true` under KVM once with probe_boot(timeout, silence_timeout) (vm.boot.probe_kvm passes a boot
    of its kernel); {'accel': 'kvm'|'tcg', 'reason', 'seconds', 'cached'}; cached when conclusive.

    Runs starting together on one cache probe once: the others wait (bounded) for that answer."""
    answer = cached_answer(cache_dir)
    if answer:
        return dict(answer, cached=True)

    def waiting(holder: str) -> None:
        if progress:
            progress(f"waiting for the KVM probe of {holder} (at most {PROBE_LOCK_WAIT:.0f}s)")

    try:
        with filelock.held(_lock_file(cache_dir), PROBE_LOCK_WAIT, waiting):
            answer = cached_answer(cache_dir)  # the probe we waited for
            if answer:
                return dict(answer, cached=True)
            return _probe(probe_boot, cache_dir, timeout, silence_timeout, progress)
    except filelock.Busy as busy:  # the other probe is stuck: do not wait longer, do not remember this answer
        return {
            "accel": "tcg",
            "reason": f"KVM probe busy: {busy.holder} held {_lock_file(cache_dir)} for {PROBE_LOCK_WAIT:.0f}s",
            "seconds": PROBE_LOCK_WAIT,
            "cached": False,
        }


def _probe(probe_boot, cache_dir, timeout, silence_timeout, progress) -> dict:
    started = time.monotonic()
    if not kvm_device_usable():
        answer = {"accel": "tcg", "reason": "/dev/kvm missing or not accessible", "seconds": 0.0}
        _store(answer, cache_dir)
        return dict(answer, cached=False)
    if progress:
        progress(f"probing KVM (at most {timeout:.0f}s, answer is cached)")
    result = probe_boot(timeout, silence_timeout)
    seconds = round(time.monotonic() - started, 2)
    stderr = (result.run_dir / "qemu.stderr").read_text(errors="replace")
    if result.outcome == "OK":
        answer = {"accel": "kvm", "reason": "probe boot ran under KVM", "seconds": seconds}
    elif result.outcome == "VM_TIMEOUT" or "kvm" in stderr.lower() or "msr" in stderr.lower():
        answer = {"accel": "tcg", "reason": f"KVM probe boot: {result.outcome}: {result.reason}", "seconds": seconds}
    else:  # the kernel itself failed: say TCG for now, but do not remember it
        return {
            "accel": "tcg",
            "reason": f"KVM probe inconclusive: {result.reason}",
            "seconds": seconds,
            "cached": False,
        }
    _store(answer, cache_dir)
    return dict(answer, cached=False)


def choose_accel(requested, probe_boot: Callable, cache_dir: Path = None, progress=None) -> str:
    """'kvm' or 'tcg': the forced choice if given, else the (cached) probe's answer."""
    if requested in (None, "", "auto"):
        return probe_kvm(probe_boot, cache_dir, progress=progress)["accel"]
    if requested not in CHOICES:
        raise VmInputError(f"unknown accelerator {requested!r}: use kvm or tcg")
    if requested == "kvm" and not kvm_device_usable():
        raise VmInputError("--accel kvm but /dev/kvm is missing or not accessible: use --accel tcg")
    known = cached_answer(cache_dir) if requested == "kvm" else None
    if known and known.get("accel") == "tcg":  # a boot under KVM would only run into its time limit
        raise VmInputError(
            f"--accel kvm but KVM does not boot here (probe of {known.get('probed_at', '?')}: "
            f"{known.get('reason')}): use --accel tcg, or delete {cache_file(cache_dir)} to probe "
            "again"
        )
    return requested


def _store(answer: dict, cache_dir: Path = None) -> None:
    """Add this host's answer (the caller holds the probe lock, so no other answer is lost)."""
    path = cache_file(cache_dir)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[host_key()] = dict(answer, probed_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def _lock_file(cache_dir: Path = None) -> Path:
    return cache_file(cache_dir).with_name("accel.lock")
