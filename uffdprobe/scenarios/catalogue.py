# SPDX-License-Identifier: GPL-2.0-only
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
    fixes=(
        Commit("09854ba94c6a", "mm: do_wp_page() simplification"),
        Commit("a308c71bf1e6", "mm/gup: Remove enfornced COW mechanism"),
    ),
    introduced=(Commit("17839856fd58", 'gup: document and work around "COW can break either way" issue'),),
    first_affected="v5.8-rc1",
    first_fixed="v5.9-rc4",
    stable=(),
)

COW_LEAK = Defect(
    id="cow-leak",
    fixes=(Commit("17839856fd58", 'gup: document and work around "COW can break either way" issue'),),
    first_fixed="v5.8-rc1",
    stable=("5.7.3",),
    cve="CVE-2020-29374",
    memory=("anon-4k", "anon-thp", "anon-swap"),
)  # a private hugetlb page still leaks on 6.18: not this fix

COW_LEAK_REVERSE = Defect(
    id="cow-leak-reverse",
    fixes=(
        Commit("6c287605fd56", "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive"),
        Commit("c89357e27f20", "mm: support GUP-triggered unsharing of anonymous pages"),
        Commit("a7f226604170", "mm/gup: trigger FAULT_FLAG_UNSHARE when R/O-pinning a possibly shared anonymous page"),
    ),
    first_fixed="v5.19-rc1",
    stable=(),
)

RELEASE_VS_GUP = Defect(
    id="release-vs-gup",
    fixes=(Commit("fe4cdc2c4e24", "mm/userfaultfd: fix release hang over concurrent GUP"),),
    introduced=(Commit("656710a60e36", "userfaultfd: non-cooperative: closing the uffd without triggering SIGBUS"),),
    first_affected="v4.14-rc1",
    first_fixed="v6.15-rc1",
    stable=("6.12.25",),
)


COPY_WP_READONLY = Defect(
    id="copy-wp-readonly",
    fixes=(Commit("0e88904cb700", "userfaultfd: mark uffd_wp regardless of VM_WRITE flag"),),
    introduced=(Commit("292924b26024", "userfaultfd: wp: apply _PAGE_UFFD_WP bit"),),
    first_affected="v5.7",
    first_fixed="v5.18-rc4",
)

MREMAP_WP_STALE = Defect(
    id="mremap-wp-stale",
    fixes=(Commit("0cef0bb836e3", "mm: clear uffd-wp PTE/PMD state on mremap()"),),
    introduced=(Commit("63b2d4174c4a", "userfaultfd: wp: add the writeprotect API to userfaultfd ioctl"),),
    first_affected="v5.7",
    first_fixed="v6.14-rc1",
    stable=("6.12.11", "6.1.191"),
    cve="CVE-2025-21696",
)

SWAPOFF_WP_LOOP = Defect(
    id="swapoff-wp-loop",
    fixes=(Commit("099dd6878b9b", "mm/swap: fix pte_same_as_swp() not removing uffd-wp bit when compare"),),
    introduced=(Commit("f45ec5ff16a7", "userfaultfd: wp: support swap and page migration"),),
    first_affected="v5.7",
    first_fixed="v5.13-rc7",
    stable=("5.10.46",),
)

ZEROPAGE_SPLIT_WP = Defect(
    id="zeropage-split-wp",
    fixes=(Commit("42b2af2c9b7e", "mm/userfaultfd: propagate uffd-wp bit when PTE-mapping the huge zeropage"),),
    introduced=(Commit("e06f1e1dd499", "userfaultfd: wp: enabled write protection in userfaultfd API"),),
    first_affected="v5.7",
    first_fixed="v6.3-rc2",
    stable=("6.1.21", "5.15.104"),
)


CONTINUE_FALLOCATED = Defect(
    id="continue-fallocated-shmem",
    fixes=(Commit("73f37dbcfe17", "mm: userfaultfd: fix UFFDIO_CONTINUE on fallocated shmem pages"),),
    introduced=(Commit("153132571f02", "userfaultfd/shmem: support UFFDIO_CONTINUE for shmem"),),
    first_affected="v5.14",
    first_fixed="v5.19",
    stable=("5.18.14",),
)

