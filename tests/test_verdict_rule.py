# SPDX-License-Identifier: GPL-2.0-only
"""The one verdict rule, kernel identity and whole reports, on real runs (host, and real kernels in QEMU).

Rule: anything but PASS or SKIP fails unless declared for that kernel, scenario and memory kind."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from uffdprobe.osutil.files import sha256_file

pytestmark = pytest.mark.timeout(1800)
root = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp scenarios and mounts need root here")

#: On the host, the selftest failure params give a HANG, a LEAK and two WP_LOST (4k and THP).
#: The anonymous kinds only: the declarations below are about 4k vs THP (wp-real-write and cow-leak also run on
#: shmem and hugetlb now, which would add cells of their own).
ANON = ["--memory", "anon-4k", "--memory", "anon-thp"]
BAD_ON_HOST = [
    "--scenario",
    "selftest-self-deadlock",
    "--scenario",
    "cow-leak",
    "--scenario",
    "wp-real-write",
    "--param",
    "selftest_shared_page=true",
    "--param",
    "selftest_unprotect_first=true",
    *ANON,
]


def matrix(*args, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", "matrix", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "uffdprobe", "run", *args], capture_output=True, text=True, timeout=timeout
    )


def cells(path: Path) -> dict:
    return {(c["kernel"], c["scenario"], c["memory"]): c for c in json.loads(path.read_text())["cells"]}


def junit_failures(path: Path) -> list:
    """(classname and name) of every testcase with a <failure>; the testsuites' failure total must agree."""
    tree = ET.parse(path).getroot()
    failed = [f"{c.get('classname')} {c.get('name')}" for c in tree.iter("testcase") if c.find("failure") is not None]
    assert int(tree.get("failures")) == len(failed)
    return failed


def bzimage(recipe: str) -> Path:
    from uffdprobe.kbuild import build as kbuild

    return kbuild.resolve_kernel(recipe, progress=False).bzimage


@root
@pytest.mark.reliability(
    "a host matrix whose cells are HANG, LEAK and WP_LOST with nothing declared",
    "every bad cell UNEXPECTED, exit 7, a JUnit failure per bad cell",
)
def test_undeclared_bad_host_matrix_fails(tmp_path):
    out, xml = tmp_path / "m.json", tmp_path / "m.xml"
    with ThreadPoolExecutor(2) as pool:  # two real runs that mostly wait on their bounds: side by side
        matrix_done = pool.submit(
            matrix,
            "--kernel",
            "host",
            *BAD_ON_HOST,
            "--json",
            str(out),
            "--junit",
            str(xml),
            "--results-dir",
            str(tmp_path / "w"),
        )
        # `uffdprobe run` says the same of the same verdicts: a kernel problem
        run_done = pool.submit(
            run,
            "selftest-self-deadlock",
            "cow-leak",
            "wp-real-write",
            "--param",
            "selftest_shared_page=true",
            "--param",
            "selftest_unprotect_first=true",
            *ANON,
        )
    proc = matrix_done.result()
    assert proc.returncode == 7, proc.stdout + proc.stderr
    got = cells(out)
    bad = {k: c for k, c in got.items() if c["verdict"] not in ("PASS", "SKIP")}
    assert sorted(c["verdict"] for c in bad.values()) == ["HANG", "LEAK", "WP_LOST", "WP_LOST"], got.keys()
    assert all(c["unexpected"] and c["mark"] == "UNEXPECTED" and c["expected"] is None for c in bad.values())
    assert all(not c["unexpected"] for k, c in got.items() if k not in bad)
    failed = junit_failures(xml)
    assert len(failed) == 4, failed
    for _, scenario, memory in bad:
        assert sum(scenario in f and memory in f for f in failed) == 1, (scenario, memory, failed)
    assert "4 unexpected" in proc.stdout
    done = run_done.result()
    assert done.returncode == 1, done.stdout + done.stderr


