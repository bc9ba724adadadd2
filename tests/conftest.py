"""Shared fixtures: a userfaultfd on the running kernel (skipped with the reason when not allowed)."""
import threading

import pytest

from uffdprobe import features as features_mod
from uffdprobe.errors import UffdPermissionError
from uffdprobe.flags import Feature
from uffdprobe.uffd import Userfaultfd


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
