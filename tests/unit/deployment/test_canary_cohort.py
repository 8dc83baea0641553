"""The canary's pieces without the state machine: the cohort, the per-model counters from health messages, the
fleet membership of a canary device, whether an approval runs a canary, the verdict in the package's metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loupe import fleet_serving
from loupe.deployment import canary
from loupe.deployment.canary_stats import CohortCounts, decide
from loupe.deployment.store import DeploymentsStore
from loupe.edge_metrics import in_fleet, parse_health


@pytest.fixture
def store() -> Iterator[DeploymentsStore]:
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="deployments",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield DeploymentsStore(table)


DEVICES = [f"loupe-device-canaryunit-{i:02d}" for i in range(20)]


def test_the_cohort_is_the_percent_at_least_one_and_chosen_by_the_run() -> None:
    assert len(canary.choose_cohort(DEVICES, 10, "run-1")) == 2
    assert len(canary.choose_cohort(DEVICES, 1, "run-1")) == 1  # at least one device
    assert canary.choose_cohort(DEVICES[:1], 10, "run-1") == DEVICES[:1]  # a fleet of one is its own cohort
    assert canary.choose_cohort(DEVICES, 100, "run-1") == DEVICES
    assert canary.choose_cohort([], 50, "run-1") == []
    # the same run always picks the same devices; other runs pick others, not the first of the list
    picks = {tuple(canary.choose_cohort(DEVICES, 10, f"run-{i}")) for i in range(10)}
    assert canary.choose_cohort(DEVICES, 10, "run-1") == canary.choose_cohort(list(reversed(DEVICES)), 10, "run-1")
    assert len(picks) > 5 and tuple(DEVICES[:2]) not in picks


def health(thing: str, timestamp: str, **fields: Any) -> Any:
    body = {
        "thing": thing,
        "timestamp": timestamp,
        "model_version": "m2",
        "frames": 20,
        "uncertain_frames": 3,
        "detection_frames": 4,
        "latency_ms": {"p95": 12.5},
        "errors": {"count": 7, "recent": []},
        "topic": f"loupe/{thing}/health",
        "source_thing": thing,
    }
    return parse_health({**body, **fields})


def test_health_windows_add_up_per_model_once_each(store: DeploymentsStore) -> None:
    thing = DEVICES[0]
    assert fleet_serving.record_model_window(health(thing, "2026-12-06T10:00:01.000Z"), store)
    assert not fleet_serving.record_model_window(health(thing, "2026-12-06T10:00:01.000Z"), store)  # redelivered
    later = health(thing, "2026-12-06T10:00:02.000Z", errors={"count": 9}, latency_ms={"p95": 20.0})
    assert fleet_serving.record_model_window(later, store)
    # an older device sends only the share: 0.3 of 20 frames
    older = health(thing, "2026-12-06T10:00:03.000Z", uncertain_frames=None, uncertain_share=0.3, errors={"count": 9})
    assert fleet_serving.record_model_window(older, store)
    empty = health(thing, "2026-12-06T10:00:04.000Z", frames=0, uncertain_frames=0, detection_frames=0)
    assert not fleet_serving.record_model_window(empty, store)  # nothing served: nothing to add
    got = store.model_counters("m2", [thing, DEVICES[1]])
    # errors: the device's running count went from 7 to 9 while it served m2; p95: its last window's, and the
    # smaller of its last two (20.0 then 12.5: 12.5 is what the window sustained)
    want = {"frames": 60, "uncertain": 12, "ng": 12, "errors": 2, "latency_p95_ms": 12.5, "sustained_p95_ms": 12.5}
    assert got == {thing: want}


def test_a_window_of_few_frames_adds_its_counts_but_not_its_p95(store: DeploymentsStore) -> None:
    """Under ``MIN_FRAMES_FOR_P95`` frames a window's p95 is its slowest frame or two, not the model's latency."""
    thing = DEVICES[3]
    for second, p95 in ((1, 12.0), (2, 13.0)):
        assert fleet_serving.record_model_window(
            health(thing, f"2026-12-06T12:00:0{second}.000Z", latency_ms={"p95": p95}), store
        )
    few = fleet_serving.MIN_FRAMES_FOR_P95 - 1
    for second in (3, 4):  # two short windows with one very slow frame each
        short = health(thing, f"2026-12-06T12:00:0{second}.000Z", frames=few, latency_ms={"p95": 61.0})
        assert fleet_serving.record_model_window(short, store)
    got = store.model_counters("m2", [thing])[thing]
    assert got["frames"] == 40 + 2 * few
    assert got["latency_p95_ms"] == 13.0 and got["sustained_p95_ms"] == 12.0


def test_a_window_counts_for_the_model_that_ran_its_frames_and_one_with_two_models_for_none(
    store: DeploymentsStore,
) -> None:
    """A device reports the model it serves now and the one that ran the window's frames: after a switch they
    differ (the window's frames were the old model's), and a window with a switch inside it is no model's."""
    thing = DEVICES[2]
    old = health(thing, "2026-12-06T11:00:01.000Z", model_version="m3", frames_model_version="m2")
    assert fleet_serving.record_model_window(old, store)
    mixed = health(thing, "2026-12-06T11:00:02.000Z", model_version="m3", frames_model_version=None)
    assert not fleet_serving.record_model_window(mixed, store)
    own = health(thing, "2026-12-06T11:00:03.000Z", model_version="m3", frames_model_version="m3")
    assert fleet_serving.record_model_window(own, store)
    assert store.model_counters("m2", [thing])[thing]["frames"] == 20
    assert store.model_counters("m3", [thing])[thing]["frames"] == 20


