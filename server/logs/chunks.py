"""A stored chunk's lines, whichever way it holds them (``server/models/log.py``), and the way a
batch is stored."""

from __future__ import annotations

import operator
import re
from typing import Any

import sqlalchemy as sa

from contract.log_budget import MAX_STORED_LINE_CHARS, LogMeter, longest_over, text_bytes
from contract.spec import LogBatch
from contract.visible import has_controls, shown

Line = tuple[float, str, str]

# What stands for a character Postgres cannot store (NUL, in text or in JSON) or UTF-8 cannot
# encode (half a surrogate pair, which JSON's escapes can carry), as it stands for output that is
# not UTF-8 (the runner decodes it so): the line is kept, and shows where the character was.
UNSTORABLE = "\x00"
SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(batch: LogBatch) -> LogBatch:
    """``batch`` with the characters Postgres refuses replaced: a step that prints a NUL loses no
    line (a refused batch would lose all of them). A text is copied only when it holds one."""
    text = storable_text(batch.text)
    lines = [
        line if (kept := storable_text(line.text)) is line.text else line.model_copy(update={"text": kept})
        for line in batch.lines
    ]
    if text is batch.text and all(map(operator.is_, lines, batch.lines)):
        return batch
    return batch.model_copy(update={"text": text, "lines": lines})


def storable_text(text: str) -> str:
    """``text`` itself when Postgres stores it as it is, else a copy with U+FFFD instead."""
    if UNSTORABLE in text:
        text = text.replace(UNSTORABLE, REPLACEMENT)
    if not text.isascii() and SURROGATE.search(text):
        text = SURROGATE.sub(REPLACEMENT, text)
    return text


def chunk_texts(lines: list[Any] | None, text: str | None) -> list[str]:
    """The text of each line of a chunk."""
    if text is not None:
        return text.split("\n")
    return [line[2] for line in lines or []]


def chunk_lines(lines: list[Any] | None, text: str | None, runs: list[Any] | None) -> list[Line]:
    """(at, stream, text) for each line of a chunk."""
    if text is None:
        return [(line[0], line[1], line[2]) for line in lines or []]
    texts = text.split("\n")
    out: list[Line] = []
    position = 0
    for at, stream, count in runs or []:
        out.extend((at, stream, line) for line in texts[position : position + count])
        position += count
    return out


def stored_form(runs: list[tuple[float, str, list[str]]]) -> dict[str, Any]:
    """The columns that hold ``runs`` (lines of one stream read together): as one text when no
    line holds a newline (what a runner's line splitter never sends), else a triple per line."""
    texts = [text for _, _, run in runs for text in run]
    joined = "\n".join(texts)
    sizes = {"line_count": len(texts), "text_bytes": sum(len(text.encode()) for text in texts)}
    if not texts or joined.count("\n") != len(texts) - 1:
        triples = [[at, stream, text] for at, stream, run in runs for text in run]
        return {"lines": triples, "text": None, "runs": sa.null(), **sizes}
    counted = [(at, stream, len(run)) for at, stream, run in runs]
    return _text_columns(counted, joined, sizes["text_bytes"])


def stored_whole(batch: LogBatch, meter: LogMeter) -> dict[str, Any] | None:
    """The columns that hold a batch of runs alone (its ``text`` as it came) when ``meter`` keeps
    all of it; None when a line has to be looked at (single lines, the budget, a huge line)."""
    if batch.lines or not batch.runs:
        return None
    text = batch.text
    size = text_bytes(text)
    if longest_over(text, MAX_STORED_LINE_CHARS):
        return None
    if not meter.admit_size(size + 1):  # each line's text and its newline
        return None
    return _text_columns(batch.runs, text, size - text.count("\n"))


def _ascii_shown(text: str) -> str | None:
    """``text`` as the page shows it when that is ASCII (``shown`` keeps every newline: no escape
    sequence runs past one), else None (the database lowers other letters by its own rule)."""
    visible = shown(text)
    return visible if visible.isascii() else None


def _text_columns(runs: list[tuple[float, str, int]], text: str, text_bytes: int) -> dict[str, Any]:
    merged: list[list[Any]] = []
    for at, stream, count in runs:
        if not count:
            continue
        if merged and merged[-1][0] == at and merged[-1][1] == stream:
            merged[-1][2] += count
        else:
            merged.append([at, stream, count])
    # A control character (a colour code, a carriage return) is not shown as it is stored: such a
    # chunk is searched by its text as shown, as the page shows it.
    controls = has_controls(text)
    return {
        "lines": sa.null(),
        "text": text,
        "runs": merged,
        "plain": text.isascii() and not controls,
        "shown": _ascii_shown(text) if controls else None,
        "line_count": sum(count for _, _, count in merged),
        "text_bytes": text_bytes,
    }
