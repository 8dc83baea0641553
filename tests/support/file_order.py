"""The order test files go out to pytest-xdist's workers: the longest first, unit tests last.

`make test` runs ``--dist loadfile --no-loadscope-reorder``: a file stays on one worker and files go out in
collection order. In plain collection order the training tests (≈ 3.5 min of one worker) came last of the
integration tests and ran on alone for the run's last ~100 s while the other workers had finished. Handing out
the longest files first (the longest-processing-time rule) lets the short ones fill in around them.

The lengths are each file's wall seconds (setup + call + teardown of its tests) from an earlier run, kept in
``tests/file_durations.json``; a file not listed counts as 0 and keeps its collection place among the others.
Refresh it after tests move or change much::

    .venv/bin/pytest tests -n 3 --dist loadfile --no-loadscope-reorder --write-file-durations tests/file_durations.json

Unit tests stay after every integration and end-to-end test whatever their lengths: a unit test's ``mock_aws``
resets moto's process-wide backends, which would take a worker's session stack with them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

DURATIONS = Path(__file__).resolve().parents[1] / "file_durations.json"
_walls: dict[str, float] = defaultdict(float)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--write-file-durations",
        metavar="PATH",
        help="write each test file's wall seconds (setup + call + teardown) of this run to PATH, as JSON",
    )


def _file(nodeid: str) -> str:
    return nodeid.split("::")[0]


def order_key(path: str, seconds: dict[str, float]) -> tuple[int, float]:
    """Unit tests last; within each tier the longest file first (a stable sort keeps collection order for ties)."""
    return (1 if path.startswith("tests/unit/") else 0, -seconds.get(path, 0.0))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not DURATIONS.is_file():
        return
    seconds = {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    # every worker sorts the same collection the same way (xdist checks that the workers agree)
    items.sort(key=lambda item: order_key(_file(item.nodeid), seconds))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _walls[_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    out = session.config.getoption("--write-file-durations")
    if not out or hasattr(session.config, "workerinput"):  # the controller writes, from every worker's reports
        return
    Path(out).write_text(json.dumps({k: round(v, 1) for k, v in sorted(_walls.items())}, indent=0) + "\n")
