# SPDX-License-Identifier: GPL-2.0-only
"""Faults while a kernel builds: SIGINT/SIGTERM mid-compile, a make that ignores SIGTERM, garbage cache
metadata, and a cache disk that fills up. Each runs the real `uffdprobe kernel build` and then looks
at the processes, the locks and the cache.

Builds here must be incremental to stay cheap, and make's saved commands hold absolute paths, so a
build in a temporary cache would recompile everything. A Sandbox therefore copies the real cache's
stock workspace (the source tree as hard links, the object tree as a copy) into a temporary
directory and runs the command in a private mount namespace in which that directory is mounted
over the real cache's path: paths match, only the changed files are rebuilt, and the real cache
is never written.
"""

import difflib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from uffdprobe.kbuild import build as kbuild, cache as kbuild_cache, make as kbuild_make
from uffdprobe.exitcodes import Exit
from uffdprobe.kbuild.errors import BuildFailed
from uffdprobe.kbuild.source import DEFAULT_TARBALL

from test_kbuild import _need_toolchain

pytestmark = [pytest.mark.build, pytest.mark.timeout(3600)]
REAL = kbuild_cache.default_root()
MiB = 1 << 20
INTERRUPTED_LINE = "uffdprobe kernel build: interrupted; the cache holds only complete kernels"


def _need_root_and_tools():
    _need_toolchain()
    if os.geteuid() != 0:
        pytest.skip("needs root (mount namespaces, tmpfs)")
    missing = [t for t in ("unshare", "mount", "umount", "readelf") if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing tools: {' '.join(missing)}")


@pytest.fixture(scope="module")
def warm():
    """The real cache's stock workspace, built at least once (else skipped: `uffdprobe kernel build stock`)."""
    _need_root_and_tools()
    ws = kbuild.workspace("stock")
    if not (ws / "tree.complete").exists() or not (ws / "build" / "vmlinux").exists():
        pytest.skip(f"no built stock workspace at {ws}: run `uffdprobe kernel build stock` once")
    return ws


class Sandbox:
    """A private copy of the stock workspace, seen at the real cache's path by commands run through it."""

    def __init__(self, root: Path, links: Path, ws: Path):
        if os.stat(links.parent).st_dev != os.stat(REAL).st_dev:
            pytest.skip(f"{links} is not on the file system of {REAL}: cannot hard-link the tree")
        self.root, self.links = root, links
        self.work = root / "work" / ws.name
        links.mkdir(parents=True)
        with kbuild_cache.Lock(REAL, f"work-{ws.name}", wait=1800, what="the real stock workspace (to copy it)"):
            _check(["cp", "-al", str(ws / "tree"), str(links / "tree")])
            self.work.mkdir(parents=True)
            _check(["cp", "-a", str(ws / "build"), str(self.work / "build")])
            for name in ("state.json", "tree.complete"):
                shutil.copy2(ws / name, self.work / name)
        (self.work / "tree").mkdir()
        (root / "sources").mkdir()
        shutil.copy(REAL / "source-hashes.json", root / "source-hashes.json")

    def argv(self, *args) -> list:
        script = 'mount --bind "$1" "$2" && mount --bind "$3" "$4" && mount --rbind "$5" "$6" && shift 6 && exec "$@"'
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sandbox",
            str(REAL / "sources"),
            str(self.root / "sources"),
            str(self.links / "tree"),
            str(self.work / "tree"),
            str(self.root),
            str(REAL),
            sys.executable,
            "-m",
            "uffdprobe",
        ] + [str(a) for a in args]

    def run(self, *args, timeout: float = 1800) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)

    def outside(self, path: str) -> Path:
        """Where a path the sandboxed command printed is, seen from here."""
        return self.root / Path(path).relative_to(REAL)

    def remove(self) -> None:
        shutil.rmtree(self.links, ignore_errors=True)
        shutil.rmtree(self.root / "work", ignore_errors=True)


def _check(argv: list) -> None:
    subprocess.run(argv, check=True, timeout=900, capture_output=True)


@pytest.fixture
def sandbox(tmp_path, warm):
    box = Sandbox(tmp_path / "kcache", tmp_path / "links", warm)
    yield box
    box.remove()


