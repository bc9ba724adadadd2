# SPDX-License-Identifier: GPL-2.0-only
"""pytest plugin: `--uffd-kernel K` (repeatable, default host), one boot per kernel, verdicts as test outcomes.

Every option is prefixed `--uffd-` (a kernel test suite may well have its own `--kernel`), and a session
whose tests use neither `uffd_kernel` nor `uffd_verdict` sees nothing of it: no fixture, no hook output.

    @pytest.mark.uffd_scenario("wp-gup-odirect")
    @pytest.mark.needs("uffd-wp", "odirect")
    def test_eviction_write(uffd_verdict):
        uffd_verdict.check()     # pass, fail, or xfail(strict) when the recipe declares HANG/LEAK/WP_LOST
"""
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import pytest

if TYPE_CHECKING:
    from uffdprobe.results.matrix import Cell
    from uffdprobe.verdicts import Result

#: What a test's fixtures and marker give it (the hooks are pytest's, found by their names).
__all__ = ["uffd_kernel", "uffd_verdict", "Kernel", "UffdVerdict", "DeclaredProblem", "NEEDS"]

#: The words `@pytest.mark.needs(...)` takes; a test is skipped on a kernel that lacks one.
NEEDS = ("root", "uffd-wp", "thp", "odirect")


class DeclaredProblem(AssertionError):
    """The kernel did what its recipe declares it does wrong: the test is an expected failure."""


def pytest_addoption(parser) -> None:
    group = parser.getgroup("uffdprobe", "uffdprobe: userfaultfd scenarios on real kernels")
    group.addoption("--uffd-kernel", action="append", dest="uffd_kernels", metavar="K",
                    help="run uffd scenarios on K (repeatable): 'host', a recipe name or .toml path, a "
                         "bzImage/vmlinuz or a .deb, optionally LABEL=K; default host")
    group.addoption("--uffd-runs", type=int, default=1, metavar="N", help="repeat each scenario N times per boot")
    group.addoption("--uffd-expect", action="append", default=[], metavar="[KERNEL:]SCENARIO[/MEMORY]=VERDICT",
                    help="declare an expected verdict (overrides the recipe's)")
    group.addoption("--uffd-param", action="append", default=[], metavar="KEY=VALUE",
                    help="scenario parameter for every kernel's run (as `uffdprobe run --param`)")
    group.addoption("--uffd-vm-timeout", type=float, default=900.0, metavar="S",
                    help="limit for each kernel's boot and scenarios (default 900)")
    group.addoption("--uffd-scenarios-from", action="append", default=[], dest="uffd_scenarios_from",
                    metavar="FILE.py", help="repeatable: your own scenarios (a file defining SCENARIOS, as "
                    "`uffdprobe run --scenarios-from`); the entry point group uffdprobe.scenarios adds "
                    "installed ones")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "uffd_scenario(name, memory='anon-4k'): the scenario uffd_verdict checks")
    config.addinivalue_line("markers", "needs(*what): skip unless the kernel has each of "
                            + ", ".join(NEEDS))
    config.stash[_SESSION] = _Session(config)
    config.pluginmanager.register(_JUnitEvidence(config), "uffdprobe-junit-evidence")


def pytest_generate_tests(metafunc) -> None:
    if "uffd_kernel" in metafunc.fixturenames:
        labels = metafunc.config.stash[_SESSION].labels
        metafunc.parametrize("_uffd_booted", labels, ids=[_id(k) for k in labels], indirect=True, scope="session")


def pytest_collection_modifyitems(session, config, items) -> None:
    state = config.stash[_SESSION]
    for item in items:
        for mark in item.iter_markers("uffd_scenario"):
            if mark.args and mark.args[0] not in state.scenarios:
                state.scenarios.append(mark.args[0])
    if any("uffd_kernel" in getattr(item, "fixturenames", ()) for item in items):
        state.prepare()  # bad --kernel, --uffd-expect or --uffd-param: a usage error before any boot


def _skip_unless_needs_met(node, kernel: "Kernel") -> None:
    """Skip a test marked needs(...) on a kernel that lacks one of them (probed on that kernel)."""
    needs = [n for m in node.iter_markers("needs") for n in m.args]
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        pytest.fail(f"unknown need(s) {unknown}; use {', '.join(NEEDS)}", pytrace=False)
    for need in needs:
        missing = kernel.lacks(need)
        if missing:
            pytest.skip(f"{kernel.label}: {missing}")


