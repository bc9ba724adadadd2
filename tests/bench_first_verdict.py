# SPDX-License-Identifier: GPL-2.0-only
"""Launch to first verdict, and the added cost per further scenario in the same boot, under TCG, next to
virtme-ng's boot-to-`true` on the same kernel, alternating in one run; then where the guest's seconds go
(kernel boot, Python start, imports, feature probe, scratch-disk probe, the supervised child), from one
boot of tests/guest_phases.py under `-X importtime` and one under strace. Prints numbers; asserts only
that the verdicts came.

Run: .venv/bin/python -m pytest -s -m benchmark tests/bench_first_verdict.py [-k built]
     (UFFDPROBE_TEST_BZIMAGE=PATH picks the built kernel; UFFDPROBE_BENCH_REPEATS=N rounds, default 3;
     UFFDPROBE_BENCH_BASELINE_PYTHON=the python of another uffdprobe install, e.g. an older commit's venv,
     adds its `uffdprobe run` to every round: before and after, side by side)
"""

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bench_vm import REPEATS, image_of, kernels, vng_binary, vng_boot_seconds

from uffdprobe.osutil import children
from uffdprobe.run import guest_python
from uffdprobe.run.guest import GUEST_ARCHIVE, GUEST_SCRATCH, guest_argv
from uffdprobe.vm.boot import boot
from uffdprobe.vm.leftovers import vm_processes

pytestmark = [pytest.mark.benchmark, pytest.mark.vm]
ONE = ["wp-gup-vmsplice"]
SEVERAL = ["wp-gup-vmsplice", "wp-gup-odirect", "wp-gup-process-vm-readv", "cow-leak", "wp-real-write"]
PHASES = Path(__file__).with_name("guest_phases.py")
GUEST_RESULTS = "/run/uffdprobe/channel/results"
BASELINE = os.environ.get("UFFDPROBE_BENCH_BASELINE_PYTHON")


def run_argv(scenarios) -> list:
    """What `uffdprobe run --kernel K --memory anon-4k SCENARIO...` runs inside the guest."""
    from uffdprobe.run.request import RunRequest, Workload

    return guest_argv(RunRequest(Workload(scenarios=tuple(scenarios), memory=("anon-4k",))))


def arrivals(kernel: Path, scenarios, python: str = sys.executable):
    """Run `uffdprobe run --kernel KERNEL --memory anon-4k SCENARIO...` as a user does: seconds from its
    start to each verdict line on its stdout, QEMU's launch -> guest init (its progress line), exit status."""
    argv = [
        python,
        "-m",
        "uffdprobe",
        "run",
        "--kernel",
        str(kernel),
        "--memory",
        "anon-4k",
        "--accel",
        "tcg",
        *scenarios,
    ]
    seen, init, launched = [], [], []
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd="/",
    )  # not a checkout: -m finds python's own

    def read_stderr():
        for line in proc.stderr:
            if line.startswith("[vm] booting "):  # printed just before QEMU is started
                launched.append(time.monotonic() - started)
            m = re.search(r"([\d.]+)s guest init reached", line)
            if m:
                init.append(float(m.group(1)))

    errors = threading.Thread(target=read_stderr, daemon=True)
    errors.start()
    try:
        for line in proc.stdout:
            words = line.split()[:2]  # "[1/5] NAME ..." (the numbered verdict line), or "NAME ..."
            if words and words[-1 if words[0].startswith("[") else 0] in scenarios:
                seen.append(time.monotonic() - started)
        proc.wait(timeout=60)
    finally:
        children.stop(proc)
    errors.join(5)
    nan = float("nan")
    return seen, (init or [nan])[0], (seen[0] - launched[0] if seen and launched else nan), proc.returncode


def phase_breakdown(kernel: Path, run_dir: Path, archive: bool = True) -> dict:
    """One boot of guest_phases.py under -X importtime: when each step of the run ended, in seconds after
    the guest init's "init reached" line, plus the import table. `archive`: the run path's modules from
    the archive in memory, as `uffdprobe run` has them (else all from the host folders, as before it)."""
    if archive:
        env, path, *python = guest_python.from_archive(GUEST_ARCHIVE, script=True)
    else:
        env, path, *python = guest_python.interpreter()
    python.insert(python.index("-S") + 1, "-X")
    python.insert(python.index("-X") + 1, "importtime")
    argv = [env, path, f"UFFDPROBE_SCRATCH_DEV={GUEST_SCRATCH}", *python, str(PHASES), "--memory", "anon-4k", *ONE]
    script = f"exec {shlex.join(argv)} 2>{GUEST_RESULTS}/importtime.txt"
    result = boot(
        kernel,
        ["/bin/sh", "-c", script],
        accel="tcg",
        run_dir=run_dir,
        timeout=300,
        bring=_archive() if archive else {},
    )
    text = result.console_log.read_text(errors="replace")
    init = float(re.search(r"init reached \(uptime ([\d.]+)s\)", text).group(1))
    data = json.loads((result.results_dir / "phases.json").read_text())
    steps = {name: at - init for name, at in data["stamps"].items()}
    steps["first_verdict"] = data["verdicts"][0][0] - init
    return {
        "launch_to_init": result.timings["launch_to_init"],
        "steps": steps,
        "imports": _import_table((result.results_dir / "importtime.txt").read_text()),
    }


