"""The ``shadow`` object of a device's health message: parsed strictly, turned into per-candidate metrics, and added
once per window to the candidate's totals in the deployments table (against moto, the table as template.yaml
declares it)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from loupe import fleet_serving
from loupe.deployment.store import DeploymentsStore
from loupe.edge_metrics import (
    HealthRejected,
    agreement,
    field_agreement_metadata,
    parse_health,
    shadow_metric_values,
)
from loupe_edge.shadow import AgreementWindow
from loupe_local.template import load_yaml

REPO = Path(__file__).resolve().parents[3]
SAMPLE = json.loads((REPO / "events" / "edge_health.json").read_text())
THING = SAMPLE["thing"]


def device_window(frames: int, disagree: int) -> dict[str, Any]:
    """A window as the device's own code reports it (loupe_edge.shadow), so cloud and device agree on the shape."""
    w = AgreementWindow()
    box = np.array([[10, 10, 50, 50, 0.9, 0]], dtype=np.float32)
    none = np.zeros((0, 6), dtype=np.float32)
    for i in range(frames):
        w.seen()
        w.seen()  # every 2nd frame sampled
        w.add(box, none if i < disagree else box, True, i >= disagree, False, i < disagree, 12.0 + i)
    return {
        "model_version": "9",
        "model_package_arn": None,
        "every_nth_frame": 2,
        "state": "running",
        "error": None,
        **w.snapshot(),
    }


def health_with(shadow: Any) -> dict[str, Any]:
    return {**SAMPLE, "shadow": shadow}


def test_the_window_a_device_reports_parses_and_becomes_per_candidate_metrics() -> None:
    health = parse_health(health_with(device_window(10, disagree=2)))
    assert health.shadow is not None and health.shadow.model_version == "9"
    values = shadow_metric_values(health)
    assert values["ShadowFrames"] == (10.0, "Count")
    assert values["ShadowVerdictsAgreed"][0] == 8.0 and values["ShadowMissedDefects"][0] == 2.0
    assert values["ShadowVerdictAgreement"] == (0.8, "None")
    assert values["ShadowBoxRecall"][0] == 0.8 and values["ShadowBoxPrecision"][0] == 1.0
    assert values["ShadowUncertainShare"][0] == 0.2 and values["ShadowProductionUncertainShare"][0] == 0.0
    assert values["ShadowLatencyP95"][1] == "Milliseconds"


def test_a_message_without_a_shadow_or_with_an_unnamed_candidate_gives_no_candidate_metric() -> None:
    plain = {k: v for k, v in SAMPLE.items() if k != "shadow"}
    assert shadow_metric_values(parse_health(plain)) == {}
    assert shadow_metric_values(parse_health(health_with(None))) == {}
    unnamed = device_window(3, 0) | {"model_version": None}
    assert shadow_metric_values(parse_health(health_with(unnamed))) == {}


def _broken(change) -> dict[str, Any]:
    shadow = copy.deepcopy(SAMPLE["shadow"])
    change(shadow)
    return shadow


