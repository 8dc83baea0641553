"""Recipe decisions hold photos out by capture: the lockbox and every fold take whole captures, stay disjoint, and
are the same on every run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loupe.datasets import load_metal_tags
from loupe_training.holdout import LOCKBOX_SHARE, capture_key, grouped_folds, in_lockbox, split_lockbox


def _entries(captures: int, crops: int = 3) -> list[dict]:
    return [
        {"sha256": f"{c:04d}{n}" * 8, "origin": {"capture": f"cap-{c}"}} for c in range(captures) for n in range(crops)
    ]


def test_an_entry_without_a_capture_is_its_own_capture() -> None:
    assert capture_key({"sha256": "ab" * 32, "origin": {"kind": "upload"}}) == "ab" * 32
    assert capture_key({"sha256": "ab" * 32, "origin": {"capture": "c1"}}) == "c1"


def test_the_lockbox_takes_whole_captures_and_about_its_share() -> None:
    entries = _entries(400)
    rest, lockbox = split_lockbox(entries)
    assert {capture_key(e) for e in rest}.isdisjoint({capture_key(e) for e in lockbox})
    assert len(rest) + len(lockbox) == len(entries)
    assert abs(len(lockbox) / len(entries) - LOCKBOX_SHARE) < 0.06
    assert split_lockbox(list(reversed(entries)))[1] == list(reversed(lockbox))  # order-free, stable


def test_folds_keep_captures_whole_and_are_balanced() -> None:
    entries = _entries(30, 3) + [{"sha256": f"{n:064d}", "origin": {"capture": "big"}} for n in range(10)]
    folds = grouped_folds(entries, capture_key, 3)
    owners: dict[str, int] = {}
    for i, fold in enumerate(folds):
        for entry in fold:
            assert owners.setdefault(capture_key(entry), i) == i
    sizes = sorted(len(f) for f in folds)
    assert sum(sizes) == len(entries) and sizes[-1] - sizes[0] <= 10
    again = grouped_folds(list(reversed(entries)), capture_key, 3)  # the input's order changes nothing
    assert [{e["sha256"] for e in f} for f in again] == [{e["sha256"] for e in f} for f in folds]


def test_too_few_captures_for_the_folds_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fill"):
        grouped_folds(_entries(2), capture_key, 3)


def test_on_the_metal_tags_photos_no_capture_crosses_the_lockbox(metal_tags_dir: Path, tmp_path: Path) -> None:
    from loupe.datasets import write_version_dir

    tags = load_metal_tags(metal_tags_dir)
    write_version_dir(tmp_path / "v", 1, None, tags.labeled, tags.class_map)
    entries = json.loads((tmp_path / "v" / "dataset.json").read_text())["images"]
    rest, lockbox = split_lockbox(entries)
    assert lockbox and rest
    assert {capture_key(e) for e in rest}.isdisjoint({capture_key(e) for e in lockbox})
    assert all(in_lockbox(capture_key(e)) for e in lockbox)
    folds = grouped_folds(rest, capture_key, 3)
    assert all(folds)
