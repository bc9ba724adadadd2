# SPDX-License-Identifier: GPL-2.0-only
"""The worker side of the Dask engine (run/engine_dask.py): one kernel's `uffdprobe run` child on this worker,
run as the local Runner runs it, and its files sent back. Imported by the worker when it unpickles a task."""

import contextlib
import hashlib
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from uffdprobe.osutil import lifetime
from uffdprobe.osutil.files import sha256_file, write_atomic
from . import child_report
from .engine_local import LocalEngine
from .engine import fresh_folder
from .kernels import Target
from .request import RunRequest

#: The topic workers publish their run child's lines on, relayed by the client as they come.
PROGRESS = "uffdprobe-progress"
#: Files of a boot's run directory that never travel: the scratch disk and anything this large.
MAX_SHIPPED_BYTES = 16 << 20


@dataclass
class KernelTask:
    """What a worker needs to run one kernel: its target facts (the file comes separately, by hash)."""

    token: str
    label: str
    given: str
    sha256: str
    name: str
    identity: Dict[str, object]
    expect: Dict[str, str]
    request: RunRequest
    stop: str  #: the name of the cluster Event that asks every task of this matrix to stop
    attempt: int = 1  #: 2 when the first worker died under it


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def worker_readiness() -> dict:
    """This worker's uffdprobe version and what it lacks to boot a shipped kernel (uffdprobe doctor's VM
    checks: QEMU, a static busybox), each as 'name: detail (fix)'."""
    import uffdprobe
    from .doctor import check_vm_tools

    missing = [
        f"{c.name}: {c.detail}" + (f" ({c.fix})" if c.fix else "") for c in check_vm_tools() if c.needed and not c.ok
    ]
    return {"version": uffdprobe.__version__, "missing": missing}


def run_on_worker(task: KernelTask, image: bytes) -> dict:
    """One kernel's `uffdprobe run` child on this worker, as the local Runner runs it; returns its files.

    Anything that goes wrong before the child runs comes back as {"error": ...}, never as a lost task."""
    import distributed

    worker = distributed.get_worker()
    facts = {"worker": worker.address, "host": socket.gethostname()}

    def say(line: str) -> None:
        with contextlib.suppress(Exception):
            worker.log_event(PROGRESS, {"matrix": task.token, "line": line})

    try:
        kernel = _stored_image(image, task.sha256, task.name)
        work = Path(tempfile.mkdtemp(prefix=lifetime.temp_prefix("cell")))
    except OSError as exc:
        return {**facts, "error": f"cannot store the kernel file: {exc}"}
    try:
        engine = LocalEngine(say)
        target = Target(
            task.label,
            path=str(kernel),
            sha256=task.sha256,
            identity=dict(task.identity),
            expect=dict(task.expect),
            given=task.given,
        )
        out = fresh_folder(work, target)
        log = out / "run.log"
        if task.attempt > 1:
            say(f"  {task.label} | attempt {task.attempt} on worker {worker.address} ({facts['host']})")
        finished = threading.Event()
        try:  # made here: a task's thread has the worker's client, the watcher's thread would not
            stop = distributed.Event(task.stop, client=distributed.get_client())
        except Exception as exc:
            return {**facts, "error": f"cannot watch the matrix's stop event: {first_line(exc)}"}
        watcher = threading.Thread(target=_stop_when_asked, args=(stop, engine, finished), daemon=True)
        watcher.start()
        try:
            status = engine.run_child(target, task.request, out, log)
        except OSError as exc:
            return {**facts, "error": f"cannot start uffdprobe run: {exc}"}
        finally:
            finished.set()
        run_dir = child_report.read(out).run_dir
        files = _collect(out, "", skip={"kernel.json"})
        if run_dir:
            files.update(_collect(Path(run_dir), "vm/"))
        return {
            **facts,
            "status": status,
            "files": files,
            "paths": {"out": str(out), "image": str(kernel.resolve()), "run_dir": run_dir},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stop_when_asked(event, engine: LocalEngine, finished: threading.Event) -> None:
    """Poll the matrix's stop Event while the child runs; when set, stop the child (it kills its QEMU)."""
    while not finished.is_set():
        try:
            if event.wait(timeout=1.0):
                engine.stop_all()
                return
        except Exception:
            finished.wait(1.0)


def _stored_image(image: bytes, sha256: str, name: str) -> Path:
    """The shipped kernel file in this worker's cache (cluster/images/SHA256/NAME), written whole and
    checked against its hash; one already there with that hash is reused."""
    from uffdprobe.vm.paths import cache_root

    path = cache_root() / "cluster" / "images" / sha256 / os.path.basename(name)
    if path.is_file() and sha256_file(path) == sha256:
        return path
    if hashlib.sha256(image).hexdigest() != sha256:
        raise OSError(f"the kernel file arrived damaged (its sha256 is not {sha256})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, image)
    return path


def _collect(folder: Path, prefix: str, skip=frozenset()) -> Dict[str, bytes]:
    """Every regular file under folder: no symlink followed, no mount point entered (a boot's host-root
    mount, should one be left), no scratch disk, none over MAX_SHIPPED_BYTES."""
    files: Dict[str, bytes] = {}
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(top, d))]
        for name in names:
            path = Path(top) / name
            try:
                if path.is_symlink() or not path.is_file() or path.suffix == ".img" or name in skip:
                    continue
                if path.stat().st_size > MAX_SHIPPED_BYTES:
                    continue
                files[prefix + str(path.relative_to(folder))] = path.read_bytes()
            except OSError:
                continue
    return files
