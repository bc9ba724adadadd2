# SPDX-License-Identifier: GPL-2.0-only
"""The lab-board payload (`uffdprobe payload OUT`): one zipapp that runs uffdprobe with nothing installed, on
the host's bare interpreter and in a booted guest that sees only it and a Python."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from formats import kunit_parse
from test_formats import counts, no_kunit

#: The host's interpreter itself, not this venv's: with -I -S it sees the standard library and nothing else.
BARE_PYTHON = os.path.realpath(
    os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
)
ISOLATED = [BARE_PYTHON, "-I", "-S"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uffd-wp and HANG scenarios need root here")


def uffdprobe(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "uffdprobe", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """A payload built by this uffdprobe, in a folder of its own outside /tmp (a guest covers /tmp)."""
    from uffdprobe.osutil.files import cache_home

    cache_home().mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="uffdprobe-test-payload-", dir=cache_home()))
    try:
        out = folder / "uffdprobe.pyz"
        proc = uffdprobe("payload", str(out))
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {out}" in proc.stderr
        yield out
    finally:
        shutil.rmtree(folder)


def test_payload_carries_the_package_its_bindings_and_dependencies(payload):
    assert payload.read_bytes().startswith(b"#!/usr/bin/env python3\n") and os.access(payload, os.X_OK)
    with zipfile.ZipFile(payload) as bundle:
        names = set(bundle.namelist())
        native = [n for n in names if re.fullmatch(r"site/uffdprobe/uffd/_native\.abi3\.so", n)]
        assert native and (bundle.getinfo(native[0]).external_attr >> 16) & 0o111
    tag = sys.implementation.cache_tag
    assert "__main__.py" in names
    assert any(re.fullmatch(rf"site/_cffi_backend\.{tag}-.*\.so", n) for n in names), sorted(names)[:20]
    assert "site/psutil/__init__.py" in names and any(n.startswith("site/psutil/_psutil_linux") for n in names)
    assert f"site/uffdprobe/cli/__pycache__/main.{tag}.pyc" in names  # compiled: a TCG guest compiles nothing
    assert "site/uffdprobe/data/vm-images/recipes/stock.toml" in names
    assert not [n for n in names if "/__pycache__/" in n and f".{tag}." not in n]


def test_payload_out_that_is_a_folder_or_unwritable_is_refused_in_one_line(tmp_path):
    proc = uffdprobe("payload", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "is a folder" in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("mine")
    proc = uffdprobe("payload", str(tmp_path / "file" / "uffdprobe.pyz"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "file").read_text() == "mine"


def test_cffi_wheel_adds_its_backend_and_a_wheel_without_one_is_refused(tmp_path):
    """A board whose Python is another version: its cffi wheel's backend rides along beside ours."""
    import _cffi_backend

    other = "_cffi_backend.cpython-39-x86_64-linux-gnu.so"
    wheel = tmp_path / "cffi-2.0.0-cp39-cp39-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.write(_cffi_backend.__file__, other)
        whl.writestr("cffi/__init__.py", "")
    out = tmp_path / "p.pyz"
    proc = uffdprobe("payload", str(out), "--cffi-wheel", str(wheel))
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as bundle:
        assert bundle.read(f"site/{other}") == Path(_cffi_backend.__file__).read_bytes()
        assert "site/cffi/__init__.py" not in bundle.namelist()
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as whl:
        whl.writestr("cffi/__init__.py", "")
    proc = uffdprobe("payload", str(tmp_path / "q.pyz"), "--cffi-wheel", str(empty))
    assert proc.returncode == 2 and "holds no _cffi_backend" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "q.pyz").exists()


