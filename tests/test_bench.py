# SPDX-License-Identifier: GPL-2.0-only
"""Benchmarks: print numbers side by side, assert only that the work was really done."""

import pytest

from uffdprobe.uffd import bench


@pytest.mark.benchmark
def test_missing_fault_rate_python_vs_c(uffd, capsys):
    report = bench.compare(pages=5000, rounds=2)
    with capsys.disabled():
        print("\n" + report)
    assert "ratio Python/C" in report
