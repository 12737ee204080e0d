"""Property: any text, and any mutation of the real dialects' reports, gives suites within the
limits or a JunitError that says why — never another exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.junit import (
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    JunitError,
    parse_junit,
)

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "junit").glob("*.xml"))
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        suites = parse_junit(text).suites
    except JunitError as error:
        assert str(error)
        return
    for suite in suites:
        assert suite.cases and len(suite.name) <= MAX_NAME_CHARS
        for case in suite.cases:
            assert len(case.name) <= MAX_NAME_CHARS and len(case.classname) <= MAX_NAME_CHARS
            assert case.message is None or len(case.message) <= MAX_MESSAGE_CHARS
            assert case.text is None or len(case.text) <= MAX_TEXT_CHARS
            assert "\x00" not in case.name + (case.text or "")


@FUZZ
@given(st.text())
def test_any_text_is_read_or_refused_with_a_reason(text: str) -> None:
    check(text)


@FUZZ
@given(st.sampled_from(FIXTURES), st.data())
def test_a_mutated_report_is_read_or_refused_with_a_reason(path: Path, data: st.DataObject) -> None:
    text = path.read_text()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 40)))
    check(text[:start] + data.draw(st.text(max_size=40)) + text[end:])