# CVE-2022-2590. The fix's id and title and the CVE: LTP's dirtyc0w_shmem regression test tags
# 5535be3099717646781ce1540cf725965d680e7b with CVE-2022-2590. The cause: the fix's message and the
# reporter's oss-security mail (David Hildenbrand, 2022) name 9ae0f87d009c ("mm/shmem: unconditionally set pte
# dirty in mfill_atomic_install_pte", also read in a list of -mm commits), say Linux >= v5.16 is affected on
# x86-64 and aarch64 with CONFIG_USERFAULTFD=y, and that a memfd sealed F_SEAL_WRITE is modified as well.
# No stable release is named: none was read (the mail advises reverting 9ae0f87d009c below v5.19;
# whether 5.19.y took 5535be309971 was not checked). 5.15 and older never map the PTE dirty.
# Model: model-foll-force-cow, 5535be309971 reverted on 6.1.192 (what differs from 5.16-5.19: its recipe).
FOLL_FORCE_COW = Defect(
    id="foll-force-cow-shmem",
    fixes=(Commit("5535be309971", "mm/gup: fix FOLL_FORCE COW security issue and remove FOLL_COW"),),
    introduced=(Commit("9ae0f87d009c", "mm/shmem: unconditionally set pte dirty in mfill_atomic_install_pte"),),
    first_affected="v5.16",
    first_fixed="v6.0-rc1",
    stable=(),
    cve="CVE-2022-2590",
)

PAGEMAP_SCAN_ZAPPED = Defect(
    id="pagemap-scan-unpopulated-written",
    fixes=(Commit("07b4377bdbe7", "fs/proc/task_mmu: fix PAGEMAP_SCAN written state for unpopulated ptes"),),
    introduced=(Commit("12f6b01a0bcb", "fs/proc/task_mmu: add fast paths to get/clear PAGE_IS_WRITTEN flag"),),
    first_affected="v6.7",
    first_fixed="v7.2",
    stable=("6.12.103",),
)

SHARED_WP_WRITENOTIFY = Defect(
    id="uffd-wp-shared-writenotify",
    fixes=(Commit("51d3d5eb74ff", "mm/userfaultfd: enable writenotify while userfaultfd-wp is enabled for a VMA"),),
    introduced=(Commit("b1f9e876862d", "mm/uffd: enable write protection for shmem & hugetlbfs"),),
    first_affected="v5.19",
    first_fixed="v6.2",
    stable=("6.1.8",),
)

HUGETLB_WP_NO_PGTABLE = Defect(
    id="hugetlb-wp-no-pgtable",
    fixes=(Commit("fed15f1345dc", "mm/hugetlb: pre-allocate pgtable pages for uffd wr-protects"),),
    introduced=(Commit("60dfaad65aa9", "mm/hugetlb: allow uffd wr-protect none ptes"),),
    first_affected="v5.19",
    first_fixed="v6.2",
    stable=("6.1.8",),
)

HUGETLB_PRIVATE_COW_WP = Defect(
    id="hugetlb-private-cow-wp",
    fixes=(Commit("60d5b473d61b", "mm/hugetlb: fix uffd wr-protection for CoW optimization path"),),
    introduced=(Commit("166f3ecc0daf", "mm/hugetlb: hook page faults for uffd write protection"),),
    first_affected="v5.19",
    first_fixed="v6.3",
    stable=("6.1.24",),
)

HUGETLB_UNSHARE_WP = Defect(
    id="hugetlb-unshare-wp-lost",
    fixes=(Commit("0f230bc24b6e", "mm/hugetlb: fix uffd-wp bit lost when unsharing happens"),),
    introduced=(Commit("166f3ecc0daf", "mm/hugetlb: hook page faults for uffd write protection"),),
    first_affected="v5.19",
    first_fixed="v6.4",
)


HUGETLB_MARKER_REPROTECT = Defect(
    id="hugetlb-marker-reprotect",
    fixes=(Commit("0e678153f5be", "mm/hugetlb: fix PTE marker handling in hugetlb_change_protection()"),),
    introduced=(Commit("60dfaad65aa9", "mm/hugetlb: allow uffd wr-protect none ptes"),),
    first_affected="v5.19",
    first_fixed="v6.2-rc5",
    stable=("6.1.8",),
    cve="CVE-2022-49760",
)