class Kernel:
    """One kernel's results for the session: label, identity, expectations, a Cell per scenario/memory."""

    def __init__(self, run, wanted: List[str], host: bool = False):
        from uffdprobe.results.matrix import Matrix
        self.run, self.label, self.wanted, self.host = run, run.label, wanted, host
        self.matrix = Matrix([run])

    @property
    def identity(self) -> dict:
        return self.run.identity

    def cell(self, scenario: str, memory: str = "anon-4k") -> "Cell":
        """Every run of scenario × memory on this kernel, with the declared expectation."""
        if scenario not in self.wanted:
            pytest.fail(f"scenario {scenario!r} was not run on {self.label}: mark the test "
                        f"@pytest.mark.uffd_scenario({scenario!r})", pytrace=False)
        found = self.matrix.cell(self.run, scenario, memory)
        if found is None:
            pytest.fail(f"{self.label}: no result for {scenario}({memory}); `uffdprobe list --all` shows "
                        "each scenario's memory kinds", pytrace=False)
        return found

    def lacks(self, need: str) -> Optional[str]:
        """Why this kernel lacks a need (from its own probes: the host's, or the guest's SKIP verdicts)."""
        if self.host:
            return _host_lacks(need)
        if need == "root":
            return None  # the guest init runs the scenarios as root
        from uffdprobe.scenarios.registry import SCENARIOS
        relevant = [r for r in self.run.results
                    if (need == "thp" and r.memory == "anon-thp")
                    or (need != "thp" and r.scenario in SCENARIOS and need in SCENARIOS[r.scenario].needs)]
        if relevant and all(r.verdict.value == "SKIP" for r in relevant):
            return relevant[0].reason
        return None


def _host_lacks(need: str) -> Optional[str]:
    import os
    from uffdprobe.uffd import features, odirect
    from uffdprobe.scenarios.memkinds import unavailable
    from uffdprobe.scenarios.registry import why_not
    if need == "root":
        return None if os.geteuid() == 0 else "not running as root"
    if need == "thp":
        return unavailable("anon-thp")
    if need == "odirect":
        with odirect.target(None) as target:
            return why_not(need, features.probe(), target)
    return why_not(need, features.probe(), None)


class UffdVerdict:
    """What `uffd_verdict` gives a test: the cell on this kernel, and check() to turn it into an outcome."""

    def __init__(self, kernel: Kernel, cell: "Cell") -> None:
        self.kernel, self.cell = kernel, cell

    @property
    def results(self) -> List["Result"]:
        return self.cell.results

    def evidence_text(self) -> str:
        from uffdprobe.results import evidence as evidence_view
        lines = [f"{self.kernel.label} {self.cell.scenario}({self.cell.memory}): {self.cell.label}"
                 f" (declared: {self.cell.expected or 'nothing'}; mark: {str(self.cell.mark) or 'undeclared'})"]
        for r in self.cell.results:
            lines += [f"  {key}: {value}" for key, value in evidence_view.summary(r).items()]
        ident = self.kernel.identity
        lines.append(f"  kernel: {ident.get('release')} sha256={ident.get('sha256', '-')} "
                     f"console={self.kernel.run.boot.get('console_log', '-')}")
        return "\n".join(lines)

    def check(self) -> None:
        """The one rule (results.expect): PASS, SKIP or a declared-good verdict passes; a declared
        HANG/LEAK/WP_LOST that happened is an xfail(strict); anything else fails, FIXED included."""
        from uffdprobe.results.expect import FIXED, expected_failure, failing
        c = self.cell
        if all(r.verdict.value == "SKIP" for r in c.results):
            pytest.skip(f"{self.kernel.label}: {c.results[0].reason}")
        if expected_failure(c.expected, c.mark, [r.verdict for r in c.results]):
            raise DeclaredProblem(self.evidence_text())
        if not failing(c.mark):
            return
        if c.mark is FIXED and not c.flaky and _xfail_strict(c):
            return  # the strict xfail turns this pass into a failure: the declaration is out of date
        pytest.fail(f"{c.mark}: " + self.evidence_text(), pytrace=False)


@pytest.fixture(scope="session")
def _uffd_booted(request, tmp_path_factory) -> Kernel:
    """One kernel of --uffd-kernel (the parameter), booted once for the session."""
    return request.config.stash[_SESSION].kernel(request.param, tmp_path_factory)


