# SPDX-License-Identifier: GPL-2.0-only
"""The scenario table, in the spirit of kselftest's uffd-unit-tests: name, question, needs, memory."""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from uffdprobe.uffd.features import KernelFeatures
from uffdprobe.uffd.flags import Feature
from uffdprobe.verdicts import Outcome
from .catalogue import (
    CONTINUE_FALLOCATED,
    COPY_WP_READONLY,
    COW_LEAK,
    COW_LEAK_REVERSE,
    FOLL_FORCE_COW,
    FORCED_COW_UFFD_WP,
    FORK_MARKER_NO_EVENT,
    HUGETLB_MARKER_REPROTECT,
    HUGETLB_PRIVATE_COW_WP,
    HUGETLB_UNSHARE_WP,
    HUGETLB_WP_NO_PGTABLE,
    MOVE_LARGE_FOLIO,
    MOVE_PMD_MIGRATION,
    MOVE_SWAPCACHE,
    MREMAP_WP_STALE,
    PAGEMAP_SCAN_HUGETLB_HOLE,
    PAGEMAP_SCAN_PMD_HOLE,
    PAGEMAP_SCAN_ZAPPED,
    RELEASE_VS_GUP,
    SHARED_WP_WRITENOTIFY,
    SWAPOFF_WP_LOOP,
    ZEROPAGE_SPLIT_WP,
)
from .defect import Defect
from .memkinds import COW_KINDS, KINDS, MEMFD_KINDS, unavailable
from .racy import SECONDS, TRIES, Race

#: The write-protect questions ask on shared memory too: a memfd page, a hugetlbfs memfd huge page.
WP_KINDS = KINDS + MEMFD_KINDS


@dataclass(frozen=True)
class Scenario:
    """One question for a kernel; `run` executes in a child process and returns an Outcome."""

    name: str
    question: str
    run: Callable[[Any], Outcome]
    needs: Tuple[str, ...] = ("uffd",)
    memory: Tuple[str, ...] = KINDS
    defaults: Dict[str, Any] = field(default_factory=dict)
    models: str = ""
    test_only: bool = False
    defect: Optional[Defect] = None  #: the catalogue entry this scenario asks about, if it asks about one
    race: Optional[Race] = None  #: a racy trigger's budget and measured hit rate (racy.repeat runs it)

    def __post_init__(self) -> None:
        if isinstance(self.race, Race) and isinstance(self.defaults, dict):  # --param tries=N / race_s=S
            self.defaults.setdefault(TRIES, self.race.tries)
            self.defaults.setdefault(SECONDS, self.race.seconds)


def why_not(need: str, kf: KernelFeatures, odirect_target: Optional[str]) -> Optional[str]:
    """The probed reason a need is unmet, or None. Needs: uffd, uffd-wp, event-fork, odirect."""
    if kf.uffd_error:
        return f"userfaultfd unavailable: {kf.uffd_error}"
    if need == "uffd-wp":
        if not kf.has(Feature.PAGEFAULT_FLAG_WP):
            return "kernel lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP (no uffd write-protect)"
        if "WRITEPROTECT" not in kf.anon_ioctls.get("WP", []):
            return "UFFDIO_REGISTER_MODE_WP on anonymous memory does not grant UFFDIO_WRITEPROTECT"
    elif need == "event-fork" and not kf.has(Feature.EVENT_FORK):
        return "kernel lacks UFFD_FEATURE_EVENT_FORK"
    elif need == "odirect" and not odirect_target:
        return "no O_DIRECT target: no scratch disk, and no directory here accepts O_DIRECT (pass --odirect-target)"
    return None


def skip_reason(s: Scenario, memory: str, kf: KernelFeatures, odirect_target: Optional[str]) -> Optional[str]:
    """Why (s, memory) cannot run on this kernel, or None."""
    for need in s.needs:
        reason = why_not(need, kf, odirect_target)
        if reason:
            return reason
    if "uffd-wp" in s.needs and memory in MEMFD_KINDS and not kf.has(Feature.WP_HUGETLBFS_SHMEM):
        return "kernel lacks UFFD_FEATURE_WP_HUGETLBFS_SHMEM (uffd-wp on shmem and hugetlbfs, v5.19)"
    return unavailable(memory)


