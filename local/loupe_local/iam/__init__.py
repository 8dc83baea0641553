"""Local IAM (issue 19): request resolution and identity-policy evaluation for the embedded local AWS.

``mode()`` reads ``LOUPE_LOCAL_IAM`` (off, audit or enforce; default enforce: a local test that passes where
AWS would refuse is a bug of the local AWS), the switch ``LocalRuntime`` follows:
with ``audit``/``enforce`` the stack's functions, state machines and EventBridge role targets act with their own
role sessions (``principals``) and the gateway checks and records their calls (``audit``). See README.md here.
"""

from __future__ import annotations

import os

MODES = ("off", "audit", "enforce")


def mode(environ: dict[str, str] | None = None) -> str:
    """The configured IAM mode; an unknown value is an error naming it, never a silent ``off``."""
    env = environ if environ is not None else os.environ
    value = env.get("LOUPE_LOCAL_IAM", "enforce").strip().lower() or "enforce"
    if value not in MODES:
        raise ValueError(f"LOUPE_LOCAL_IAM={value!r}: expected one of {', '.join(MODES)}")
    return value
