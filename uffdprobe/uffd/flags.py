# SPDX-License-Identifier: GPL-2.0-only
"""Flag enums built from the header constants: features, ioctls, modes, events, fault flags."""

import enum
from typing import Dict, List

from ._ffi import absent, constants


def _flag(name: str, group: str, prefix: str, shift: bool = False) -> type:
    members = {
        key[len(prefix) :]: (1 << value if shift else value)
        for key, value in constants.get(group, {}).items()
        if key.startswith(prefix)
    }
    return enum.IntFlag(name, members, module=__name__)


#: UFFD_FEATURE_* as the build headers name them.
Feature = _flag("Feature", "feature", "UFFD_FEATURE_")
#: The ioctls bitmask bits that UFFDIO_API and UFFDIO_REGISTER return (1 << _UFFDIO_*).
Ioctl = _flag("Ioctl", "ioctl", "_UFFDIO_", shift=True)
#: UFFDIO_REGISTER_MODE_* (MISSING, WP, MINOR): what a range is registered for.
RegisterMode = _flag("RegisterMode", "register", "UFFDIO_REGISTER_MODE_")
#: UFFD_PAGEFAULT_FLAG_* (WRITE, WP, MINOR) of a pagefault message.
PageFaultFlag = _flag("PageFaultFlag", "pagefault", "UFFD_PAGEFAULT_FLAG_")
Event = enum.IntEnum("Event", {k[len("UFFD_EVENT_") :]: v for k, v in constants["event"].items()}, module=__name__)

#: Mode bits per ioctl; a name missing here is absent from the build headers.
COPY_MODE = constants["copy"]
ZEROPAGE_MODE = constants["zeropage"]
WRITEPROTECT_MODE = constants["writeprotect"]
CONTINUE_MODE = constants.get("continue", {})
MOVE_MODE = constants.get("move", {})
POISON_MODE = constants.get("poison", {})
OPEN_FLAGS = constants["open"]
UFFD_API = constants["api"]["UFFD_API"]


def names(flags: enum.IntFlag) -> list:
    """Member names set in `flags`, then any bit the headers cannot name as 'bit N'."""
    out, rest = [], int(flags)
    for member in type(flags):
        if member.value and int(flags) & member.value == member.value:
            out.append(member.name)
            rest &= ~member.value
    out += [f"bit {b} (unnamed in build headers)" for b in range(64) if rest >> b & 1]
    return out


def absent_from_headers() -> Dict[str, List[str]]:
    """Constants the build headers lack, by group (MOVE, POISON, ... on a 6.1 header)."""
    return dict(absent)