def _probe_recipe(where: Path) -> Path:
    """stock plus an unused inline function, unique to this run, at the end of mm/memory.c: a ccache miss,
    so a real compile runs (and gives the test something to interrupt), and nothing else changes."""
    tree = next(
        p / "tree"
        for p in (REAL / "sources").iterdir()  # the stock tarball's tree, not 6.12's
        if (p / "tree" / "mm" / "memory.c").is_file()
        and (p / "identity.json").is_file()
        and json.loads((p / "identity.json").read_text()).get("name") == Path(DEFAULT_TARBALL).name
    )
    old = (tree / "mm" / "memory.c").read_text().splitlines(keepends=True)
    new = old + [
        "\n",
        f"static inline int uffdprobe_fault_probe_{uuid.uuid4().hex}(void)\n",
        "{\n",
        "\treturn 0;\n",
        "}\n",
    ]
    patch = where / "0001-mm-fault-probe.patch"
    patch.write_text("".join(difflib.unified_diff(old, new, "a/mm/memory.c", "b/mm/memory.c")))
    recipe = where / "fault-probe.toml"
    recipe.write_text(
        f'name = "fault-probe"\nsummary = "stock and an unused function in mm/memory.c"\n'
        f'source = "{DEFAULT_TARBALL}"\nbase = "tinyconfig"\n'
        f'fragments = ["{kbuild.DEFAULT_FRAGMENT}"]\npatches = ["{patch}"]\n'
    )
    return recipe


def _locks_free(root: Path) -> None:
    """Every lock of the cache can be taken at once: nobody holds one after the command ended."""
    names = [p.stem for p in (root / "locks").glob("*.lock")]
    assert names, "no lock was ever taken"
    for name in names:
        fd = kbuild_cache.try_lock(root, name)
        assert fd is not None, f"lock {name} is still held"
        os.close(fd)


