from server.webhooks.signature import sign, signature_is_valid

# GitHub's documented test vector ("Validating webhook deliveries").
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_documented_test_vector_passes() -> None:
    assert sign(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_SIGNATURE
    assert signature_is_valid(GITHUB_SECRET, GITHUB_PAYLOAD, GITHUB_SIGNATURE)


def test_a_changed_body_fails() -> None:
    assert not signature_is_valid(GITHUB_SECRET, b"Hello, World?", GITHUB_SIGNATURE)


def test_a_wrong_secret_fails() -> None:
    assert not signature_is_valid("another secret", GITHUB_PAYLOAD, GITHUB_SIGNATURE)


def test_missing_or_malformed_headers_fail() -> None:
    for header in (None, "", "sha1=757107ea", GITHUB_SIGNATURE.removeprefix("sha256="), "sha256=zz"):
        assert not signature_is_valid(GITHUB_SECRET, GITHUB_PAYLOAD, header)


def test_an_empty_secret_never_validates() -> None:
    assert not signature_is_valid("", GITHUB_PAYLOAD, sign("", GITHUB_PAYLOAD))
