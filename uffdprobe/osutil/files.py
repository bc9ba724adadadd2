# SPDX-License-Identifier: GPL-2.0-only
"""Files written whole or not at all, content hashes, and whether a disk is full."""

import errno
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's contents."""
    import hashlib  # imports here and in write_atomic: the guest's `uffdprobe run` pays for neither

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` through a temporary file, fsync and rename (new inode, new mtime): a
    reader sees the old file or the whole new one, also after a crash; on any error the old one stays."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise
    _fsync_dir(path.parent)


def mode_for(path: Path) -> int:
    """The replaced file's permissions, or what open() would give a new file (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    try:
        with open("/proc/self/status") as f:
            umask = next(int(x.split()[1], 8) for x in f if x.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = 0o022
    return 0o666 & ~umask


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def disk_full(path: Path, slack: int = 1 << 20) -> bool:
    """Whether the file system holding `path` has less than `slack` bytes left for us."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


def cache_home() -> Path:
    """$XDG_CACHE_HOME, else ~/.cache. A UsageError when that would be under a HOME that does not exist
    (never create someone's home folder): set XDG_CACHE_HOME."""
    from uffdprobe.exitcodes import UsageError

    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base)
    home = os.path.expanduser("~")
    if not os.path.isdir(home):
        raise UsageError(
            f"HOME {home} does not exist, so there is no cache folder; set HOME to your home "
            "folder or XDG_CACHE_HOME to a writable folder"
        )
    return Path(home) / ".cache"


def usable_dir(path: Path, what: str, fix: str, create: bool = True) -> Path:
    """`path` made (with its parents) and checked writable; else a UsageError, one line: `what`, the
    reason and `fix`. With create=False nothing is made: the folder, or the nearest existing folder
    above it, must be writable. A full disk stays an OSError (ENOSPC), reported by the caller."""
    from uffdprobe.exitcodes import UsageError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; {fix}")
    existing = path
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
            raise UsageError(f"{what} {path} cannot be created: {exc.strerror}{where}; {fix}") from None
    else:
        existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"{what} {path} cannot be created: {existing} is a file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        reason = "Read-only file system" if _read_only(existing) else "Permission denied"
        verb = "written" if existing == path else "created"
        raise UsageError(f"{what} {path} cannot be {verb} ({reason}: {existing}); {fix}")
    return path


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