def _table() -> Dict[str, Scenario]:
    from . import (
        copy_wp_readonly,
        cow_leak,
        cow_leak_reverse,
        foll_force_cow,
        harness_checks,
        minor_continue,
        move_defects,
        move_migration,
        move_scan,
        mremap_wp,
        pte_markers,
        release_gup,
        scan_defects,
        shared_wp,
        swapoff_wp,
        umap_evict,
        wp_cow_inherit,
        wp_gup,
        wp_real_write,
        zeropage_split_wp,
    )

    # The table keeps one compact block per scenario, to be read as a table (not formatted as calls).
    # fmt: off
    rows = [
        Scenario("wp-gup-vmsplice",
                 "Does vmsplice() of a uffd-write-protected page complete without a uffd fault, "
                 "when the splicing thread is the one that would have to answer it?",
                 wp_gup.run_vmsplice, ("uffd", "uffd-wp"), memory=WP_KINDS,
                 models="17839856fd58 forced COW on read GUP (iov_iter_get_pages, flags 0)",
                 defect=FORCED_COW_UFFD_WP),
        Scenario("wp-gup-odirect",
                 "Does an O_DIRECT pwrite() from a uffd-write-protected page (umap's eviction write) "
                 "complete without a uffd fault?",
                 wp_gup.run_odirect, ("uffd", "uffd-wp", "odirect"), memory=WP_KINDS,
                 models="umap's EvictWorkers: WRITEPROTECT, then pwrite on the O_DIRECT store",
                 defect=FORCED_COW_UFFD_WP),
        Scenario("wp-gup-process-vm-readv",
                 "Can another process read a uffd-write-protected page with process_vm_readv() "
                 "without raising a uffd fault?",
                 wp_gup.run_process_vm_readv, ("uffd", "uffd-wp"), memory=WP_KINDS,
                 models="pin_user_pages_remote() read of the remote page", defect=FORCED_COW_UFFD_WP),
        Scenario("umap-evict",
                 "Does a miniature umap + umapsort (MISSING|WP region, O_DIRECT store, evictors doing "
                 "WRITEPROTECT, pwrite from the page, MADV_DONTNEED) sort its array without a deadlock "
                 "and without losing data?",
                 umap_evict.run, ("uffd", "uffd-wp", "odirect"), memory=("anon-4k",),
                 defaults=dict(umap_evict.DEFAULTS),
                 models="LLNL umap EvictWorkers and Buffer::page_already_present(); hung on v5.8",
                 defect=FORCED_COW_UFFD_WP),
        Scenario("cow-leak",
                 "After fork(), can a child that vmsplice()d a shared page read the parent's later "
                 "write through the pipe? (CVE-2020-29374)",
                 cow_leak.run, (), memory=COW_KINDS + MEMFD_KINDS, defaults={"selftest_shared_page": False},
                 models="Project Zero issue 2045; fixed by 17839856fd58, then by 09854ba94c6a", defect=COW_LEAK),
        Scenario("cow-leak-reverse",
                 "After the parent vmsplice()d a page before fork() and unmapped it after, can the "
                 "parent read the child's later write through its pipe?",
                 cow_leak_reverse.run, (), memory=COW_KINDS, defaults={"selftest_shared_page": False},
                 models="cow selftest 'vmsplice() before fork(), unmap in parent after fork()'; "
                        "open on every 2020 kernel, 17839856fd58 included", defect=COW_LEAK_REVERSE),
        Scenario("wp-cow-inherit",
                 "When a read-GUP of a write-protected page shared after fork() breaks COW, does the "
                 "copy stay write-protected, so a later real write still traps?",
                 wp_cow_inherit.run, ("uffd", "uffd-wp"), memory=KINDS + ("shmem",),
                 models="FOLL_BREAK_COW v3: keep the uffd-wp bit on the COWed page", defect=FORCED_COW_UFFD_WP),
        Scenario("release-vs-gup",
                 "Does close() of a userfaultfd return while another thread's GUP (MADV_POPULATE_READ) walks "
                 "its MISSING-registered range and then meets a missing page?",
                 release_gup.run, ("uffd",), memory=("anon-4k",), defaults=dict(release_gup.DEFAULTS),
                 models="Firecracker / mlockall reports: userfaultfd_release() vs faultin_page() on NOPAGE",
                 defect=RELEASE_VS_GUP),
        Scenario("wp-real-write",
                 "Control: does a CPU write to a write-protected page trap with WP|WRITE, and a CPU "
                 "read not trap?",
                 wp_real_write.run, ("uffd", "uffd-wp"), memory=WP_KINDS,
                 defaults={"selftest_unprotect_first": False}),
        Scenario("wp-shared-mprotect",
                 "Does a write-protected page of a shared memfd stay protected through mprotect(PROT_READ) "
                 "and back to PROT_READ|PROT_WRITE, so a later write still traps?",
                 shared_wp.run_mprotect, ("uffd", "uffd-wp"), memory=MEMFD_KINDS,
                 models="CodeSandbox's uffd-wp on shmem; mprotect() rebuilding the pte from vm_page_prot",
                 defect=SHARED_WP_WRITENOTIFY),
        Scenario("wp-hugetlb-private-cow",
                 "Does the first write to a never-touched, write-protected private hugetlb page raise a "
                 "uffd-wp fault?",
                 shared_wp.run_hugetlb_private_cow, ("uffd", "uffd-wp"), memory=("hugetlb",),
                 models="QEMU live snapshots of hugetlb-backed private guest RAM",
                 defect=HUGETLB_PRIVATE_COW_WP),
        Scenario("wp-hugetlb-no-pgtable",
                 "Does write-protecting a never-touched hugetlb page that has no page table yet protect "
                 "it, so the first write traps?",
                 shared_wp.run_hugetlb_no_pgtable, ("uffd", "uffd-wp"), memory=("hugetlb",),
                 models="uffd-wp of a fresh hugetlb area before it is touched (snapshots of new guest RAM)",
                 defect=HUGETLB_WP_NO_PGTABLE),
        Scenario("wp-hugetlb-unshare",
                 "When a read pin of a write-protected private hugetlb page shared after fork() unshares "
                 "it, does the copy stay write-protected, so a later real write still traps?",
                 wp_cow_inherit.run, ("uffd", "uffd-wp"), memory=("hugetlb",),
                 models="wp-cow-inherit on hugetlb: hugetlb_wp()'s unshare copy built without the uffd-wp bit",
                 defect=HUGETLB_UNSHARE_WP),
        Scenario("continue-fallocated",
                 "Does UFFDIO_CONTINUE map a shmem page that only fallocate() allocated, when a MINOR "
                 "fault names it?",
                 minor_continue.run, ("uffd",), memory=("shmem",),
                 models="postcopy on memfd guest RAM with fallocated holes (QEMU, Firecracker)",
                 defect=CONTINUE_FALLOCATED),
        Scenario("continue-foll-force-cow",
                 "Does a write-sealed shmem file stay unchanged while /proc/self/mem writes to its read-only "
                 "MAP_PRIVATE mapping race MADV_DONTNEED and UFFDIO_CONTINUE (MINOR)? (CVE-2022-2590)",
                 foll_force_cow.run, ("uffd",), memory=("shmem",), defaults=dict(foll_force_cow.DEFAULTS),
                 models="Dirty COW restricted to tmpfs/memfd: FOLL_COW trusting the dirty PTE UFFDIO_CONTINUE maps",
                 defect=FOLL_FORCE_COW,
                 race=Race(0.5, "model-foll-force-cow under TCG (2 vCPUs, loaded host): 12 hits in 13 tries; "
                                "declared lower", tries=20, seconds=20.0)),
        Scenario("pagemap-scan-written",
                 "With asynchronous uffd-wp, does PAGEMAP_SCAN clear the written state and then report "
                 "exactly the pages written since?",
                 move_scan.run_scan_written, ("uffd",), memory=WP_KINDS,
                 models="CRIU's dirty-page tracking with UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (6.7+)"),
        Scenario("pagemap-scan-zapped",
                 "Do both PAGEMAP_SCAN paths report pages written under asynchronous uffd-wp and then "
                 "zapped by MADV_DONTNEED as written (not write-protected)?",
                 move_scan.run_scan_zapped, ("uffd",), memory=("anon-4k",),
                 models="CRIU's incremental dumps with a PAGEMAP_SCAN mask richer than PAGE_IS_WRITTEN",
                 defect=PAGEMAP_SCAN_ZAPPED),
        Scenario("copy-wp-readonly",
                 "Does UFFDIO_COPY with UFFDIO_COPY_MODE_WP into a VMA that is read-only at the time keep the "
                 "page write-protected, so a write after mprotect(PROT_READ|PROT_WRITE) still traps?",
                 copy_wp_readonly.run, ("uffd", "uffd-wp"), memory=("anon-4k",),
                 defect=COPY_WP_READONLY),
        Scenario("zeropage-split-wp",
                 "When un-protecting one page of a write-protected huge zero PMD splits it, do the other "
                 "pages stay write-protected?",
                 zeropage_split_wp.run, ("uffd", "uffd-wp"), memory=("anon-thp",),
                 defect=ZEROPAGE_SPLIT_WP),
        Scenario("swapoff-wp-loop",
                 "Does swapoff finish when a uffd-write-protected page is out on that swap, and keep the "
                 "page protected when it brings it back?",
                 swapoff_wp.run, ("uffd", "uffd-wp"), memory=("anon-swap",),
                 defect=SWAPOFF_WP_LOOP),
        Scenario("mremap-wp-stale",
                 "After mremap() of a write-protected range by a uffd without EVENT_REMAP, is the moved page "
                 "free of uffd-wp, so a write to it lands once its new range is registered again?",
                 mremap_wp.run, ("uffd", "uffd-wp"),
                 defect=MREMAP_WP_STALE),
        Scenario("fork-marker-no-event",
                 "Does fork() by a process whose uffd lacks UFFD_FEATURE_EVENT_FORK, with uffd-wp markers left "
                 "in a private shmem mapping by MADV_DONTNEED, leave the child without them and the kernel quiet?",
                 pte_markers.run_fork_no_event, ("uffd", "uffd-wp"), memory=("shmem",),
                 models="a uffd-wp monitor (snapshots, CRIU) forking a helper without EVENT_FORK",
                 defect=FORK_MARKER_NO_EVENT),
        Scenario("wp-hugetlb-marker-reprotect",
                 "After an unpopulated shared hugetlb page is write-protected twice, does it still read zeros "
                 "(nothing mapped), and can its hole be punched?",
                 pte_markers.run_hugetlb_reprotect, ("uffd", "uffd-wp"), memory=("hugetlb",),
                 models="QEMU background snapshots of hugetlb guest RAM with virtio-mem unplugging (punching) it",
                 defect=HUGETLB_MARKER_REPROTECT),
        Scenario("pagemap-scan-pmd-hole",
                 "After a write-protected THP is dropped whole by MADV_DONTNEED (a PMD hole), does PAGEMAP_SCAN "
                 "report its pages written under asynchronous uffd-wp?",
                 scan_defects.run_scan_pmd_hole, ("uffd",), memory=("anon-thp",),
                 models="CRIU's incremental dumps of THP-backed memory with WP_ASYNC (6.7+)",
                 defect=PAGEMAP_SCAN_PMD_HOLE),
        # The UFFDIO_MOVE rows come after every other swap user (swapoff-wp-loop): on a kernel without
        # c50f8e6053b0 a moved swap-cached page BUGs, and the dead reader keeps that page locked, so a
        # later swapoff of the guest's swap would wait for it forever.
        Scenario("move-basic",
                 "Does UFFDIO_MOVE answer a MISSING fault with a populated source page, so the reader gets "
                 "its bytes and the source is left empty?",
                 move_scan.run_move, ("uffd",), memory=COW_KINDS,
                 models="Android's userfaultfd GC compacting the heap with UFFDIO_MOVE (6.8+)"),
        Scenario("move-swapcache",
                 "Does UFFDIO_MOVE of a swapped-out page whose copy sits in the swap cache (read back by "
                 "MADV_WILLNEED, not mapped) hand the page over, so a read at the destination gets its bytes?",
                 move_defects.run_move_swapcache, ("uffd",), memory=("anon-swap",),
                 models="Android's userfaultfd GC compacting a heap whose pages were swapped out and read ahead",
                 defect=MOVE_SWAPCACHE),
        Scenario("move-large-folio",
                 "Does UFFDIO_MOVE of one page of a THP whose first page sits in a pipe (a reference that stays) "
                 "return, instead of retrying the split it cannot make for ever?",
                 move_defects.run_move_large_folio, ("uffd",), memory=("anon-thp",),
                 defaults=dict(move_defects.LARGE_FOLIO_DEFAULTS),
                 models="Android's userfaultfd GC moving heap pages out of a THP while a page of it is held "
                        "(vmsplice, an io_uring fixed buffer)",
                 defect=MOVE_LARGE_FOLIO),
        # Last of the public rows: on a kernel without e92d92bbafb2 its thread waits for itself in an
        # unkillable sleep, and a guest's hung-task detector panics the boot 90 s later if the run goes on.
        Scenario("pagemap-scan-hugetlb-hole",
                 "Does PAGEMAP_SCAN with PM_SCAN_WP_MATCHING over a hugetlb range registered for asynchronous "
                 "uffd-wp, with no page table yet, return and leave the range write-protected?",
                 scan_defects.run_scan_hugetlb_hole, ("uffd",), memory=("hugetlb",),
                 models="CRIU-style dirty tracking of hugetlb-backed memory with WP_ASYNC (6.7+)",
                 defect=PAGEMAP_SCAN_HUGETLB_HOLE),
        # After it: where the crash is reachable, the oops leaves the THP's PMD lock held, and the
        # migration waiting for it spins until the soft-lockup watchdog panics the guest.
        Scenario("move-pmd-migration",
                 "Does UFFDIO_MOVE of one page of a THP whose PMD is a migration entry (move_pages(2) moving "
                 "the THP to another NUMA node) wait for the migration, instead of reading a page that is not there?",
                 move_migration.run_move_pmd_migration, ("uffd",), memory=("anon-thp",),
                 models="Android's userfaultfd GC moving heap pages while NUMA balancing or compaction "
                        "migrates the THP under them",
                 race=Race(0.5, "model-move-pmd-migration, TCG, 2 vCPUs: the entry met on try 1 in 2 runs, by try 2 in a third",
                           tries=20, seconds=120.0),
                 defect=MOVE_PMD_MIGRATION),
        Scenario("selftest-self-deadlock",
                 "Harness self-test: the only uffd reader writes to its own write-protected page; "
                 "this hangs on every kernel and must come out HANG, rescued.",
                 wp_real_write.run_self_deadlock, ("uffd", "uffd-wp"), memory=("anon-4k",),
                 defaults={"selftest_helper_write_runs": []}, test_only=True),
        Scenario("selftest-kernel-spin",
                 "Harness self-test: the watched call keeps its task busy in the kernel, no uffd "
                 "involved; it must come out HANG (never returns) and be killed.",
                 harness_checks.run_kernel_spin, ("uffd",), memory=("anon-4k",),
                 defaults={"spin_for_s": 120.0}, test_only=True),
        Scenario("selftest-close-channel",
                 "Harness self-test, VM only: the guest loses its results channel mid-run; the host "
                 "must keep the verdicts that arrived and report the channel lost (exit 14).",
                 harness_checks.run_close_channel, (), memory=("anon-4k",), test_only=True),
    ]
    # fmt: on
    return {s.name: s for s in rows}


SCENARIOS: Dict[str, Scenario] = _table()


def select(names, include_test_only: bool = False):
    """Scenarios by name in table order (all public ones when `names` is empty); unknown names raise KeyError,
    whose message names each with the closest public name if one is close ('cow-lek (did you mean cow-leak?)')."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        import difflib  # only for a mistyped name: every run imports this module, the guest's too

        public = [s.name for s in SCENARIOS.values() if not s.test_only]
        raise KeyError(
            ", ".join(
                n + "".join(f" (did you mean {m}?)" for m in difflib.get_close_matches(n, public, 1)) for n in unknown
            )
        )
    if names:
        return [SCENARIOS[n] for n in names]
    return [s for s in SCENARIOS.values() if include_test_only or not s.test_only]
