"""The server side of Cognito's Secure Remote Password sign-in (``USER_SRP_AUTH``), which moto 5.2.5 does not check.

Cognito's SRP is SRP-6a over the 3072-bit group of RFC 5054 (g = 2) with SHA-256, as its own clients implement it
(``amazon-cognito-identity-js`` ``AuthenticationHelper``, pycognito ``aws_srp``):

- the user's secret x = H(pad(salt) | H(poolName + USER_ID_FOR_SRP + ":" + password)), where poolName is the pool id
  after the "_" (no region); the verifier v = g^x mod N;
- InitiateAuth sends A = g^a; the server answers ``PASSWORD_VERIFIER`` with SALT, SRP_B = k*v + g^b (k = H(pad(N) |
  pad(g))), SECRET_BLOCK (opaque, base64) and USER_ID_FOR_SRP, all hex strings but the block;
- both sides derive S (client (B - k*g^x)^(a + u*x), server (A * v^u)^b, u = H(pad(A) | pad(B))) and the key
  K = HKDF-SHA256(ikm=pad(S), salt=pad(u), info="Caldera Derived Key")[:16];
- RespondToAuthChallenge carries PASSWORD_CLAIM_SIGNATURE = base64(HMAC-SHA256(K, poolName + USER_ID_FOR_SRP +
  base64decode(SECRET_BLOCK) + TIMESTAMP)) with TIMESTAMP like "Sun Dec 6 13:05:09 UTC 2026" (unpadded day).

Sources: Cognito Developer Guide, "Authentication flows" (https://docs.aws.amazon.com/cognito/latest/developerguide/
amazon-cognito-user-pools-authentication-flow-methods.html, section "SRP") and the API Reference of InitiateAuth
(https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_InitiateAuth.html: SRP_A) and
RespondToAuthChallenge (.../API_RespondToAuthChallenge.html: PASSWORD_VERIFIER's PASSWORD_CLAIM_SIGNATURE,
PASSWORD_CLAIM_SECRET_BLOCK, TIMESTAMP). The group constants, the padding and the HKDF are pycognito's
(``pycognito.aws_srp``), the same helpers the client side uses, so only the server's half is written here.

Nothing is stored about a password: the salt and verifier are derived when a sign-in starts from the password moto
keeps, and each challenge (its ``b``, ``B``, ``A`` and verifier) lives in memory under its secret block until it is
answered once or expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pycognito.aws_srp import (
    G_HEX,
    N_HEX,
    calculate_u,
    compute_hkdf,
    get_random,
    hash_sha256,
    hex_hash,
    hex_to_long,
    long_to_hex,
    pad_hex,
)

BIG_N = hex_to_long(N_HEX)
G = hex_to_long(G_HEX)
K = hex_to_long(hex_hash("00" + N_HEX + "0" + G_HEX))
TIMESTAMP_FORMAT = "%a %b %d %H:%M:%S UTC %Y"  # strptime reads the unpadded day ("Dec 6") Cognito's clients send
# how far a TIMESTAMP may be from the server's clock; Cognito documents no figure, this is the usual SigV4 skew
CLOCK_SKEW_S = 300
# challenges kept at most (the oldest dropped first): a flood of InitiateAuth calls costs bounded memory
MAX_PENDING = 10_000


class SrpRefused(Exception):
    """The password claim does not prove the password (or the challenge is unknown, used, expired)."""


def pool_name(pool_id: str) -> str:
    """The pool id without its region: what Cognito's SRP hashes (``eu-west-1_AbC`` -> ``AbC``)."""
    return pool_id.split("_", 1)[1]


def verifier(pool_id: str, user_id_for_srp: str, password: str, salt_hex: str) -> int:
    """v = g^x mod N with x = H(pad(salt) | H(poolName + user + ":" + password)), as the client computes x."""
    inner = hash_sha256(f"{pool_name(pool_id)}{user_id_for_srp}:{password}".encode())
    x = hex_to_long(hex_hash(pad_hex(salt_hex) + inner))
    return pow(G, x, BIG_N)


def salt_hex(seed: bytes) -> str:
    """A 16-byte salt as hex whose first byte is 0x10..0x7f: no leading zero a client's BigInteger would drop and
    no high bit pad_hex would prefix, so every client pads it to the same string the server hashed."""
    first = 0x10 + seed[0] % 0x70
    return f"{first:02x}{seed[1:16].hex()}"


@dataclass
class Challenge:
    """One PASSWORD_VERIFIER challenge, kept under its secret block until answered once."""

    pool_id: str
    client_id: str
    username: str  # the name the client signed in with (InitiateAuth's USERNAME: an e-mail address, say)
    user_id_for_srp: str
    big_a: int
    big_b: int
    small_b: int
    v: int
    issued: float
    expires: float
    genuine: bool  # False: a simulated challenge for a user that does not exist (no password can answer it)
    extra: dict[str, str] = field(default_factory=dict)  # what the caller keeps with it (moto's session)