def test_bare_python_sees_no_uffdprobe_but_runs_the_payload(payload, tmp_path):
    """The host's interpreter with -I -S: no uffdprobe, no psutil, no cffi of its own; the payload runs
    anyway, reports its version and leaves nothing unpacked behind."""
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}
    probe = subprocess.run([*ISOLATED, "-c", "import uffdprobe"], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "No module named 'uffdprobe'" in probe.stderr
    proc = subprocess.run([*ISOLATED, str(payload), "--version"], capture_output=True, text=True, env=env, timeout=120)
    from uffdprobe import __version__

    assert proc.returncode == 0 and proc.stdout.strip() == f"uffdprobe {__version__}", proc.stderr
    proc = subprocess.run([*ISOLATED, str(payload), "list"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "cow-leak" in proc.stdout, proc.stderr
    assert list(tmp_path.iterdir()) == []  # the unpacked copy is gone


@needs_root
@no_kunit
def test_payload_run_ktap_on_the_running_kernel(payload, tmp_path):
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [*ISOLATED, str(payload), "run", "--ktap", "-", "cow-leak", "wp-real-write", "--memory", "anon-4k"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = kunit_parse(proc.stdout, tmp_path)
    assert counts(parsed["summary"]) == {"passed": 2}, parsed["proc"].stdout


#: What the guest runs: a root of its own in the guest's tmpfs that holds the Python's own folder and the shared
#: libraries (bound read-only from the host root the guest boots on), /proc, /sys, /dev, and the payload in /tmp;
#: nothing else of the host: no checkout, no venv, no site-packages with uffdprobe. In it, the same Python finds
#: no uffdprobe by itself (with or without site), then runs the payload. $1 the payload, $2 the folders to bind
#: (':'-separated), then the Python's argv.
GUEST_SCRIPT = r"""
set -e
root=/tmp/board
mkdir -p $root/tmp $root/proc $root/sys $root/dev
IFS=: ; for dir in $2; do mkdir -p "$root$dir"; mount --bind "$dir" "$root$dir"; mount -o remount,bind,ro "$root$dir"; done
unset IFS
ln -s usr/lib $root/lib
ln -s usr/lib64 $root/lib64
mount -t proc proc $root/proc
mount --rbind /sys $root/sys
mount --rbind /dev $root/dev
cp "$1" $root/tmp/uffdprobe.pyz
shift 2
set +e
ls -A $root | tr '\n' ' ' | sed 's/^/PAYLOAD-ROOT: /'; echo
chroot $root "$@" -c 'import uffdprobe' 2>/dev/null && echo "PAYLOAD-PROBE: uffdprobe importable without the payload"
chroot $root "$1" -I -c 'import uffdprobe' 2>/dev/null && echo "PAYLOAD-PROBE: uffdprobe importable with site"
echo "PAYLOAD-PROBE: isolated"
cd $root/tmp
chroot $root "$@" /tmp/uffdprobe.pyz run --ktap - cow-leak wp-real-write selftest-self-deadlock --memory anon-4k
"""


def _board_binds() -> str:
    """The folders the guest's board root needs: the interpreter's prefix and the shared libraries."""
    prefix = os.path.realpath(sys.base_prefix)
    libs = [d for d in ("/usr/lib", "/usr/lib64") if os.path.isdir(d) and not d.startswith(prefix + "/")]
    return ":".join(([] if prefix in libs else [prefix]) + libs)


@pytest.mark.vm
@pytest.mark.timeout(1800)
@no_kunit
def test_payload_in_a_guest_that_sees_only_it_and_a_python(payload, tmp_path):
    """Boot `stock`; in a root that holds only a Python, its libraries and the payload (no host root), run
    the payload with that bare Python: KTAP whose verdicts kunit.py counts (cow-leak and wp-real-write PASS,
    the self-deadlock HANGs, rescued, with its evidence), exit 1 for the HANG."""
    proc = uffdprobe(
        "boot",
        "-q",
        "--results-dir",
        str(tmp_path / "run"),
        "stock",
        "--",
        "/bin/sh",
        "-c",
        GUEST_SCRIPT,
        "payload",
        str(payload),
        _board_binds(),
        *ISOLATED,
        timeout=1700,
    )
    lines = proc.stdout.splitlines()
    assert "PAYLOAD-PROBE: isolated" in lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    [root] = [ln.split()[1:] for ln in lines if ln.startswith("PAYLOAD-ROOT: ")]
    assert sorted(root) == sorted(
        {"tmp", "proc", "sys", "dev", "lib", "lib64", "usr", _board_binds().split(":")[0].split("/")[1]}
    ), root  # nothing else of the host
    assert not [ln for ln in lines if ln.startswith("PAYLOAD-PROBE: uffdprobe importable")]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # the self-deadlock's HANG
    ktap = "\n".join(lines[lines.index("KTAP version 1") :]) + "\n"
    assert re.search(r"^  # kernel: release=6\.1\.", ktap, re.M), ktap[:2000]
    parsed = kunit_parse(ktap, tmp_path)
    assert counts(parsed["summary"]) == {"passed": 2, "failed": 1}, parsed["proc"].stdout
    assert "# wchan: handle_userfault" in parsed["proc"].stdout


LAVA_DEFINITION = Path(__file__).resolve().parents[1] / "vm-images" / "lava" / "uffdprobe.yaml"


@needs_root
def test_lava_definition_records_each_ktap_result(payload, tmp_path):
    """The LAVA test definition's steps, run as LAVA runs them (one script, params as variables) on the
    running kernel, with lava-test-case recording its calls: a case per result line, HANG a fail, SKIP a
    skip, and uffdprobe's exit status as a case of its own."""
    import yaml

    definition = yaml.safe_load(LAVA_DEFINITION.read_text())
    assert definition["metadata"]["format"] == "Lava-Test Test Definition 1.0"
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("lava-test-case", "lava-test-raise"):
        (tools / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >>"{tmp_path}/calls"\n')
        (tools / tool).chmod(0o755)
    params = {k: str(v) for k, v in definition["params"].items()}
    params.update(PAYLOAD=str(payload), PYTHON=" ".join(ISOLATED), UFFDPROBE_ARGS="cow-leak selftest-self-deadlock")
    script = tmp_path / "run.sh"
    script.write_text("\n".join(definition["run"]["steps"]) + "\n")
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "TMPDIR": str(tmp_path), **params}
    proc = subprocess.run(["/bin/sh", str(script)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = (tmp_path / "calls").read_text().splitlines()
    cases = dict(re.match(r"lava-test-case (\S+) --result (\w+)", c).groups() for c in calls)
    ktap = (tmp_path / "uffdprobe.ktap").read_text()
    assert cases["selftest-self-deadlock.anon-4k"] == "fail" and cases["cow-leak.anon-4k"] == "pass", calls
    swap = re.search(r"ok \d+ cow-leak\.anon-swap(.*)", ktap).group(1)
    assert cases["cow-leak.anon-swap"] == ("skip" if "# SKIP" in swap else "pass")
    assert len(cases) == len(re.findall(r"^ *(?:not )?ok \d+ ", ktap, re.M)) + 1
    assert "lava-test-case uffdprobe-exit --result fail --measurement 1 --units exit-status" in calls


def test_a_board_the_payload_cannot_serve_gets_one_line_and_exit_2(payload, tmp_path):
    """No cffi backend for this Python (a payload built elsewhere), or TMPDIR on a noexec mount: one line
    naming the fix, exit 2, nothing left unpacked."""
    stripped = tmp_path / "other-python.pyz"
    with zipfile.ZipFile(payload) as src, zipfile.ZipFile(stripped, "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("site/_cffi_backend."):
                dst.writestr(info, src.read(info))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(scratch)}
    proc = subprocess.run([*ISOLATED, str(stripped), "list"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no cffi backend for this Python" in proc.stderr and "--cffi-wheel" in proc.stderr
    assert list(scratch.iterdir()) == []
    if os.geteuid() != 0:
        return  # mounting a noexec tmpfs needs root
    noexec = tmp_path / "noexec"
    noexec.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=64m", "tmpfs", str(noexec)], check=True)
    try:
        proc = subprocess.run(
            [*ISOLATED, str(payload), "list"],
            capture_output=True,
            text=True,
            env={**env, "TMPDIR": str(noexec)},
            timeout=120,
        )
        left = list(noexec.iterdir())
    finally:
        subprocess.run(["umount", str(noexec)], check=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "noexec, set TMPDIR" in proc.stderr and left == []