@pytest.fixture
def uffd_kernel(request, _uffd_booted: Kernel) -> Kernel:
    """The kernel under test (parametrised over --uffd-kernel, ids like test_x[model-5.8]); skips the test
    when the kernel lacks what its needs(...) marker asks for."""
    _skip_unless_needs_met(request.node, _uffd_booted)
    return _uffd_booted


@pytest.fixture
def uffd_verdict(request, uffd_kernel: Kernel) -> UffdVerdict:
    """The cell of this test's uffd_scenario marker on uffd_kernel; adds xfail(strict) if declared bad."""
    mark = request.node.get_closest_marker("uffd_scenario")
    if mark is None or not mark.args:
        pytest.fail("uffd_verdict needs @pytest.mark.uffd_scenario('SCENARIO')", pytrace=False)
    cell = uffd_kernel.cell(mark.args[0], mark.kwargs.get("memory", "anon-4k"))
    verdict = UffdVerdict(uffd_kernel, cell)
    _record_kernel(request, uffd_kernel)
    request.node.stash[_EVIDENCE] = verdict.evidence_text()
    if _xfail_strict(cell):
        request.node.add_marker(pytest.mark.xfail(
            strict=True, raises=DeclaredProblem,
            reason=f"{uffd_kernel.label} is declared to {cell.expected} on {cell.scenario}"))
    return verdict


def _xfail_strict(cell: "Cell") -> bool:
    """A cell declared bad is an xfail(strict), except a racy declaration ('HANG>=K/N') none of whose runs
    showed a kernel problem: those PASS runs are as declared (or FIXED, which check() fails itself)."""
    from uffdprobe.results.expect import declares_bad, parse
    if cell.expected is None or not declares_bad(cell.expected):
        return False
    return not parse(cell.expected).at_least or any(r.verdict.is_kernel_problem for r in cell.results)


def _record_kernel(request, kernel: Kernel) -> None:
    """The kernel's identity and boot facts as JUnit testsuite properties 'kernel[LABEL].KEY' (junit-10.xsd
    allows properties on the suite only). They travel on the test's report, so that under pytest-xdist the
    controller, which writes the JUnit file, adds them (once per kernel) as it would without xdist."""
    from uffdprobe.results.junit import suite_properties
    request.node.stash[_KERNEL_PROPERTIES] = [
        (f"{key.split('.', 1)[0]}[{kernel.label}].{key.split('.', 1)[1]}", str(value))
        for key, value in suite_properties(kernel.run).items()]


