# SPDX-License-Identifier: GPL-2.0-only
"""Patches as developers get them, turned into (subject, diff text) pieces.

A file may be a plain unified diff, one `git format-patch` mail, an mbox of several mails
(split at the mbox `From ` lines, kept in order), or a saved mailing-list web page (lore:
HTML, or the page as text): the diff is taken hunk by hunk, each hunk exactly as long as its
`@@ -a,b +c,d @@` header says, so the page around it (thread overview, reply instructions,
signature) is left behind. A blank line inside a hunk is a blank context line (web pages
drop the leading space).
"""

import email.errors
import email.header
import html
import re
from typing import List, Tuple

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_MBOX_FROM = re.compile(r"^From \S+ +\S.*$")
_GIT_HEADER = (
    "index ",
    "new file mode ",
    "deleted file mode ",
    "old mode ",
    "new mode ",
    "similarity index ",
    "dissimilarity index ",
    "rename from ",
    "rename to ",
    "copy from ",
    "copy to ",
)


def pieces(text: str) -> List[Tuple[str, str]]:
    """(subject, diff text) of every patch in `text`, in order; a piece without a diff is dropped."""
    text = text.replace("\r\n", "\n")
    if _is_html(text):
        text = html_to_text(text)
    out = []
    for message in split_mbox(text):
        diff = extract_diff(message)
        if diff:
            out.append((subject_of(message), diff))
    return out


def _is_html(text: str) -> bool:
    head = text[:4096].lower()
    return "<html" in head or "<!doctype html" in head or head.lstrip().startswith("<")


def html_to_text(page: str) -> str:
    """The text a browser shows of a page: <br> as newlines, tags dropped, entities decoded."""
    page = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", page)
    page = re.sub(r"(?i)<br\s*/?>", "\n", page)
    page = re.sub(r"(?s)<[^>]*>", "", page)
    return html.unescape(page)


def split_mbox(text: str) -> List[str]:
    """The messages of an mbox (each starting at a `From ` line); the whole text when there is none."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _MBOX_FROM.match(line)]
    if len(starts) <= 1:
        return [text]
    bounds = starts + [len(lines)]
    return ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:])]


def subject_of(message: str) -> str:
    """The Subject: header with its folded continuation lines and its RFC 2047 encoded words decoded (as
    git format-patch writes a subject that is not ASCII: '=?UTF-8?q?...?='), '' when there is none."""
    lines = message.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("Subject:"):
            subject = line[len("Subject:") :].strip()
            for more in lines[i + 1 :]:
                if not more.startswith((" ", "\t")) or not more.strip():
                    break
                subject += " " + more.strip()
            return decoded_header(subject)
    return ""


def decoded_header(value: str) -> str:
    """A mail header's text with its RFC 2047 encoded words decoded; as it is when it has none or they are
    malformed or in a charset Python does not know."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (email.errors.HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return value


def extract_diff(message: str) -> str:
    """The unified diff in `message`: file headers and complete hunks only, '' when there is none."""
    lines = message.split("\n")
    out: List[str] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith("diff --git "):
            out.append(line)
            i += 1
            while i < n and lines[i].startswith(_GIT_HEADER):
                out.append(lines[i])
                i += 1
            continue
        if line.startswith("--- ") and i + 1 < n and lines[i + 1].startswith("+++ "):
            out += [line, lines[i + 1]]
            i += 2
            while i < n and _HUNK.match(lines[i]):
                i = _take_hunk(lines, i, out)
            continue
        i += 1
    return "\n".join(out) + "\n" if any(_HUNK.match(line) for line in out) else ""


def _take_hunk(lines: List[str], i: int, out: List[str]) -> int:
    """Append the hunk starting at lines[i] to out; the index after it."""
    m = _HUNK.match(lines[i])
    old = int(m.group(2)) if m.group(2) is not None else 1
    new = int(m.group(4)) if m.group(4) is not None else 1
    out.append(lines[i])
    i += 1
    while i < len(lines) and (old > 0 or new > 0):
        line = lines[i] or " "
        kind = line[0]
        if kind == " ":
            old, new = old - 1, new - 1
        elif kind == "-":
            old -= 1
        elif kind == "+":
            new -= 1
        elif kind != "\\":
            break  # the hunk ends early: patch(1) will name it as malformed
        out.append(line)
        i += 1
    if i < len(lines) and lines[i].startswith("\\ "):  # "\ No newline at end of file"
        out.append(lines[i])
        i += 1
    return i
