from __future__ import annotations

import pytest

from loupe_local.host.router import Router, schedule_seconds
from loupe_local.host.topic_rules import topic_matches


@pytest.mark.parametrize(
    ("flt", "topic", "expected"),
    [
        ("loupe/+/low-confidence", "loupe/dev-1/low-confidence", True),
        ("loupe/+/low-confidence", "loupe/dev-1/health", False),
        ("loupe/+/low-confidence", "loupe/a/b/low-confidence", False),
        ("loupe/#", "loupe/a/b", True),
        ("loupe/x", "loupe/x", True),
    ],
)
def test_topic_filters_match_like_mqtt(flt: str, topic: str, expected: bool) -> None:
    assert topic_matches(flt, topic) is expected


def test_rate_schedules_are_parsed_and_cron_is_on_demand() -> None:
    assert schedule_seconds("rate(1 day)") == 86400
    assert schedule_seconds("rate(5 minutes)") == 300
    assert schedule_seconds("cron(0 12 * * ? *)") is None


def test_topic_rules_are_parsed_when_added_and_unsupported_sql_is_refused_by_rule_name() -> None:
    router = Router(invoker=None, client=None, region="us-east-1", account="1")  # type: ignore[arg-type]
    router.add_topic_rule("ok", {"sql": "SELECT *, topic(2) AS thing FROM 'loupe/+/health' WHERE fps > 1"})
    assert router.topic_rules["ok"]["filter"] == "loupe/+/health"
    with pytest.raises(ValueError, match="topic rule bad: .*not implemented locally"):
        router.add_topic_rule("bad", {"sql": "SELECT md5(a) AS h FROM 'x'"})


def test_target_input_honours_input_and_input_path() -> None:
    router = Router(invoker=None, client=None, region="us-east-1", account="1")  # type: ignore[arg-type]
    event = {"detail": {"a": 1}, "source": "s"}
    assert router.target_input({"Input": '{"reason": "schedule"}'}, event) == {"reason": "schedule"}
    assert router.target_input({"InputPath": "$.detail"}, event) == {"a": 1}
    assert router.target_input({}, event) is event
