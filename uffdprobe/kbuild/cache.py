# SPDX-License-Identifier: GPL-2.0-only
"""The kernel cache: layout, locks with a bounded wait, and atomic install of built kernels.

Layout under the root ($XDG_CACHE_HOME/uffdprobe/kernels by default):
  sources/<srcid>/       pristine kernel trees, one per source identity
  work/<wsid>/           tree/ (hard links to a pristine tree) and build/ (make O=), shared by variants
  entries/<key>/         bzImage, config, identity.json, build.log, complete (bzImage sha256)
  aliases/<inputs>.json  recipe inputs -> entry key, so a cache hit needs no configure step
  locks/                 flock files (entry-<key>.lock: held shared by every process using that kernel)
  CACHEDIR.TAG           the marker: this folder is a uffdprobe kernel cache (`kernel clean` needs it)
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from uffdprobe.osutil import filelock
from .errors import SetupError
from uffdprobe.osutil.files import cache_home, sha256_file, write_atomic
from uffdprobe.osutil.procs import owner_gone

COMPLETE = "complete"
LOCK_WAIT = 3600.0  # seconds; a cold build of the base kernel takes about 10 min


def default_root() -> Path:
    """$XDG_CACHE_HOME/uffdprobe/kernels, else ~/.cache/uffdprobe/kernels."""
    return cache_home() / "uffdprobe" / "kernels"


#: The marker file (the Cache Directory Tagging convention, so backup tools skip the cache too).
MARKER = "CACHEDIR.TAG"
_MARKER_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by uffdprobe: a kernel cache.\n"
    "# `uffdprobe kernel clean` removes only what is under a folder holding this file.\n"
)
#: What a kernel cache of ours holds at its top (the layout above, plus half-done trees of killed runs).
#: What the last cold build of each base compiled and how long it took (kept by `kernel clean --all`: the
#: next cold build's total and ETA).
BUILD_TIMES = "build-times.json"
_LAYOUT = {"sources", "work", "entries", "aliases", "locks", "source-hashes.json", "kselftests", BUILD_TIMES, MARKER}
_LEFTOVERS = (".stage-", ".rm-", ".tmp-")
#: Entries this process uses (key -> fd of the shared lock), held until the process ends.
_HELD: dict = {}


def is_marked(root: Path) -> bool:
    """Whether `root` carries the marker uffdprobe writes into a kernel cache it made or recognised."""
    try:
        text = (root / MARKER).read_text(errors="replace")
    except OSError:
        return False
    return text.startswith("Signature: 8a477f597d28d172789f06886806bc55") and "uffdprobe" in text


def mark(root: Path) -> None:
    """Write the marker into `root` when it is new or empty, or already laid out as a kernel cache of ours
    (a cache made before markers existed: only the layout's names at its top, and flock files of ours in
    locks/). A folder holding anything else is used, never marked: `kernel clean` will refuse it."""
    if is_marked(root) or not (_empty(root) or _looks_ours(root)):
        return
    write_atomic(root / MARKER, _MARKER_TEXT.encode())


def _empty(root: Path) -> bool:
    try:
        return not any(root.iterdir())
    except OSError:
        return False


def _looks_ours(root: Path) -> bool:
    try:
        names = [p.name for p in root.iterdir()]
        locks = list((root / "locks").iterdir())
    except OSError:
        return False
    return (
        all(n in _LAYOUT or n.startswith(_LEFTOVERS) for n in names)
        and bool(locks)
        and all(p.suffix == ".lock" and p.is_file() for p in locks)
    )


def hold_entry(root: Path, key: str, wait: float = 120.0) -> None:
    """Take locks/entry-KEY.lock shared for the rest of this process (a boot or matrix uses the kernel
    as long as it lives): `kernel clean` leaves a held entry alone. Waits (bounded) for a clean that is
    removing this very entry."""
    if key in _HELD:
        return
    path = root / "locks" / f"entry-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise SetupError(
                    f"the cached kernel {key[:12]} in {root} is still being removed after "
                    f"{wait:.0f} s: wait for `uffdprobe kernel clean` to finish"
                ) from None
            time.sleep(0.2)
    _HELD[key] = fd


def sha256_json(value) -> str:
    """Hex sha256 of a JSON-serialisable value, keys sorted."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def Lock(root: Path, name: str, wait: float = LOCK_WAIT, what: str = ""):
    """An exclusive flock on locks/<name>.lock for the with-block, waited for at most `wait` seconds."""
    path = root / "locks" / f"{name}.lock"
    what = what or name

    def waiting(holder: str) -> None:
        print(f"kbuild: waiting for {what}, held by {holder}", file=sys.stderr)

    try:
        with filelock.held(path, wait, waiting, poll=0.5):
            yield
    except filelock.Busy as busy:
        raise SetupError(
            f"{what} is busy: {busy.holder} still holds {path} after {wait:.0f} s; wait for it to finish or stop it"
        ) from None


