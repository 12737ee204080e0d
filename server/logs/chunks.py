"""A stored chunk's lines, whichever way it holds them (``server/models/log.py``), and the way a
batch is stored."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

Line = tuple[float, str, str]


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
    if not texts or joined.count("\n") != len(texts) - 1:
        triples = [[at, stream, text] for at, stream, run in runs for text in run]
        return {"lines": triples, "text": None, "runs": sa.null()}
    merged: list[list[Any]] = []
    for at, stream, run in runs:
        if not run:
            continue
        if merged and merged[-1][0] == at and merged[-1][1] == stream:
            merged[-1][2] += len(run)
        else:
            merged.append([at, stream, len(run)])
    plain = joined.isascii() and "\x1b" not in joined
    return {"lines": sa.null(), "text": joined, "runs": merged, "plain": plain}
