"""The README's links are checked by the MkDocs hook that `scripts/test` runs with the site build."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_links", ROOT / "scripts" / "mkdocs_readme_links.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(tmp_path: Path, readme: str) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "operations.md").write_text("# Operations\n\n## Retention\n")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "README.md").write_text("# Benchmarks\n")
    (tmp_path / "README.md").write_text(readme)
    return tmp_path / "README.md", docs


ANCHORS = {"operations.md": {"operations", "retention"}}


def test_links_that_land_pass(tmp_path: Path) -> None:
    readme, docs = _tree(
        tmp_path,
        "See [ops](docs/operations.md), [keeping logs](docs/operations.md#retention),\n"
        "[figures](bench/README.md) and [GitHub](https://github.com/).\n",
    )
    assert _hook().broken_links(readme, docs, ANCHORS) == []


def test_a_missing_file_and_a_missing_heading_are_reported(tmp_path: Path) -> None:
    readme, docs = _tree(
        tmp_path,
        "[gone](docs/operation.md) and [moved](docs/operations.md#backups)\n"
        "![shot](docs/screenshots/none.png)\n",
    )
    problems = _hook().broken_links(readme, docs, ANCHORS)
    assert problems == [
        "docs/operation.md: no such file",
        "docs/operations.md#backups: operations.md has no heading or id 'backups'",
        "docs/screenshots/none.png: no such file",
    ]


def test_links_inside_code_are_not_links(tmp_path: Path) -> None:
    readme, docs = _tree(tmp_path, "`[x](nowhere.md)`\n\n```md\n[y](nowhere.md)\n```\n")
    assert _hook().broken_links(readme, docs, ANCHORS) == []
