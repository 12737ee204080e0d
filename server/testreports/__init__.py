"""Test reports: JUnit XML collected by the runner, read here, shown on pages and in the API."""
