# SPDX-License-Identifier: GPL-2.0-only
"""A KCIDB v5 report (the Linux kernel CI database's submission format) of a matrix or a run.

One checkout per kernel source (the recipe's source identity and patch series), one build per kernel
(the cache entry: compiler, config hash, build log), and the tests: `uffdprobe.boot` for each booted
kernel, `uffdprobe.SCENARIO.MEMORY` for a scenario, `uffdprobe.kselftest.PROGRAM[.CASE]` for the
kernel's own selftests. Statuses say what the test found about the kernel (KCIDB's meaning): a HANG,
LEAK, WP_LOST, ... is FAIL whether or not it was declared. A declared bad verdict is reported as that
FAIL plus an incident (present) of an issue named after the declaration, so a dashboard sees a known
defect, not a new one; a declared one that no longer happens is an incident with present false.
Log and file links are URLs to the files in the results folder: `url_base` (where a CI publishes
that folder) joined with the file's path relative to it, else file:// URLs of where the folder is.
"""

import datetime
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote

from uffdprobe.supervise.kselftest import PROGRAMS
from uffdprobe.verdicts import KERNEL_PROBLEMS, Result
from .evidence import summary
from .expect import EXPECTED, FIXED, declared, judge
from .matrix import KernelRun, Matrix

#: The schema version written (kcidb-io's v5.3).
VERSION = {"major": 5, "minor": 3}
#: KCIDB's origin names: lower-case letters, digits and '_'.
ORIGIN = re.compile(r"[a-z0-9_]+$")
#: KCIDB's limit on every log_excerpt, in characters.
EXCERPT_MAX = 16384
ARCHITECTURE = "x86_64"
_PATH_PART = re.compile(r"[^A-Za-z0-9_-]+")
_STATUS = {
    "PASS": "PASS",
    "SKIP": "SKIP",
    "ERROR": "ERROR",
    "VM_TIMEOUT": "ERROR",
    "PANIC": "FAIL",
    "BOOT_FAIL": "MISS",
    "BUILD_FAIL": "MISS",
    **dict.fromkeys(KERNEL_PROBLEMS, "FAIL"),
}


def status(verdict: str) -> str:
    """The KCIDB status of a verdict: the kernel's problems (and a panic) FAIL, no answer ERROR, a test
    that never ran because the kernel did not build or boot MISS."""
    return _STATUS[verdict]


def path_of(scenario: str, memory: str) -> str:
    """The dot-separated KCIDB test path of a row: uffdprobe.SCENARIO.MEMORY, uffdprobe.kselftest.PROGRAM
    (its run) and uffdprobe.kselftest.PROGRAM.CASE (a case's name with its other characters as '_')."""
    program, colon, case = scenario.partition(": ")
    if colon or scenario in PROGRAMS:
        parts = ["kselftest", program] + ([case] if colon else [])
    else:
        parts = [scenario] + ([memory] if memory and memory != "-" else [])
    return ".".join(["uffdprobe"] + [_PATH_PART.sub("_", p).strip("_") or "_" for p in parts])


def excerpt(lines: Iterable[str]) -> str:
    """Lines as one log excerpt within KCIDB's limit: the end kept (where a log says why), NULs dropped."""
    text = "\n".join(str(x) for x in lines).replace("\0", "")
    return text if len(text) <= EXCERPT_MAX else text[-EXCERPT_MAX:]


