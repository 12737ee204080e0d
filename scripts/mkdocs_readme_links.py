"""MkDocs hook: the README's links must land, like the site's own.

`mkdocs build --strict` checks every link between pages under docs/, anchors included, but the
README lives outside docs/ and is what GitHub and a newcomer show first. This hook checks each
relative link of README.md after the site is built: a file must exist, and a link into a page
of the site with `#anchor` must name a heading (or id) that page really has. A broken link is
logged as a warning, which `--strict` turns into a failed build.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("mkdocs.plugins.readme_links")

# Inline links and images: [text](target) / ![alt](target "title"). Reference-style links are
# not used in the README.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")

_anchors: dict[str, set[str]] = {}


def links(markdown: str) -> list[str]:
    """Every link target of ``markdown``, outside code blocks and code spans."""
    text = _CODE.sub("", _FENCE.sub("", markdown))
    return [match.group(1) for match in _LINK.finditer(text)]


def broken_links(readme: Path, docs_dir: Path, anchors: dict[str, set[str]]) -> list[str]:
    """What is wrong with each relative link of ``readme``; ``anchors`` maps a page's path under
    ``docs_dir`` (e.g. ``operations.md``) to the ids it has."""
    root = readme.parent
    problems = []
    for target in links(readme.read_text(encoding="utf-8")):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue  # an external address: no internet when this runs
        path = unquote(parts.path)
        fragment = unquote(parts.fragment)
        if not path:
            if fragment:
                problems.append(f"{target}: the README links to its own headings only through docs/")
            continue
        file = (root / path).resolve()
        if not file.exists():
            problems.append(f"{target}: no such file")
            continue
        if not fragment:
            continue
        try:
            page = PurePosixPath(file.relative_to(docs_dir.resolve()).as_posix())
        except ValueError:
            problems.append(f"{target}: an anchor outside docs/ cannot be checked")
            continue
        if fragment not in anchors.get(str(page), set()):
            problems.append(f"{target}: {page} has no heading or id '{fragment}'")
    return problems


def on_pre_build(config: Any) -> None:
    _anchors.clear()


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    _anchors[page.file.src_uri] = set(page.present_anchor_ids or ())
    return html


def on_post_build(config: Any) -> None:
    docs_dir = Path(config["docs_dir"])
    readme = Path(config["config_file_path"]).parent / "README.md"
    for problem in broken_links(readme, docs_dir, _anchors):
        log.warning("README.md: %s", problem)
