"""The local evaluator of IoT SQL gives the outputs the AWS IoT SQL reference documents."""

from __future__ import annotations

import json

import pytest

from loupe_local.host.iot_sql import IotSqlError, parse

LOW = "SELECT *, topic() AS topic, topic(2) AS source_thing FROM 'loupe/+/low-confidence'"


def run(sql: str, topic: str, payload: object) -> tuple[bool, object]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse(sql).evaluate(topic, data)


def test_select_star_passes_the_payload_through_unchanged() -> None:
    # iot-sql-select.html: SELECT * FROM 'topic/subtopic' -> {"color":"red","temperature":50}
    assert run("SELECT * FROM 'topic/subtopic'", "topic/subtopic", {"color": "red", "temperature": 50}) == (
        True,
        {"color": "red", "temperature": 50},
    )


def test_topic_functions_and_aliases_come_from_the_topic_not_the_payload() -> None:
    forged = {"thing": "cam-2", "topic": "loupe/cam-2/low-confidence", "source_thing": "cam-2", "x": 1}
    matched, out = run(LOW, "loupe/cam-1/low-confidence", forged)
    assert matched
    assert out == {"thing": "cam-2", "x": 1, "topic": "loupe/cam-1/low-confidence", "source_thing": "cam-1"}


def test_field_selection_renaming_and_missing_fields() -> None:
    # iot-sql-select.html: SELECT color AS my_color -> {"my_color": "red"}; an Undefined result is left out
    assert run("SELECT color AS my_color, a.b, nope FROM 't'", "t", {"color": "red", "a": {"b": 2}}) == (
        True,
        {"my_color": "red", "b": 2},
    )
    assert run("SELECT topic(5) AS deep FROM 'a/b'", "a/b", {})[1] == {}


@pytest.mark.parametrize(
    ("where", "payload", "expected"),
    [
        ("temperature > 50", {"temperature": 70}, True),
        ("temperature > 50", {"temperature": 40}, False),
        ("temperature > 50", {"temperature": "70"}, True),  # a numeric string is converted (iot-sql-operators)
        ("temperature > 50", {"temperature": "hot"}, False),  # not a number: Undefined, so the rule does not act
        ("temperature > 50", {}, False),  # missing: Undefined
        ("color = 'red' AND temperature >= 50", {"color": "red", "temperature": 50}, True),
        ("color <> 'red' OR temperature < 0", {"color": "red", "temperature": 5}, False),
        ("NOT (color = 'blue')", {"color": "red"}, True),
        ("color = 'red' OR missing = 1", {"color": "red"}, False),  # true OR Undefined is Undefined
        ("topic(2) = 'cam-1'", {}, True),
        ("flag = true", {"flag": True}, True),
        ("flag = true", {"flag": "true"}, False),  # = compares types too
    ],
)
def test_where_clauses(where: str, payload: dict, expected: bool) -> None:
    sql = f"SELECT * FROM 'loupe/+/x' WHERE {where}"  # noqa: S608 - IoT SQL, evaluated locally
    assert run(sql, "loupe/cam-1/x", payload)[0] is expected


def test_a_binary_payload_passes_through_select_star_and_has_no_fields() -> None:
    assert run("SELECT * FROM 'a'", "a", b"\xff\x00") == (True, b"\xff\x00")
    assert run("SELECT *, topic() AS t FROM 'a'", "a", b"\xff\x00") == (True, {"t": "a"})


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        ("SELECT * FROM loupe", "quoted topic filter"),
        ("SELECT * FROM loupe/x", "cannot parse"),
        ("SELECT topic(2) FROM 'a'", "AS"),
        ("SELECT md5(x) AS h FROM 'a'", "not implemented locally"),
        ("SELECT * 'a'", "expected FROM"),
        ("SELECT * FROM 'a' WHERE", "ends too early"),
        ("SELECT * FROM 'a' WHERE x = 1 LIMIT 2", "unexpected"),
    ],
)
def test_unsupported_or_malformed_statements_are_refused(sql: str, why: str) -> None:
    with pytest.raises(IotSqlError, match=why):
        parse(sql)
