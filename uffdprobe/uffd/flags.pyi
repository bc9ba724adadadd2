# SPDX-License-Identifier: GPL-2.0-only
# Static view of uffdprobe.uffd.flags for type checkers and editors. flags.py builds these enums at import time
# from the constants the compiled module was built with; tests/test_flags_stub.py checks that every member the
# build headers define is declared here with the same value (values from the 6.18 uAPI, linux/userfaultfd.h).
import enum
from typing import Dict, List

class Feature(enum.IntFlag):
    PAGEFAULT_FLAG_WP = 1
    EVENT_FORK = 2
    EVENT_REMAP = 4
    EVENT_REMOVE = 8
    MISSING_HUGETLBFS = 16
    MISSING_SHMEM = 32
    EVENT_UNMAP = 64
    SIGBUS = 128
    THREAD_ID = 256
    MINOR_HUGETLBFS = 512
    MINOR_SHMEM = 1024
    EXACT_ADDRESS = 2048
    WP_HUGETLBFS_SHMEM = 4096
    WP_UNPOPULATED = 8192
    POISON = 16384
    WP_ASYNC = 32768
    MOVE = 65536

class Ioctl(enum.IntFlag):
    REGISTER = 1
    UNREGISTER = 2
    WAKE = 4
    COPY = 8
    ZEROPAGE = 16
    MOVE = 32
    WRITEPROTECT = 64
    CONTINUE = 128
    POISON = 256
    API = 9223372036854775808

class RegisterMode(enum.IntFlag):
    MISSING = 1
    WP = 2
    MINOR = 4

class PageFaultFlag(enum.IntFlag):
    WRITE = 1
    WP = 2
    MINOR = 4

class Event(enum.IntEnum):
    PAGEFAULT = 18
    FORK = 19
    REMAP = 20
    REMOVE = 21
    UNMAP = 22

COPY_MODE: Dict[str, int]
ZEROPAGE_MODE: Dict[str, int]
WRITEPROTECT_MODE: Dict[str, int]
CONTINUE_MODE: Dict[str, int]
MOVE_MODE: Dict[str, int]
POISON_MODE: Dict[str, int]
OPEN_FLAGS: Dict[str, int]
UFFD_API: int

def names(flags: enum.IntFlag) -> List[str]: ...
def absent_from_headers() -> Dict[str, List[str]]: ...