@contextlib.contextmanager
def in_use(root: Path, wait: float = LOCK_WAIT):
    """A shared flock on locks/in-use.lock while this process unpacks or builds in the cache. `kernel clean`
    removes sources and workspaces only under the exclusive one (exclusive_use), so never one in use;
    a build waits (bounded) for a clean under way."""

    def waiting(holder: str) -> None:
        print(f"kbuild: waiting for `kernel clean` to finish in {root}", file=sys.stderr)

    acquired = False
    try:
        with filelock.held(root / "locks" / "in-use.lock", wait, waiting, shared=True):
            acquired = True
            mark(root)
            yield
    except filelock.Busy:
        if acquired:  # a Busy from inside the with-block is not ours to explain
            raise
        raise SetupError(
            f"the kernel cache {root} is still being cleaned after {wait:.0f} s: wait for "
            "`uffdprobe kernel clean` to finish or stop it"
        ) from None


def exclusive_use(root: Path) -> Optional[int]:
    """The exclusive in-use lock without waiting (the fd to close), or None while a build or unpack runs."""
    return try_lock(root, "in-use")


def finish_removals(root: Path) -> list:
    """Remove the `.rm-NAME-PID` trees that remove_tree() of a dead process left half done (under the
    cache root and its sources/, work/ and entries/); a live process's are its own business."""
    done = []
    for folder in (root, root / "sources", root / "work", root / "entries"):
        for path in sorted(folder.glob(".rm-*")) if folder.is_dir() else []:
            pid = path.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not owner_gone(int(pid)):
                continue
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                done.append(path)
    return done


def try_lock(root: Path, name: str) -> Optional[int]:
    """Take locks/<name>.lock without waiting; the fd to close, or None when someone holds it."""
    path = root / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


@dataclass
class Entry:
    """One installed kernel: its directory and what identity.json says about it."""

    path: Path
    identity: dict

    @property
    def bzimage(self) -> Path:
        return self.path / "bzImage"


def entry_dir(root: Path, key: str) -> Path:
    return root / "entries" / key


def load_entry(root: Path, key: str) -> Optional[Entry]:
    """The complete, intact entry for `key`; a partial or corrupt one is reported, removed and None returned."""
    path = entry_dir(root, key)
    if not path.exists():
        return None
    try:
        marker, identity = _metadata(path)
        if sha256_file(path / "bzImage") != marker["bzimage_sha256"]:
            raise _Corrupt("bzImage does not match its recorded sha256")
        return Entry(path, identity)
    except OSError as exc:
        problem = f"{Path(exc.filename or path).name}: {exc.strerror}"
    except _Corrupt as exc:
        problem = str(exc)
    _drop(path, problem, "rebuilding it")
    return None


class _Corrupt(Exception):
    """An entry whose metadata is not what install_entry() writes."""


def _metadata(path: Path) -> tuple:
    """(complete marker, identity) of an entry; _Corrupt (or OSError) when either is garbage."""
    found = []
    for name, must in ((COMPLETE, "bzimage_sha256"), ("identity.json", "key")):
        try:
            value = json.loads((path / name).read_text())
        except ValueError as exc:
            raise _Corrupt(f"{name} is not JSON ({exc})") from None
        except UnicodeDecodeError:
            raise _Corrupt(f"{name} is not text") from None
        if not isinstance(value, dict) or not isinstance(value.get(must), str):
            raise _Corrupt(f"{name} has no {must!r} string")
        found.append(value)
    return tuple(found)