# --- pytest-xdist (-n N): one kernel's tests on one worker, so each kernel boots once per worker that needs it

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist, on the controller, with --uffd-kernel and --dist load (what -n implies) or loadgroup: xdist's
    loadgroup scheduling, whose unit is additionally every test of one kernel (found by its id in the test's
    parameter id), so a kernel's tests all go to one worker; other tests are spread as before. (The
    node ids stay as they are: no xdist_group suffix, reports and JUnit read as without xdist.)"""
    if not config.getoption("uffd_kernels") or config.getoption("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling
    ids = sorted({_id(k) for k in config.getoption("uffd_kernels")}, key=len, reverse=True)

    class KernelGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != nodeid or not nodeid.endswith("]") or "[" not in nodeid:
                return scope  # an xdist_group of its own, or no parameters
            param = nodeid[nodeid.rindex("[") + 1:-1]
            for kid in ids:
                if param == kid or param.startswith(kid + "-") or param.endswith("-" + kid) \
                        or f"-{kid}-" in param:
                    return f"uffd-kernel[{kid}]"
            return nodeid

    return KernelGroupScheduling(config, log)


class _JUnitEvidence:
    """Puts each uffd_verdict test's verdict, declaration and evidence into its JUnit <system-out>, whatever
    junit_logging says (the facts a CI reader needs next to the outcome)."""

    def __init__(self, config):
        self.config = config
        self.properties: set = set()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        text = item.stash.get(_EVIDENCE, None)
        if text and call.when == "call":
            outcome.get_result().uffd_evidence = text
        if call.when == "call" and item.stash.get(_KERNEL_PROPERTIES, None):
            outcome.get_result().uffd_kernel_properties = item.stash[_KERNEL_PROPERTIES]

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "call":
            return
        try:
            from _pytest.junitxml import xml_key
        except ImportError:  # a pytest without this LogXML: the terminal output still has the evidence
            return
        xml = self.config.stash.get(xml_key, None)
        for name, value in getattr(report, "uffd_kernel_properties", None) or ():
            if xml is not None and name not in self.properties:
                self.properties.add(name)
                xml.add_global_property(name, value)
        text = getattr(report, "uffd_evidence", None)
        if text and xml is not None:
            import xml.etree.ElementTree as ET
            out = ET.Element("system-out")
            out.text = text
            xml.node_reporter(report).append(out)


class _Session:
    """Per pytest session: the kernels asked for, the scenarios wanted, and each kernel's cached run."""

    def __init__(self, config):
        self.config = config
        self.labels: List[str] = list(config.getoption("uffd_kernels") or ["host"])
        self.scenarios: List[str] = []
        self._kernels: Dict[str, Kernel] = {}
        self._targets = None
        self.recorded: set = set()
        self.scenarios_from: List[str] = []

    def prepare(self) -> None:
        """Check every kernel, expectation and parameter once; bad input is a pytest usage error."""
        from uffdprobe.run.kernels import check_kernels, declare, parse_expect
        from uffdprobe.run.matrix import planned
        from uffdprobe.run.request import RunRequest, Workload
        from uffdprobe.exitcodes import UsageError
        from uffdprobe.run.user_scenarios import check_visible_to
        from uffdprobe.scenarios import sources
        try:
            sources.load(self.config.getoption("uffd_scenarios_from"))  # before any scenario name is checked
            self.scenarios_from = sources.files()
            targets = check_kernels(self.labels)
            check_visible_to(targets)
            declare(targets, parse_expect(self.config.getoption("uffd_expect"), targets))
            planned(RunRequest(Workload(scenarios=tuple(self.scenarios),
                                        param=tuple(self.config.getoption("uffd_param")))))
        except UsageError as exc:
            text = str(exc)
            raise pytest.UsageError("--uffd-" + text[2:] if text.startswith("--kernel ") else text) from None
        self._targets = {t.given: t for t in targets}  # keyed by the --kernel value the tests are parametrised on

    def kernel(self, label: str, tmp_path_factory) -> Kernel:
        """Build (or take from cache), boot and run the wanted scenarios once; later calls reuse it."""
        if label not in self._kernels:
            from uffdprobe.run.matrix import Runner, build
            from uffdprobe.run.request import Limits, RunRequest, Workload
            if self._targets is None:
                self.prepare()
            target = self._targets[label]
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            capture = self.config.pluginmanager.get_plugin("capturemanager")

            def say(text: str) -> None:
                if reporter is None or text.startswith("  "):
                    return
                if capture is not None and threading.current_thread() is threading.main_thread():
                    with capture.global_and_fixture_disabled():
                        reporter.write_line(f"uffdprobe: {text}")

            build(target, say)
            request = RunRequest(Workload(scenarios=tuple(self.scenarios), runs=self.config.getoption("uffd_runs"),
                                          param=tuple(self.config.getoption("uffd_param")),
                                          scenarios_from=tuple(self.scenarios_from)),
                                 Limits(vm_timeout=self.config.getoption("uffd_vm_timeout")))
            work = tmp_path_factory.mktemp(f"uffdprobe-{_id(label)}")
            run = Runner(request, work, say).run_one(target, f"[{self.labels.index(label) + 1}/{len(self.labels)}]")
            self._kernels[label] = Kernel(run, sorted({r.scenario for r in run.results}),
                                          host=target.path is None and target.recipe is None)
        return self._kernels[label]


def _id(arg: str) -> str:
    """The test id of a --kernel argument: its LABEL, else a path's file name, else the argument."""
    from uffdprobe.run.kernel_arg import split_label
    label, kernel = split_label(arg)
    return label or (Path(kernel).name if "/" in kernel else kernel)


_SESSION = pytest.StashKey[_Session]()
_EVIDENCE = pytest.StashKey[str]()
_KERNEL_PROPERTIES = pytest.StashKey[list]()


def __getattr__(name: str) -> Any:
    """`Verdict`, UffdVerdict's old name (it read as uffdprobe.verdicts.Verdict), with a DeprecationWarning."""
    if name == "Verdict":
        import warnings
        warnings.warn("uffdprobe.pytest_plugin.Verdict is deprecated: use UffdVerdict", DeprecationWarning,
                      stacklevel=2)
        return UffdVerdict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
