"""A pipeline's `matrix:` expanded into the values of each job, and `${name}` in images.

The rules are GitHub Actions' (what users already know): the product of the axes, minus every
combination that matches an `exclude` entry, then each `include` entry is merged into every
combination whose axis values it does not contradict, or becomes a combination of its own.
Matrix values reach steps as environment variables and may be substituted into `image:`
only — never into scripts, where a value would become code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

# A build that fans out further than this is almost always a mistake, and it would hog every
# runner of the fleet; split it into several pipelines (or raise this) on purpose.
MAX_JOBS = 64
# Bounds the work before `exclude` trims the product.
MAX_PRODUCT = 4096

_REFERENCE = re.compile(r"\$\{([^}]*)\}")


class MatrixError(ValueError):
    """The matrix cannot be expanded; the message says why in the user's terms."""


def expand(
    axes: Mapping[str, Sequence[str]],
    include: Sequence[Mapping[str, str]] = (),
    exclude: Sequence[Mapping[str, str]] = (),
) -> list[dict[str, str]]:
    """The values of each job, in a stable order (axes as written, then includes)."""
    product = 1
    for values in axes.values():
        product *= len(values)
    if axes and product > MAX_PRODUCT:
        raise MatrixError(f"the matrix has {product} combinations before `exclude`; at most {MAX_PRODUCT}")
    for entry in exclude:
        unknown = sorted(set(entry) - set(axes))
        if unknown:
            raise MatrixError(f"`exclude` names {', '.join(unknown)}, which is not a matrix axis")

    names = list(axes)
    combos = itertools.product(*axes.values()) if axes else iter(())
    cells = [dict(zip(names, combo, strict=True)) for combo in combos]
    cells = [cell for cell in cells if not any(_matches(cell, entry) for entry in exclude)]
    originals = [dict(cell) for cell in cells]
    for entry in include:
        merged = False
        for cell, original in zip(cells, originals, strict=True):
            # An include may add keys or overwrite what an earlier include added, never an axis value.
            if all(original.get(key, value) == value for key, value in entry.items() if key in original):
                cell.update(entry)
                merged = True
        if not merged:
            cells.append(dict(entry))
            originals.append(dict(entry))

    if not cells:
        raise MatrixError("the matrix produces no jobs (every combination is excluded)")
    if len(cells) > MAX_JOBS:
        raise MatrixError(f"the matrix produces {len(cells)} jobs; at most {MAX_JOBS} per build")
    unique = {tuple(sorted(cell.items())) for cell in cells}
    if len(unique) != len(cells):
        raise MatrixError("the matrix produces the same combination twice (check `include`)")
    return cells


def _matches(cell: Mapping[str, str], entry: Mapping[str, str]) -> bool:
    return all(cell.get(key) == value for key, value in entry.items())


def job_name(base: str, cell: Mapping[str, str], limit: int = 200) -> str:
    """``pipeline (python=3.11, db=pg)``; just ``pipeline`` without a matrix."""
    if not cell:
        return base
    name = f"{base} ({', '.join(f'{key}={value}' for key, value in cell.items())})"
    return name if len(name) <= limit else name[: limit - 2] + "…)"


def unknown_references(image: str, cell: Mapping[str, str]) -> list[str]:
    """The ``${name}`` in ``image`` that ``cell`` has no value for."""
    return [name for name in _REFERENCE.findall(image) if name not in cell]


def substitute(image: str, cell: Mapping[str, str]) -> str:
    """``python:${python}`` → ``python:3.12``. Call ``unknown_references`` first."""
    return _REFERENCE.sub(lambda match: cell[match.group(1)], image)