def _import_table(text: str) -> list:
    """(self us, cumulative us, depth, module) rows of -X importtime output."""
    rows = []
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    return rows


def syscall_counts(kernel: Path, run_dir: Path, archive: bool = True) -> list:
    """`strace -f -c` of the real guest run of ONE: the file syscalls are what can reach the 9p root.
    `archive`: as `uffdprobe run` starts it (else with `-m uffdprobe`, all modules from the host folders)."""
    from uffdprobe.run.request import RunRequest, Workload

    argv = guest_argv(RunRequest(Workload(scenarios=tuple(ONE), memory=("anon-4k",))))
    if not archive:
        at = argv.index("-c")
        argv[at : at + 2] = ["-m", "uffdprobe"]
    out = f"{GUEST_RESULTS}/strace.txt"
    result = boot(
        kernel,
        ["/usr/bin/strace", "-f", "-c", "-o", out, *argv],
        accel="tcg",
        run_dir=run_dir,
        timeout=300,
        bring=_archive() if archive else {},
    )
    path = result.results_dir / "strace.txt"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1].isidentifier():
            rows.append((parts[-1], int(parts[3])))
    return rows


def _archive() -> dict:
    """What `uffdprobe run --kernel` brings into the channel: the archive of the guest's modules."""
    return {guest_python.ARCHIVE_NAME: guest_python.archive()}


