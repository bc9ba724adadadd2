# SPDX-License-Identifier: GPL-2.0-only
"""Report paths: what a path the user named points at decides how it is written. A regular file (or a
path that does not exist yet) is written whole: a temporary file of this writer's own, then a rename.
A symlink is followed and its target written whole, the link kept. A character or block device, a FIFO,
a socket, a terminal or a /dev/fd path is written to directly, never replaced. Everything is checked
before any work, so no result is lost at the end for a path that could never be written."""

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Optional, Tuple

from uffdprobe.exitcodes import UsageError

from . import files

#: The file types written in place (opened and written), never renamed over.
_STREAMS = (stat.S_ISCHR, stat.S_ISBLK, stat.S_ISFIFO, stat.S_ISSOCK)


def target(path: str) -> Path:
    """Where `path` leads: the final target of a chain of symlinks (also a dangling one), made absolute."""
    return Path(os.path.realpath(path))


def is_stream(path: str) -> bool:
    """True when `path` (symlinks followed) is a device, FIFO, socket or an open file of a process (a
    /dev/fd or /proc/PID/fd path, /dev/stdout): written in place."""
    if _through_fd_table(path):
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    return any(test(st.st_mode) for test in _STREAMS)


def _through_fd_table(path: str) -> bool:
    """Whether `path` or a link on its way names a process's open file (/dev/fd/N, /proc/.../fd/N)."""
    hop = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on a chain of links
        if hop.startswith(("/dev/fd/", "/proc/")) and "/fd/" in hop + "/":
            return True
        try:
            hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
        except OSError:
            return False
    return False


def check(path: str, what: str) -> None:
    """Refuse (UsageError, one line) an output `path` that cannot be written the way `write` will write
    it: in place for a stream, else a temporary file in the target's folder renamed over the target."""
    fix = "choose a writable file path"
    if is_stream(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"cannot write {path} ({what}): Permission denied; {fix}")
        return
    dest = target(path)
    folder = dest.parent
    if dest.is_dir():
        why = "it is a folder"
    elif dest.exists() and not dest.is_file():
        why = "it is neither a file nor a device or FIFO"
    elif not folder.is_dir():
        why = f"its folder {folder} does not exist"
    elif not os.access(folder, os.W_OK | os.X_OK):
        why = f"its folder {folder} is not writable (a report is written whole: a temporary file there, then renamed)"
    elif dest.exists() and not os.access(dest, os.W_OK):
        why = "it is not writable"
    elif dest.exists() and _sticky_other(folder, dest):
        why = f"it belongs to another user in a sticky folder ({folder}), so it cannot be replaced"
    else:
        return
    raise UsageError(f"cannot write {path} ({what}): {why}; {fix}")


def _sticky_other(folder: Path, dest: Path) -> bool:
    """Whether the sticky bit of `folder` forbids us to rename over `dest`."""
    info = folder.stat()
    return bool(info.st_mode & stat.S_ISVTX) and os.geteuid() not in (0, info.st_uid, dest.stat().st_uid)


def check_all(named: Iterable[Tuple[str, Optional[str]]]) -> None:
    """check() each (option, path) with a path (not '-'), and refuse two options naming one file."""
    seen: Dict[object, str] = {}
    for option, path in named:
        if not path or path == "-":
            continue
        check(path, option)
        key = _identity(path)
        if key in seen:
            raise UsageError(f"{seen[key]} and {option} both name {path}: give each output its own file")
        seen[key] = option


def _identity(path: str) -> object:
    """What makes two paths one output: the device and inode of an existing file, else the target path."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return str(target(path))


def write(path: str, data: bytes) -> None:
    """Write `data` to the output `path` as check() promised: in place for a stream, whole otherwise
    (a symlink's target replaced, the link kept). OSError names `path`, never a temporary file."""
    try:
        if is_stream(path):
            with open_stream(path) as f:
                f.write(data)
        else:
            files.write_atomic(target(path), data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from None


def open_stream(path: str) -> BinaryIO:
    """A binary writer on a device or FIFO `path`, opened without blocking on a FIFO that has no reader
    (ENXIO: an error now, not a hang), then written with ordinary blocking writes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO and stat.S_ISFIFO(os.stat(path).st_mode):
            raise OSError(errno.ENXIO, "no process reads this FIFO (start its reader first)", path) from None
        raise
    try:
        os.set_blocking(fd, True)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


class Growing:
    """An output written bit by bit that must appear whole: a stream is written as it goes; a file goes
    into a temporary file of this writer's own in the target's folder, renamed over the target by
    finish() and removed by discard()."""

    def __init__(self, path: str) -> None:
        import tempfile

        self.path = path
        self.tmp: Optional[Path] = None
        self.stream: BinaryIO
        if is_stream(path):
            self.stream = open_stream(path)
            return
        dest = target(path)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        self.tmp = Path(tmp)
        os.fchmod(fd, files.mode_for(dest))
        self.stream = os.fdopen(fd, "wb")

    def write(self, text: str) -> None:
        """Append `text` (UTF-8)."""
        self.stream.write(text.encode())
        self.stream.flush()

    def flush(self) -> None:
        """Written already: write() flushes every piece (a FIFO's reader sees each kernel as it ends)."""

    def finish(self) -> None:
        """Make the output whole: rename the temporary file over the target (a stream is just closed)."""
        self.stream.flush()
        if self.tmp is not None:
            os.fsync(self.stream.fileno())
        self.stream.close()
        if self.tmp is not None:
            os.replace(self.tmp, target(self.path))
            self.tmp = None

    def discard(self) -> None:
        """Leave the target as it was: the temporary file removed."""
        try:
            self.stream.close()
        except OSError:
            pass
        if self.tmp is not None:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass
            self.tmp = None


def write_new(path: Path, data: bytes) -> Path:
    """Write `data` whole at `path` without ever replacing a file there: when `path` exists (an earlier
    or a concurrent run's), the data goes to STEM.2.SUFFIX, STEM.3.SUFFIX, ... the first name free.
    Returns where it went."""
    import itertools
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, files.mode_for(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for n in itertools.count(1):
            candidate = path if n == 1 else path.with_name(f"{path.stem}.{n}{path.suffix}")
            try:
                os.link(tmp, candidate)  # fails on an existing name: nothing is ever replaced
                return candidate
            except FileExistsError:
                continue
    finally:
        os.unlink(tmp)
    raise AssertionError("unreachable")
