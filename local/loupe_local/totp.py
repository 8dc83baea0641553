"""Time-based one-time passwords as authenticator apps and Cognito compute them (RFC 6238 over RFC 4226's HOTP:
HMAC-SHA1, 30-second steps, 6 digits), for the local Cognito's check of a code and for the bot labelers that answer
Cognito's MFA challenges. Cognito's software-token MFA is this TOTP on the base32 ``SecretCode`` of
AssociateSoftwareToken (Cognito Developer Guide, "TOTP software token MFA")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time

STEP_S = 30
DIGITS = 6


def new_secret() -> str:
    """A fresh shared secret, base32 without padding (160 bits, RFC 4226's recommended length)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def code(secret: str, at: float | None = None) -> str:
    """The code of ``secret`` for the 30-second step holding ``at`` (now by default)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // STEP_S)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**DIGITS:0{DIGITS}d}"


def matches(secret: str, given: str, at: float | None = None) -> bool:
    """Whether ``given`` is the code of the current step or of one step either side (RFC 6238 §5.2: allow for the
    clock drift and transmission delay of one step, no more)."""
    now = time.time() if at is None else at
    given = given.strip()
    if len(given) != DIGITS or not (given.isascii() and given.isdigit()):
        return False
    return any(hmac.compare_digest(code(secret, now + drift * STEP_S), given) for drift in (-1, 0, 1))
