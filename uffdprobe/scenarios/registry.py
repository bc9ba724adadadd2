"""The scenario table, in the spirit of kselftest's uffd-unit-tests: name, question, needs, memory."""
import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from uffdprobe.uffd.features import KernelFeatures
from uffdprobe.uffd.flags import Feature
from uffdprobe.verdicts import Outcome
from .catalogue import COW_LEAK, COW_LEAK_REVERSE, FORCED_COW_UFFD_WP, RELEASE_VS_GUP
from .defect import Defect
from .memkinds import COW_KINDS, KINDS, unavailable
from .racy import SECONDS, TRIES, Race


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
    defect: Optional[Defect] = None   #: the catalogue entry this scenario asks about, if it asks about one
    race: Optional[Race] = None       #: a racy trigger's budget and measured hit rate (racy.repeat runs it)

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
    return unavailable(memory)


def _table() -> Dict[str, Scenario]:
    from . import (cow_leak, cow_leak_reverse, release_gup, selftest, umap_evict, wp_cow_inherit, wp_gup,
                   wp_real_write)
    rows = [
        Scenario("wp-gup-vmsplice",
                 "Does vmsplice() of a uffd-write-protected page complete without a uffd fault, "
                 "when the splicing thread is the one that would have to answer it?",
                 wp_gup.run_vmsplice, ("uffd", "uffd-wp"),
                 models="17839856fd58 forced COW on read GUP (iov_iter_get_pages, flags 0)",
                 defect=FORCED_COW_UFFD_WP),
        Scenario("wp-gup-odirect",
                 "Does an O_DIRECT pwrite() from a uffd-write-protected page (umap's eviction write) "
                 "complete without a uffd fault?",
                 wp_gup.run_odirect, ("uffd", "uffd-wp", "odirect"),
                 models="umap's EvictWorkers: WRITEPROTECT, then pwrite on the O_DIRECT store",
                 defect=FORCED_COW_UFFD_WP),
        Scenario("wp-gup-process-vm-readv",
                 "Can another process read a uffd-write-protected page with process_vm_readv() "
                 "without raising a uffd fault?",
                 wp_gup.run_process_vm_readv, ("uffd", "uffd-wp"),
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
                 cow_leak.run, (), memory=COW_KINDS, defaults={"selftest_shared_page": False},
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
                 wp_cow_inherit.run, ("uffd", "uffd-wp"),
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
                 wp_real_write.run, ("uffd", "uffd-wp"), defaults={"selftest_unprotect_first": False}),
        Scenario("selftest-self-deadlock",
                 "Harness self-test: the only uffd reader writes to its own write-protected page; "
                 "this hangs on every kernel and must come out HANG, rescued.",
                 wp_real_write.run_self_deadlock, ("uffd", "uffd-wp"), memory=("anon-4k",),
                 defaults={"selftest_helper_write_runs": []}, test_only=True),
        Scenario("selftest-kernel-spin",
                 "Harness self-test: the watched call keeps its task busy in the kernel, no uffd "
                 "involved; it must come out HANG (never returns) and be killed.",
                 selftest.run_kernel_spin, ("uffd",), memory=("anon-4k",),
                 defaults={"spin_for_s": 120.0}, test_only=True),
        Scenario("selftest-close-channel",
                 "Harness self-test, VM only: the guest loses its results channel mid-run; the host "
                 "must keep the verdicts that arrived and report the channel lost (exit 14).",
                 selftest.run_close_channel, (), memory=("anon-4k",), test_only=True),
    ]
    return {s.name: s for s in rows}


SCENARIOS: Dict[str, Scenario] = _table()


def select(names, include_test_only: bool = False):
    """Scenarios by name in table order (all public ones when `names` is empty); unknown names raise KeyError,
    whose message names each with the closest public name if one is close ('cow-lek (did you mean cow-leak?)')."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        public = [s.name for s in SCENARIOS.values() if not s.test_only]
        raise KeyError(", ".join(n + "".join(f" (did you mean {m}?)" for m in difflib.get_close_matches(n, public, 1))
                                 for n in unknown))
    if names:
        return [SCENARIOS[n] for n in names]
    return [s for s in SCENARIOS.values() if include_test_only or not s.test_only]