def test_the_device_names_the_windows_model_only_when_one_model_ran_all_its_frames() -> None:
    from loupe_edge.stats import WindowStats

    stats = WindowStats()
    assert stats.snapshot()["frames_model_version"] is None  # no frames
    for _ in range(3):
        stats.frame(5.0, (1.0, 1.0, 2.0, 1.0), 0.0, False, "m2")
    assert stats.snapshot()["frames_model_version"] == "m2"
    stats.frame(5.0, (1.0, 1.0, 2.0, 1.0), 0.0, False, "m2")
    stats.frame(5.0, (1.0, 1.0, 2.0, 1.0), 0.9, False, "m3")  # the switch, inside the window
    window = stats.snapshot()
    assert window["frames"] == 2 and window["frames_model_version"] is None
    stats.frame(5.0, (1.0, 1.0, 2.0, 1.0), 0.9, False, "m3")
    assert stats.snapshot()["frames_model_version"] == "m3"


def test_a_window_that_counts_more_uncertain_frames_than_frames_is_refused() -> None:
    from loupe.edge_metrics import HealthRejected

    with pytest.raises(HealthRejected, match="more uncertain or detection frames"):
        health(DEVICES[0], "2026-12-06T10:00:01.000Z", uncertain_frames=21)


def test_a_device_of_the_canary_cohort_is_a_fleet_device() -> None:
    with mock_aws():
        iot = boto3.client("iot", region_name="us-east-1")
        for group in ("fleet", "fleet-canary", "other-canary"):
            iot.create_thing_group(thingGroupName=group)
        for thing, group in (("in-fleet", "fleet"), ("in-canary", "fleet-canary"), ("elsewhere", "other-canary")):
            iot.create_thing(thingName=thing)
            iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
        assert in_fleet(iot, "in-fleet", "fleet") and in_fleet(iot, "in-canary", "fleet")
        assert not in_fleet(iot, "elsewhere", "fleet")


class _Aws:
    def __init__(self, store: DeploymentsStore) -> None:
        self.store = store


def test_only_an_approval_with_a_percent_and_a_champion_runs_a_canary(store: DeploymentsStore) -> None:
    aws: Any = _Aws(store)
    pkg = {"arn": "arn:pkg/2", "group": "g", "version": 2, "status": "Approved", "model_data_url": "s3://b/k"}
    pkg["digests"] = {}
    state = {"thing_group": "fleet", "package": pkg, "mode": "approved", "canary_percent": "25"}
    assert canary.plan(aws, state)["reason"] == "no canary: the group runs no champion yet"
    store.mark_target("fleet", {"arn": "arn:pkg/1", "version": 1}, "d1", "r1")
    assert canary.plan(aws, state) == {"enabled": True, "reason": "", "percent": 25}
    assert not canary.plan(aws, {**state, "canary_percent": "0"})["enabled"]
    assert not canary.plan(aws, {**state, "mode": "rollback"})["enabled"]
    store.mark_target("fleet", {"arn": "arn:pkg/2", "version": 2}, "d2", "r2")
    assert not canary.plan(aws, state)["enabled"]  # it runs already