FORK_MARKER_NO_EVENT = Defect(
    id="fork-marker-no-event",
    fixes=(Commit("49d6d7fb6313", "mm/uffd: fix pte marker when fork() without fork event"),),
    introduced=(Commit("c56d1b62cce8", "mm/shmem: handle uffd-wp during fork()"),),
    first_affected="v5.19",
    first_fixed="v6.2",
    stable=("6.1.11",),
)


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


MOVE_SWAPCACHE = Defect(
    id="move-swapcache-bug",
    fixes=(Commit("c50f8e6053b0", "mm: fix kernel BUG when userfaultfd_move encounters swapcache"),),
    introduced=(Commit("adef440691ba", "userfaultfd: UFFDIO_MOVE uABI"),),
    first_affected="v6.8",
    first_fixed="v6.14",
    stable=("6.12.20",),
    memory=("anon-swap",),
)

PAGEMAP_SCAN_HUGETLB_HOLE = Defect(
    id="pagemap-scan-hugetlb-self-deadlock",
    fixes=(Commit("e92d92bbafb2", "fs/proc/task_mmu: fix hugetlb self-deadlock in pagemap_scan_pte_hole()"),),
    introduced=(
        Commit("52526ca7fdb9", "fs/proc/task_mmu: implement IOCTL to get and optionally clear info about PTEs"),
    ),
    first_affected="v6.7",
    first_fixed="v7.2-rc1",
    stable=("6.12.97",),
)

PAGEMAP_SCAN_PMD_HOLE = Defect(
    id="pagemap-scan-pmd-hole-written",
    fixes=(Commit("40de8160ca7f", "fs/proc/task_mmu: fix PAGEMAP_SCAN written state for PMD holes"),),
    introduced=(Commit("2bad466cc9d9", "mm/uffd: UFFD_FEATURE_WP_UNPOPULATED"),),
    first_affected="v6.7",
    first_fixed="v7.2",
    stable=("6.12.103",),
)

# The id and title of 454143aeb4c6 were read on a git web page of the commit (committed to the mm tree
# 2026-10-24), the stable release in Debian's 6.12 changelog (6.12.118). Not verified: the mainline tag
# (the merge window after that date, by the calendar) and the commit it fixes (its Fixes: tag was not
# read; the retry on -EAGAIN and the split it meets are both UFFDIO_MOVE's own, adef440691ba).
MOVE_LARGE_FOLIO = Defect(
    id="move-large-folio-livelock",
    fixes=(Commit("454143aeb4c6", "userfaultfd: fix UFFDIO_MOVE livelock on large folio with extra references"),),
    introduced=(Commit("adef440691ba", "userfaultfd: UFFDIO_MOVE uABI"),),
    first_affected="v6.8",
    first_fixed="v7.4-rc (unverified)",
    stable=("6.12.118",),
    memory=("anon-thp",),
)

# Read in the 6.15 stable-review mail of the fix (Greg KH, 2025-08-18): "commit aba6faec0103ed8f... upstream",
# its Fixes: tag (adef440691ba) and its syzbot report; the fix is in the -mm pull "hotfixes for 6.17-rc2"
# (Andrew Morton, 2025-08-12), so v6.17-rc2 by that pull, the tag itself not read. The 6.12 stable release
# (6.12.43) is Debian's changelog's; its backport mail was not read, but the extracted 6.12.118
# mm/userfaultfd.c carries the same pmd_present() guard the 6.15 diff adds. Measured: on x86-64 6.12 the
# crash is not reachable, fix or no fix: move_pages() tests pmd_devmap() first, which a migration entry
# passes (its inverted offset sets bit 57), and refuses with ENOENT. Mainline dropped that test with the
# devmap bit (Alistair Popple's 2025 series, read as its v2 on mm-unstable; the release not read); the model
# takes it out too, and oopses in move_pages() on its first try, then panics (soft lockup): crashes_in.
MOVE_PMD_MIGRATION = Defect(
    id="move-pmd-migration-crash",
    fixes=(Commit("aba6faec0103", "userfaultfd: fix a crash in UFFDIO_MOVE when PMD is a migration entry"),),
    introduced=(Commit("adef440691ba", "userfaultfd: UFFDIO_MOVE uABI"),),
    first_affected="v6.8",
    first_fixed="v6.17-rc2",
    stable=("6.12.43",),
    memory=("anon-thp",),
    crashes_in=("move_pages",),  # mm/userfaultfd.c's, not the move_pages(2) system call's frames
)
