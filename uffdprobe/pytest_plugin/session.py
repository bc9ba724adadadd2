# SPDX-License-Identifier: GPL-2.0-only
"""The plugin's state for one pytest session: the kernels asked for and each one's cached run (Session),
the evidence each uffd_verdict test puts into JUnit (JUnitEvidence), and the keys they are stashed under."""

import threading
from pathlib import Path
from typing import Dict, List

import pytest

from .kernel import Kernel


class JUnitEvidence:
    """Puts each uffd_verdict test's verdict, declaration and evidence into its JUnit <system-out>, whatever
    junit_logging says (the facts a CI reader needs next to the outcome)."""

    def __init__(self, config):
        self.config = config
        self.properties: set = set()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        text = item.stash.get(EVIDENCE, None)
        if text and call.when == "call":
            outcome.get_result().uffd_evidence = text
        if call.when == "call" and item.stash.get(KERNEL_PROPERTIES, None):
            outcome.get_result().uffd_kernel_properties = item.stash[KERNEL_PROPERTIES]

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


class Session:
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
            planned(
                RunRequest(Workload(scenarios=tuple(self.scenarios), param=tuple(self.config.getoption("uffd_param"))))
            )
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
            request = RunRequest(
                Workload(
                    scenarios=tuple(self.scenarios),
                    runs=self.config.getoption("uffd_runs"),
                    param=tuple(self.config.getoption("uffd_param")),
                    scenarios_from=tuple(self.scenarios_from),
                ),
                Limits(vm_timeout=self.config.getoption("uffd_vm_timeout")),
            )
            work = tmp_path_factory.mktemp(f"uffdprobe-{kernel_test_id(label)}")
            run = Runner(request, work, say).run_one(target, f"[{self.labels.index(label) + 1}/{len(self.labels)}]")
            self._kernels[label] = Kernel(
                run, sorted({r.scenario for r in run.results}), host=target.path is None and target.recipe is None
            )
        return self._kernels[label]


def kernel_test_id(arg: str) -> str:
    """The test id of a --kernel argument: its LABEL, else a path's file name, else the argument."""
    from uffdprobe.run.kernel_arg import split_label

    label, kernel = split_label(arg)
    return label or (Path(kernel).name if "/" in kernel else kernel)


SESSION = pytest.StashKey[Session]()
EVIDENCE = pytest.StashKey[str]()
KERNEL_PROPERTIES = pytest.StashKey[list]()
