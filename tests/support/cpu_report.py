"""Where the suite's CPU goes, beside pytest's ``--durations`` (wall time): each test's CPU seconds, printed at the
end of a run as the slowest tests are.

A test's CPU is what its process (every thread: the in-process local AWS, the stand-ins, the devices' threads) and
the child processes it waited for (the end-to-end demo, ``loupe`` commands) used from its setup to its teardown. A
module fixture's cost lands on the module's first test; a child process (a local device, mosquitto, Chromium) counts
only once it has been waited for, on whichever test runs then — so a cheap test right after a module whose devices
stopped can show their minutes. Under pytest-xdist each worker measures its own tests and sends the number with
the test's report.
"""

from __future__ import annotations

import resource
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

_KEY = "cpu_seconds"
_started: dict[str, float] = {}
_seen: dict[str, float] = {}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    if call.when == "setup":
        _started[item.nodeid] = _cpu_seconds()
    outcome = yield
    if call.when == "teardown" and item.nodeid in _started:
        report = outcome.get_result()
        report.user_properties.append((_KEY, round(_cpu_seconds() - _started.pop(item.nodeid), 2)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == _KEY and report.when == "teardown":
            _seen[report.nodeid] = float(value)


def _group(nodeid: str) -> str:
    """tests/unit, tests/e2e, or tests/integration/<feature>."""
    parts = nodeid.split("::")[0].split("/")
    return "/".join(parts[:3] if parts[:2] == ["tests", "integration"] else parts[:2])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _seen:
        return
    write = terminalreporter.write_line
    terminalreporter.section("CPU seconds (tests/support/cpu_report.py: process + waited-for children)")
    by_group: dict[str, float] = defaultdict(float)
    for nodeid, seconds in _seen.items():
        by_group[_group(nodeid)] += seconds
    write(f"{sum(_seen.values()):.0f} s of CPU over {len(_seen)} tests; by folder:")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        write(f"  {seconds:8.1f}  {group}")
    write("the 25 tests that used the most:")
    for nodeid, seconds in sorted(_seen.items(), key=lambda kv: -kv[1])[:25]:
        write(f"  {seconds:8.1f}  {nodeid}")
