# SPDX-License-Identifier: GPL-2.0-only
"""Memory the scenarios fault on: mmap/munmap/mprotect/madvise/mremap, move_pages, memfd, vmsplice,
process_vm_*, O_DIRECT."""

import errno
import os
from typing import Any, List, Optional

from ._ffi import constants, ffi, lib
from .errors import NotSupportedError, error_for

#: The base page size of the running kernel, in bytes.
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MMAN = constants["mman"]
MADV = constants["madvise"]
MEMFD = constants["memfd"]
MREMAP = constants["mremap"]
MPOL = constants["mempolicy"]
PROT_RW = MMAN["PROT_READ"] | MMAN["PROT_WRITE"]


def _check(ret: int, call: str, start: Optional[int] = None, length: Optional[int] = None) -> int:
    if ret < 0:
        raise error_for(ffi.errno, call, start, length)
    return ret


class Mapping:
    """An mmap()ed range with its address; read/write by offset; munmap on close."""

    def __init__(self, addr: int, length: int, _base: Optional[int] = None, _base_len: int = 0):
        self.addr, self.length = addr, length
        self._base, self._base_len = (addr, length) if _base is None else (_base, _base_len)

    def page(self, index: int) -> int:
        """Address of page `index` in this mapping."""
        return self.addr + index * PAGE_SIZE

    def buffer(self, offset: int = 0, length: Optional[int] = None) -> Any:
        """A writable buffer over [offset, offset+length) (a cffi buffer: no static type); touching it may fault."""
        length = self.length - offset if length is None else length
        return ffi.buffer(ffi.cast("char *", self.addr + offset), length)

    def read(self, offset: int, length: int) -> bytes:
        """Copy bytes out without holding the GIL, so a Python fault handler can serve the fault."""
        out = ffi.new("char[]", length)
        lib.up_memcpy(int(ffi.cast("uintptr_t", out)), self.addr + offset, length)
        return bytes(ffi.buffer(out, length))

    def write(self, offset: int, data: bytes) -> None:
        """Copy bytes in without holding the GIL (the store may raise a uffd fault)."""
        src = ffi.from_buffer(data)
        lib.up_memcpy(self.addr + offset, int(ffi.cast("uintptr_t", src)), len(data))

    def close(self) -> None:
        if self._base_len:
            lib.up_munmap(self._base, self._base_len)
            self._base_len = 0

    def __enter__(self) -> "Mapping":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mmap_anonymous(
    length: int, *, shared: bool = False, prot: int = PROT_RW, align: int = PAGE_SIZE, extra_flags: int = 0
) -> Mapping:
    """Anonymous private (or shared) memory, aligned to `align` (2 MiB for THP) by trimming."""
    flags = MMAN["MAP_ANONYMOUS"] | (MMAN["MAP_SHARED"] if shared else MMAN["MAP_PRIVATE"]) | extra_flags
    span = length + (align - PAGE_SIZE if align > PAGE_SIZE else 0)
    base = lib.up_mmap(ffi.NULL, span, prot, flags, -1, 0)
    if base == ffi.cast("void *", -1):
        raise error_for(ffi.errno, "mmap", None, None)
    base_addr = int(ffi.cast("uintptr_t", base))
    addr = (base_addr + align - 1) & ~(align - 1)
    return Mapping(addr, length, base_addr, span)


def mmap_fd(fd: int, length: int, *, shared: bool = True, prot: int = PROT_RW, offset: int = 0, at: int = 0) -> Mapping:
    """A file or memfd mapping; `at` places it there (MAP_FIXED: over a range of our own only)."""
    flags = (MMAN["MAP_SHARED"] if shared else MMAN["MAP_PRIVATE"]) | (MMAN["MAP_FIXED"] if at else 0)
    base = lib.up_mmap(ffi.cast("void *", at) if at else ffi.NULL, length, prot, flags, fd, offset)
    if base == ffi.cast("void *", -1):
        raise error_for(ffi.errno, "mmap", None, length)
    return Mapping(int(ffi.cast("uintptr_t", base)), length)


def munmap(addr: int, length: int) -> None:
    _check(lib.up_munmap(addr, length), "munmap", addr, length)


def mprotect(addr: int, length: int, prot: int) -> None:
    _check(lib.up_mprotect(addr, length, prot), "mprotect", addr, length)


def madvise(addr: int, length: int, advice: str) -> None:
    """madvise with an advice name such as "MADV_DONTNEED" or "MADV_HUGEPAGE"."""
    if advice not in MADV:
        raise NotSupportedError(errno.ENOTSUP, advice, addr, length, hint="absent from the build headers")
    _check(lib.up_madvise(addr, length, MADV[advice]), f"madvise({advice})", addr, length)


