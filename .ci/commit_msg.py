# SPDX-License-Identifier: GPL-2.0-only
"""The commit-msg hook (.pre-commit-config.yaml): a subject `stage: summary` of at most 72 characters,
then a blank line before the body (CONTRIBUTING.md, "Commits").

`stage` is the package or area changed, or several joined by ", " (`scenarios, kbuild: ...`). Messages git
writes itself (Merge, Revert) pass; `fixup!`, `squash!` and `amend!` subjects are checked without the prefix.
Usage: python .ci/commit_msg.py MESSAGE_FILE; exit 0 when the message is well formed, else 1 with the reasons.
"""
import re
import sys
from typing import List

MAX_SUBJECT = 72
_STAGE = r"[A-Za-z0-9_./-]+"
SUBJECT = re.compile(rf"^{_STAGE}(, {_STAGE})*: \S")
_GIT_WRITES = re.compile(r"^(Merge |Revert \")")
_AUTOSQUASH = re.compile(r"^(fixup|squash|amend)! ")
_SCISSORS = "# ------------------------ >8 ------------------------"


def message_lines(text: str) -> List[str]:
    """The message as git keeps it: nothing from the scissors line on, no comment lines, no leading blanks."""
    text = text.split(_SCISSORS, 1)[0]
    lines = [line.rstrip() for line in text.splitlines() if not line.startswith("#")]
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def problems(text: str) -> List[str]:
    """What is wrong with a commit message, one reason a line; [] when it is well formed."""
    lines = message_lines(text)
    if not lines:
        return ["the message is empty"]
    subject = lines[0]
    if _GIT_WRITES.match(subject):
        return []
    while _AUTOSQUASH.match(subject):
        subject = _AUTOSQUASH.sub("", subject, count=1)
    found = []
    if len(subject) > MAX_SUBJECT:
        found.append(f"the subject is {len(subject)} characters, at most {MAX_SUBJECT}: {subject!r}")
    if not SUBJECT.match(subject):
        found.append(f"the subject is not `stage: summary` (e.g. `kbuild: ...`, `scenarios, kbuild: ...`): "
                     f"{subject!r}")
    if len(lines) > 1 and lines[1]:
        found.append("the subject needs a blank line after it, before the body")
    return found


def main(argv: List[str]) -> int:
    """Check the message file git hands the commit-msg hook; print the reasons and return 1 if it is bad."""
    if len(argv) != 2:
        print("usage: commit_msg.py MESSAGE_FILE", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8", errors="replace") as f:
        found = problems(f.read())
    for reason in found:
        print(f"commit message: {reason}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