def test_the_verdict_fits_the_package_metadata_and_names_the_numbers() -> None:
    result = decide(CohortCounts(400, 80, 100, 0, 30.0), CohortCounts(1200, 120, 300, 1, 28.0)).to_json()
    result["reasons"] = result["reasons"] * 20  # a long explanation is cut, never refused by the registry
    meta = canary.verdict_metadata(result)
    assert meta["canary_verdict"] == "rollback"
    assert all(len(v) <= canary.METADATA_VALUE_MAX for v in meta.values())
    numbers = json.loads(meta["canary_numbers"])
    assert numbers["uncertain"] == ["80/400", "120/1200"] and numbers["p95_ms"] == [30.0, 28.0]
    assert meta["canary_test"].startswith("uncertain_share/higher:z p=")


def test_a_person_gives_a_verdict_only_to_a_running_canary(store: DeploymentsStore) -> None:
    with pytest.raises(ValueError, match="no canary waits"):
        store.set_canary_override("fleet", "promote", "ana", "looks fine")
    store.put_canary("fleet", {"status": "RUNNING", "run_id": "run-7"})
    with pytest.raises(ValueError, match="promoted or rolled back"):
        store.set_canary_override("fleet", "approve", "ana", "")
    assert store.set_canary_override("fleet", "rollback", "ana", "line 3 complains") == "run-7"
    with pytest.raises(ValueError, match="no canary waits"):  # one verdict per canary
        store.set_canary_override("fleet", "promote", "bo", "")
    assert (store.canary("fleet") or {})["override"]["verdict"] == "rollback"


# ------------------------------------------------------------------ the window and the verdict
class _Registry:
    def __init__(self, status: str = "Approved") -> None:
        self.status = status

    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "g",
            "ModelPackageVersion": 2,
            "ModelApprovalStatus": self.status,
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": "s3://b/model.tar.gz"}]},
        }


class _NoLabels:
    def labeled_feedback(self, since: str, model_versions: Any) -> list[dict[str, Any]]:
        return []


class _WindowAws:
    def __init__(self, store: DeploymentsStore, status: str = "Approved") -> None:
        self.store, self.sagemaker, self.ledger = store, _Registry(status), _NoLabels()


ZERO = {"frames": 0, "uncertain": 0, "ng": 0, "errors": 0, "latency_p95_ms": None}


def window_state(rest: list[str], baseline_champion: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "thing_group": "fleet",
        "run_id": "run-9",
        "timeout_seconds": "60",
        "package": {"arn": "arn:pkg/2"},
        "canary": {
            "cohort": ["dev-a"],
            "rest": rest,
            "challenger_version": "m2",
            "champion_version": "m1",
            "baseline": {"challenger": ZERO, "champion": baseline_champion or ZERO},
            "window_frames": 20,
            "window_timeout_seconds": 600,
            "window_started": 1000.0,
        },
    }


def served(store: DeploymentsStore, version: str, thing: str, frames: int, uncertain: int, at: str) -> None:
    store.add_model_window(version, thing, at, {"frames": frames, "uncertain": uncertain, "ng": 0})


def test_the_window_ends_at_its_frames_and_the_verdict_follows(store: DeploymentsStore) -> None:
    aws: Any = _WindowAws(store)
    state = window_state(["dev-b"])
    served(store, "m2", "dev-a", 12, 0, "t1")
    served(store, "m1", "dev-b", 30, 0, "t1")
    first = canary.window(aws, state, now=1010.0)["canary"]
    assert not first["done"] and first["window"]["challenger"]["frames"] == 12
    served(store, "m2", "dev-a", 10, 10, "t2")  # the challenger: 10 uncertain frames of 22
    served(store, "m1", "dev-b", 10, 0, "t2")
    done = canary.window(aws, {**state, "canary": first}, now=1020.0)["canary"]
    assert done["done"] and done["ended"] == "the cohort served 22 frames (window 20)"
    verdict = canary.verdict(aws, {**state, "canary": done})["canary"]["verdict"]
    # 10/22 vs 0/40: Fisher (an expected cell under 5): all 10 uncertain frames in the canary's 22 of 62,
    # p = C(52,12) / C(62,22) = 6.0e-6
    assert verdict["verdict"] == "rollback" and verdict["tests"][0]["method"] == "fisher"
    assert verdict["tests"][0]["p_value"] == pytest.approx(6.0e-6, abs=1e-7)
    assert verdict["canary"]["frames"] == 22 and verdict["champion"]["frames"] == 40


