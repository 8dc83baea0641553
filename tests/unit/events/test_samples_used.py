"""Every sample in events/ feeds its handler's ``lambda_handler`` in some test: none is unused, none drifts from
the handler it documents (events/README.md's table names each file's handler)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EVENTS = REPO / "events"
TESTS = REPO / "tests"


def documented() -> dict[str, str]:
    """file -> handler: the table in events/README.md, else the function the file is named after
    (``<handler>.json``: the IoT rule payloads and the state machines' task inputs)."""
    rows = re.findall(r"^\| `([\w.]+\.json)` \| (\w+) \|", (EVENTS / "README.md").read_text(), flags=re.M)
    table = dict(rows)
    functions = {p.parent.name for p in (REPO / "functions").glob("*/app.py")}
    return {p.name: table.get(p.name, p.stem if p.stem in functions else "?") for p in EVENTS.glob("*.json")}


def handler_tests() -> dict[Path, str]:
    """Test modules that invoke a ``lambda_handler``, with their source."""
    out = {}
    for path in TESTS.rglob("test_*.py"):
        text = path.read_text()
        if "lambda_handler(" in text:
            out[path] = text
    return out


def test_every_sample_names_an_existing_handler() -> None:
    for name, handler in documented().items():
        assert (REPO / "functions" / handler / "app.py").is_file(), f"{name}: no handler functions/{handler}"


def test_every_sample_is_fed_to_its_handler_by_a_test() -> None:
    modules = handler_tests()
    unused = []
    for name, handler in sorted(documented().items()):
        users = [p for p, text in modules.items() if f'"{name}"' in text and f'"{handler}"' in text]
        if not users:
            unused.append(f"{name} ({handler})")
    assert not unused, f"samples no test feeds to their handler's lambda_handler: {unused}"
