"""JUnit XML as pytest, go-junit-report, Maven surefire and jest-junit write it, read by one
tolerant parser that expands no entity and reads no external file."""

import tracemalloc
from pathlib import Path

import pytest

from contract import junit
from contract.junit import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_MESSAGE_CHARS,
    MAX_TEXT_CHARS,
    JunitError,
    Outcome,
    masked_document,
    parse_junit,
)
from contract.spec import MAX_REPORT_BYTES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "junit"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def by_name(suites):  # type: ignore[no-untyped-def]
    return {case.name: case for suite in suites for case in suite.cases}


def test_pytest_report_gives_failures_errors_skips_and_passes() -> None:
    suites = parse_junit(fixture("pytest.xml")).suites
    assert [suite.name for suite in suites] == ["pytest"]
    cases = by_name(suites)
    assert len(cases) == 5
    failed = cases["test_discount_applies_once"]
    assert failed.outcome is Outcome.failed
    assert failed.classname == "tests.test_cart"
    assert failed.duration_seconds == pytest.approx(0.003)
    assert failed.message is not None and failed.message.startswith("AssertionError: assert 90 == 81")
    assert failed.text is not None and "tests/test_cart.py:27: AssertionError" in failed.text
    assert cases["test_refund"].outcome is Outcome.errored
    assert "Connection refused" in (cases["test_refund"].message or "")
    assert cases["test_chargeback"].outcome is Outcome.skipped
    assert cases["test_checkout[visa]"].outcome is Outcome.passed


def test_go_junit_report_gives_one_suite_per_package() -> None:
    suites = parse_junit(fixture("go.xml")).suites
    assert [suite.name for suite in suites] == ["example.com/shop/cart", "example.com/shop/prices"]
    cases = by_name(suites)
    failed = cases["TestDiscount/applies_once"]
    assert failed.outcome is Outcome.failed
    assert failed.message == "Failed"
    assert failed.text is not None and "total = 90, want 81" in failed.text
    assert cases["TestCheckout"].outcome is Outcome.skipped
    assert cases["TestRound"].classname == "example.com/shop/prices"


def test_surefire_report_without_testsuites_and_its_flaky_failure() -> None:
    suites = parse_junit(fixture("surefire.xml")).suites
    assert [suite.name for suite in suites] == ["com.example.shop.CartTest"]
    cases = by_name(suites)
    failed = cases["discountAppliesOnce"]
    assert failed.outcome is Outcome.failed
    assert failed.message == "expected: <81> but was: <90>"
    assert failed.text is not None and "CartTest.java:27" in failed.text
    # Surefire re-ran it (rerunFailingTestsCount) and it passed: a pass that failed first.
    flaky = cases["checkoutWithCard"]
    assert flaky.outcome is Outcome.passed and flaky.flaky
    assert flaky.message == "Connection reset"
    assert cases["refund"].outcome is Outcome.skipped


def test_jest_report_takes_the_message_from_the_failure_text_and_keeps_the_file() -> None:
    suites = parse_junit(fixture("jest.xml")).suites
    cases = by_name(suites)
    failed = cases["cart applies a discount once"]
    assert failed.outcome is Outcome.failed
    assert failed.message == "Error: expect(received).toBe(expected) // Object.is equality"
    assert failed.file == "src/cart.test.js"
    assert cases["cart checks out"].outcome is Outcome.skipped
    assert sum(len(suite.cases) for suite in suites) == 4


def test_nested_suites_are_read_and_namespaced_tags_understood() -> None:
    text = (
        '<testsuites xmlns="urn:x"><testsuite name="outer"><testsuite name="inner">'
        '<testcase name="a" classname="k"><failure message="m"/></testcase>'
        "</testsuite></testsuite></testsuites>"
    )
    suites = parse_junit(text).suites
    assert [suite.name for suite in suites] == ["inner"]
    assert suites[0].cases[0].outcome is Outcome.failed


def test_a_billion_laughs_is_refused_without_expanding_anything() -> None:
    laughs = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    text = f'<?xml version="1.0"?><!DOCTYPE testsuite [{laughs}]><testsuite name="s">&lol9;</testsuite>'
    with pytest.raises(JunitError, match="DTD"):
        parse_junit(text)


def test_an_external_entity_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET")
    text = (
        f'<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<testsuite name="s"><testcase name="a"><failure message="&x;"/></testcase></testsuite>'
    )
    with pytest.raises(JunitError) as caught:
        parse_junit(text)
    assert "TOP-SECRET" not in str(caught.value)