def _listed(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "kernel", "list", "--cache-dir", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == Exit.OK, done.stderr
    return done.stdout


def _nothing_cached(root: Path) -> None:
    assert _listed(root) == ""
    entries = root / "entries"
    assert not entries.exists() or list(entries.iterdir()) == []  # not even a half-copied .tmp-*
    assert list(root.glob(".stage-*")) == []


def _errors(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("uffdprobe")]


# --- A: SIGINT / SIGTERM while make compiles -----------------------------------------------------


class _Watch:
    """Reads a child's stderr lines in a thread; waits, bounded, for a line matching a pattern."""

    def __init__(self, proc: subprocess.Popen):
        self.lines, self.q = [], queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {self.lines[-5:]}")


def _tree(pid: int, seen: dict, sids: set) -> list:
    """Descendants of pid (remembered in `seen` by (pid, start time), their sessions in `sids`)."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for kid in kids:
        try:
            seen[(kid.pid, kid.create_time())] = kid.name()
            sids.add(os.getsid(kid.pid))
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return kids


def _compiling(procs: list) -> bool:
    """Whether one of `procs` is the compiler proper working on a source file (Kconfig's and Kbuild's
    compiler probes all read /dev/null)."""
    for p in procs:
        try:
            if p.name() == "cc1" and "/dev/null" not in p.cmdline():
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def _leftovers(seen: dict, sids: set) -> list:
    left = []
    for p in psutil.process_iter(["name", "create_time", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            sid = os.getsid(p.pid)
        except OSError:
            continue
        if (p.pid, p.info["create_time"]) in seen or sid in sids:
            left.append(f"{p.info['name']}[{p.pid}]")
    return left


def _wait_no_leftovers(seen: dict, sids: set, bound: float = 15.0) -> None:
    deadline = time.monotonic() + bound
    while _leftovers(seen, sids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(seen, sids) == []


def _objects_intact(build: Path, since: float) -> int:
    """readelf reads every object written since `since` to the end: none is truncated. Returns how many."""
    changed = [p for p in build.rglob("*.o") if p.stat().st_mtime >= since]
    for obj in changed:
        check = subprocess.run(["readelf", "-h", "-S", str(obj)], capture_output=True, text=True, timeout=60)
        assert check.returncode == 0 and "Error" not in check.stderr, f"{obj}: {check.stderr[:200]}"
    return len(changed)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.reliability(
    "SIGINT or SIGTERM while make compiles a kernel",
    "exit 130, one line, make and its compilers stopped and reaped, locks free, "
    "nothing half-installed, no truncated object, the next build works",
)
def test_signal_while_compiling(sandbox, tmp_path, sig):
    recipe = _probe_recipe(tmp_path)
    started = time.time()
    proc = subprocess.Popen(
        sandbox.argv("kernel", "build", recipe),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    seen, sids = {}, {os.getsid(proc.pid)}
    watch = _Watch(proc)
    try:
        watch.wait_for(r"^kbuild \[fault-probe\]: \d\d:\d\d +[1-9]\d* compiled", timeout=900)
        deadline = time.monotonic() + 300
        while not _compiling(_tree(proc.pid, seen, sids)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _compiling(_tree(proc.pid, seen, sids)), f"no kernel object compiling: {sorted(set(seen.values()))}"
        assert "make" in seen.values()
        proc.send_signal(sig)
        status = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    watch.thread.join(30)
    assert status == Exit.INTERRUPTED, watch.lines[-5:]
    assert _errors("\n".join(watch.lines)) == [INTERRUPTED_LINE]
    assert watch.lines[-1] == INTERRUPTED_LINE
    _wait_no_leftovers(seen, sids)
    _locks_free(sandbox.root)
    _nothing_cached(sandbox.root)
    _objects_intact(sandbox.work / "build", started)

    again = sandbox.run("kernel", "build", recipe)
    assert again.returncode == Exit.OK, again.stderr[-2000:]
    assert "waiting for" not in again.stderr  # the lock was free at once
    assert sandbox.outside(again.stdout.strip()).is_file()
    assert "fault-probe" in _listed(sandbox.root)


@pytest.mark.reliability(
    "a make that ignores SIGTERM when the build is stopped (here: its time limit)",
    "SIGKILLed after the grace period with everything it started, reaped, "
    "the files it wrote removed so the next build remakes them",
)
def test_make_that_ignores_sigterm_is_killed_and_scrubbed(tmp_path, monkeypatch):
    objtree = tmp_path / "build"
    objtree.mkdir()
    old = objtree / "old.o"
    old.write_bytes(b"\x7fELF complete")
    os.utime(old, (time.time() - 3600,) * 2)
    script = 'trap "" TERM INT; printf "  CC      half.o\\n"; printf "\\177ELF hal" > "$1/half.o"; sleep 600 & wait'
    monkeypatch.setattr(kbuild_make, "STOP_GRACE", 2.0)
    log = tmp_path / "build.log"
    started = time.monotonic()
    with pytest.raises(BuildFailed, match="timed out after 3 s"):
        kbuild_make.run_make(
            ["bash", "-c", script, "stubborn-make", str(objtree), f"O={objtree}"],
            log,
            kbuild_make.Progress("t", False),
            timeout=3,
        )
    assert time.monotonic() - started < 30
    assert not (objtree / "half.o").exists()
    assert old.read_bytes() == b"\x7fELF complete"
    assert "half.o" in log.read_text()
    assert [p for p in psutil.Process().children(recursive=True) if "sleep" in p.name()] == []


# --- C: garbage metadata in a cache entry --------------------------------------------------------


def _copy_stock_entry(root: Path) -> Path:
    stock = kbuild.build("stock", progress=False)
    alias = next(a for a in (REAL / "aliases").glob("*.json") if json.loads(a.read_text()).get("key") == stock.key)
    (root / "aliases").mkdir(parents=True, exist_ok=True)
    shutil.copy(alias, root / "aliases" / alias.name)
    entry = root / "entries" / stock.key
    shutil.copytree(stock.bzimage.parent, entry, symlinks=True)
    return entry


@pytest.mark.reliability(
    "a cache entry with garbage metadata (identity.json not JSON, marker of the wrong type)",
    "reported in one line, removed; a build rebuilds it; never handed out to boot",
)
def test_garbage_entry_metadata_is_reported_removed_and_rebuilt(sandbox):
    entry = _copy_stock_entry(sandbox.root)
    (entry / "identity.json").write_bytes(b"\x00{ not json")
    listing = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "kernel", "list", "--cache-dir", str(sandbox.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == Exit.OK
    assert listing.stdout == ""
    complaint = [line for line in listing.stderr.splitlines() if "corrupt" in line]
    assert len(complaint) == 1 and str(entry) in complaint[0] and "identity.json" in complaint[0]
    assert not entry.exists()

    entry = _copy_stock_entry(sandbox.root)
    (entry / kbuild_cache.COMPLETE).write_text("[1, 2]\n")
    built = sandbox.run("kernel", "build", "stock")
    assert built.returncode == Exit.OK, built.stderr[-2000:]
    complaint = [line for line in built.stderr.splitlines() if "corrupt" in line]
    assert len(complaint) == 1 and "removed it, rebuilding it" in complaint[0]
    assert "building 6.1" in built.stderr  # rebuilt, not taken from the garbage entry
    fresh = kbuild_cache.load_entry(sandbox.root, entry.name)
    assert fresh is not None and sandbox.outside(built.stdout.strip()) == fresh.bzimage


# --- D: the cache's disk fills up ----------------------------------------------------------------


class SmallDisk:
    """A tmpfs mounted for one test (always unmounted after it)."""

    def __init__(self, path: Path):
        self.path = path
        self.mounted = False

    def mount(self, size: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _check(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "uffdprobe-test", str(self.path)])
        self.mounted = True

    def resize(self, size: int) -> None:
        _check(["mount", "-o", f"remount,size={size}", str(self.path)])

    def used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def unmount(self) -> None:
        if self.mounted and subprocess.run(["umount", str(self.path)], timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(self.path)], timeout=60)
        self.mounted = False


@pytest.fixture
def small_disk(tmp_path):
    _need_root_and_tools()
    disk = SmallDisk(tmp_path / "disk")
    try:
        yield disk
    finally:
        disk.unmount()


def _no_space_line(stderr: str, where: Path) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("uffdprobe kernel build: no space left on the disk holding ") and str(where) in line
    assert "free space there" in line and "XDG_CACHE_HOME" in line
    return line


@pytest.mark.reliability(
    "the cache's disk too small to unpack the kernel source",
    "stopped at the first write error: one line naming the disk and what to do, exit 6, "
    "the partial tree removed, no lock held, nothing cached; the next command works",
)
def test_full_disk_while_unpacking_the_source(small_disk):
    small_disk.mount(48 * MiB)
    env = dict(os.environ, XDG_CACHE_HOME=str(small_disk.path))
    root = small_disk.path / "uffdprobe" / "kernels"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "uffdprobe", "kernel", "build", "--quiet", "stock"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    took = time.monotonic() - started
    assert done.returncode == Exit.NO_SPACE, done.stderr
    line = _no_space_line(done.stderr, root / "sources")
    assert f"unpacking {DEFAULT_TARBALL}" in line
    assert took < 120, f"took {took:.0f} s: the unpack was not stopped at the first ENOSPC"
    assert list((root / "sources").iterdir()) == []  # the partial tree is gone, not half-complete
    assert small_disk.used() < 4 * MiB
    _locks_free(root)
    _nothing_cached(root)
    for argv in (["kernel", "list"], ["kernel", "clean", "--all"]):
        after = subprocess.run(
            [sys.executable, "-m", "uffdprobe"] + argv, capture_output=True, text=True, timeout=120, env=env
        )
        assert after.returncode == Exit.OK, after.stderr


@pytest.mark.reliability(
    "the cache's disk fills up while make builds",
    "one line naming the disk and what to do, exit 6 (not 5), the log kept if there is room, "
    "no lock held, nothing cached; after freeing space the next build works",
)
def test_full_disk_while_make_runs(small_disk, tmp_path, warm):
    small_disk.mount(1024 * MiB)
    box = Sandbox(small_disk.path, tmp_path / "links", warm)
    try:
        for big in ("vmlinux", "vmlinux.o", ".tmp_vmlinux.kallsyms1", ".tmp_vmlinux.kallsyms2"):
            (box.work / "build" / big).unlink()  # the link must write them again: about 60 MiB
        small_disk.resize(small_disk.used() + 2 * MiB)  # room to configure and compile, not to link
        recipe = _probe_recipe(tmp_path)
        done = box.run("kernel", "build", "--quiet", recipe)
        assert done.returncode == Exit.NO_SPACE, done.stderr[-2000:]
        line = _no_space_line(done.stderr, REAL)
        if "build log: " in line:
            log = box.outside(line.rsplit("build log: ", 1)[1])
            assert log.is_file() and "bzImage" in log.read_text()  # it got as far as make
        _locks_free(box.root)
        _nothing_cached(box.root)

        small_disk.resize(small_disk.used() + 800 * MiB)
        again = box.run("kernel", "build", "--quiet", recipe)
        assert again.returncode == Exit.OK, again.stderr[-2000:]
        assert "fault-probe" in _listed(box.root)
    finally:
        box.remove()
