"""What commands write of stored text (log lines, step names, reasons): all of it came from a
pushed commit, a payload or a step's output, so none of it may drive the operator's terminal."""

from __future__ import annotations

import sys

import click

from server.logs.ansi import for_terminal


def show(text: str, *, err: bool = False) -> None:
    """One line of output (on standard error with ``err``); colours survive only when that
    stream is a terminal."""
    stream = sys.stderr if err else sys.stdout
    click.echo(for_terminal(text, colors=stream.isatty()), err=err)
