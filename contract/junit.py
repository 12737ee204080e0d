"""JUnit XML → suites and test cases, as a pure function.

The runner reads a file once to mask the secrets in what it decodes to (``masked_document``),
the server reads what the runner sent. The file comes from a step, so it is untrusted:
defusedxml refuses any DTD (no entity is expanded, no external file or URL is read), and the
runner API bounds its size before it gets here. The dialects differ in what they put where,
and this reads them all:
- pytest: ``<testsuites><testsuite>`` (older versions: ``<testsuite>`` alone), ``<error>`` for a
  failed fixture, ``<skipped message>``;
- go-junit-report: one ``<testsuite>`` per package, CDATA texts, ``message="Failed"``;
- Maven surefire: ``<testsuite>`` alone, ``<flakyFailure>`` / ``<rerunFailure>`` when it re-ran a
  test (``rerunFailingTestsCount``);
- jest-junit: no ``message`` attribute (the message is the text's first line), a ``file``.
Counts are taken from the test cases, never from the suites' attributes, which tools fill
differently (or not at all).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_NAME_CHARS = 1000
MAX_MESSAGE_CHARS = 1000
MAX_TEXT_CHARS = 16 * 1024
# A job's reports are read up to this many test cases in all (what one push can make the server
# store); the rest are counted as dropped, and the page says so.
MAX_CASES = 100_000
_CUT = "… (cut)"


class JunitError(ValueError):
    """The file is not JUnit XML that can be read; the message says why, in the user's words."""


class Outcome(enum.StrEnum):
    passed = "passed"
    failed = "failed"  # an assertion failed (<failure>)
    errored = "errored"  # the test could not run to its end (<error>): a fixture, a crash
    skipped = "skipped"


@dataclass(frozen=True)
class ParsedCase:
    name: str
    classname: str
    file: str | None
    duration_seconds: float | None
    outcome: Outcome
    message: str | None
    text: str | None
    # The tool itself re-ran it and it passed after failing (surefire's <flakyFailure>).
    flaky: bool = False


@dataclass(frozen=True)
class JunitReport:
    suites: list[ParsedSuite]
    dropped: int  # test cases beyond ``max_cases``, not read


@dataclass
class ParsedSuite:
    name: str
    cases: list[ParsedCase] = field(default_factory=list)
    duration_seconds: float | None = None


def parse_junit(text: str, max_cases: int = MAX_CASES) -> JunitReport:
    """The suites of a JUnit XML document that hold test cases, in document order, with their
    first ``max_cases`` test cases; a suite that holds only suites is not one of them (its suites
    are). ``JunitError`` if unreadable."""
    root = _root(text)
    suites: list[ParsedSuite] = []
    budget = [max(max_cases, 0)]
    _read_suite(root, suites, budget)
    return JunitReport(suites, dropped=-budget[0] if budget[0] < 0 else 0)


def masked_document(text: str, mask: Callable[[str], str]) -> str:
    """The document with ``mask`` applied to every text and attribute value as XML decodes it,
    written back as XML. Masking the file's raw text cannot work: a value can be written in many
    ways (``&#115;``, ``&#x73;``, a CDATA section split in two, a quote left unescaped) that all
    read the same. Comments and processing instructions are dropped (nobody reads them).
    ``JunitError`` (its message may quote the file: mask it too) if the file cannot be read."""
    root = _root(text)
    for element in root.iter():
        element.text = mask(element.text) if element.text else element.text
        element.tail = mask(element.tail) if element.tail else element.tail
        for name, value in element.attrib.items():
            element.attrib[name] = mask(value)
    return tostring(root, encoding="unicode")


def _root(text: str) -> Element:
    try:
        root = fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise JunitError("a DTD or an entity declaration is not allowed in a test report") from None
    except ParseError as error:
        line, column = getattr(error, "position", (0, 0))
        raise JunitError(f"not well-formed XML at line {line}, column {column + 1}") from None
    if _tag(root) not in ("testsuites", "testsuite"):
        raise JunitError(f"expected <testsuites> or <testsuite> at the top, found <{_tag(root)}>")
    return root


def _read_suite(element: Element, suites: list[ParsedSuite], budget: list[int]) -> None:
    suite = ParsedSuite(
        name=_cut(element.get("name") or "", MAX_NAME_CHARS), duration_seconds=_seconds(element.get("time"))
    )
    for child in element:
        tag = _tag(child)
        if tag in ("testsuite", "testsuites"):
            _read_suite(child, suites, budget)
        elif tag == "testcase":
            budget[0] -= 1  # below zero: how many were dropped
            if budget[0] >= 0:
                suite.cases.append(_read_case(child))
    if suite.cases:
        suites.append(suite)


def _read_case(element: Element) -> ParsedCase:
    children = {_tag(child): child for child in reversed(element)}  # the first of each kind wins
    outcome, detail = Outcome.passed, None
    for tag, found in (("failure", Outcome.failed), ("rerunFailure", Outcome.failed),
                       ("error", Outcome.errored), ("rerunError", Outcome.errored),
                       ("skipped", Outcome.skipped)):  # fmt: skip
        if tag in children:
            outcome, detail = found, children[tag]
            break
    flaky = False
    if outcome is Outcome.passed:
        # Not `a or b`: an element without children is false in a boolean test.
        detail = next((children[tag] for tag in ("flakyFailure", "flakyError") if tag in children), None)
        flaky = detail is not None
    message, text = _detail(detail) if detail is not None else (None, None)
    return ParsedCase(
        name=_cut(element.get("name") or "", MAX_NAME_CHARS),
        classname=_cut(element.get("classname") or element.get("class") or "", MAX_NAME_CHARS),
        file=_cut(element.get("file"), MAX_NAME_CHARS) if element.get("file") else None,
        duration_seconds=_seconds(element.get("time")),
        outcome=outcome,
        message=message,
        text=text,
        flaky=flaky,
    )


def _detail(element: Element) -> tuple[str | None, str | None]:
    """A failure's message (its attribute, else its text's first line) and text (surefire puts a
    re-run's in <stackTrace>)."""
    text = (element.text or "").strip("\n")
    if not text.strip():
        trace = next((child for child in element if _tag(child) == "stackTrace"), None)
        text = (trace.text or "").strip("\n") if trace is not None else ""
    message = element.get("message") or next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _cut(message, MAX_MESSAGE_CHARS) or None, _cut(text, MAX_TEXT_CHARS) or None


def _tag(element: Element) -> str:
    tag = element.tag if isinstance(element.tag, str) else ""
    return tag.rsplit("}", 1)[-1]


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.replace(",", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _cut(text: str | None, limit: int) -> str:
    text = (text or "").replace("\x00", "")
    return text if len(text) <= limit else text[: limit - len(_CUT)] + _CUT
