"""`reports: {junit: [...]}` in .greenlight.yml: validated, and carried to the planned job."""

import pytest

from server.pipelines.loader import ConfigError, load_pipeline

STEPS = "image: x\nsteps:\n  - name: a\n    run: make\n"


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_pipeline(text)
    return str(caught.value)


def test_junit_globs_are_read_as_a_list() -> None:
    pipeline = load_pipeline(STEPS + 'reports: {junit: ["**/junit*.xml", "build/test-results/*.xml"]}\n')
    assert pipeline.reports is not None
    assert pipeline.reports.junit == ["**/junit*.xml", "build/test-results/*.xml"]


def test_one_junit_glob_is_a_list_of_one() -> None:
    pipeline = load_pipeline(STEPS + "reports:\n  junit: report.xml\n")
    assert pipeline.reports is not None and pipeline.reports.junit == ["report.xml"]


def test_without_reports_nothing_is_collected() -> None:
    assert load_pipeline(STEPS).reports is None


def test_an_unknown_report_kind_names_its_line() -> None:
    message = error_for(STEPS + "reports:\n  junt: [a.xml]\n")
    assert ".greenlight.yml:6: reports.junt: unknown key 'junt'" in message


def test_a_glob_out_of_the_workspace_is_refused() -> None:
    for glob in ("/etc/*.xml", "../other/junit.xml", "reports/../../junit.xml"):
        message = error_for(STEPS + f'reports: {{junit: ["{glob}"]}}\n')
        assert "reports.junit" in message, message
        assert "absolute" in message or "climbs out of the workspace" in message, message


def test_a_glob_of_the_wrong_type_says_what_was_expected() -> None:
    message = error_for(STEPS + "reports: {junit: {path: a.xml}}\n")
    assert "reports.junit" in message and "glob" in message


def test_too_many_globs_are_refused() -> None:
    globs = ", ".join(f'"r{i}/*.xml"' for i in range(25))
    message = error_for(STEPS + f"reports: {{junit: [{globs}]}}\n")
    assert "reports.junit" in message and "20" in message
