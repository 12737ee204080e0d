"""Secret masking on the runner: every value and its base64 / URL / hex forms become ********,
also when a value is cut across output chunks, spans lines, or overlaps another secret."""

from __future__ import annotations

import base64
import os
from urllib.parse import quote, quote_plus

import pytest

from runner.executors.lines import MAX_LINE_CHARS, LineSplitter
from runner.masking import MASK, SecretMasker
from runner.reporter import LogShipper
from runner.spec import LogBatch, LogLine

SECRET = "s3cr3t-Value/with+odd&chars=ü"
OTHER = "another-token-0123456789"


def split_lines(masker: SecretMasker, chunks: list[bytes]) -> list[str]:
    lines: list[LogLine] = []
    splitter = LineSplitter("stdout", lines.append, masker)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.flush()
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


def test_the_shipper_masks_lines_that_did_not_come_through_an_executor() -> None:
    sent: list[LogBatch] = []

    class Api:
        def send_logs(self, job_id: int, token: str, batch: LogBatch) -> None:
            sent.append(batch)

    shipper = LogShipper(Api(), 1, "t", SecretMasker([SECRET, OTHER]))  # type: ignore[arg-type]
    shipper.add(LogLine(at=1.0, stream="system", text=f"docker said: bad env {OTHER}"))
    shipper.stop()
    assert [line.text for batch in sent for line in batch.lines] == [f"docker said: bad env {MASK}"]


def test_without_secrets_lines_pass_unchanged_and_the_masker_never_shows_its_patterns() -> None:
    assert split_lines(SecretMasker([]), [b"plain ", b"line\n", b"tail"]) == ["plain line", "tail"]
    masker = SecretMasker([SECRET])
    assert SECRET not in repr(masker) and SECRET.encode().hex() not in repr(masker)
