# SPDX-License-Identifier: GPL-2.0-only
"""What the defect catalogue knows about a scenario: the upstream fix, where the defect came from and which
releases carry the fix (shared/docs/uffd-defects.md). A scenario with a Defect answers "does this kernel
carry it?": a kernel-problem verdict means PRESENT (so does a panic in one of the functions it `crashes_in`),
PASS means ABSENT, SKIP means the kernel cannot be asked."""

from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class Commit:
    """One upstream commit: its 12-hex id and its subject line."""

    id: str
    title: str


@dataclass(frozen=True)
class Defect:
    """A known defect and its fix; `fixes` are the commits to backport, in the order they apply."""

    id: str  #: short catalogue id, e.g. "release-vs-gup"
    fixes: Tuple[Commit, ...]  #: the upstream fix commit(s)
    introduced: Tuple[Commit, ...] = ()  #: the commit(s) that introduced it, where known
    first_affected: str = ""  #: first mainline release that has it, e.g. "v5.7"
    first_fixed: str = ""  #: first mainline release with the fix, e.g. "v6.15-rc1"
    stable: Tuple[str, ...] = ()  #: stable releases known to carry the fix, e.g. ("6.12.25",)
    cve: str = ""  #: CVE id, where there is one
    #: The memory kinds it is about; empty: every kind its scenarios run on. A scenario may ask on more
    #: kinds than its defect covers (cow-leak on hugetlb is another, unfixed leak, not CVE-2020-29374).
    memory: Tuple[str, ...] = ()
    #: Kernel functions a crash of this defect names (e.g. "move_pages"): a guest that panics while the
    #: defect's scenario runs, with one of them as a frame of the panic's report, carries the defect. A
    #: defect whose crash can take the guest down says where; any other panic is no answer.
    crashes_in: Tuple[str, ...] = ()