@root
def test_declared_bad_host_cells_pass_per_memory_kind(tmp_path):
    """The same verdicts declared (WP_LOST on 4k only): 4k expected, THP undeclared fails; both: exit 0."""
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    base = [
        "--kernel",
        "host",
        *BAD_ON_HOST,
        "--expect",
        "selftest-self-deadlock=HANG",
        "--expect",
        "host:cow-leak/anon-4k=LEAK",
    ]
    unprotect = ["wp-real-write", "--param", "selftest_unprotect_first=true"]
    # Two matrices and two runs, each a real run of its own that mostly waits on its bounds: side by side.
    with ThreadPoolExecutor(4) as pool:
        thp_undeclared = pool.submit(
            matrix,
            *base,
            "--expect",
            "host:wp-real-write/anon-4k=WP_LOST",
            "--json",
            str(outs[0]),
            "--results-dir",
            str(tmp_path / "a"),
        )
        both = pool.submit(
            matrix,
            *base,
            "--expect",
            "wp-real-write=WP_LOST",
            "--json",
            str(outs[1]),
            "--results-dir",
            str(tmp_path / "b"),
        )
        # `uffdprobe run`: the same declarations, the same answer
        run_thp_undeclared = pool.submit(run, *unprotect, "--expect", "wp-real-write/anon-4k=WP_LOST", *ANON)
        run_both = pool.submit(run, *unprotect, "--expect", "wp-real-write=WP_LOST", *ANON)
    proc = thp_undeclared.result()
    assert proc.returncode == 7, proc.stdout + proc.stderr
    got = cells(outs[0])
    assert got[("host", "wp-real-write", "anon-4k")]["mark"] == "expected"
    thp = got[("host", "wp-real-write", "anon-thp")]
    assert (thp["verdict"], thp["mark"], thp["expected"]) == ("WP_LOST", "UNEXPECTED", None)
    assert [line.split(":")[1] for line in proc.stdout.splitlines() if line.startswith("UNEXPECTED")] == [
        " host wp-real-write(anon-thp)"
    ]
    proc = both.result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(c["mark"] in ("expected", None) for c in cells(outs[1]).values())
    done = run_thp_undeclared.result()
    assert done.returncode == 1 and "UNEXPECTED: wp-real-write[anon-thp]" in done.stdout, done.stdout + done.stderr
    done = run_both.result()
    assert done.returncode == 0, done.stdout + done.stderr