def _median(xs):
    return statistics.median(xs) if xs else float("nan")


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("label,kernel", kernels())
def test_first_verdict_and_per_scenario_cost(label, kernel, tmp_path):
    guest_python.precompile()
    pythons = {"this checkout": sys.executable, **({"baseline": BASELINE} if BASELINE else {})}
    one = {name: [] for name in pythons}
    many = {name: [] for name in pythons}
    vng = []
    for _i in range(REPEATS):  # alternating: load on this machine drifts
        for name, python in pythons.items():
            seen, init, in_vm, code = arrivals(kernel, ONE, python)
            assert code == 0 and seen, f"{name}: uffdprobe run exited {code}"
            one[name].append((seen[0], init, in_vm))
        for name, python in pythons.items():
            seen, _, _, code = arrivals(kernel, SEVERAL, python)
            assert code == 0 and len(seen) == len(SEVERAL), f"{name}: exit {code}, {len(seen)} verdicts"
            many[name].append((seen[0], (seen[-1] - seen[0]) / (len(seen) - 1)))
        if vng_binary():
            vng.append(vng_boot_seconds(image_of(kernel), ("--force-9p",)))
    print(
        f"\n== {label}: {kernel} ({REPEATS} rounds, alternating; load average now "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    vng_median = _median([s for s, _ in vng])
    for name, python in pythons.items():
        print(f"-- {name} ({python})")
        starts = [a for a, _, _ in one[name]]
        print(
            "uffdprobe run start -> first verdict:  "
            + " ".join(f"{a:6.2f}" for a in starts)
            + f"  median {_median(starts):6.2f}s, best {min(starts):6.2f}s"
        )
        in_vm = [c for _, _, c in one[name]]
        print(
            "  of which QEMU launch -> verdict:     "
            + " ".join(f"{c:6.2f}" for c in in_vm)
            + f"  median {_median(in_vm):6.2f}s, best {min(in_vm):6.2f}s"
        )
        print("  of which QEMU launch -> guest init:  " + " ".join(f"{b:6.2f}" for _, b, _ in one[name]))
        firsts = [a for a, _ in many[name]]
        print(
            f"  the same with {len(SEVERAL)} scenarios:     "
            + " ".join(f"{a:6.2f}" for a in firsts)
            + f"  median {_median(firsts):6.2f}s, best {min(firsts):6.2f}s"
        )
        print(
            "added cost per further scenario:      "
            + " ".join(f"{b:6.2f}" for _, b in many[name])
            + f"  median {_median([b for _, b in many[name]]):6.2f}s"
        )
        if vng:
            print(
                f"ratio first verdict / vng boot-to-true: {_median(starts) / vng_median:5.2f} (goal <= 0.4, issue 30; "
                f"best to best {min(starts) / min(s for s, _ in vng):5.2f})"
            )
    if vng:
        print(
            "virtme-ng --force-9p --exec true:     "
            + " ".join(f"{s:6.2f}" for s, _ in vng)
            + f"  median {vng_median:6.2f}s, best {min(s for s, _ in vng):6.2f}s "
            f"({', '.join(sorted({h for _, h in vng}))})"
        )
        if any(h == "halted" for _, h in vng):
            print(
                "  vng's guest halted instead of powering off (no ACPI in this kernel): timed to its "
                "'System halted' line, then stopped; vng alone would never return"
            )
    else:
        print("virtme-ng: not installed (pip install virtme-ng, or the bench extra)")

    booted = {False: [], True: []}
    for n in range(REPEATS):  # alternating, as the rounds above
        for archive in (False, True):
            booted[archive].append(phase_breakdown(kernel, tmp_path / f"phases-{n}-{archive}", archive))
    _print_phase_medians(booted)
    for archive, phases in booted.items():
        _print_phases(phases[-1], archive)
    for archive in (False, True):
        counts = dict(syscall_counts(kernel, tmp_path / f"strace-{archive}", archive))
        files = {
            k: v
            for k, v in counts.items()
            if k
            in ("openat", "newfstatat", "statx", "stat", "lstat", "fstat", "getdents64", "readlink", "read", "access")
        }
        print(
            f"file syscalls of the real run, modules from {'the archive' if archive else 'the host folders'} "
            f"(strace -f -c; each can be a 9p round trip): {sum(files.values())} "
            + ", ".join(f"{k} {v}" for k, v in sorted(files.items(), key=lambda kv: -kv[1]))
        )
    assert not vm_processes()


#: The guest's steps, in order: (stamp, what ended there).
STEPS = (
    ("exec", "init -> exec of the interpreter"),
    ("main", "interpreter start -> script running"),
    ("imports", "imports (cli.main, run)"),
    ("parsed", "argument parsing, run.host imports"),
    ("feature_probe", "feature probe"),
    ("scratch_probe", "scratch-disk probe (only for O_DIRECT)"),
    ("planned", "plan"),
    ("first_verdict", "supervised child: fork to verdict"),
)


def _print_phase_medians(booted: dict) -> None:
    """Each step's median over the boots, modules from the host folders beside from the archive."""
    print(f"the guest's steps, medians of {REPEATS} boots each, alternating (seconds): host folders | archive")

    def row(what, values):
        print(f"  {what:38} {_median(values[False]):6.2f} | {_median(values[True]):6.2f}")

    row("launch -> guest init", {a: [p["launch_to_init"] for p in booted[a]] for a in booted})
    previous = {a: [0.0] * len(booted[a]) for a in booted}
    for name, what in STEPS:
        row(what, {a: [p["steps"][name] - b for p, b in zip(booted[a], previous[a])] for a in booted})
        previous = {a: [p["steps"][name] for p in booted[a]] for a in booted}
    row("init -> Python running the script", {a: [p["steps"]["main"] for p in booted[a]] for a in booted})
    row("init -> first verdict", {a: [p["steps"]["first_verdict"] for p in booted[a]] for a in booted})


def _print_phases(phases: dict, archive: bool) -> None:
    steps = phases["steps"]
    source = "the archive in memory" if archive else "the host folders over 9p"
    print(f"where the guest's seconds go (the last boot, {ONE[0]}, modules from {source}; seconds):")
    print(f"  launch -> guest init                 {phases['launch_to_init']:6.2f}")
    previous = 0.0
    for name, what in STEPS:
        print(f"  {what:36} {steps[name] - previous:6.2f}")
        previous = steps[name]
    rows = phases["imports"]
    print(
        f"  imports: {len(rows)} modules, {sum(r[0] for r in rows) / 1e6:.2f}s in their own code; "
        f"uffdprobe's {sum(r[0] for r in rows if r[3].startswith('uffdprobe')) / 1e6:.2f}s; the costliest:"
    )
    for self_us, cum_us, _, name in sorted(rows, reverse=True)[:8]:
        print(f"    {name:40} self {self_us / 1e3:6.0f} ms  cumulative {cum_us / 1e3:6.0f} ms")