def _drop(path: Path, problem: str, then: str) -> None:
    """Report a corrupt entry in one line and remove it, so nothing ever boots it."""
    print(f"kbuild: cache entry {path} is incomplete or corrupt ({problem[:160]}); removed it, {then}", file=sys.stderr)
    remove_tree(path)


def install_entry(root: Path, key: str, files: dict, identity: dict) -> Entry:
    """Copy `files` (name -> source path) into a temp dir, mark it complete, rename it into place."""
    entries = root / "entries"
    root.mkdir(parents=True, exist_ok=True)
    mark(root)
    entries.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entries, prefix=f".tmp-{key[:12]}-"))
    try:
        for name, src in files.items():
            shutil.copy2(src, tmp / name)
        (tmp / ".config").symlink_to("config")  # where the VM runner looks beside a bzImage
        (tmp / "identity.json").write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
        marker = {"bzimage_sha256": sha256_file(tmp / "bzImage"), "installed": time.time()}
        (tmp / COMPLETE).write_text(json.dumps(marker) + "\n")
        final = entry_dir(root, key)
        if final.exists():  # a stale or corrupt one; load_entry() already judged it
            remove_tree(final)
        os.rename(tmp, final)
    except BaseException:
        remove_tree(tmp)
        raise
    return Entry(final, identity)


def read_alias(root: Path, inputs: str) -> Optional[str]:
    try:
        return json.loads((root / "aliases" / f"{inputs}.json").read_text())["key"]
    except (OSError, ValueError, KeyError):
        return None


def write_alias(root: Path, inputs: str, key: str) -> None:
    write_atomic(root / "aliases" / f"{inputs}.json", json.dumps({"key": key}).encode())


def cold_build(root: Path, base: str) -> Optional[dict]:
    """The last cold build of `base` (a key of its config base and fragments): {"compiled", "seconds"}, or
    None when this cache has seen none (or cannot read what it saw)."""
    try:
        found = json.loads((root / BUILD_TIMES).read_text()).get(base)
        return found if isinstance(found, dict) and found.get("compiled") and "seconds" in found else None
    except (OSError, ValueError, AttributeError):
        return None


def record_cold_build(root: Path, base: str, made: dict) -> None:
    """Keep what a cold build of `base` compiled and took, for the next one's total and ETA."""
    try:
        times = json.loads((root / BUILD_TIMES).read_text())
        times = times if isinstance(times, dict) else {}
    except (OSError, ValueError):
        times = {}
    times[base] = made
    write_atomic(root / BUILD_TIMES, json.dumps(times, indent=1, sort_keys=True).encode())


def list_entries(root: Path) -> list:
    """Every complete entry, newest first (bzImage not re-hashed: listing stays fast; garbage metadata is
    reported and the entry removed)."""
    found = []
    for path in sorted((root / "entries").glob("[!.]*")):
        try:
            marker, identity = _metadata(path)
        except FileNotFoundError as exc:
            if path.exists():  # not removed under us by clean: an entry missing a file
                _drop(path, f"{Path(exc.filename).name}: {exc.strerror}", "build it again")
            continue
        except _Corrupt as exc:
            _drop(path, str(exc), "build it again")
            continue
        installed = marker.get("installed")
        found.append((installed if isinstance(installed, (int, float)) else 0, Entry(path, identity)))
    return [entry for _, entry in sorted(found, key=lambda pair: -pair[0])]


def remove_tree(path: Path) -> None:
    """Remove a directory tree (or file) if present; a half-removed tree is renamed away first."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not path.is_symlink():
        doomed = path.with_name(f".rm-{path.name}-{os.getpid()}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        path.unlink()


def tree_size(path: Path) -> int:
    """Bytes used by the files under `path` (hard links counted once)."""
    seen, total = set(), 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
