"""Shared fixtures: a userfaultfd on the running kernel (skipped with the reason when not allowed)."""
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
README_BEGIN, README_END = "<!-- reliability:begin -->", "<!-- reliability:end -->"


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability(case, handling): a fault or bad input the harness "
                                       "must survive, and what it must do; listed in the reliability report")


def pytest_runtest_logreport(report):
    """Keep the worst phase outcome of every reliability-marked test."""
    marker = next((m for m in getattr(report, "_reliability", [])), None)
    if marker is None:
        return
    key = (report.nodeid, marker)
    previous = _RELIABILITY.get(key, "passed")
    if report.outcome == "failed" or (report.outcome == "skipped" and previous == "passed" and report.when != "teardown"):
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
    """Write reliability-report.md beside the run; with UFFDPROBE_UPDATE_README=1 also into README.md."""
    if not _RELIABILITY:
        return
    import os
    import pathlib
    table = reliability_table(_RELIABILITY)
    out = pathlib.Path(str(session.config.rootpath)) / ".pytest-reports"
    out.mkdir(exist_ok=True)
    (out / "reliability-report.md").write_text(table + "\n")
    readme = pathlib.Path(str(session.config.rootpath)) / "README.md"
    if os.environ.get("UFFDPROBE_UPDATE_README") == "1" and readme.exists():
        text = readme.read_text()
        if README_BEGIN in text and README_END in text:
            head, rest = text.split(README_BEGIN, 1)
            tail = rest.split(README_END, 1)[1]
            readme.write_text(f"{head}{README_BEGIN}\n{table}\n{README_END}{tail}")
