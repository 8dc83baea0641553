"""The order `make test` hands test files to its workers (tests/support/file_order.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from support.file_order import DURATIONS, order_key, pytest_collection_modifyitems

REPO = Path(__file__).resolve().parents[3]


def test_the_longest_files_go_first_and_unit_tests_last_whatever_their_length() -> None:
    seconds = {"tests/integration/a.py": 5.0, "tests/integration/b.py": 50.0, "tests/unit/slow.py": 500.0}
    paths = ["tests/integration/a.py", "tests/unit/fast.py", "tests/unit/slow.py", "tests/integration/b.py"]
    paths += ["tests/integration/unlisted.py", "tests/e2e/demo.py"]
    ordered = sorted(paths, key=lambda p: order_key(p, seconds))
    assert ordered == [
        "tests/integration/b.py",
        "tests/integration/a.py",
        "tests/integration/unlisted.py",  # unknown: 0 s, in collection order after the known ones
        "tests/e2e/demo.py",
        "tests/unit/slow.py",
        "tests/unit/fast.py",
    ]


def test_the_hook_keeps_each_file_together_and_the_durations_name_real_files() -> None:
    listed = json.loads(DURATIONS.read_text())
    assert listed and all((REPO / path).is_file() for path in listed), "tests/file_durations.json names a lost file"
    longest = max((p for p in listed if not p.startswith("tests/unit/")), key=listed.__getitem__)
    ids = ["tests/unit/u.py::t1", "tests/integration/new.py::t1", f"{longest}::t1", "tests/integration/new.py::t2"]
    ids += [f"{longest}::t2", "tests/unit/u.py::t2"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    pytest_collection_modifyitems(cast(pytest.Config, None), cast(list[pytest.Item], items))
    assert [i.nodeid for i in items] == [
        f"{longest}::t1",
        f"{longest}::t2",
        "tests/integration/new.py::t1",
        "tests/integration/new.py::t2",
        "tests/unit/u.py::t1",
        "tests/unit/u.py::t2",
    ]
