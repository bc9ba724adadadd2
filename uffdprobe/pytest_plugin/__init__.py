# SPDX-License-Identifier: GPL-2.0-only
"""pytest plugin: `--uffd-kernel K` (repeatable, default host), one boot per kernel, verdicts as test outcomes.

Every option is prefixed `--uffd-` (a kernel test suite may well have its own `--kernel`), and a session
whose tests use neither `uffd_kernel` nor `uffd_verdict` sees nothing of it: no fixture, no hook output.

    @pytest.mark.uffd_scenario("wp-gup-odirect")
    @pytest.mark.needs("uffd-wp", "odirect")
    def test_eviction_write(uffd_verdict):
        uffd_verdict.check()     # pass, fail, or xfail(strict) when the recipe declares HANG/LEAK/WP_LOST

The hooks and fixtures are here; what they give a test is in kernel (Kernel, UffdVerdict), the session's
state in session. May import every stage but cli; nothing imports it (pytest loads it by its entry point).
"""

from typing import Any

import pytest

from .kernel import NEEDS, DeclaredProblem, Kernel, UffdVerdict, xfail_strict
from .session import EVIDENCE, KERNEL_PROPERTIES, SESSION, JUnitEvidence, Session, kernel_test_id

#: What a test's fixtures and marker give it (the hooks are pytest's, found by their names).
__all__ = ["uffd_kernel", "uffd_verdict", "Kernel", "UffdVerdict", "DeclaredProblem", "NEEDS"]


def pytest_addoption(parser) -> None:
    group = parser.getgroup("uffdprobe", "uffdprobe: userfaultfd scenarios on real kernels")
    group.addoption(
        "--uffd-kernel",
        action="append",
        dest="uffd_kernels",
        metavar="K",
        help="run uffd scenarios on K (repeatable): 'host', a recipe name or .toml path, a "
        "bzImage/vmlinuz or a .deb, optionally LABEL=K; default host",
    )
    group.addoption("--uffd-runs", type=int, default=1, metavar="N", help="repeat each scenario N times per boot")
    group.addoption(
        "--uffd-expect",
        action="append",
        default=[],
        metavar="[KERNEL:]SCENARIO[/MEMORY]=VERDICT",
        help="declare an expected verdict (overrides the recipe's)",
    )
    group.addoption(
        "--uffd-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scenario parameter for every kernel's run (as `uffdprobe run --param`)",
    )
    group.addoption(
        "--uffd-vm-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="limit for each kernel's boot and scenarios (default 900)",
    )
    group.addoption(
        "--uffd-scenarios-from",
        action="append",
        default=[],
        dest="uffd_scenarios_from",
        metavar="FILE.py",
        help="repeatable: your own scenarios (a file defining SCENARIOS, as "
        "`uffdprobe run --scenarios-from`); the entry point group uffdprobe.scenarios adds "
        "installed ones",
    )


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "uffd_scenario(name, memory='anon-4k'): the scenario uffd_verdict checks")
    config.addinivalue_line("markers", "needs(*what): skip unless the kernel has each of " + ", ".join(NEEDS))
    config.stash[SESSION] = Session(config)
    config.pluginmanager.register(JUnitEvidence(config), "uffdprobe-junit-evidence")


def pytest_generate_tests(metafunc) -> None:
    if "uffd_kernel" in metafunc.fixturenames:
        labels = metafunc.config.stash[SESSION].labels
        metafunc.parametrize(
            "_uffd_booted", labels, ids=[kernel_test_id(k) for k in labels], indirect=True, scope="session"
        )


def pytest_collection_modifyitems(session, config, items) -> None:
    state = config.stash[SESSION]
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


@pytest.fixture(scope="session")
def _uffd_booted(request, tmp_path_factory) -> Kernel:
    """One kernel of --uffd-kernel (the parameter), booted once for the session."""
    return request.config.stash[SESSION].kernel(request.param, tmp_path_factory)


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
    request.node.stash[EVIDENCE] = verdict.evidence_text()
    if xfail_strict(cell):
        request.node.add_marker(
            pytest.mark.xfail(
                strict=True,
                raises=DeclaredProblem,
                reason=f"{uffd_kernel.label} is declared to {cell.expected} on {cell.scenario}",
            )
        )
    return verdict


def _record_kernel(request, kernel: Kernel) -> None:
    """The kernel's identity and boot facts as JUnit testsuite properties 'kernel[LABEL].KEY' (junit-10.xsd
    allows properties on the suite only). They travel on the test's report, so that under pytest-xdist the
    controller, which writes the JUnit file, adds them (once per kernel) as it would without xdist."""
    from uffdprobe.results.junit import suite_properties

    request.node.stash[KERNEL_PROPERTIES] = [
        (f"{key.split('.', 1)[0]}[{kernel.label}].{key.split('.', 1)[1]}", str(value))
        for key, value in suite_properties(kernel.run).items()
    ]


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

    ids = sorted({kernel_test_id(k) for k in config.getoption("uffd_kernels")}, key=len, reverse=True)

    class KernelGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != nodeid or not nodeid.endswith("]") or "[" not in nodeid:
                return scope  # an xdist_group of its own, or no parameters
            param = nodeid[nodeid.rindex("[") + 1 : -1]
            for kid in ids:
                if param == kid or param.startswith(kid + "-") or param.endswith("-" + kid) or f"-{kid}-" in param:
                    return f"uffd-kernel[{kid}]"
            return nodeid

    return KernelGroupScheduling(config, log)


def __getattr__(name: str) -> Any:
    """`Verdict`, UffdVerdict's old name (it read as uffdprobe.verdicts.Verdict), with a DeprecationWarning."""
    if name == "Verdict":
        import warnings

        warnings.warn(
            "uffdprobe.pytest_plugin.Verdict is deprecated: use UffdVerdict", DeprecationWarning, stacklevel=2
        )
        return UffdVerdict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