@pytest.mark.parametrize(
    ("shadow", "why"),
    [
        (_broken(lambda s: s.update(extra=1)), "shadow.extra: Extra inputs are not permitted"),
        (_broken(lambda s: s["boxes"].update(matched=13)), "13 matched boxes out of 11 and 12"),
        (_broken(lambda s: s["verdict"].update(ok_ok=9)), "verdict cells add up to 16, not to the 15 frames"),
        (_broken(lambda s: s.update(frames=75)), "candidate ran on 75 of 74 frames"),
        (_broken(lambda s: s["uncertain"].update(shadow=16)), "more uncertain frames than the 15 frames"),
        (_broken(lambda s: s.update(production_frames="74")), "shadow.production_frames: Input should be a valid"),
        (_broken(lambda s: s["boxes"].update(shadow=-1)), "shadow.boxes.shadow: Input should be greater than or"),
        (_broken(lambda s: s.update(model_version="9/../x")), "shadow.model_version: String should match pattern"),
        (_broken(lambda s: s.update(state="great")), "shadow.state: Input should be 'loading', 'running' or"),
        (_broken(lambda s: s["window"].update(end="2026-11-21T10:14:00.000Z")), "window ends"),
        (_broken(lambda s: s["window"].update(end="yesterday")), "shadow.window.end: String should match"),
        (_broken(lambda s: s.pop("verdict")), "shadow.verdict: Field required"),
        ("agreement: high", "shadow: Input should be a valid dictionary"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_a_shadow_object_that_does_not_add_up_rejects_the_message_with_the_reason(shadow: Any, why: str) -> None:
    with pytest.raises(HealthRejected) as err:
        parse_health(health_with(shadow))
    assert why in str(err.value)


def test_a_non_finite_latency_in_the_shadow_is_refused_with_its_place() -> None:
    text = json.dumps(SAMPLE).replace('"p95": 41.7', '"p95": NaN')
    with pytest.raises(HealthRejected, match="shadow.latency_ms.p95"):
        parse_health(json.loads(text))


@pytest.fixture
def store() -> Any:
    props = load_yaml(REPO / "template.yaml")["Resources"]["DeploymentsTable"]["Properties"]
    keep = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    with mock_aws():
        ddb = boto3.resource("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="loupe-deployments-shadow", **{k: props[k] for k in keep if k in props})
        yield DeploymentsStore(ddb.Table("loupe-deployments-shadow"))


def test_each_window_is_added_once_and_the_candidates_totals_sum_its_devices(store: Any) -> None:
    first = parse_health(SAMPLE)
    assert fleet_serving.record_shadow(first, store)
    assert not fleet_serving.record_shadow(first, store)  # the same message again (QoS 1, a Lambda retry)
    later = copy.deepcopy(SAMPLE)
    later["shadow"]["window"] = {"start": "2026-11-21T10:15:05.000Z", "end": "2026-11-21T10:15:15.000Z", "seconds": 10}
    later["shadow"]["latency_ms"]["p95"] = 44.0
    assert fleet_serving.record_shadow(parse_health(later), store)
    other = copy.deepcopy(SAMPLE)
    other.update(thing="loupe-device-2", topic="loupe/loupe-device-2/health", source_thing="loupe-device-2")
    other["shadow"]["verdict"] = {"ok_ok": 5, "ok_ng": 0, "ng_ok": 5, "ng_ng": 5}
    assert fleet_serving.record_shadow(parse_health(other), store)
    got = store.shadow_totals("1.0.3")
    assert sorted(got["devices"]) == ["loupe-device-2", THING]
    assert got["devices"][THING]["frames"] == 30 and got["devices"][THING]["last_latency_p95_ms"] == 44.0
    t = got["totals"]
    assert t["frames"] == 45 and t["production_frames"] == 3 * 74
    assert t["verdict_ok_ok"] == 8 + 8 + 5 and t["verdict_ng_ok"] == 5 and t["boxes_matched"] == 30
    ratios = agreement(t)
    assert ratios["verdict_agreement"] == pytest.approx((14 + 14 + 10) / 45)  # weighted by frames, not by message
    assert ratios["box_recall"] == pytest.approx(30 / 33) and ratios["shadow_uncertain_share"] == pytest.approx(6 / 45)
    assert store.shadow_totals("1.0.4") == {"version": "1.0.4", "totals": {}, "devices": {}}
    meta = field_agreement_metadata(got)  # what a later step writes into the package's CustomerMetadataProperties
    assert meta["field_shadow_frames"] == "45" and meta["field_shadow_devices"] == "2"
    assert meta["field_verdict_agreement"] == "0.8444" and meta["field_missed_defects"] == "5"
    assert all(isinstance(v, str) and len(v) <= 256 for v in meta.values())
    assert "field_verdict_agreement" not in field_agreement_metadata(store.shadow_totals("1.0.4"))


def test_a_window_without_frames_or_a_candidate_is_not_recorded(store: Any) -> None:
    empty = device_window(0, 0)
    assert not fleet_serving.record_shadow(parse_health(health_with(empty)), store)
    assert not fleet_serving.record_shadow(parse_health({k: v for k, v in SAMPLE.items() if k != "shadow"}), store)
    assert store.shadow_totals("9")["devices"] == {}
