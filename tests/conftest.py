# SPDX-License-Identifier: GPL-2.0-only
"""Shared fixtures: a userfaultfd on the running kernel (skipped with the reason when not allowed)."""

import signal
import threading

import pytest

from uffdprobe.uffd import features as features_mod
from uffdprobe.uffd.errors import UffdPermissionError
from uffdprobe.uffd.flags import Feature
from uffdprobe.uffd.userfaultfd import Userfaultfd


@pytest.fixture(scope="session")
def host_features():
    return features_mod.probe()


@pytest.fixture(scope="session")
def kf(host_features):
    """The running kernel's features; the test is skipped with the reason when uffd is unavailable."""
    if host_features.uffd_error:
        pytest.skip(f"userfaultfd unavailable here: {host_features.uffd_error}")
    return host_features


@pytest.fixture
def live_children():
    """A callable listing this process's descendants that still run (zombies excluded)."""
    import psutil

    def listing():
        return [c for c in psutil.Process().children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]

    return listing


@pytest.fixture
def uffd():
    """A fresh non-blocking userfaultfd (API not yet negotiated)."""
    try:
        fd = Userfaultfd.open()
    except UffdPermissionError as exc:
        pytest.skip(f"no userfaultfd permission here: {exc}")
    with fd:
        yield fd


@pytest.fixture
def need_wp(host_features):
    if not host_features.has(Feature.PAGEFAULT_FLAG_WP):
        pytest.skip("kernel lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP")


