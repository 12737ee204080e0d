"""What commands write of stored text (log lines, step names, reasons): all of it came from a
pushed commit, a payload or a step's output, so none of it may drive the operator's terminal."""

from __future__ import annotations

import sys

import click

from server.logs.ansi import for_terminal


def show(text: str) -> None:
    """One line of output; colours survive only when standard output is a terminal."""
    click.echo(for_terminal(text, colors=sys.stdout.isatty()))
