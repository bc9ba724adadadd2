# SPDX-License-Identifier: GPL-2.0-only
"""Loaded by each worker process of a `--cluster local:N` LocalCluster (Dask's `preload`): the worker ignores
SIGINT, so a Ctrl-C at the terminal (sent to the whole foreground process group, these workers included)
reaches the matrix only, which stops each kernel's child through the cluster and collects what it wrote."""

import signal
import threading

if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_setup(worker) -> None:
    """Dask calls this once the worker exists; the signal disposition was set at import."""
