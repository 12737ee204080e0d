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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

MAX_NAME_CHARS = 1000
MAX_MESSAGE_CHARS = 1000
MAX_TEXT_CHARS = 16 * 1024
# A job's reports are read up to this many test cases in all (what one push can make the server
# store); the rest are counted as dropped, and the page says so.
MAX_CASES = 100_000
# What a report is read within, whatever its size (bounded too): deeper or more is not a test
# report. Suites nest a few levels; a test case is a few elements (its failure, its output).
MAX_DEPTH = 64
MAX_ELEMENTS = 500_000
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
    are). ``JunitError`` if unreadable.

    Read as a stream: each element is let go when it ends unless a test case being read needs
    it (its first failure, error or skip of each kind, and that one's first stack trace), so the
    memory it takes is that of one test case, however large the file."""
    suites: list[ParsedSuite] = []
    budget, seen = max(max_cases, 0), 0
    # The open elements, outermost first, with what each is to the reader.
    opened: list[tuple[Element, _Role, ParsedSuite | None]] = []
    for event, element in _events(text):
        tag = _tag(element)
        if event == "start":
            within = opened[-1][1] if opened else _Role.suite
            role = _role(tag, within)
            suite = None
            if role is _Role.suite:
                name, time = element.get("name"), element.get("time")
                suite = ParsedSuite(name=_cut(name or "", MAX_NAME_CHARS), duration_seconds=_seconds(time))
            opened.append((element, role, suite))
            continue
        _, role, suite = opened.pop()
        if role is _Role.suite and suite is not None and suite.cases:
            suites.append(suite)
        if not opened:
            break
        parent, _, parent_suite = opened[-1]
        if role is _Role.case and parent_suite is not None:
            seen += 1  # beyond the budget: counted as dropped
            if seen <= budget:
                parent_suite.cases.append(_read_case(element))
        # Events come a chunk behind the parser (later siblings may be in the tree already), and
        # the earlier siblings still there are the few kept: the element is found among the first.
        index = next(i for i, other in enumerate(parent) if other is element)
        kept = role in (_Role.detail, _Role.trace) and not any(_tag(other) == tag for other in parent[:index])
        if not kept:
            del parent[index]
    return JunitReport(suites, dropped=max(seen - budget, 0))


class _Role(enum.Enum):
    suite = "suite"  # a suite at the top or in a suite: its test cases are read
    case = "case"  # a test case in such a suite
    detail = "detail"  # a failure, error or skip of a test case (or the tool's re-run of it)
    trace = "trace"  # a detail's stack trace (surefire's re-runs)
    other = "other"  # nobody reads it


_DETAILS = frozenset(
    ("failure", "rerunFailure", "error", "rerunError", "skipped", "flakyFailure", "flakyError")
)


def _role(tag: str, within: _Role) -> _Role:
    if within is _Role.suite:
        return {"testsuite": _Role.suite, "testsuites": _Role.suite, "testcase": _Role.case}.get(
            tag, _Role.other
        )
    if within is _Role.case and tag in _DETAILS:
        return _Role.detail
    if within is _Role.detail and tag == "stackTrace":
        return _Role.trace
    return _Role.other


def masked_document(text: str, mask: Callable[[str], str]) -> str:
    """The document with ``mask`` applied to every text and attribute value as XML decodes it,
    written back as XML. Masking the file's raw text cannot work: a value can be written in many
    ways (``&#115;``, ``&#x73;``, a CDATA section split in two, a quote left unescaped) that all
    read the same. Comments and processing instructions are dropped (nobody reads them).
    ``JunitError`` (its message may quote the file: mask it too) if the file cannot be read. The
    whole tree is held: ``MAX_ELEMENTS`` and ``MAX_DEPTH`` bound it (and the writer's recursion)."""
    root: Element | None = None
    for _, element in _events(text):
        root = element if root is None else root
    assert root is not None  # _events raises on a document without an element
    for element in root.iter():
        element.text = mask(element.text) if element.text else element.text
        element.tail = mask(element.tail) if element.tail else element.tail
        for name, value in element.attrib.items():
            element.attrib[name] = mask(value)
    return tostring(root, encoding="unicode")


class _Reader:
    """The text as a file the parser reads in chunks, without a copy of it (``io.StringIO``
    makes one, four bytes a character). A str, not bytes: the text is already decoded, and an
    encoding the document declares is not applied to it again."""

    def __init__(self, text: str) -> None:
        self._text, self._at = text, 0

    def read(self, size: int = -1) -> str:
        end = len(self._text) if size < 0 else self._at + size
        chunk, self._at = self._text[self._at : end], end
        return chunk


def _events(text: str) -> Iterator[tuple[str, Element]]:
    """The document's ``start`` and ``end`` events, refused (``JunitError``) as soon as it is
    not a JUnit report, nests deeper than ``MAX_DEPTH`` or holds more than ``MAX_ELEMENTS``."""
    depth = elements = 0
    try:
        for event, element in iterparse(
            _Reader(text), ("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        ):
            if event == "end":
                depth -= 1
            else:
                depth, elements = depth + 1, elements + 1
                if elements == 1 and _tag(element) not in ("testsuites", "testsuite"):
                    raise JunitError(
                        f"expected <testsuites> or <testsuite> at the top, found <{_tag(element)}>"
                    )
                if depth > MAX_DEPTH:
                    raise JunitError(
                        f"elements nested deeper than {MAX_DEPTH} levels; a test report needs fewer"
                    )
                if elements > MAX_ELEMENTS:
                    raise JunitError(f"more than {MAX_ELEMENTS:,} elements; a test report has fewer")
            yield event, element
    except DefusedXmlException:
        raise JunitError("a DTD or an entity declaration is not allowed in a test report") from None
    except ParseError as error:
        line, column = getattr(error, "position", (0, 0))
        raise JunitError(f"not well-formed XML at line {line}, column {column + 1}") from None


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
