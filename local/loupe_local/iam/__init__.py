"""Local IAM (issue 19): request resolution and identity-policy evaluation for the embedded local AWS.

Stage 1 only: nothing here is wired into the gateway yet. ``mode()`` reads ``LOUPE_LOCAL_IAM`` (off, audit or
enforce; default off) so later stages share one switch. See README.md in this folder.
"""

from __future__ import annotations

import os

MODES = ("off", "audit", "enforce")


def mode(environ: dict[str, str] | None = None) -> str:
    """The configured IAM mode; an unknown value is an error naming it, never a silent ``off``."""
    value = (environ if environ is not None else os.environ).get("LOUPE_LOCAL_IAM", "off").strip().lower() or "off"
    if value not in MODES:
        raise ValueError(f"LOUPE_LOCAL_IAM={value!r}: expected one of {', '.join(MODES)}")
    return value