def test_not_xml_says_where_it_broke() -> None:
    with pytest.raises(JunitError, match="line 2"):
        parse_junit('<testsuite name="s">\n<testcase name="a"></testsuite>')


def test_another_kind_of_xml_says_what_was_expected() -> None:
    with pytest.raises(JunitError, match="<testsuites> or <testsuite>"):
        parse_junit("<project><name>x</name></project>")


def test_long_messages_and_texts_are_cut_and_say_so() -> None:
    long = "x" * (MAX_TEXT_CHARS + 500)
    failure = f'<failure message="{long}">{long}</failure>'
    text = f'<testsuite name="s"><testcase name="a">{failure}</testcase></testsuite>'
    case = parse_junit(text).suites[0].cases[0]
    assert case.message is not None and len(case.message) <= MAX_MESSAGE_CHARS
    assert case.text is not None and len(case.text) <= MAX_TEXT_CHARS and case.text.endswith("… (cut)")


def test_bad_or_missing_times_and_names_are_tolerated() -> None:
    text = '<testsuite><testcase time="soon"/><testcase name="b" time="1,234.5"/></testsuite>'
    suites = parse_junit(text).suites
    first, second = suites[0].cases
    assert first.name == "" and first.duration_seconds is None
    assert second.duration_seconds == pytest.approx(1234.5)


def test_a_rerun_failure_without_a_stack_trace_still_marks_the_pass_flaky() -> None:
    # An element without children is false in a boolean test: it must be looked up as present.
    text = '<testsuite><testcase name="a"><flakyFailure message="timed out"/></testcase></testsuite>'
    case = parse_junit(text).suites[0].cases[0]
    assert case.outcome is Outcome.passed and case.flaky and case.message == "timed out"


def test_cases_beyond_the_limit_are_counted_not_read() -> None:
    text = (
        "<testsuites>"
        + "".join(
            f'<testsuite name="s{i}"><testcase name="a"/><testcase name="b"/></testsuite>' for i in range(3)
        )
        + "</testsuites>"
    )
    report = parse_junit(text, max_cases=3)
    assert [len(suite.cases) for suite in report.suites] == [2, 1]
    assert report.dropped == 3
    assert parse_junit(text).dropped == 0


def test_suites_nested_too_deep_are_refused_with_a_reason() -> None:
    # ~27 KB: read recursively, this ran out of stack (a 500 for the upload, retried for ever).
    deep = "<testsuite>" * 1200 + '<testcase name="t"/>' + "</testsuite>" * 1200
    with pytest.raises(JunitError, match="nested deeper than"):
        parse_junit(deep)
    with pytest.raises(JunitError, match="nested deeper than"):
        masked_document(deep, str)


def test_suites_nested_within_the_limit_are_read() -> None:
    levels = MAX_DEPTH - 1  # and the test case's
    nested = "<testsuite>" * levels + '<testcase name="t"/>' + "</testsuite>" * levels
    assert [case.name for suite in parse_junit(nested).suites for case in suite.cases] == ["t"]
    below = "<testsuite>" * (MAX_DEPTH + 1) + "</testsuite>" * (MAX_DEPTH + 1)
    with pytest.raises(JunitError, match="nested deeper than"):
        parse_junit(below)


def test_a_file_of_more_elements_than_any_report_has_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # An 8 MiB file of <a/> is two million elements, all built before any limit applied.
    assert MAX_REPORT_BYTES // len("<a/>") > MAX_ELEMENTS
    monkeypatch.setattr(junit, "MAX_ELEMENTS", 1000)
    flood = "<testsuite>" + "<a/>" * 1000 + '<testcase name="t"/></testsuite>'
    with pytest.raises(JunitError, match="more than 1,000 elements"):
        parse_junit(flood)
    with pytest.raises(JunitError, match="more than 1,000 elements"):
        masked_document(flood, str)
    assert parse_junit(flood.replace("<a/>", "", 2)).suites[0].cases[0].name == "t"


def test_reading_keeps_no_more_of_the_document_than_the_case_it_reads() -> None:
    # Elements a reader never needs (under a suite, in a test case, in a failure) are let go as
    # they end: the whole tree of a large report is never held.
    filler = "<a><b/></a>" * 3_000
    cases = f'<testcase name="t">{filler}<failure message="m">{filler}</failure></testcase>'
    text = f"<testsuites>{filler}<testsuite>{filler}{cases}</testsuite></testsuites>"
    tracemalloc.start()
    try:
        report = parse_junit(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(case.outcome, case.message) for suite in report.suites for case in suite.cases] == [
        (Outcome.failed, "m")
    ]
    assert peak < 1536 * 1024  # the whole tree: over 2.5 MiB
