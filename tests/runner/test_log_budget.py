"""The runner sends no more of a job's output than its budget, and says what it dropped."""

from __future__ import annotations

from pathlib import Path

from contract.log_budget import MAX_BATCH_BYTES, LogMeter
from contract.spec import LogBatch, LogBudget, LogLine
from tests.runner.shipping import shipping


class Api:
    def __init__(self) -> None:
        self.batches: list[LogBatch] = []

    def send_logs(self, job_id: int, token: str, content: bytes) -> None:
        self.batches.append(LogBatch.from_wire(content))


def line(text: str, stream: str = "stdout") -> LogLine:
    return LogLine(at=1.0, stream=stream, text=text)


def sent(api: Api, step_index: int) -> list[str]:
    return [
        item.text for batch in api.batches if batch.step_index == step_index for item in batch.all_lines()
    ]


def test_output_beyond_the_step_and_job_budgets_is_never_sent_and_the_log_says_so(tmp_path: Path) -> None:
    api = Api()
    with shipping(api, tmp_path, budget=LogBudget(step_bytes=1000, job_bytes=1500)) as shipper:
        shipper.begin_step(0)
        for _ in range(50):
            shipper.add(line("x" * 99))  # 100 bytes with its newline
        shipper.begin_step(1)
        for _ in range(50):
            shipper.add(line("y" * 99))
    first, second = sent(api, 0), sent(api, 1)
    assert first == ["x" * 99] * 10 + [
        "greenlight: log truncated: step output exceeded 1,000 bytes; 4,000 bytes dropped"
    ]
    assert second[0] == "y" * 99 and second[-1].startswith(
        "greenlight: log truncated: job output exceeded 1,500 bytes;"
    )
    assert all(text == "y" * 99 for text in second[:-1]) and len(second) - 1 < 5


def test_batches_stay_under_a_mebibyte_whatever_the_lines(tmp_path: Path) -> None:
    api = Api()
    with shipping(api, tmp_path) as shipper:
        shipper.begin_step(0)
        for _ in range(100):
            shipper.add(line("z" * 65536))
    assert sum(len(batch.all_lines()) for batch in api.batches) == 100
    assert all(
        sum(len(item.text) + 1 for item in batch.all_lines()) <= MAX_BATCH_BYTES + 65537
        for batch in api.batches
    )
    assert len(api.batches) > 1


def test_a_run_past_the_budget_keeps_the_lines_that_fit_and_counts_the_rest_as_dropped() -> None:
    meter = LogMeter(LogBudget(step_bytes=10, job_bytes=100))
    assert meter.admit_run("stdout", ["aaaa", "bbbb", "cccc", "dd", "é"]) == ["aaaa", "bbbb"]
    assert meter.admit_run("stdout", ["e"]) == []  # the log stays a prefix of the output
    assert meter.admit_run("system", ["note"]) == ["note"]  # Greenlight's own lines still fit
    assert meter.dropped == 5 + 3 + 3 + 2
