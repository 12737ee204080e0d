"""Secret masking on the runner: every value and its base64 / URL / hex forms become ********,
also when a value is cut across output chunks, spans lines, or overlaps another secret."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from contract.spec import LogBatch, LogLine
from runner.executors import lines as lines_module
from runner.executors.lines import MAX_LINE_CHARS, LineSplitter
from runner.masking import MASK, SecretMasker
from server.logs.ansi import strip_ansi
from tests.runner.shipping import shipping

SECRET = "s3cr3t-Value/with+odd&chars=ü"
OTHER = "another-token-0123456789"


def split_lines(masker: SecretMasker, chunks: list[bytes]) -> list[str]:
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, masker)
    for chunk in chunks:
        splitter.feed("stdout", chunk)
    splitter.close()
    return [line.text for line in lines]


def test_the_value_itself_is_masked_wherever_it_is_in_a_line() -> None:
    masker = SecretMasker([SECRET])
    assert masker.mask(f"token={SECRET}; again:{SECRET}!") == f"token={MASK}; again:{MASK}!"
    assert masker.mask("nothing to hide here") == "nothing to hide here"


@pytest.mark.parametrize("prefix_bytes", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_base64_is_masked_at_every_alignment_inside_a_longer_encoded_text(prefix_bytes: int, encode) -> None:  # type: ignore[no-untyped-def]
    masker = SecretMasker([SECRET])
    # e.g. a Basic auth header or a config file printed as base64: random bytes around the value.
    blob = os.urandom(prefix_bytes) + SECRET.encode() + os.urandom(7)
    encoded = encode(blob).decode()
    masked = masker.mask(f"config: {encoded}")
    assert MASK in masked
    # What remains visible is only the characters shared with the surrounding bytes.
    visible = masked.removeprefix("config: ").replace(MASK, "")
    assert len(visible) <= len(encoded) - len(SECRET) * 4 // 3 + 6


def test_the_plain_base64_of_the_value_is_masked_whole_padding_included() -> None:
    masker = SecretMasker([SECRET])
    assert masker.mask(base64.b64encode(SECRET.encode()).decode()) == MASK


def test_url_encoded_forms_are_masked() -> None:
    masker = SecretMasker([SECRET])
    for form in (quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET)):
        assert form != SECRET
        assert masker.mask(f"https://x.example/?t={form}&a=1") == f"https://x.example/?t={MASK}&a=1"


def test_hex_forms_lower_and_upper_are_masked() -> None:
    masker = SecretMasker([SECRET])
    hexed = SECRET.encode().hex()
    assert masker.mask(f"dump {hexed} end") == f"dump {MASK} end"
    assert masker.mask(f"dump {hexed.upper()} end") == f"dump {MASK} end"


def test_a_value_cut_across_two_output_chunks_is_masked() -> None:
    masker = SecretMasker([SECRET])
    raw = f"before {SECRET} after\n".encode()
    for cut in range(1, len(raw)):  # every possible cut, including inside the multi-byte ü
        assert split_lines(masker, [raw[:cut], raw[cut:]]) == [f"before {MASK} after"], cut


def test_a_value_spread_over_many_tiny_chunks_is_masked() -> None:
    raw = f"{SECRET}{SECRET.encode().hex()}\n".encode()
    assert split_lines(SecretMasker([SECRET]), [bytes([b]) for b in raw]) == [MASK]


def test_every_line_of_a_multi_line_value_is_masked() -> None:
    key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END KEY-----"
    masker = SecretMasker([key])
    printed = f"key is:\n{key}\ndone\n".encode()
    lines = split_lines(masker, [printed[:30], printed[30:]])
    assert lines == ["key is:", MASK, MASK, MASK, MASK, "done"]
    # Its encodings are single-line: they are masked too.
    assert masker.mask(base64.b64encode(key.encode()).decode()) == MASK
    assert masker.mask(quote(key, safe="")) == MASK
    # Indented (as in YAML or JSON output), each line still goes.
    assert masker.mask("    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC") == f"    {MASK}"


def test_overlapping_secrets_are_masked_as_one_stretch_with_nothing_left_between() -> None:
    first, second = "abcdefgh1234", "gh1234ZYXWVU"  # the end of one is the start of the other
    masker = SecretMasker([first, second])
    assert masker.mask("<abcdefgh1234ZYXWVU>") == f"<{MASK}>"
    nested = SecretMasker(["password-123456", "word-123"])
    assert nested.mask("x password-123456 y word-123 z") == f"x {MASK} y {MASK} z"


def test_a_secret_across_the_cut_of_an_overlong_line_is_not_split() -> None:
    masker = SecretMasker([SECRET])
    for offset in (len(SECRET) // 2, 1, len(SECRET) - 1):
        filler = "x" * (MAX_LINE_CHARS - offset)
        raw = (filler + SECRET + "y" * 100).encode()
        lines = split_lines(masker, [raw[: MAX_LINE_CHARS + 5], raw[MAX_LINE_CHARS + 5 :]])
        joined = "".join(lines)
        assert SECRET not in joined and MASK in joined and len(lines) >= 2
        assert all(len(line) <= MAX_LINE_CHARS for line in lines)
        assert joined == filler + MASK + "y" * 100


def test_the_shipper_masks_lines_that_did_not_come_through_an_executor(tmp_path: Path) -> None:
    sent: list[LogBatch] = []

    class Api:
        def send_logs(self, job_id: int, token: str, content: bytes) -> None:
            sent.append(LogBatch.from_wire(content))

    with shipping(Api(), tmp_path, SecretMasker([SECRET, OTHER])) as shipper:
        shipper.add(LogLine(at=1.0, stream="system", text=f"docker said: bad env {OTHER}"))
    assert [line.text for batch in sent for line in batch.all_lines()] == [f"docker said: bad env {MASK}"]


def test_without_secrets_lines_pass_unchanged_and_the_masker_never_shows_its_patterns() -> None:
    assert split_lines(SecretMasker([]), [b"plain ", b"line\n", b"tail"]) == ["plain line", "tail"]
    masker = SecretMasker([SECRET])
    assert SECRET not in repr(masker) and SECRET.encode().hex() not in repr(masker)


# What a reader sees: the page and a terminal drop escape sequences and control characters, so
# a value with one inserted in the middle is shown whole unless masking looks at the visible text.
INSERTS = {
    "reset": "\x1b[0m",
    "colour": "\x1b[1;31m",
    "osc-title": "\x1b]0;title\x07",
    "osc-link": "\x1b]8;;https://x.example\x1b\\",
    "soh": "\x01",
    "carriage return": "\r",
    "backspace": "\b",
    "nul": "\x00",
    "c1 csi": "\x9b2K",
    "delete": "\x7f",
    # Invisible format characters: a browser or terminal shows the value as if they were not there.
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "right-to-left mark": "\u200f",
    "bidi override": "\u202e",
    "word joiner": "\u2060",
    "bidi isolate": "\u2066",
    "byte order mark": "\ufeff",
}


@pytest.mark.parametrize("insert", INSERTS.values(), ids=INSERTS.keys())
def test_a_value_broken_up_by_control_sequences_is_masked_raw_span_and_all(insert: str) -> None:
    masker = SecretMasker([SECRET])
    middle = len(SECRET) // 2
    line = f"token={SECRET[:middle]}{insert}{SECRET[middle:]} end"
    masked = masker.mask(line)
    assert masked == f"token={MASK} end"  # the control sequence inside went with the value
    assert SECRET not in strip_ansi(masked)


def test_control_sequences_around_a_value_stay_and_other_lines_stay_byte_identical() -> None:
    masker = SecretMasker([SECRET])
    coloured = f"\x1b[32mok\x1b[0m \x1b[1m{SECRET}\x1b[0m\r"
    text = f"\x1b[31mred\x1b[0m line\x07\nback\bspace\n{coloured}\n\x1b]0;t\x07tail"
    masked = masker.mask(text)
    assert masked.split("\n") == [
        "\x1b[31mred\x1b[0m line\x07",
        "back\bspace",
        f"\x1b[32mok\x1b[0m \x1b[1m{MASK}\x1b[0m\r",
        "\x1b]0;t\x07tail",
    ]


def test_a_value_with_a_control_sequence_in_every_gap_is_masked() -> None:
    masker = SecretMasker([SECRET])
    line = "x " + "\x1b[0m".join(SECRET) + " y"
    assert masker.mask(line) == f"x {MASK} y"


def test_an_osc_left_open_at_the_end_of_a_line_does_not_hide_the_next_line() -> None:
    # The page renders each line alone: an unterminated OSC ends with its line.
    masker = SecretMasker([SECRET])
    assert masker.mask(f"\x1b]0;open\n{SECRET}") == f"\x1b]0;open\n{MASK}"


def test_json_escaped_forms_are_masked() -> None:
    value = 'pa"ss\\word/ü\t-<&>-9'
    masker = SecretMasker([value])
    for form in (
        json.dumps(value),
        json.dumps(value, ensure_ascii=False),
        json.dumps(value).replace("/", "\\/"),
        '"pa\\"ss\\\\word/\\u00fc\\t-\\u003c\\u0026\\u003e-9"',  # Go's encoding/json
    ):
        assert masker.mask(f'{{"token": {form}}}') == f'{{"token": "{MASK}"}}', form


def test_shell_quoted_forms_are_masked() -> None:
    value = "it's a $ecret; (really)"
    masker = SecretMasker([value])
    quoted = [
        shlex.quote(value),
        "'" + value.replace("'", "'\\''") + "'",
        subprocess.run(["bash", "-c", 'printf "%q" "$0"', value], capture_output=True, text=True).stdout,
    ]
    for form in quoted:
        assert form != value
        masked = masker.mask(f"+ deploy --token {form} --now")
        assert masked in (f"+ deploy --token {MASK} --now", f"+ deploy --token '{MASK}' --now"), form


@pytest.mark.parametrize("width", [76, 64])
def test_base64_wrapped_in_lines_is_masked_line_by_line(width: int) -> None:
    key = "k3y-" + os.urandom(90).hex()  # well over the 57 bytes that fit a 76-column line
    masker = SecretMasker([key])
    for tail in ("", "\n"):  # `printf %s "$KEY" | base64` and `echo "$KEY" | base64`
        encoded = base64.b64encode((key + tail).encode()).decode()
        lines = [encoded[i : i + width] for i in range(0, len(encoded), width)]
        masked = masker.mask("\n".join(lines)).split("\n")
        assert masked[:-1] == [MASK] * (len(lines) - 1)
        # The last line too, unless it is too short to be told apart from noise; after the
        # value, at most the characters that also encode the newline and the padding are left.
        if len(lines[-1]) >= 16:
            assert (
                masked[-1] == MASK
                if not tail
                else masked[-1] in (MASK, *(MASK + lines[-1][-n:] for n in range(1, 5)))
            )


def test_base32_is_masked() -> None:
    masker = SecretMasker([SECRET])
    encoded = base64.b32encode(SECRET.encode()).decode()
    assert masker.mask(f"otp {encoded} end") == f"otp {MASK} end"
    with_newline = base64.b32encode((SECRET + "\n").encode()).decode()
    assert SECRET.encode().hex() not in masker.mask(with_newline)
    assert masker.mask(with_newline).startswith(MASK)


def test_upper_and_lower_case_of_the_value_are_masked() -> None:
    masker = SecretMasker(["Mixed-Case-Token-42"])
    assert masker.mask("T=MIXED-CASE-TOKEN-42;") == f"T={MASK};"
    assert masker.mask("t=mixed-case-token-42;") == f"t={MASK};"


@pytest.mark.parametrize("upper", [False, True])
def test_every_byte_percent_encoded_is_masked(upper: bool) -> None:
    masker = SecretMasker(["plain-token-value"])
    encoded = "".join(f"%{byte:02X}" if upper else f"%{byte:02x}" for byte in b"plain-token-value")
    assert masker.mask(f"?t={encoded}&") == f"?t={MASK}&"


@pytest.mark.parametrize("separator", [" ", ":"])
@pytest.mark.parametrize("upper", [False, True])
def test_hex_with_separators_is_masked(separator: str, upper: bool) -> None:
    masker = SecretMasker([SECRET])
    hexed = SECRET.encode().hex(separator)
    hexed = hexed.upper() if upper else hexed
    assert masker.mask(f"dump: {hexed} |") == f"dump: {MASK} |"


def test_a_value_split_between_stdout_and_stderr_is_masked_in_the_order_a_reader_sees() -> None:
    # A terminal shows "before s3cr3t… after": each stream's line hides its part of the value.
    masker = SecretMasker([SECRET])
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, masker)
    middle = len(SECRET) // 2
    splitter.feed("stdout", f"before {SECRET[:middle]}".encode())
    splitter.feed("stderr", f"{SECRET[middle:]} after\nnext\n".encode())
    splitter.feed("stdout", b" out again\n")
    splitter.close()
    shown = [(line.stream, line.text) for line in lines]
    assert shown == [
        ("stderr", f"{MASK} after"),
        ("stderr", "next"),
        ("stdout", f"before {MASK} out again"),
    ]


def test_a_value_split_across_streams_without_a_newline_is_masked_at_the_end() -> None:
    masker = SecretMasker([SECRET])
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, masker)
    splitter.feed("stdout", SECRET[:5].encode())
    splitter.feed("stderr", SECRET[5:12].encode())
    splitter.feed("stdout", SECRET[12:].encode())
    splitter.close()
    assert [(line.stream, line.text) for line in lines] == [("stdout", MASK), ("stderr", MASK)]
    splitter.feed("stdout", b"after close\n")  # a reader still draining a pipe: ignored
    assert len(lines) == 2


def test_a_value_split_across_streams_is_masked_when_the_parts_arrive_in_the_other_order() -> None:
    # The engine copies stdout and stderr separately: "printf tok; printf en >&2; echo" can reach
    # the runner as stderr's line first, then stdout's.
    masker = SecretMasker([SECRET])
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, masker)
    splitter.feed("stderr", f"{SECRET[9:]} end\n".encode())
    assert lines == []  # it may be the end of a value whose start is still on its way
    splitter.feed("stdout", f"key={SECRET[:9]}\nplain\n".encode())
    splitter.feed("stderr", b"more\n")
    splitter.close()
    assert [(line.stream, line.text) for line in lines] == [
        ("stderr", f"{MASK} end"),
        ("stdout", f"key={MASK}"),
        ("stdout", "plain"),
        ("stderr", "more"),
    ]


def test_a_line_waiting_for_the_rest_of_a_value_is_let_go_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    masker = SecretMasker([SECRET])
    lines: list[LogLine] = []
    splitter = LineSplitter(lines.append, masker)
    splitter.feed("stdout", f"key={SECRET[:9]}\nnext\n".encode())
    splitter.feed("stderr", b"unrelated\n")
    assert [line.text for line in lines] == ["unrelated"]
    monkeypatch.setattr(lines_module, "HOLD_SECONDS", -1.0)  # as if 2 s had passed
    splitter.feed("stderr", b"later\n")
    assert [line.text for line in lines] == ["unrelated", f"key={SECRET[:9]}", "next", "later"]
    splitter.close()


def test_a_value_with_escapes_in_every_gap_across_the_cut_of_an_overlong_line_is_not_split() -> None:
    masker = SecretMasker([SECRET])
    broken = "\x1b[0m".join(SECRET)  # 5 times as long stored as shown: longer than any pattern
    assert len(broken) > masker.longest
    filler = "x" * (MAX_LINE_CHARS - 50)
    raw = (filler + broken + "y" * 100).encode()
    # The first chunk ends inside the value, far enough in that a cut by stored length falls in it.
    first = len(filler) + len(broken) - 5
    lines = split_lines(masker, [raw[:first], raw[first:]])
    joined = "".join(lines)
    assert joined == filler + MASK + "y" * 100
    assert all(len(line) <= MAX_LINE_CHARS for line in lines)