class Faulter:
    """Runs one memory access in a thread so the test can serve (or fail to serve) its fault, bounded."""

    def __init__(self, fn):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def done(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


@pytest.fixture
def faulter():
    """Start accesses with faulter(fn); a leftover blocked one is unblocked by unregistering in the test."""
    started = []

    def start(fn):
        f = Faulter(fn)
        started.append(f)
        return f

    yield start
    for f in started:
        f.done(5)


# --- the reliability report (issue 9): a table built from this run's own outcomes -------------

_RELIABILITY: dict = {}
DOCS_BEGIN, DOCS_END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
#: The document whose reliability table `UFFDPROBE_UPDATE_DOCS=1 pytest` rewrites.
RELIABILITY_DOC = "docs/user-guide.md"


def pytest_configure(config):
    # A suite started from a script as a background job (`nohup bash .ci/bootstrap test &`) begins with SIGINT and
    # SIGQUIT ignored (POSIX, asynchronous lists), and every child would inherit that; the tests that interrupt a
    # child mean the default disposition, so the suite gives it back once here (uffdprobe itself keeps an
    # inherited SIG_IGN, as it should).
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    config.addinivalue_line(
        "markers",
        "reliability(case, handling): a fault or bad input the harness "
        "must survive, and what it must do; listed in the reliability report",
    )
    config.addinivalue_line(
        "markers",
        "host_state: changes host-wide state other tests' verdicts depend on (swap, "
        "the huge page pool); given by its fixtures, run without pytest-xdist",
    )


@pytest.fixture
def huge_pages():
    """Four free huge pages for the test (at least two): as root the pool is grown and put back after; else SKIP."""
    import os
    from pathlib import Path

    from uffdprobe.scenarios.memkinds import no_hugepages

    pool = Path("/proc/sys/vm/nr_hugepages")
    before = int(pool.read_text())
    grown = bool(no_hugepages(4)) and os.geteuid() == 0
    if grown:
        pool.write_text(f"{before + 4}\n")
    try:
        if no_hugepages(2):
            pytest.skip(no_hugepages(2))
        yield
    finally:
        if grown:
            pool.write_text(f"{before}\n")


#: Fixtures that change what every other host run sees: swap switched on, the huge page pool grown. Under pytest-xdist
#: another worker's host run would meet the changed host mid-run (a hugetlb LEAK where it expects SKIP), so the tests
#: using them carry the host_state mark, which tox's fast lane runs in a pass of its own, without workers.
HOST_STATE_FIXTURES = {"host_swap", "huge_pages", "free_huge_page"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HOST_STATE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.host_state)


def pytest_runtest_logreport(report):
    """Keep the worst phase outcome of every reliability-marked test."""
    marker = next((m for m in getattr(report, "_reliability", [])), None)
    if marker is None:
        return
    key = (report.nodeid, marker)
    previous = _RELIABILITY.get(key, "passed")
    if report.outcome == "failed" or (
        report.outcome == "skipped" and previous == "passed" and report.when != "teardown"
    ):
        _RELIABILITY[key] = report.outcome
    else:
        _RELIABILITY.setdefault(key, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    rep._reliability = [(m.args[0], m.args[1]) for m in item.iter_markers("reliability")]


def reliability_table(rows: dict) -> str:
    lines = ["| fault or bad input | what the harness must do | test | result |", "|---|---|---|---|"]
    for (nodeid, (case, handling)), outcome in sorted(rows.items(), key=lambda kv: kv[0][1][0]):
        test = nodeid.split("::", 1)[1]
        lines.append(f"| {case} | {handling} | `{test}` | {outcome} |")
    return "\n".join(lines)


def pytest_sessionfinish(session):
    """Write reliability-report.md beside the run; with UFFDPROBE_UPDATE_DOCS=1 also into RELIABILITY_DOC.
    Under pytest-xdist only the controller writes: it sees every worker's reports, a worker only its own."""
    if not _RELIABILITY or hasattr(session.config, "workerinput"):
        return
    import os
    import pathlib

    table = reliability_table(_RELIABILITY)
    out = pathlib.Path(str(session.config.rootpath)) / ".pytest-reports"
    out.mkdir(exist_ok=True)
    (out / "reliability-report.md").write_text(table + "\n")
    doc = pathlib.Path(str(session.config.rootpath)) / RELIABILITY_DOC
    if os.environ.get("UFFDPROBE_UPDATE_DOCS") == "1" and doc.exists():
        text = doc.read_text()
        if DOCS_BEGIN in text and DOCS_END in text:
            head, rest = text.split(DOCS_BEGIN, 1)
            tail = rest.split(DOCS_END, 1)[1]
            doc.write_text(f"{head}{DOCS_BEGIN}\n{table}\n{DOCS_END}{tail}")


# --- running uffdprobe as another user (nobody), wherever the checkout is ---------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


class NobodyPython:
    """`argv` runs `python -m uffdprobe` as nobody from a world-readable copy of the package and its
    dependencies (a checkout under /root, mode 0700, is out of nobody's reach); `env` goes with it."""

    def __init__(self, argv: list, env: dict):
        self.argv, self.env = argv, env

    def run(self, args: list, **kw):
        import os
        import subprocess

        env = {**os.environ, **self.env, **kw.pop("env", {})}
        return subprocess.run(
            self.argv + ["-m", "uffdprobe"] + list(args), capture_output=True, text=True, env=env, **kw
        )


def _runs_as_nobody(argv: list, env: dict) -> str:
    """'' when `argv -c 'import uffdprobe'` works as nobody, else why not."""
    import os
    import subprocess

    done = subprocess.run(
        NOBODY + argv + ["-c", "import uffdprobe.uffd._ffi, psutil"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        cwd="/",
    )
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="session")
def nobody_python():
    """A NobodyPython: the package (with its compiled module) and cffi, pycparser and psutil copied to a
    world-readable temp folder, run by this interpreter if nobody may execute it, else by the system
    python3 of the same version. Removed at the end of the session."""
    import os
    import shutil
    import sys
    import tempfile
    from pathlib import Path
    import cffi
    import psutil
    import pycparser
    import uffdprobe

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as nobody")
    top = Path(tempfile.mkdtemp(prefix="uffdprobe-nobody-py-"))
    try:
        site = top / "site"
        ignore = shutil.ignore_patterns("__pycache__")
        for module in (uffdprobe, cffi, pycparser, psutil):
            shutil.copytree(Path(module.__file__).parent, site / Path(module.__file__).parent.name, ignore=ignore)
        import _cffi_backend

        shutil.copy2(_cffi_backend.__file__, site)
        for dirpath, _dirnames, filenames in os.walk(top):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644 | (os.stat(os.path.join(dirpath, name)).st_mode & 0o111))
        env = {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        candidates = [os.path.realpath(sys.executable), shutil.which(version), f"/usr/bin/{version}"]
        why = {}
        for interpreter in dict.fromkeys(filter(None, candidates)):
            why[interpreter] = _runs_as_nobody([interpreter, "-s"], env)
            if not why[interpreter]:
                yield NobodyPython(NOBODY + [interpreter, "-s"], env)
                return
        pytest.skip(f"no {version} that nobody may run: {why}")
    finally:
        shutil.rmtree(top, ignore_errors=True)


# --- a swap file on the host, for the anon-swap memory kind (the host here has no swap) ---------------


@pytest.fixture(scope="module")
def host_swap():
    """Swap on the running kernel for the module's tests: a 64 MiB swap file of our own under /var/tmp,
    switched on as root when no swap is active, switched off and removed afterwards; an active swap is
    used as it is. Yields what the tests run with ('' when the kind then has swap)."""
    import os
    import subprocess
    import tempfile
    from uffdprobe.scenarios.memkinds import no_swap

    if not no_swap() or os.geteuid() != 0:
        yield no_swap() or ""
        return
    fd, path = tempfile.mkstemp(prefix="uffdprobe-test-swap-", dir="/var/tmp")
    on = False
    try:
        with os.fdopen(fd, "wb") as f:  # written, not fallocated: a swap file must have no holes
            for _ in range(64):
                f.write(bytes(1 << 20))
        os.chmod(path, 0o600)
        subprocess.run(["mkswap", path], check=True, capture_output=True, timeout=60)
        on = subprocess.run(["swapon", path], capture_output=True, timeout=60).returncode == 0
        yield no_swap() or ""
    finally:
        if on:
            subprocess.run(["swapoff", path], capture_output=True, timeout=120)
        os.unlink(path)