def test_a_fleet_of_one_is_judged_against_the_champions_own_history(store: DeploymentsStore) -> None:
    aws: Any = _WindowAws(store)
    history = {"frames": 200, "uncertain": 4, "ng": 0, "errors": 0, "latency_p95_ms": 10.0}
    state = window_state([], baseline_champion=history)
    served(store, "m2", "dev-a", 25, 0, "t1")
    done = canary.window(aws, state, now=1001.0)["canary"]
    assert done["window"]["champion"] == history
    assert canary.verdict(aws, {**state, "canary": done})["canary"]["verdict"]["verdict"] == "promote"


def test_a_person_or_a_rejection_ends_the_window_and_decides(store: DeploymentsStore) -> None:
    state = window_state(["dev-b"])
    store.put_canary("fleet", {"status": "RUNNING", "run_id": "run-9"})
    store.set_canary_override("fleet", "promote", "ana", "line owner checked the first frames")
    done = canary.window(_WindowAws(store), state, now=1001.0)["canary"]
    assert done["done"] and done["ended"] == "by hand: promote by ana"
    verdict = canary.verdict(_WindowAws(store), {**state, "canary": done})["canary"]["verdict"]
    assert verdict["verdict"] == "promote" and verdict["statistical_verdict"] == "insufficient"
    assert verdict["reasons"][0] == "by hand: promote by ana: line owner checked the first frames"

    rejected: Any = _WindowAws(store, "Rejected")
    store.put_canary("fleet", {"status": "RUNNING", "run_id": "run-9"})  # no override on this one
    done = canary.window(rejected, state, now=1001.0)["canary"]
    assert done["ended"] == "the package is now Rejected"
    assert canary.verdict(rejected, {**state, "canary": done})["canary"]["verdict"]["verdict"] == "rollback"


def test_a_window_that_times_out_short_is_not_promoted(store: DeploymentsStore) -> None:
    aws: Any = _WindowAws(store)
    state = window_state(["dev-b"])
    served(store, "m2", "dev-a", 5, 0, "t1")
    done = canary.window(aws, state, now=1000.0 + 600)["canary"]
    assert done["done"] and done["ended"] == "timeout after 600 s with 5 frames"
    assert canary.verdict(aws, {**state, "canary": done})["canary"]["verdict"]["verdict"] == "insufficient"


def _windows(store: DeploymentsStore, version: str, thing: str, p95s: list[float], frames: int = 15) -> None:
    for i, p95 in enumerate(p95s):
        counters = {"frames": frames, "uncertain": 0, "ng": 0}
        store.add_model_window(version, thing, f"2026-12-07T01:00:0{i}.000Z", counters, latency_p95_ms=p95)


def test_one_busy_health_window_is_not_a_latency_regression_and_a_sustained_one_is(store: DeploymentsStore) -> None:
    """A cohort's p95 is its slowest device's p95 sustained over two health windows: a CI run once rolled a good
    canary back because one window of a loaded machine read 270 ms against the champion's 83 ms."""
    aws: Any = _WindowAws(store)

    def verdict(challenger: list[float], frames: int = 15) -> dict[str, Any]:
        store.table.delete_item(Key={"pk": "MODEL#m2", "sk": "DEVICE#dev-a"})
        store.table.delete_item(Key={"pk": "MODEL#m1", "sk": "DEVICE#dev-b"})
        _windows(store, "m2", "dev-a", challenger, frames)
        _windows(store, "m1", "dev-b", [20.0, 22.0])
        state = window_state(["dev-b"])
        done = canary.window(aws, state, now=1001.0)["canary"]
        assert done["done"], done
        return canary.verdict(aws, {**state, "canary": done})["canary"]["verdict"]

    busy_once = verdict([21.0, 270.0])
    assert busy_once["verdict"] == "promote", busy_once["reasons"]
    assert busy_once["canary"]["latency_p95_ms"] == 21.0 and busy_once["champion"]["latency_p95_ms"] == 20.0
    slower = verdict([260.0, 270.0])
    assert slower["verdict"] == "rollback"
    assert any(r.startswith("latency p95 260.0 ms vs 20.0 ms") for r in slower["reasons"]), slower["reasons"]
    one_window = verdict([270.0], frames=25)  # the window's 20 frames in one health window
    assert one_window["canary"]["latency_p95_ms"] is None and one_window["verdict"] != "rollback"
