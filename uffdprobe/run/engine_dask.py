# SPDX-License-Identifier: GPL-2.0-only
"""The Dask engine of a matrix (`--cluster tcp://HOST:8786` or `--cluster local:N`): each booted kernel's
`uffdprobe run` child runs on a cluster worker, its files come back and are read as a local run's are.

The client resolves and builds the kernels (run/kernels.py build), ships each booted file by content hash
(scattered once, stored on the worker under its cache's cluster/images/SHA256/), and submits one task per
kernel asking for one unit of the worker resource `vm` (a worker offers as many as its cores allow guests).
The worker runs the same Runner child it would run here, then returns the results folder and the boot's
run directory (console log, result.json, channel files; never the scratch disk); the client writes them into
its own results folder with the worker's paths replaced by its own, so table, JSON, JUnit, HTML and KTAP
come out as from a local run. `host` is the client's running kernel and runs on the client.

A worker that dies mid-kernel: the kernel is resubmitted once, to another worker; a second death is an
ERROR naming both workers. Ctrl-C sets a cluster Event every task watches: each stops its child (which
kills its QEMU and writes what it has), the files come back, the futures are cancelled."""

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

from uffdprobe.exitcodes import UsageError
from uffdprobe.osutil import lifetime
from uffdprobe.osutil.files import sha256_file, write_atomic
from .dask_cell import PROGRESS, KernelTask, first_line, run_on_worker, worker_readiness
from .engine import TERM_GRACE_S, CellLost, child_limit
from .engine_local import LocalEngine
from .kernels import Target
from .matrix import Runner
from .request import RunRequest

#: How long the client waits for the scheduler to answer, and for a first worker to join it.
CONNECT_TIMEOUT_S = float(os.environ.get("UFFDPROBE_CLUSTER_TIMEOUT", "10"))
#: The worker resource one booted kernel takes; `dask worker --resources vm=K` offers K at once.
VM = "vm"
LOCAL = re.compile(r"local:(\d+)$")
ADDRESS = re.compile(r"(?:(tcp|tls|ws|wss|inproc|ucx)://)?\[?[A-Za-z0-9_.:-]+\]?:\d+$")


def _dask():
    try:
        import distributed
    except ImportError:
        raise UsageError("--cluster needs Dask: pip install 'uffdprobe[cluster]' (dask[distributed])") from None
    return distributed