def _timestamp(value: object) -> Optional[str]:
    """An RFC 3339 time from epoch seconds or from an ISO string like 2026-12-06T22:30:16+0000."""
    try:
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat()
        if isinstance(value, str) and value:
            return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").isoformat()
    except (ValueError, OverflowError, OSError):
        pass
    return None


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Links:
    """URLs of files in the results folder `root`: `url_base` + the path relative to root, else file://.
    A file outside the folder, or missing, has no URL (an archive of the folder would not have it)."""

    def __init__(self, root: Path, url_base: Optional[str] = None):
        self.root, self.url_base = Path(root).resolve(), url_base.rstrip("/") if url_base else None

    def url(self, path: object) -> Optional[str]:
        if not path:
            return None
        try:
            full = Path(str(path)).resolve()
            rel = full.relative_to(self.root)
        except (ValueError, OSError):
            return None
        if not full.is_file():
            return None
        if self.url_base:
            return f"{self.url_base}/{quote(rel.as_posix())}"
        return full.as_uri()

    def files(self, paths: Dict[str, object]) -> List[Dict[str, str]]:
        """KCIDB resources {name, url} of the named files that are in the folder."""
        out = []
        for name, path in paths.items():
            url = self.url(path)
            if url:
                out.append({"name": name, "url": url})
        return out


def _checkout(origin: str, k: KernelRun) -> Dict[str, Any]:
    ident = k.identity
    src = ident.get("source") or {}
    patches = [p for p in ident.get("patches") or [] if isinstance(p, dict)]
    hashes = [p.get("sha256") for p in patches]
    facts = (
        {"source": src, "patches": hashes}
        if src
        else {"release": ident.get("release"), "version": ident.get("version"), "file_sha256": ident.get("file_sha256")}
    )
    checkout = {
        "id": f"{origin}:{_digest('checkout', facts)}",
        "origin": origin,
        "misc": {
            "source": src or None,
            "source_spec": ident.get("source_spec"),
            "patches": [{k: p.get(k) for k in ("name", "subject", "sha256")} for p in patches],
        },
    }
    if all(hashes):  # KCIDB's patchset hash: sha256 over each patch's sha256 and a newline, in order
        checkout["patchset_hash"] = (
            hashlib.sha256("".join(f"{h}\n" for h in hashes).encode()).hexdigest() if hashes else ""
        )
    if src.get("kind") == "git":
        if re.fullmatch(r"[0-9a-f]{40}", str(src.get("commit"))):
            checkout["git_commit_hash"] = src["commit"]
        if str(src.get("repo", "")).startswith("https://"):
            checkout["git_repository_url"] = src["repo"]
        for key, field in (("describe", "git_commit_name"), ("branch", "git_repository_branch")):
            if src.get(key):  # a tuxmake build's metadata says these
                checkout[field] = str(src[key])
    name = src.get("name") or ident.get("release") or k.label
    checkout["tree_name"] = str(name).split(".tar")[0]
    if ident.get("recipe") and ident.get("version"):  # the source tree's version (a booted file's is uname's)
        checkout["git_commit_name"] = f"v{ident['version']}"
    started = _timestamp(k.boot.get("started_at"))
    if started:
        checkout["start_time"] = started
    return checkout


def _build(origin: str, k: KernelRun, checkout_id: str, links: Links, build_error: Optional[str]) -> Dict[str, Any]:
    ident = k.identity
    key = ident.get("key") or ident.get("file_sha256") or _digest("build", ident.get("release"), k.label)
    build: Dict[str, Any] = {
        "id": f"{origin}:{key}",
        "checkout_id": checkout_id,
        "origin": origin,
        "architecture": ARCHITECTURE,
        "comment": k.label,
        "misc": {
            "label": k.label,
            "recipe": ident.get("recipe"),
            "config_sha256": ident.get("config_sha256"),
            "cached": ident.get("cached"),
            "booted_file": ident.get("file"),
        },
    }
    if ident.get("recipe"):
        build["config_name"] = Path(str(ident["recipe"])).stem
        build["status"] = "FAIL" if build_error else "PASS"
    elif ident.get("tuxmake"):  # tuxmake's metadata said PASS (a failed build is refused before booting)
        build["config_name"] = str(ident.get("kconfig") or "tuxmake")
        build["status"] = "PASS"
        build["misc"]["tuxmake"] = ident["tuxmake"]
    if ident.get("compiler"):
        build["compiler"] = str(ident["compiler"])
    started = _timestamp(ident.get("built_at"))
    if started:
        build["start_time"] = started
    folder = k.boot.get("folder")
    log = links.url(Path(folder) / "build.log") if folder else None
    if log:
        build["log_url"] = log
    config = links.url(Path(folder) / "config") if folder else None
    if config:
        build["config_url"] = config
    if build_error:
        build["log_excerpt"] = excerpt([build_error])
    return build


