# SPDX-License-Identifier: GPL-2.0-only
"""One way signals become exceptions (osutil.children.signals_raise), used by boot, kernel build, matrix,
bisect and a matrix's run child. No boots, no builds."""

import os
import signal
import threading

import pytest

from uffdprobe.osutil.children import signals_raise


class Stop(Exception):
    pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_raises_inside_and_the_old_handler_is_back_after(sig):
    before = signal.getsignal(sig)
    with pytest.raises(Stop, match=signal.Signals(sig).name):
        with signals_raise(Stop):
            os.kill(os.getpid(), sig)  # its handler runs in this thread before the next line
    assert signal.getsignal(sig) is before


def test_outside_the_main_thread_nothing_changes():
    seen = []

    def worker():
        with signals_raise(Stop):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert seen == [before]