@root
@pytest.mark.vm
def test_declared_hang_passes_and_undeclared_thp_hang_fails(tmp_path):
    """model-5.8's bzImage given by path (no recipe, nothing declared): its read-GUP HANGs on 4k and THP."""
    out, xml = tmp_path / "m.json", tmp_path / "m.xml"
    proc = matrix(
        "--kernel",
        f"m58={bzimage('model-5.8')}",
        "--scenario",
        "wp-gup-vmsplice",
        "--scenario",
        "wp-gup-process-vm-readv",
        "--expect",
        "m58:wp-gup-vmsplice=HANG",
        "--expect",
        "m58:wp-gup-process-vm-readv/anon-4k=HANG",
        "--json",
        str(out),
        "--junit",
        str(xml),
        "--results-dir",
        str(tmp_path / "w"),
        *ANON,
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr[-3000:]
    got = cells(out)
    assert {k: c["verdict"] for k, c in got.items()} == {
        ("m58", s, m): "HANG" for s in ("wp-gup-vmsplice", "wp-gup-process-vm-readv") for m in ("anon-4k", "anon-thp")
    }
    marks = {(s, m): c["mark"] for (_, s, m), c in got.items()}
    assert marks == {
        ("wp-gup-vmsplice", "anon-4k"): "expected",
        ("wp-gup-vmsplice", "anon-thp"): "expected",
        ("wp-gup-process-vm-readv", "anon-4k"): "expected",
        ("wp-gup-process-vm-readv", "anon-thp"): "UNEXPECTED",
    }
    failed = junit_failures(xml)
    assert len(failed) == 1 and "wp-gup-process-vm-readv" in failed[0] and "anon-thp" in failed[0], failed


@root
@pytest.mark.vm
@pytest.mark.reliability(
    "two matrix kernels with the same file name (stock and model-5.8, both bzImage)",
    "each its own label, results folder and verdicts: stock PASS, model-5.8 HANG, exit 7",
)
def test_same_basename_kernels_get_their_own_verdicts(tmp_path):
    """stock and model-5.8, both copied to a file named bzImage: two labels, two folders, and each kernel's
    own answer (model-5.8 HANGs where stock passes). A file that is no kernel at all is refused up front
    (tests/test_kernel_args.py)."""
    first, second = tmp_path / "a" / "bzImage", tmp_path / "b" / "bzImage"
    for path, recipe in ((first, "stock"), (second, "model-5.8")):
        path.parent.mkdir()
        shutil.copyfile(bzimage(recipe), path)
    out, work = tmp_path / "m.json", tmp_path / "w"
    proc = matrix(
        "--kernel",
        str(first),
        "--kernel",
        str(second),
        "--scenario",
        "wp-gup-vmsplice",
        "--memory",
        "anon-4k",
        "--json",
        str(out),
        "--results-dir",
        str(work),
    )
    assert proc.returncode == 7, proc.stdout + proc.stderr[-3000:]  # model-5.8's HANG is declared nowhere
    data = json.loads(out.read_text())
    labels = [k["label"] for k in data["kernels"]]
    assert labels == [f"bzImage-{sha256_file(first)[:8]}", f"bzImage-{sha256_file(second)[:8]}"]
    assert len({p.name for p in work.iterdir() if p.is_dir()}) == 2
    for label, path, verdict in ((labels[0], first, "PASS"), (labels[1], second, "HANG")):
        mine = [c for c in data["cells"] if c["kernel"] == label]
        assert mine and all(c["verdict"] == verdict for c in mine), (label, mine)
        assert all(r["kernel"]["file_sha256"] == sha256_file(path) for c in mine for r in c["results"])


@root
@pytest.mark.vm
@pytest.mark.reliability(
    "a matrix re-run into the same --results-dir after the kernel file changed",
    "a fresh folder; the old PASS is never read back: the new kernel's own verdicts",
)
def test_rerun_after_the_kernel_changed_reads_nothing_old(tmp_path):
    kernel, work, out = tmp_path / "bzImage", tmp_path / "w", tmp_path / "m.json"
    shutil.copyfile(bzimage("stock"), kernel)
    args = [
        "--kernel",
        f"k={kernel}",
        "--scenario",
        "wp-gup-vmsplice",
        "--memory",
        "anon-4k",
        "--json",
        str(out),
        "--results-dir",
        str(work),
    ]
    first = matrix(*args)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    assert {c["verdict"] for c in cells(out).values()} == {"PASS"}
    shutil.copyfile(bzimage("model-5.8"), kernel)  # same path, same label, another kernel
    second = matrix(*args)
    assert second.returncode == 7, second.stdout + second.stderr[-3000:]
    assert {c["verdict"] for c in cells(out).values()} == {"HANG"}, cells(out)
    folders = sorted(p.name for p in work.iterdir() if p.is_dir())
    assert len(folders) == 2 and all(f.startswith("k-") for f in folders), folders
    # the same kernel again: a fresh folder again (LABEL-HASH.2), nothing old read
    third = matrix(*args)
    assert third.returncode == 7 and len([p for p in work.iterdir() if p.is_dir()]) == 3
    assert {c["verdict"] for c in cells(out).values()} == {"HANG"}


@root
@pytest.mark.vm
@pytest.mark.reliability(
    "Ctrl-C mid-matrix with earlier --json/--junit/--html reports on disk",
    "exit 130, one line; a larger earlier report stays byte for byte, the incomplete one "
    "(finished kernels plus the stopped kernel's verdicts so far) goes next to it; a new "
    "path gets the incomplete report",
)
def test_ctrl_c_mid_matrix_keeps_earlier_reports(tmp_path):
    bzimage("stock")
    out, html, xml = tmp_path / "m.json", tmp_path / "m.html", tmp_path / "m.xml"
    earlier = matrix(
        "--kernel",
        "host",
        "--runs",
        "2",
        "--json",
        str(out),
        "--html",
        str(html),
        "--results-dir",
        str(tmp_path / "earlier"),
    )
    assert earlier.returncode == 0, earlier.stdout + earlier.stderr
    before = {p: p.read_bytes() for p in (out, html)}
    # selftest-kernel-spin runs last and takes > 20 s: the Ctrl-C lands while stock is mid-run
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uffdprobe",
            "matrix",
            "--kernel",
            "host",
            "--kernel",
            "stock",
            "--scenario",
            "wp-real-write",
            "--scenario",
            "selftest-kernel-spin",
            *ANON,
            "--json",
            str(out),
            "--junit",
            str(xml),
            "--html",
            str(html),
            "--results-dir",
            str(tmp_path / "w"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    lines = []
    try:
        deadline = time.monotonic() + 900
        for line in proc.stderr:  # the stopped kernel's verdicts before the spin, then Ctrl-C
            lines.append(line)
            if (
                re.match(r"^  stock \| \[\d+/\d+\] wp-real-write\s+anon-thp\s+PASS", line)
                or time.monotonic() > deadline
            ):
                break
        time.sleep(2)  # the tail streams them on to the run folder within half a second
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
        lines.append(rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    err = "".join(lines)
    assert proc.returncode == 130, err[-4000:]
    assert "Traceback" not in err
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was replaced by a smaller report"
    said = [x for x in err.splitlines() if x.startswith("matrix: interrupted")]
    assert len(said) == 1 and "kept the earlier, larger" in said[0] and "stock (" in said[0], err[-3000:]
    incomplete = tmp_path / "m.incomplete.json"
    data = json.loads(incomplete.read_text())
    assert data["complete"] is False
    assert [(k["label"], k["complete"]) for k in data["kernels"]] == [("host", True), ("stock", False)]
    stock = [c for c in data["cells"] if c["kernel"] == "stock"]
    assert {(c["scenario"], c["memory"], c["verdict"]) for c in stock} == {
        ("wp-real-write", "anon-4k", "PASS"),
        ("wp-real-write", "anon-thp", "PASS"),
    }  # no filler for the spin
    assert ET.parse(xml).getroot().findall("testsuite")  # no earlier JUnit: the incomplete one, whole, at the path
    assert {k["label"] for k in json.loads((tmp_path / "w" / "matrix.json").read_text())["kernels"]} == {
        "host",
        "stock",
    }


@root
@pytest.mark.reliability(
    "--json onto a full file system (64 KiB tmpfs) that holds an earlier --json",
    "exit 6, one line; the earlier file byte for byte, no temporary file left",
)
def test_json_on_a_full_disk_keeps_the_earlier_file(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "m.json"
        first = matrix(
            "--kernel", "host", "--scenario", "wp-real-write", "--json", str(out), "--results-dir", str(tmp_path / "a")
        )
        assert first.returncode == 0, first.stdout + first.stderr
        earlier = out.read_bytes()
        json.loads(earlier)
        filler = mnt / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        proc = matrix(
            "--kernel",
            "host",
            "--scenario",
            "wp-real-write",
            "--scenario",
            "cow-leak",
            "--runs",
            "2",
            "--json",
            str(out),
            "--results-dir",
            str(tmp_path / "b"),
        )
        assert proc.returncode == 6, proc.stdout + proc.stderr
        assert out.read_bytes() == earlier
        assert sorted(p.name for p in mnt.iterdir()) == ["filler", "m.json"]
        last = proc.stderr.strip().splitlines()[-1]
        assert f"cannot write {out} (No space left on device)" in last and "untouched" in last, proc.stderr
        assert json.loads((tmp_path / "b" / "matrix.json").read_text())["cells"]  # the work copy is whole
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