def _boot_test(origin: str, k: KernelRun, build_id: str, links: Links, build_error: Optional[str]) -> Dict[str, Any]:
    outcome = k.boot.get("outcome")
    if build_error:
        state = "MISS"
    elif outcome == "BOOT_FAIL":
        state = "FAIL"
    elif not k.complete or (outcome == "VM_TIMEOUT" and not _ran(k)):
        state = "ERROR"
    else:
        state = "PASS"
    test: Dict[str, Any] = {
        "id": f"{build_id}:{k.boot.get('started_at', '')}:uffdprobe.boot",
        "build_id": build_id,
        "origin": origin,
        "path": "uffdprobe.boot",
        "status": state,
        "comment": f"{k.label}: boot {outcome or 'not attempted'}",
        "environment": _environment(k),
        "misc": {"outcome": outcome, "reason": k.boot.get("reason")},
    }
    console = links.url(k.boot.get("console_log"))
    if console:
        test["log_url"] = console
    lines = k.boot.get("panic_lines") or k.boot.get("console_excerpt") or []
    if k.boot.get("reason") or lines:
        test["log_excerpt"] = excerpt(([k.boot["reason"]] if k.boot.get("reason") else []) + list(lines))
    started = _timestamp(k.boot.get("started_at"))
    if started:
        test["start_time"] = started
    seconds = (k.boot.get("timings") or {}).get("total") if isinstance(k.boot.get("timings"), dict) else None
    if isinstance(seconds, (int, float)):
        test["duration"] = float(seconds)
    test["output_files"] = links.files({"console.log": k.boot.get("console_log"), "run.log": k.boot.get("log")})
    return test


def _ran(k: KernelRun) -> bool:
    return any(r.verdict.value not in ("BOOT_FAIL", "BUILD_FAIL", "VM_TIMEOUT") for r in k.results)


def _environment(k: KernelRun) -> Dict[str, Any]:
    if k.identity.get("file") or k.boot.get("console_log"):
        return {
            "comment": f"QEMU x86_64 guest ({k.boot.get('accel') or 'accelerator unknown'})",
            "misc": {"accel": k.boot.get("accel")},
        }
    return {"comment": "the running kernel (not booted by uffdprobe)"}


def _test(origin: str, k: KernelRun, r: Result, build_id: str, links: Links) -> Dict[str, Any]:
    path = path_of(r.scenario, r.memory)
    run = r.params.get("run")
    want = declared(k.expect, r.scenario, r.memory)
    mark = judge(want, r.verdict)
    test: Dict[str, Any] = {
        "id": f"{build_id}:{k.boot.get('started_at', '')}:{path}" + (f"#{run}" if run else ""),
        "build_id": build_id,
        "origin": origin,
        "path": path,
        "status": status(r.verdict.value),
        "comment": f"{r.scenario} [{r.memory}]: {r.verdict.value}" + (f" (declared {want})" if want else ""),
        "environment": _environment(k),
        "misc": {
            "scenario": r.scenario,
            "memory": r.memory,
            "verdict": r.verdict.value,
            "run": run,
            "declared": want,
            "mark": str(mark) or None,
            "reason": r.reason,
        },
    }
    lines = [f"{key}: {value}" for key, value in summary(r).items()] + _evidence_lines(r.evidence)
    test["log_excerpt"] = excerpt(lines)
    log = links.url(r.evidence.get("log")) or links.url(k.boot.get("log"))
    if log:
        test["log_url"] = log
    started = _timestamp(k.boot.get("started_at"))
    if started:
        test["start_time"] = started
    if r.duration_s is not None:
        test["duration"] = float(r.duration_s)
    test["output_files"] = links.files(
        {
            "console.log": k.boot.get("console_log"),
            "run.log": k.boot.get("log"),
            "results.json": Path(k.boot["folder"]) / "results.json" if k.boot.get("folder") else None,
        }
    )
    return test