class SrpServer:
    """Issues challenges and checks the claims answering them. Thread-safe; one per local AWS."""

    def __init__(self, clock: object = time.time) -> None:
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}
        self._lock = threading.Lock()
        # keys the salts and the simulated answers for unknown users (consistent within a run, unguessable)
        self._key = secrets.token_bytes(32)

    def now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def salt(self, pool_id: str, user_id_for_srp: str, password: str) -> str:
        """A user's salt: the same while the password stays (a new one with a new password, as Cognito makes)."""
        seed = hmac.new(self._key, f"real|{pool_id}|{user_id_for_srp}|{password}".encode(), hashlib.sha256)
        return salt_hex(seed.digest())

    def fake_salt(self, pool_id: str, username: str) -> str:
        return salt_hex(hmac.new(self._key, f"salt|{pool_id}|{username}".encode(), hashlib.sha256).digest())

    def fake_user_id(self, pool_id: str, username: str) -> str:
        """The USER_ID_FOR_SRP of a simulated challenge in a pool whose users sign in by e-mail or phone: a UUID as
        a real user's internal name is, the same for the same name."""
        digest = hmac.new(self._key, f"id|{pool_id}|{username}".encode(), hashlib.sha256).digest()
        return str(uuid.UUID(bytes=digest[:16], version=4))

    def fake_verifier(self, pool_id: str, username: str) -> int:
        x = hex_to_long(hmac.new(self._key, f"x|{pool_id}|{username}".encode(), hashlib.sha256).hexdigest())
        return pow(G, x, BIG_N)

    def challenge(
        self,
        *,
        pool_id: str,
        client_id: str,
        username: str,
        user_id_for_srp: str,
        srp_a_hex: str,
        salt: str,
        v: int,
        validity_s: float,
        genuine: bool = True,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """The PASSWORD_VERIFIER challenge parameters answering ``srp_a_hex`` (raises ValueError on a bad A)."""
        big_a = parse_a(srp_a_hex)
        small_b = get_random(128) % BIG_N
        big_b = (K * v + pow(G, small_b, BIG_N)) % BIG_N
        block = base64.standard_b64encode(secrets.token_bytes(96)).decode()
        now = self.now()
        with self._lock:
            self._expire(now)
            self._challenges[block] = Challenge(
                pool_id=pool_id,
                client_id=client_id,
                username=username,
                user_id_for_srp=user_id_for_srp,
                big_a=big_a,
                big_b=big_b,
                small_b=small_b,
                v=v,
                issued=now,
                expires=now + validity_s,
                genuine=genuine,
                extra=dict(extra or {}),
            )
        return {
            "SALT": salt,
            "SRP_B": long_to_hex(big_b),
            "SECRET_BLOCK": block,
            "USER_ID_FOR_SRP": user_id_for_srp,
        }

    def _expire(self, now: float) -> None:
        for block in [b for b, c in self._challenges.items() if c.expires < now]:
            del self._challenges[block]
        while len(self._challenges) >= MAX_PENDING:  # oldest first: dicts keep insertion order
            del self._challenges[next(iter(self._challenges))]

    def verify(self, client_id: str, responses: dict[str, str]) -> Challenge:
        """The challenge the claim in ``responses`` proves, taken (a block answers once, right or wrong); raises
        :class:`SrpRefused` with the reason otherwise."""
        block = str(responses.get("PASSWORD_CLAIM_SECRET_BLOCK") or "")
        now = self.now()
        with self._lock:
            self._expire(now)
            found = self._challenges.pop(block, None)
        if found is None:
            raise SrpRefused("unknown, used or expired secret block")
        if found.client_id != client_id:
            raise SrpRefused("the secret block was issued to another app client")
        if str(responses.get("USERNAME") or "") not in (found.username, found.user_id_for_srp):
            raise SrpRefused("USERNAME is not the user the challenge was issued to")
        timestamp = str(responses.get("TIMESTAMP") or "")
        try:
            when = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            raise SrpRefused(f"TIMESTAMP {timestamp!r} is not in Cognito's format") from None
        if abs(when - now) > CLOCK_SKEW_S:
            raise SrpRefused(f"TIMESTAMP {timestamp!r} is more than {CLOCK_SKEW_S} s from the server's clock")
        try:
            claimed = base64.b64decode(str(responses.get("PASSWORD_CLAIM_SIGNATURE") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise SrpRefused("PASSWORD_CLAIM_SIGNATURE is not base64") from None
        if not found.genuine:
            raise SrpRefused("no such user (simulated challenge)")
        expected = signature(found, block, timestamp)
        if not hmac.compare_digest(claimed, expected):
            raise SrpRefused("the password claim does not match the user's verifier")
        return found


def parse_a(srp_a_hex: str) -> int:
    try:
        big_a = hex_to_long(srp_a_hex)
    except ValueError:
        raise ValueError("SRP_A is not a hex number") from None
    if big_a % BIG_N == 0:  # SRP-6a's safety check: A = 0 mod N would make S known to anyone
        raise ValueError("SRP_A is not valid for this group")
    return big_a


def signature(challenge: Challenge, block_b64: str, timestamp: str) -> bytes:
    """HMAC-SHA256 under the session key of poolName + USER_ID_FOR_SRP + secret block + TIMESTAMP."""
    u = calculate_u(challenge.big_a, challenge.big_b)
    if u == 0:
        raise SrpRefused("u = 0")
    s = pow(challenge.big_a * pow(challenge.v, u, BIG_N), challenge.small_b, BIG_N)
    key = compute_hkdf(bytearray.fromhex(pad_hex(s)), bytearray.fromhex(pad_hex(long_to_hex(u))))
    message = (
        pool_name(challenge.pool_id).encode()
        + challenge.user_id_for_srp.encode()
        + base64.standard_b64decode(block_b64)
        + timestamp.encode()
    )
    return hmac.new(key, message, hashlib.sha256).digest()