def open_engine(spec: str, say: Callable[[str], None]) -> "DaskEngine":
    """Connect to (or start) the cluster named by --cluster before anything is built or booted; every
    failure is a UsageError naming the fix, within CONNECT_TIMEOUT_S."""
    local = LOCAL.match(spec)
    if not local and not ADDRESS.match(spec):
        raise UsageError(
            f"--cluster {spec!r}: write local:N (N worker processes here) or the scheduler's "
            "address, e.g. tcp://HOST:8786"
        )
    if local and not 1 <= int(local.group(1)) <= 64:
        raise UsageError(f"--cluster {spec}: N must be 1 to 64 worker processes")
    distributed = _dask()
    import dask

    for name in ("distributed", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its own errors become our one line
    cluster, scratch = None, None
    try:
        if local:
            # allowed-failures 0: a dead worker fails its task at once, and the engine retries it itself,
            # exactly once, elsewhere (a remote scheduler keeps its own setting, then the engine's retry)
            # The workers' scratch space is a folder named after us (not $TMPDIR/dask-scratch-space):
            # removed at close, by our watchdog if we are killed, else by the next run (osutil.lifetime)
            scratch = tempfile.mkdtemp(prefix=lifetime.temp_prefix("cell"))
            with dask.config.set({"distributed.scheduler.allowed-failures": 0, "temporary-directory": scratch}):
                cluster = distributed.LocalCluster(
                    n_workers=int(local.group(1)),
                    threads_per_worker=1,
                    processes=True,
                    resources={VM: 1},
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                    local_directory=scratch,
                    preload=["uffdprobe.run.dask_preload"],
                )
                client = distributed.Client(cluster, timeout=CONNECT_TIMEOUT_S)
        else:
            client = distributed.Client(spec, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        raise UsageError(
            f"--cluster {spec}: no Dask scheduler answered within {CONNECT_TIMEOUT_S:g}s "
            f"({first_line(exc)}); start one (`dask scheduler`, workers with `dask worker "
            f"ADDRESS --resources {VM}=1`) or fix the address"
        ) from None
    engine = DaskEngine(client, cluster, spec, scratch)
    try:
        engine.check_workers()
    except BaseException:
        engine.close()
        raise
    say(f"matrix: cluster {spec}: {engine.slots} VM slot(s) on {engine.workers} worker(s)")
    return engine


class DaskEngine:
    """A connected client (and the LocalCluster it started, for local:N); a DaskRunner per matrix."""

    def __init__(self, client, cluster, spec: str, scratch: Optional[str] = None):
        self.client, self.cluster, self.spec = client, cluster, spec
        self.scratch = scratch  #: the LocalCluster workers' local_directory, ours to remove
        self.slots = self.workers = 0

    def check_workers(self) -> None:
        try:
            self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise UsageError(
                f"--cluster {self.spec}: the scheduler has no worker after {CONNECT_TIMEOUT_S:g}s; "
                f"start some with `dask worker ADDRESS --resources {VM}=1`"
            ) from None
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        self.workers = len(workers)
        self.slots = int(sum(w.get("resources", {}).get(VM, 0) for w in workers.values()))
        if not self.slots:
            raise UsageError(
                f"--cluster {self.spec}: no worker offers the '{VM}' resource; start workers with "
                f"`dask worker ADDRESS --resources {VM}=K` (K guests at once: its cores / 2)"
            )
        import uffdprobe

        try:
            ready = self.client.run(worker_readiness)
        except Exception as exc:  # a worker without uffdprobe cannot even unpickle the question
            raise UsageError(
                f"--cluster {self.spec}: a worker cannot run uffdprobe ({first_line(exc)}); install "
                "'uffdprobe[cluster]' on every worker"
            ) from None
        other = sorted(f"{w} has {r['version']}" for w, r in ready.items() if r["version"] != uffdprobe.__version__)
        if other:
            raise UsageError(
                f"--cluster {self.spec}: uffdprobe {uffdprobe.__version__} here, but "
                f"{'; '.join(other)}: install the same version on every worker"
            )
        lacking = sorted(f"{w} lacks {'; '.join(r['missing'])}" for w, r in ready.items() if r["missing"])
        if lacking:
            raise UsageError(
                f"--cluster {self.spec}: {'; '.join(lacking)}; `uffdprobe doctor` on that worker says the rest"
            )

    def runner(self, request: RunRequest, work: Path, say: Callable[[str], None]) -> Runner:
        """A matrix Runner whose booted kernels run on this cluster (DaskChildren)."""
        return Runner(request, work, say, DaskChildren(self, say))

    def close(self) -> None:
        """Disconnect; a LocalCluster's workers (and with them any run child: parent-death signal) end."""
        with contextlib.suppress(Exception):
            self.client.close(timeout=CONNECT_TIMEOUT_S)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=TERM_GRACE_S + 10)
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> "DaskEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DaskChildren:
    """The Engine (run/engine.py) of a cluster: booted kernels' children run on cluster workers, the
    running kernel's (host) on the client, through a LocalEngine."""

    def __init__(self, engine: DaskEngine, say: Callable[[str], None]):
        self.engine, self.client, self.say = engine, engine.client, say
        self.local = LocalEngine(say)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.started = 0  # kernels asked for so far: each may queue before the next
        self.token = uuid.uuid4().hex[:12]
        self.stop_name = f"uffdprobe-stop-{self.token}"
        self.futures: Dict[str, object] = {}
        self.images: Dict[str, object] = {}  # sha256 -> the scattered file's future (kept while we run)
        self.client.subscribe_topic(PROGRESS, self._progress)

    def _progress(self, event) -> None:
        msg = event[1] if isinstance(event, tuple) else event
        if isinstance(msg, dict) and msg.get("matrix") == self.token:
            self.say(msg.get("line", ""))

    def _image(self, target: Target, again: bool = False) -> object:
        """The kernel file scattered to the cluster, once per content hash; `again` after a worker died
        (the file may have been on it only)."""
        sha = target.sha256 or sha256_file(Path(target.path))
        target.sha256 = sha
        with self.lock:
            if again or sha not in self.images:
                data = Path(target.path).read_bytes()
                if hashlib.sha256(data).hexdigest() != sha:
                    raise CellLost(f"{target.path} changed while the matrix ran; not shipped")
                self.images[sha] = self.client.scatter(data)
            return self.images[sha]

    def run_child(self, target: Target, request: RunRequest, out: Path, log: Path) -> Optional[int]:
        """One kernel's child on a worker (Engine.run_child); its files written into `out` as the worker's."""
        if target.path is None:  # the running kernel is the client's own
            return self.local.run_child(target, request, out, log)
        distributed = _dask()
        with self.lock:
            self.started += 1
        task = KernelTask(
            self.token,
            target.label,
            target.given,
            target.sha256 or sha256_file(Path(target.path)),
            Path(target.path).name,
            dict(target.identity),
            dict(target.expect),
            request,
            self.stop_name,
        )
        died: List[str] = []
        for attempt in range(1, 4):  # two worker deaths end it; a file lost with a dead worker costs one more
            try:
                image = self._image(target, again=attempt > 1)
            except (OSError, distributed.TimeoutError) as exc:  # no worker left to take it
                if self.stopping.is_set():
                    return None
                reason = f"cannot ship the kernel file to the cluster: {first_line(exc)}"
                write_atomic(log, f"uffdprobe: {reason}\n".encode())
                raise CellLost(reason) from None
            task.attempt = attempt
            with self.lock:
                if self.stopping.is_set():
                    return None
                others = [w for w in self.client.scheduler_info(n_workers=-1)["workers"] if w not in died]
                where = {"workers": others, "allow_other_workers": True} if died and others else {}
                # a retry prefers the other workers, but is not pinned to them should they go too
                fut = self.client.submit(
                    run_on_worker,
                    task,
                    image,
                    resources={VM: 1},
                    pure=False,
                    key=f"uffdprobe-{target.label}-{self.token}-{attempt}",
                    **where,
                )
                self.futures[target.label] = fut
            try:
                got = fut.result(timeout=self._wait_bound(request))
            except distributed.KilledWorker as exc:
                died.append(exc.last_worker.address)
                if len(died) == 2:
                    break
                self.say(
                    f"  {target.label} | worker {died[-1]} died while running this kernel; retrying on another worker"
                )
                continue
            except (TimeoutError, distributed.TimeoutError):
                self.client.cancel([fut], force=True)
                write_atomic(
                    log, f"uffdprobe: no answer from the cluster within {self._wait_bound(request):g}s\n".encode()
                )
                return None
            except distributed.CancelledError:
                if self.stopping.is_set():
                    return None  # stopped (Ctrl-C): the matrix reads what there is
                self.say(f"  {target.label} | its kernel file was lost with a dead worker; shipping it again")
                continue
            except Exception as exc:  # the task itself failed (a worker without uffdprobe, a pickling error)
                if self.stopping.is_set():
                    return None
                reason = f"the cluster task failed: {type(exc).__name__}: {first_line(exc)}"
                write_atomic(log, f"uffdprobe: {reason}\n".encode())
                raise CellLost(reason) from None
            finally:
                with self.lock:
                    self.futures.pop(target.label, None)
            if got.get("error"):
                write_atomic(log, f"uffdprobe: on worker {got['worker']}: {got['error']}\n".encode())
                raise CellLost(f"on worker {got['worker']} ({got['host']}): {got['error']}")
            self._unpack(got, target, out)
            return got["status"]
        if len(died) < 2:
            reason = "the cluster lost this kernel's task three times (workers died, its kernel file with them)"
        else:
            reason = (
                f"worker {died[0]} died while running this kernel (its process ended: killed, out of memory "
                f"or crashed); retried on worker {died[1]}, which died too"
            )
        write_atomic(log, f"uffdprobe: {reason}\n".encode())
        raise CellLost(reason)

    def _wait_bound(self, request: RunRequest) -> float:
        """The client's bound for one kernel's task: its own limit once per kernel that may queue before it
        (the worker bounds the child itself; this only guards against a worker that hangs)."""
        return child_limit(request) * max(1, self.started) + 300.0

    def _unpack(self, got: dict, target: Target, out: Path) -> None:
        """The worker's files into `out` (vm/ the boot's run directory), its paths replaced by ours."""
        ours = {got["paths"]["out"]: str(out), got["paths"]["image"]: str(Path(target.path).resolve())}
        if got["paths"].get("run_dir"):
            ours[got["paths"]["run_dir"]] = str(out / "vm")
        for rel, body in got["files"].items():
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, _rewrite(body, ours))

    def stop_all(self) -> None:
        """Ctrl-C: every task of this matrix stops its child (QEMU killed, verdicts so far written and sent
        back); the futures still running after the grace period are cancelled."""
        with self.lock:
            self.stopping.set()
            futures = list(self.futures.values())
        distributed = _dask()
        with contextlib.suppress(Exception):
            distributed.Event(self.stop_name, client=self.client).set()
        with contextlib.suppress(Exception):
            distributed.wait(futures, timeout=TERM_GRACE_S + 20)
        with contextlib.suppress(Exception):
            self.client.cancel(futures, force=True)
        self.local.stop_all()  # the host kernel's local child, if it runs


def _rewrite(body: bytes, paths: Dict[str, str]) -> bytes:
    """A text file with the worker's paths (longest first) replaced by the client's; other files as they are."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return body
    for theirs in sorted(paths, key=len, reverse=True):
        text = text.replace(theirs, paths[theirs])
    return text.encode()
