"""The defect catalogue's entries: each known defect a scenario asks about, with its fix and history.

Ids and titles were read in the stable-review / -mm mails or the merge shortlogs (shared/docs/uffd-defects.md,
kernel-history.md); versions are mainline tags, stable versions those known to carry the fix (a Debian
changelog or a stable-review mail). Several scenarios may ask about one defect (the forced COW shows
through vmsplice, O_DIRECT, process_vm_readv, umap and a COW break): they share its entry.
"""
from typing import Dict, List, Tuple

from .defect import Commit, Defect

FORCED_COW_UFFD_WP = Defect(
    id="forced-cow-uffd-wp",
    fixes=(Commit("09854ba94c6a", "mm: do_wp_page() simplification"),
           Commit("a308c71bf1e6", "mm/gup: Remove enfornced COW mechanism")),
    introduced=(Commit("17839856fd58", 'gup: document and work around "COW can break either way" issue'),),
    first_affected="v5.8-rc1", first_fixed="v5.9-rc4", stable=())

COW_LEAK = Defect(
    id="cow-leak",
    fixes=(Commit("17839856fd58", 'gup: document and work around "COW can break either way" issue'),),
    first_fixed="v5.8-rc1", stable=("5.7.3",), cve="CVE-2020-29374")

COW_LEAK_REVERSE = Defect(
    id="cow-leak-reverse",
    fixes=(Commit("6c287605fd56", "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive"),
           Commit("c89357e27f20", "mm: support GUP-triggered unsharing of anonymous pages"),
           Commit("a7f226604170", "mm/gup: trigger FAULT_FLAG_UNSHARE when R/O-pinning a possibly shared "
                                  "anonymous page")),
    first_fixed="v5.19-rc1", stable=())

RELEASE_VS_GUP = Defect(
    id="release-vs-gup",
    fixes=(Commit("fe4cdc2c4e24", "mm/userfaultfd: fix release hang over concurrent GUP"),),
    introduced=(Commit("656710a60e36", "userfaultfd: non-cooperative: closing the uffd without triggering "
                                       "SIGBUS"),),
    first_affected="v4.14-rc1", first_fixed="v6.15-rc1", stable=("6.12.25",))


def describe_fix(defect: Defect) -> str:
    """One line: the commits to backport (id and title), the first fixed release, stable releases."""
    commits = " + ".join(f'{c.id} ("{c.title}")' for c in defect.fixes)
    where = f"mainline {defect.first_fixed}" if defect.first_fixed else "mainline"
    if defect.stable:
        where += ", stable " + ", ".join(defect.stable)
    return f"{commits}; {where}"


def by_defect(scenarios) -> List[Tuple[Defect, list]]:
    """(defect, [its scenarios]) in table order, for the scenarios that carry a defect."""
    out: Dict[str, Tuple[Defect, list]] = {}
    for s in scenarios:
        if s.defect is not None:
            out.setdefault(s.defect.id, (s.defect, []))[1].append(s)
    return list(out.values())
