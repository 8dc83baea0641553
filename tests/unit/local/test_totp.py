"""RFC 6238 one-time codes (loupe_local.totp): the RFC's own test vectors, and the one-step drift window."""

from __future__ import annotations

import base64

import pytest

from loupe_local import totp

# RFC 6238, Appendix B: the SHA-1 seed "12345678901234567890"; the 8-digit values' last 6 digits are the 6-digit code
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924")]


@pytest.mark.parametrize(("at", "expected"), RFC_VECTORS)
def test_codes_are_rfc_6238s(at: int, expected: str) -> None:
    assert totp.code(RFC_SECRET, at) == expected


def test_a_code_of_one_step_before_or_after_still_matches_two_steps_do_not() -> None:
    now = 1_700_000_015.0
    assert totp.matches(RFC_SECRET, totp.code(RFC_SECRET, now), now)
    assert totp.matches(RFC_SECRET, totp.code(RFC_SECRET, now - 30), now)
    assert totp.matches(RFC_SECRET, totp.code(RFC_SECRET, now + 30), now)
    assert not totp.matches(RFC_SECRET, totp.code(RFC_SECRET, now - 60), now)
    assert not totp.matches(RFC_SECRET, totp.code(RFC_SECRET, now + 60), now)


@pytest.mark.parametrize("given", ["", "12345", "1234567", "12a456", "１２３４５６"])
def test_a_code_that_is_not_six_ascii_digits_never_matches(given: str) -> None:
    assert not totp.matches(RFC_SECRET, given, 59)


def test_new_secrets_are_base32_of_160_bits_and_differ() -> None:
    secrets = {totp.new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
