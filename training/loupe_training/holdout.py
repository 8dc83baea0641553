"""Held-out photos for recipe decisions, chosen by capture: crops of one camera capture are near-duplicates, so a
fold or a lockbox that took one crop and left its sibling in training would score the model on what it has seen.

* The **lockbox**: the captures whose ``SHA-256("lockbox:" + capture)`` falls in the first ``LOCKBOX_SHARE`` of the
  hash range. It is fixed by the ids alone (no look at the photos or scores), kept out of every cross-validation and
  screening run, and scored once per recipe change (``benchmarks/training_recipes.py --lockbox``).
* **Folds**: the remaining captures, each whole in one fold, largest first into the fold with fewest photos (ties by
  hash), so the folds are balanced and stable across machines and runs.

An image without a capture id is a capture of its own (its content hash is the key).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, TypeVar

LOCKBOX_SHARE = 0.20
T = TypeVar("T")


def capture_key(entry: dict[str, Any]) -> str:
    """The capture of a dataset.json entry: its origin's ``capture``, else its own content hash."""
    origin = entry.get("origin") or {}
    return str(origin.get("capture") or entry["sha256"])


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def in_lockbox(key: str, share: float = LOCKBOX_SHARE) -> bool:
    return _unit(f"lockbox:{key}") < share


def split_lockbox(entries: Iterable[dict[str, Any]], share: float = LOCKBOX_SHARE) -> tuple[list[Any], list[Any]]:
    """(the rest, the lockbox) of ``entries``, whole captures each."""
    rest: list[Any] = []
    lockbox: list[Any] = []
    for entry in entries:
        (lockbox if in_lockbox(capture_key(entry), share) else rest).append(entry)
    return rest, lockbox


def grouped_folds(items: Iterable[T], key_of: Any, k: int) -> list[list[T]]:
    """``k`` folds of ``items``, every group (``key_of(item)``) whole in one fold, balanced by item count."""
    if k < 2:
        raise ValueError("k-fold needs k >= 2")
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[str(key_of(item))].append(item)
    if len(groups) < k:
        raise ValueError(f"{len(groups)} captures cannot fill {k} folds")
    order = sorted(groups, key=lambda g: (-len(groups[g]), hashlib.sha256(g.encode()).hexdigest()))
    folds: list[list[T]] = [[] for _ in range(k)]
    for group in order:
        smallest = min(range(k), key=lambda i: (len(folds[i]), i))
        folds[smallest].extend(groups[group])
    return folds