def _evidence_lines(evidence: Dict[str, Any]) -> List[str]:
    """After the summary, what a kernel developer reads next: splat and panic lines, the console's tail."""
    out: List[str] = []
    splat = evidence.get("splat")
    if isinstance(splat, dict) and isinstance(splat.get("lines"), list):  # a WARN/OOPS report's lines
        out += [str(x) for x in splat["lines"]]
    for key in ("panic_lines", "output", "console_tail", "output_tail"):
        value = evidence.get(key)
        if isinstance(value, list):
            out += [str(x) for x in value]
        elif isinstance(value, str) and value:
            out += value.splitlines()
    return out


def _known(
    origin: str, k: KernelRun, r: Result, test: Dict[str, Any]
) -> Optional[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(issue, incident) for a declared bad verdict that happened (present) or no longer does (FIXED)."""
    want = declared(k.expect, r.scenario, r.memory)
    mark = judge(want, r.verdict)
    if want not in KERNEL_PROBLEMS or mark not in (EXPECTED, FIXED):
        return None
    key = f"{r.scenario}/{r.memory}={want}"
    issue = {
        "id": f"{origin}:declared:{_digest(k.label, key)}",
        "version": 0,
        "origin": origin,
        "culprit": {"code": True, "tool": False, "harness": False},
        "comment": f"{k.label} is declared to give {want} on {r.scenario} [{r.memory}] (its recipe's "
        "[expect] or --expect)",
        "misc": {"kernel": k.label, "declaration": key},
    }
    incident = {
        "id": f"{test['id']}:incident",
        "origin": origin,
        "issue_id": issue["id"],
        "issue_version": 0,
        "test_id": test["id"],
        "present": mark is EXPECTED,
    }
    return issue, incident


def report(m: Matrix, origin: str, root: Path, url_base: Optional[str] = None) -> Dict[str, Any]:
    """The KCIDB v5 document of a matrix whose files are under the results folder `root`."""
    if not ORIGIN.match(origin):
        raise ValueError(f"{origin!r}: a KCIDB origin is lower-case letters, digits and '_'")
    links = Links(root, url_base)
    out: Dict[str, List[Dict[str, Any]]] = {"checkouts": [], "builds": [], "tests": [], "issues": [], "incidents": []}
    seen = set()
    for k in m.kernels:
        build_error = next((r.reason for r in k.results if r.verdict.value == "BUILD_FAIL"), None)
        checkout = _checkout(origin, k)
        build = _build(origin, k, checkout["id"], links, build_error)
        for kind, obj in (("checkouts", checkout), ("builds", build)):
            if obj["id"] not in seen:
                seen.add(obj["id"])
                out[kind].append(obj)
        if k.identity.get("file") or k.boot.get("console_log") or build_error:
            out["tests"].append(_boot_test(origin, k, build["id"], links, build_error))
        for r in k.results:
            test = _test(origin, k, r, build["id"], links)
            if test["id"] in seen:  # two case names that differ only in what a path cannot hold
                test["id"] += f"~{_digest(r.scenario, r.memory, r.params.get('run'))[:8]}"
            seen.add(test["id"])
            out["tests"].append(test)
            known = _known(origin, k, r, test)
            if known:
                if known[0]["id"] not in seen:
                    seen.add(known[0]["id"])
                    out["issues"].append(known[0])
                out["incidents"].append(known[1])
    return {"version": dict(VERSION), **{kind: objs for kind, objs in out.items() if objs}}