def mremap_fixed(old: int, length: int, new: int) -> None:
    """mremap(old, length, length, MREMAP_MAYMOVE|MREMAP_FIXED, new): move the mapping at `old` onto `new`,
    replacing what was mapped there; a UffdError (an OSError with errno) on failure."""
    got = lib.up_mremap(old, length, length, MREMAP["MREMAP_MAYMOVE"] | MREMAP["MREMAP_FIXED"], new)
    if got == ffi.cast("void *", -1):
        raise error_for(ffi.errno, f"mremap(MAYMOVE|FIXED -> {new:#x})", old, length)


def move_page(addr: int, node: int) -> int:
    """move_pages(2) of the page at `addr` in this process to `node` (MPOL_MF_MOVE_ALL): the page's node
    after the call, or a negative errno for that page (its status: -ENOENT not present, -EBUSY busy, ...);
    a UffdError (an OSError with errno) when the call itself fails (EPERM, ENODEV, ENOSYS, ...)."""
    status = ffi.new("int *")
    _check(
        lib.up_move_page(addr, node, MPOL["MPOL_MF_MOVE_ALL"], status), f"move_pages(-> node {node})", addr, PAGE_SIZE
    )
    return int(status[0])


def mincore(addr: int, length: int) -> List[bool]:
    """Per page of [addr, addr+length): whether it is resident, for an anonymous swapped-out page
    whether its swap slot's page is in the swap cache (mincore(2))."""
    vec = ffi.new("unsigned char[]", (length + PAGE_SIZE - 1) // PAGE_SIZE)
    _check(lib.up_mincore(addr, length, vec), "mincore", addr, length)
    return [bool(b & 1) for b in vec]


def memfd_create(name: str, flags: int = constants["memfd"]["MFD_CLOEXEC"]) -> int:
    return _check(lib.up_memfd_create(name.encode(), flags), "memfd_create")


def fallocate(fd: int, offset: int, length: int, *, punch_hole: bool = False) -> None:
    """fallocate(2): allocate [offset, +length) of `fd`, or with punch_hole free it (keeping the size)."""
    falloc = constants["falloc"]
    mode = falloc["FALLOC_FL_PUNCH_HOLE"] | falloc["FALLOC_FL_KEEP_SIZE"] if punch_hole else 0
    _check(
        lib.up_fallocate(fd, mode, offset, length), "fallocate" + ("(PUNCH_HOLE)" if punch_hole else ""), offset, length
    )


def vmsplice(pipe_fd: int, addr: int, length: int, flags: int = 0) -> int:
    """vmsplice() one user range into a pipe: the kernel takes page references by read-GUP."""
    return _check(lib.up_vmsplice(pipe_fd, addr, length, flags), "vmsplice", addr, length)


def process_vm_readv(pid: int, local: int, remote: int, length: int) -> int:
    """Read `length` bytes at `remote` in `pid` into `local` (the kernel read-GUPs the remote page)."""
    return _check(lib.up_process_vm_readv(pid, local, remote, length), "process_vm_readv", remote, length)


def process_vm_writev(pid: int, local: int, remote: int, length: int) -> int:
    return _check(lib.up_process_vm_writev(pid, local, remote, length), "process_vm_writev", remote, length)


def pwrite_from(fd: int, addr: int, length: int, offset: int) -> int:
    """pwrite() straight from a user address (with O_DIRECT the kernel read-GUPs it)."""
    return _check(lib.up_pwrite(fd, addr, length, offset), "pwrite", addr, length)


def pread_into(fd: int, addr: int, length: int, offset: int) -> int:
    return _check(lib.up_pread(fd, addr, length, offset), "pread", addr, length)


def open_direct(path: str, flags: int = os.O_RDWR) -> int:
    """Open with O_DIRECT; a filesystem that refuses it raises EINVAL naming the path."""
    try:
        return os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC)
    except OSError as exc:
        raise error_for(
            exc.errno or errno.EIO,
            f"open({path}, O_DIRECT)",
            hint="this filesystem may not accept O_DIRECT" if exc.errno == errno.EINVAL else "",
        ) from None


def touch(addr: int, length: int, *, write: bool = False, value: int = 0, stride: int = PAGE_SIZE) -> int:
    """Read (or write `value` to) one byte per `stride` from C, without the GIL: this is where faults happen."""
    return int(lib.up_touch(addr, length, stride, 1 if write else 0, value))


def gettid() -> int:
    """The calling thread's kernel thread id (gettid(2)), as a fault message's `ptid` names it."""
    return int(lib.up_gettid())
