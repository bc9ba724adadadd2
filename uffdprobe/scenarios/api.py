# SPDX-License-Identifier: GPL-2.0-only
"""What a user's own scenario file or package imports: the stable public names (docs/user-guide.md, "Your
own scenarios"). Everything here keeps its name and meaning across releases; what is not here may move.

    from uffdprobe.scenarios.api import Outcome, Scenario, ScenarioContext, Verdict, watched

A racy trigger (one that hits only in some tries) gives its row race=Race(p_hit, measured_on, tries,
seconds) and its run calls repeat(ctx, trigger): tries until a hit, an Answered try (the race reached and
the kernel right: PASS) or the budget, reporting either the try that ended the run or the tries made and
the miss probability they leave.

A file given to --scenarios-from (or a module named in the entry point group `uffdprobe.scenarios`)
defines SCENARIOS, a list of Scenario rows; each row's run(ctx) executes in its own supervised child
and returns an Outcome.
"""

from uffdprobe.uffd import memory, pagemap
from uffdprobe.uffd.errors import UffdError
from uffdprobe.uffd.flags import Feature, PageFaultFlag, RegisterMode
from uffdprobe.uffd.memory import PAGE_SIZE, Mapping, gettid, mmap_anonymous
from uffdprobe.uffd.messages import PageFault, as_data
from uffdprobe.uffd.userfaultfd import Userfaultfd
from uffdprobe.verdicts import Outcome, Verdict
from .common import Bounded, read_exactly, reap
from .context import ScenarioContext, watched
from .memkinds import KINDS, SkipScenario, allocate, thp_size
from .racy import Answered, Race, miss_probability, repeat, tries_needed
from .registry import Scenario
from .sources import ENTRY_POINT_GROUP, KNOWN_NEEDS

__all__ = [
    "Scenario",
    "ScenarioContext",
    "Outcome",
    "Verdict",
    "SkipScenario",
    "watched",
    "KINDS",
    "allocate",
    "thp_size",
    "KNOWN_NEEDS",
    "ENTRY_POINT_GROUP",
    "Userfaultfd",
    "UffdError",
    "Feature",
    "RegisterMode",
    "PageFault",
    "PageFaultFlag",
    "as_data",
    "memory",
    "pagemap",
    "Mapping",
    "PAGE_SIZE",
    "mmap_anonymous",
    "gettid",
    "Bounded",
    "read_exactly",
    "reap",
    "Race",
    "Answered",
    "repeat",
    "miss_probability",
    "tries_needed",
]
