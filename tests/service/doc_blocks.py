"""The code blocks of a Markdown document by heading, so that a test runs what a document tells a reader to run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    """A fenced block: the heading it sits under, its language, its text, and its first line's number."""

    heading: str
    lang: str
    text: str
    line: int


def code_blocks(path: Path) -> list[Block]:
    """Every fenced code block of the document, in order."""
    blocks: list[Block] = []
    heading, lang, body, start = "", None, [], 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if lang is None:
            if fence:
                lang, body, start = fence.group(1), [], number + 1
            elif match := _HEADING.match(line):
                heading = match.group(2)
        elif line.startswith("```"):
            blocks.append(Block(heading, lang, "\n".join(body) + "\n", start))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        raise ValueError(f"{path}: the code block from line {start} is never closed")
    return blocks


def block(path: Path, heading: str, lang: str = "sh") -> str:
    """The blocks of `lang` under `heading`, one after the other (as a reader runs them); an error if none."""
    found = [b.text for b in code_blocks(path) if b.heading == heading and b.lang == lang]
    if not found:
        raise LookupError(f"{path}: no {lang} block under the heading {heading!r}")
    return "".join(found)
