# SPDX-License-Identifier: GPL-2.0-only
"""uffd_msg decoding: one small frozen dataclass per event kind."""

from dataclasses import dataclass
from typing import Any, Dict, Union

# PageFaultFlag is what a PageFault's flags are: a reader of messages finds it here too.
from .flags import Event, PageFaultFlag as PageFaultFlag


@dataclass(frozen=True)
class PageFault:
    """A fault to resolve: `flags` says MISSING (none), WP, WRITE, MINOR; `ptid` needs THREAD_ID."""

    address: int
    flags: PageFaultFlag
    ptid: int

    @property
    def is_wp(self) -> bool:
        return bool(self.flags & PageFaultFlag.WP)

    @property
    def is_write(self) -> bool:
        return bool(self.flags & PageFaultFlag.WRITE)


@dataclass(frozen=True)
class Fork:
    """EVENT_FORK: `ufd` is a new userfaultfd, installed in this process, for the child's mm."""

    ufd: int


@dataclass(frozen=True)
class Remap:
    """EVENT_REMAP: mremap() moved [from_addr, +length) to to_addr."""

    from_addr: int
    to_addr: int
    length: int


@dataclass(frozen=True)
class Remove:
    """EVENT_REMOVE: MADV_DONTNEED/REMOVE zapped [start, end)."""

    start: int
    end: int


@dataclass(frozen=True)
class Unmap:
    """EVENT_UNMAP: munmap() removed [start, end)."""

    start: int
    end: int


@dataclass(frozen=True)
class Unknown:
    """An event number the build headers do not name."""

    event: int


Message = Union[PageFault, Fork, Remap, Remove, Unmap, Unknown]


def decode(raw: Any) -> Message:
    """Turn one native `struct up_msg` (cffi cdata: no static type) into its dataclass."""
    event = raw.event
    if event == Event.PAGEFAULT:
        return PageFault(raw.address, PageFaultFlag(raw.flags), raw.ptid)
    if event == Event.FORK:
        return Fork(raw.ufd)
    if event == Event.REMAP:
        return Remap(raw.address, raw.arg2, raw.arg3)
    if event == Event.REMOVE:
        return Remove(raw.address, raw.arg2)
    if event == Event.UNMAP:
        return Unmap(raw.address, raw.arg2)
    return Unknown(event)


def as_data(msg: Message) -> Dict[str, Any]:
    """A message as JSON-ready data: the event's name, addresses as hex strings, flags as names."""
    from dataclasses import fields
    from .flags import names

    out: Dict[str, Any] = {
        "event": {PageFault: "pagefault", Fork: "fork", Remap: "remap", Remove: "remove", Unmap: "unmap"}.get(
            type(msg), "unknown"
        )
    }
    for f in fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, PageFaultFlag):
            out[f.name] = names(value)
        elif f.name in ("address", "from_addr", "to_addr", "start", "end", "length"):
            out[f.name] = hex(value)
        else:
            out[f.name] = int(value)
    return out
