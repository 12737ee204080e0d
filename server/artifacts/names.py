"""File names as an unzip tool on Windows may write them.

Such a tool may pass a name through NFKC normalisation, or convert it to the system's code page
with "best fit", before it creates the file: fullwidth full stops and solidus (U+FF0E, U+FF0F) become
``../``, the yen sign becomes the Japanese code page's backslash. Windows also refuses
``< > : " | ? *``, drops trailing dots and spaces (``.. `` is ``..``) and opens a device for a
reserved name (``con``, ``nul.txt``, ``COM¹``) whatever folder it is in. Uploads refuse the
paths that would escape or be refused (``refusal``); the zip makes every segment of a member's
name safe (``safe_segment``), so files kept before are safe too.
"""

from __future__ import annotations

import unicodedata

# Separators, and the characters Windows refuses in a name (``:`` also names a drive).
WINDOWS_REFUSED = frozenset('/\\<>:"|?*')
# Characters code pages' best fit turns into one of those, that NFKC leaves alone: the yen and
# won signs (the backslash of the Japanese and Korean code pages), slash and colon lookalikes.
_BEST_FIT = str.maketrans(
    {
        "\u00a5": "\\",
        "\u20a9": "\\",
        "\u2215": "/",
        "\u2044": "/",
        "\u29f5": "\\",
        "\u29f8": "/",
        "\u29f9": "\\",
        "\u2236": ":",
        "\ua789": ":",
    }
)
# Names Windows opens as a device, with any extension.
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{device}{number}" for device in ("COM", "LPT") for number in range(10)}
)
# Control characters (C0, DEL, C1) and format characters (bidi overrides, zero-width ones) would
# show a reader another name than the file's ("report\u202efdp.exe").
_UNSHOWABLE = frozenset({"Cc", "Cf"})


def as_windows_reads(text: str) -> str:
    """``text`` as a tool on Windows may read it: NFKC, then the best-fit lookalikes."""
    if text.isascii():  # the common case, which neither changes
        return text
    return unicodedata.normalize("NFKC", text).translate(_BEST_FIT)


def unshowable(char: str) -> bool:
    return unicodedata.category(char) in _UNSHOWABLE


def _unsafe(char: str) -> bool:
    return unshowable(char) or not WINDOWS_REFUSED.isdisjoint(as_windows_reads(char))


def _only_dots_and_spaces(text: str) -> bool:
    return as_windows_reads(text).strip(". ") == ""


def refusal(segment: str) -> str | None:
    """Why an upload may not name a folder or file ``segment`` (None: it may)."""
    if _only_dots_and_spaces(segment):
        return f"{segment!r} is only dots and spaces once Windows reads it (as `.` or `..`)"
    seen = as_windows_reads(segment)
    if not WINDOWS_REFUSED.isdisjoint(seen):
        return f'{segment!r} is {seen!r} to Windows tools, which refuse / \\ < > : " | ? * in a name'
    return None


def safe_segment(name: str) -> str:
    """``name`` as one folder or file name any unzip tool writes where it says: unsafe characters
    become ``_``, trailing dots and spaces go (Windows drops them), a name of dots only is wrapped
    in ``_`` and a reserved device name gets a ``_`` before it."""
    if name.isascii() and name.isprintable() and WINDOWS_REFUSED.isdisjoint(name):
        safe = name.strip()  # the common case, nothing to replace
    else:
        safe = "".join("_" if _unsafe(char) else char for char in name).strip()
    if _only_dots_and_spaces(safe):
        return f"_{safe}_"
    while _only_dots_and_spaces(safe[-1]):
        safe = safe[:-1]
    if as_windows_reads(safe).split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        safe = f"_{safe}"
    return safe


def safe_path(path: str) -> str:
    """``path`` with each of its segments made safe (a path kept before uploads refused more)."""
    return "/".join(safe_segment(segment) for segment in path.split("/"))
