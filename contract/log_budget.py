"""A job's log against its budget (``contract.spec.LogBudget``): the runner meters what it sends,
and the server meters again what it stores, so a runner that ignores the budget cannot fill the
database either. Both use this one meter (it depends on the contract only, like ``spec``).

A line costs its UTF-8 text and its newline. Output lines (stdout, stderr) beyond the step's or
the job's budget are dropped and counted; Greenlight's own lines (``system``: notices, errors,
the truncation notice itself) have a small allowance beyond it, so the log can still say why it
stops.
"""

from __future__ import annotations

import time

from contract.spec import MAX_BATCH_HEADER_BYTES, MAX_LOG_LINE_CHARS, LogBudget, LogLine

SYSTEM_ALLOWANCE_BYTES = 64 * 1024
# A batch is one request and one stored chunk: large enough that a busy step costs few of each,
# small enough that neither side holds much of a step's output at a time. The runner cuts its
# batches at this much text (or less, ``Delivery.batch_bytes``).
MAX_BATCH_BYTES = 4 * 1024 * 1024
# The most bytes of a batch in its runner's form: its line of JSON, then its text, which passes
# MAX_BATCH_BYTES by one line at most (a line past the bound closes its batch), a line the runner
# cut at MAX_LOG_LINE_CHARS characters of up to four bytes each.
MAX_BATCH_WIRE_BYTES = MAX_BATCH_HEADER_BYTES + 1 + MAX_BATCH_BYTES + 4 * MAX_LOG_LINE_CHARS + 1
# The server's cut: a runner cuts lines at MAX_LOG_LINE_CHARS, a piece may end one chunk later.
MAX_STORED_LINE_CHARS = 4 * MAX_LOG_LINE_CHARS


def line_cost(text: str) -> int:
    return len(text.encode()) + 1


def text_bytes(text: str) -> int:
    """UTF-8 bytes of ``text``, without encoding it when it is ASCII (``isascii`` reads a flag)."""
    return len(text) if text.isascii() else len(text.encode())


def longest_over(text: str, limit: int) -> bool:
    """Whether a line of ``text`` (lines joined by newlines) is longer than ``limit``, without a
    look at each line: from a line's start, the last newline within ``limit + 1`` characters ends
    every line before it (none longer than the window), and the next look starts after it."""
    start = 0
    while len(text) - start > limit:
        end = text.rfind("\n", start, start + limit + 1)
        if end < 0:
            return True
        start = end + 1
    return False


def size_text(size: int) -> str:
    """``16 MiB``, ``512 KiB`` or ``1,000 bytes``: how a budget reads in a log line."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} bytes"


class LogMeter:
    """Counts one job's lines against its budget. Not thread-safe: its owner holds a lock."""

    def __init__(self, budget: LogBudget, *, step_used: int = 0, job_used: int = 0) -> None:
        self.budget = budget
        self.step_used = step_used
        self.job_used = job_used
        self.dropped = 0  # bytes of this step dropped since the last notice
        self._exceeded = "step"
        self._full = self._job_full = False  # output is dropped for the rest of the step, the job

    def begin_step(self) -> None:
        self.step_used, self.dropped = 0, 0
        self._full = self._job_full

    def admit(self, line: LogLine) -> LogLine | None:
        """The line as it may be kept (a huge one cut), or None when it is dropped."""
        if len(line.text) > MAX_STORED_LINE_CHARS:
            self.dropped += line_cost(line.text[MAX_STORED_LINE_CHARS:]) - 1
            line = line.model_copy(update={"text": line.text[:MAX_STORED_LINE_CHARS]})
        cost = line_cost(line.text)
        system = line.stream == "system"
        slack = SYSTEM_ALLOWANCE_BYTES if system else 0
        over_step = self.step_used + cost > self.budget.step_bytes + slack
        over_job = self.job_used + cost > self.budget.job_bytes + slack
        # Once output was dropped, all later output is too: the log stays a prefix of what the
        # step printed (a short line after a long dropped one would read as if it came next).
        if over_step or over_job or (not system and self._full):
            self.dropped += cost
            if over_step or over_job:
                self._exceeded = "job" if over_job else "step"  # name the one that ran out
            self._full = self._full or not system
            self._job_full = self._job_full or (over_job and not system)
            return None
        self.step_used += cost
        self.job_used += cost
        return line

    def admit_size(self, size: int) -> bool:
        """Count ``size`` bytes of lines (none too long, output or Greenlight's own) if all of
        them fit the budget, as ``admit`` would keep each; False (nothing counted) otherwise."""
        if (
            self._full
            or self.step_used + size > self.budget.step_bytes
            or self.job_used + size > self.budget.job_bytes
        ):
            return False
        self.step_used += size
        self.job_used += size
        return True

    def admit_run(self, stream: str, texts: list[str], joined: str | None = None) -> list[str]:
        """``admit`` for lines of one stream, in order: the texts kept (``texts`` itself when all
        are). Output that fits whole (or is dropped whole) is counted in one step, without a look
        at each line. ``joined``: the texts joined by newlines, when the caller has them."""
        if texts and stream != "system":
            joined = "\n".join(texts) if joined is None else joined
            size = text_bytes(joined) + 1  # each line's text and its newline
            if self._full:
                self.dropped += size
                return []
            if (
                self.step_used + size <= self.budget.step_bytes
                and self.job_used + size <= self.budget.job_bytes
                and not longest_over(joined, MAX_STORED_LINE_CHARS)
            ):
                self.step_used += size
                self.job_used += size
                return texts
        kept: list[str] = []
        for index, text in enumerate(texts):
            line = self.admit(LogLine(at=0.0, stream=stream, text=text))
            if line is not None:
                kept.append(line.text)
            elif self._full and stream != "system":
                # The rest of the run is dropped too: counted at once (a runner that ignores its
                # budget may send millions of lines past it).
                rest = texts[index + 1 :]
                self.dropped += len("\n".join(rest).encode()) + 1 if rest else 0
                break
        return kept

    def notice(self) -> LogLine | None:
        """The line that says what was dropped since the last notice (None: nothing was), itself
        metered within the system allowance."""
        if not self.dropped:
            return None
        limit = self.budget.step_bytes if self._exceeded == "step" else self.budget.job_bytes
        text = (
            f"greenlight: log truncated: {self._exceeded} output exceeded {size_text(limit)}; "
            f"{self.dropped:,} bytes dropped"
        )
        self.dropped = 0
        return self.admit(LogLine(at=time.time(), stream="system", text=text))
