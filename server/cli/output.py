"""How listing and show commands print: aligned tables for people, the API's JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from server.logs.ansi import for_terminal

F = TypeVar("F", bound=Callable[..., Any])


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the server's JSON reply (for scripts)."
    )(command)


def print_json(data: Any) -> None:
    # ensure_ascii: escape sequences and control characters in stored text stay escaped.
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; every cell made terminal-safe first (stored text
    came from pushes and payloads), so that widths are those of what is shown."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    return for_terminal("-" if value is None else str(value), colors=False)
