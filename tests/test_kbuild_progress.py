# SPDX-License-Identifier: GPL-2.0-only
"""A cold kernel build's progress line: the total and an ETA from the last cold build of the same base in
the cache, "first build" when there was none; fed the make output of a real cold build of `stock`."""

from pathlib import Path

from uffdprobe.kbuild import cache
from uffdprobe.kbuild.make import Progress

LOG = Path(__file__).resolve().parent / "test_data" / "kbuild-stock-6.1.192.log"


def _feed(progress: Progress) -> list:
    """Every step line of the recorded build through `progress`; its count text after each compile."""
    seen = []
    for line in LOG.read_text().splitlines():
        before = progress.compiled
        progress.step(line)
        if progress.compiled != before:
            seen.append(progress.count())
    return seen


def test_first_cold_build_says_so_then_the_next_has_total_and_eta(tmp_path, capsys):
    compiles = sum(1 for line in LOG.read_text().splitlines() if line.startswith("  CC "))
    assert compiles > 900  # a whole tinyconfig-based 6.1 build

    first = Progress("stock")
    first.expect(cache.cold_build(tmp_path, "base"))  # a new cache: nothing known
    counts = _feed(first)
    assert counts[0] == "1 compiled (first build)" and counts[-1] == f"{compiles} compiled (first build)"
    assert "the first of this base here: no total or ETA" in capsys.readouterr().err
    made = first.made()
    assert made is not None and made["compiled"] == compiles
    cache.record_cold_build(tmp_path, "base", {**made, "seconds": 540.0})  # as if make had taken 9 min
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "work-x.lock").touch()
    cache.mark(tmp_path)  # a cache made before markers: only the layout's names, the record among them
    assert cache.is_marked(tmp_path)  # the record is part of the cache's layout
    assert cache.cold_build(tmp_path, "other base") is None

    second = Progress("stock")
    second.expect(cache.cold_build(tmp_path, "base"))
    assert f"the last of this base compiled {compiles} files in 09:00" in capsys.readouterr().err
    counts = _feed(second)
    assert counts[0].startswith(f"1/{compiles} compiled, ETA 0") and counts[0].endswith(("09:00", "08:59"))
    assert counts[-1] == f"{compiles}/{compiles} compiled, ETA 00:00"
    assert all(", ETA " in c for c in counts)


def test_a_warm_build_is_not_counted_against_a_total():
    """An incremental build (objects already there: `expect` never called) shows its count alone and leaves
    nothing to record."""
    warm = Progress("stock", enabled=False)
    counts = _feed(warm)
    assert counts[-1].endswith(" compiled") and "/" not in counts[-1] and warm.made() is None
