# SPDX-License-Identifier: GPL-2.0-only
"""The pytest plugin through pytester: real scenarios on the running kernel become pytest outcomes."""

import os

import pytest

from formats import valid_junit

pytest_plugins = ["pytester"]
#: pytester points HOME at its temp dir; the inner session must still find the kernel cache.
REAL_CACHE = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")

USER_TESTS = '''
import pytest

@pytest.mark.uffd_scenario("wp-real-write")
@pytest.mark.needs("root", "uffd-wp")
def test_real_write_traps(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("selftest-self-deadlock")
def test_self_deadlock(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("wp-real-write", memory="anon-thp")
@pytest.mark.needs("thp")
def test_real_write_on_thp(uffd_verdict):
    uffd_verdict.check()

def test_identity(uffd_kernel):
    assert uffd_kernel.identity.get("release") == __import__("os").uname().release
'''

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the host scenarios need root for uffd-wp here")


def run(pytester, *args):
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *args, timeout=240)


def test_host_outcomes_and_ids(pytester):
    """Default --uffd-kernel is host; an undeclared HANG fails with its evidence, a PASS passes."""
    result = run(pytester, "--junitxml=out.xml")
    outcomes = result.parseoutcomes()
    result.stdout.fnmatch_lines(
        [
            "*test_real_write_traps[[]host[]] PASSED*",
            "*test_self_deadlock[[]host[]] FAILED*",
            "*test_identity[[]host[]] PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(["*wchan: handle_userfault*"])
    assert outcomes["failed"] == 1
    root = valid_junit(pytester.path / "out.xml")
    case = root.find(".//testcase[@name='test_self_deadlock[host]']")
    assert case.find("failure") is not None and case.find("properties") is None
    out = "\n".join(e.text for e in case.findall("system-out"))
    assert "host selftest-self-deadlock(anon-4k): HANG (declared: nothing" in out
    assert "wchan: handle_userfault" in out and "pending_uffd_messages: pagefault address=0x" in out
    assert "flags=WRITE|WP" in out and "PageFault(" not in out
    passed = root.find(".//testcase[@name='test_real_write_traps[host]']")
    assert "host wp-real-write(anon-4k): PASS" in passed.find("system-out").text
    suite = {p.get("name"): p.get("value") for p in root.find("testsuite").find("properties")}
    assert suite["kernel[host].release"] == os.uname().release


def test_declared_hang_is_strict_xfail(pytester):
    """A declared HANG that happens is xfailed; a declared HANG that passes is XPASS(strict), a failure."""
    result = run(
        pytester,
        "--uffd-kernel",
        "host",
        "--uffd-expect",
        "host:selftest-self-deadlock=HANG",
        "--uffd-expect",
        "host:wp-real-write/anon-4k=HANG",
        "--junitxml=out.xml",
    )
    result.stdout.fnmatch_lines(
        ["*test_self_deadlock[[]host[]] XFAIL*", "*test_real_write_traps[[]host[]]*XPASS(strict)*"]
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 1 and outcomes.get("failed") == 1
    case = valid_junit(pytester.path / "out.xml").find(".//testcase[@name='test_self_deadlock[host]']")
    assert case.find("skipped").get("type") == "pytest.xfail"
    assert "mark: expected" in case.find("system-out").text


def test_declared_per_memory_kind(pytester):
    """WP_LOST on 4k and THP (the selftest's unprotect-first write), declared for 4k only: 4k is an xfail,
    the same WP_LOST on THP, undeclared, fails."""
    result = run(
        pytester,
        "--uffd-param",
        "selftest_unprotect_first=true",
        "--uffd-expect",
        "wp-real-write/anon-4k=WP_LOST",
        "--uffd-expect",
        "selftest-self-deadlock=HANG",
    )
    result.stdout.fnmatch_lines(
        [
            "*test_real_write_traps[[]host[]] XFAIL*",
            "*test_self_deadlock[[]host[]] XFAIL*",
            "*test_real_write_on_thp[[]host[]] FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(["*UNEXPECTED*wp-real-write(anon-thp): WP_LOST*"])
    assert result.parseoutcomes() == {"passed": 1, "failed": 1, "xfailed": 2}


def test_flaky_cell_fails_with_counts(pytester):
    """Three runs in one session, the middle one answered by a helper thread: FLAKY with counts, a failure."""
    pytester.makepyfile(
        test_user='''
import pytest

@pytest.mark.uffd_scenario("selftest-self-deadlock")
def test_self_deadlock(uffd_verdict):
    assert len(uffd_verdict.results) == 3
    uffd_verdict.check()
'''
    )
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--uffd-runs",
        "3",
        "--uffd-expect",
        "selftest-self-deadlock=HANG",
        "--uffd-param",
        "selftest_helper_write_runs=[2]",
        timeout=240,
    )
    result.stdout.fnmatch_lines(["*FLAKY HANG*HANG 2/3, PASS 1/3*"])
    assert result.parseoutcomes()["failed"] == 1


@pytest.mark.parametrize("helper_runs, outcome", [("[2]", "xfailed"), ("[1, 2, 3]", "failed")])
def test_racy_declaration_over_runs(pytester, helper_runs, outcome):
    """'HANG>=1/3' over three real runs: a HANG in some of them is the declared problem (xfail); none in
    all three is FIXED, a failure (no XPASS needed: the PASS runs alone were as declared)."""
    pytester.makepyfile(
        test_user='''
import pytest

@pytest.mark.uffd_scenario("selftest-self-deadlock")
def test_self_deadlock(uffd_verdict):
    uffd_verdict.check()
'''
    )
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--uffd-runs",
        "3",
        "--uffd-expect",
        "selftest-self-deadlock=HANG>=1/3",
        "--uffd-param",
        f"selftest_helper_write_runs={helper_runs}",
        timeout=240,
    )
    assert result.parseoutcomes() == {outcome: 1}, result.stdout.str()[-2000:]
    if outcome == "failed":
        result.stdout.fnmatch_lines(["*FIXED*PASS*"])


def test_bad_kernel_is_a_usage_error(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("--uffd-kernel", "no-such-kernel", timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--uffd-kernel no-such-kernel: not 'host', not a file, not a recipe*"])


TWO_KERNELS = '''
import os
import pytest

@pytest.mark.uffd_scenario("wp-real-write")
@pytest.mark.needs("root", "uffd-wp")
def test_real_write_traps(uffd_verdict):
    uffd_verdict.check()

@pytest.mark.uffd_scenario("selftest-self-deadlock")
def test_self_deadlock(uffd_verdict):
    uffd_verdict.check()

def test_release(uffd_kernel):
    print(f"RELEASE {uffd_kernel.label} {uffd_kernel.identity['release']}")
'''


@pytest.mark.vm
@pytest.mark.timeout(1200)  # above pytester's own limit, which kills the inner session
def test_two_kernels_one_boot_each(pytester, monkeypatch):
    """--uffd-kernel host --uffd-kernel stock: per-kernel ids and results; stock is booted once for all its tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", REAL_CACHE)
    pytester.makepyfile(test_user=TWO_KERNELS)
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-v",
        "-s",
        "--uffd-kernel",
        "host",
        "--uffd-kernel",
        "stock",
        "--uffd-expect",
        "stock:selftest-self-deadlock=HANG",
        "--junitxml=out.xml",
        timeout=900,
    )
    # pytest groups the tests by the session-scoped kernel: all of host's, then all of stock's
    result.stdout.fnmatch_lines(
        [
            "*test_real_write_traps[[]host[]] PASSED*",
            "*test_self_deadlock[[]host[]] FAILED*",
            "*test_real_write_traps[[]stock[]] PASSED*",
            "*test_self_deadlock[[]stock[]] XFAIL*",
        ]
    )
    result.stdout.fnmatch_lines([f"*RELEASE host {os.uname().release}*", "*RELEASE stock 6.1.*"])
    assert len([ln for ln in result.stdout.lines if "stock: booting" in ln]) == 1
    assert result.parseoutcomes() == {"passed": 4, "failed": 1, "xfailed": 1}
    suite = valid_junit(pytester.path / "out.xml").find("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["kernel[stock].release"].startswith("6.1.") and len(props["kernel[stock].sha256"]) == 64
    assert props["kernel[host].release"] == os.uname().release


THEIR_CONFTEST = '''
def pytest_addoption(parser):
    parser.addoption("--kernel", default="their-default", help="this suite's own kernel option")
'''

THEIR_TESTS = '''
def test_their_kernel_option(request):
    print("THEIR KERNEL", request.config.getoption("kernel"))
    assert request.config.getoption("kernel") == "bzImage-under-test"
'''


@pytest.mark.reliability(
    "a project's conftest defines its own --kernel option, plugin installed",
    "the project's session collects and runs as without uffdprobe: no option clash, no "
    "uffdprobe fixture or output in it",
)
def test_a_conftest_with_its_own_kernel_option_is_left_alone(pytester):
    pytester.makeconftest(THEIR_CONFTEST)
    pytester.makepyfile(test_theirs=THEIR_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "--setup-show", "--kernel", "bzImage-under-test", timeout=120
    )
    assert result.ret == pytest.ExitCode.OK, "\n".join(result.outlines + result.errlines)
    assert result.parseoutcomes() == {"passed": 1}
    result.stdout.fnmatch_lines(["*THEIR KERNEL bzImage-under-test*"])
    said = [x for x in result.outlines + result.errlines if not x.startswith("plugins:")]  # pytest's own list
    assert "uffd" not in "\n".join(said).replace(str(pytester.path), "")  # no fixture in --setup-show, no output


def test_the_plugin_is_there_for_a_session_that_asks(pytester):
    """The same conftest beside a uffd test: both options work in one session."""
    pytester.makeconftest(THEIR_CONFTEST)
    # The marker names the one scenario the session runs (a session that names none runs every scenario once).
    pytester.makepyfile(
        test_theirs=THEIR_TESTS,
        test_user='''
import pytest

@pytest.mark.uffd_scenario("cow-leak")
def test_identity(uffd_kernel):
    assert uffd_kernel.label == "host"
''',
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-v", "--kernel", "bzImage-under-test", "--uffd-kernel", "host", timeout=240
    )
    result.stdout.fnmatch_lines(["*test_their_kernel_option PASSED*", "*test_identity[[]host[]] PASSED*"])
    assert result.parseoutcomes() == {"passed": 2}


def test_old_verdict_name_still_imports():
    """`from uffdprobe.pytest_plugin import Verdict` (the fixture's type before it was UffdVerdict) keeps
    working, with a DeprecationWarning naming the new name; other missing names stay AttributeErrors."""
    import uffdprobe.pytest_plugin as plugin

    with pytest.warns(DeprecationWarning, match="use UffdVerdict"):
        from uffdprobe.pytest_plugin import Verdict
    assert Verdict is plugin.UffdVerdict
    with pytest.raises(AttributeError):
        plugin.NoSuchName  # noqa: B018
