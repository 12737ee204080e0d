"""ANSI to segments: colours become classes, every other escape disappears, text stays text."""

from __future__ import annotations

from server.logs.ansi import for_terminal, render_line, strip_ansi


def test_colours_and_bold_become_classes_and_reset_ends_them() -> None:
    assert render_line("\x1b[1;31mFAIL\x1b[0m ok") == [("FAIL", "b fg1"), (" ok", "")]


def test_bright_256_and_truecolour_map_to_the_sixteen_classes() -> None:
    assert render_line("\x1b[92ma\x1b[38;5;196mb\x1b[48;2;0;0;238mc") == [
        ("a", "fg10"),
        ("b", "fg9"),
        ("c", "fg9 bg4"),
    ]


def test_osc8_hyperlinks_and_cursor_sequences_are_stripped_keeping_the_text() -> None:
    line = "see \x1b]8;;javascript:alert(1)\x1b\\here\x1b]8;;\x1b\\ \x1b[2K\x1b[1Gdone\x07\x00"
    assert render_line(line) == [("see ", ""), ("here", ""), (" ", ""), ("done", "")]
    assert strip_ansi(line) == "see here done"


def test_markup_is_kept_as_text_for_the_template_to_escape() -> None:
    assert render_line('<script>alert(1)</script>"onerror=') == [('<script>alert(1)</script>"onerror=', "")]


def test_a_truncated_escape_does_not_swallow_the_line() -> None:
    assert strip_ansi("a\x1b[31") == "a[31"  # an unfinished CSI: only the ESC is dropped
    assert strip_ansi("a\x1b]8;;http://x") == "a"


def test_a_terminal_gets_colours_only_and_they_end_with_the_line() -> None:
    line = (
        "\x1b]8;;https://evil.example/\x07link\x1b]8;;\x07 \x1b[1;31mred\x1b[2K\x1b[?25l\x07\r\x1b[38;5;2mx"
    )
    assert for_terminal(line, colors=True) == "link \x1b[1;31mred\x1b[38;5;2mx\x1b[0m"
    assert for_terminal(line, colors=False) == "link redx"
    assert for_terminal("plain\ttext", colors=True) == "plain\ttext"


def test_a_terminal_never_gets_bidi_controls_or_invisible_characters_that_disguise_text() -> None:
    # "\u202e" shows what follows right to left: `txt.exe` could read as `exe.txt`; zero-width
    # characters make two different names look alike.
    disguised = (
        "a\u202ab\u202bc\u202cd\u202de\u202ef\u2066g\u2067h\u2068i\u2069j"
        "\u200bk\u200cl\u200dm\u200en\u200fo\ufeffp"
    )
    assert for_terminal(disguised, colors=False) == "abcdefghijklmnop"
    assert for_terminal(disguised, colors=True) == "abcdefghijklmnop"
    assert for_terminal("héllo wörld ✓ שלום", colors=False) == "héllo wörld ✓ שלום"
