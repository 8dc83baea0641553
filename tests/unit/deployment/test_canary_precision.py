"""The canary's NG shift judged by labels: the labeled precision of each model (box matching, the ledger's labeled
edge-feedback frames of the window) and the verdict it leads to (promote, rollback with the numbers, or hold)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support.stack_tables import template_table_properties

from loupe.deployment import canary
from loupe.deployment.canary_labels import count, iso, labeled_precision, true_positives
from loupe.deployment.canary_stats import CohortCounts, LabeledCounts, Policy, decide
from loupe.deployment.store import DeploymentsStore
from loupe.imaging import Inspected
from loupe.ledger import Ledger

# the NG shift of the demo: the challenger calls 40 % of frames NG, the champion 25 %; nothing else differs
CHALLENGER = CohortCounts(1000, 50, 400)
CHAMPION = CohortCounts(1000, 50, 250)
POLICY = Policy(min_labeled=30)


# ------------------------------------------------------------------ the decision
def test_an_ng_shift_with_good_labeled_precision_is_promoted_with_the_reason() -> None:
    # 90/100 vs 85/100 boxes right: the canary is not lower at all, p = P(Z > (0.05 + 0.05) / se) far above alpha
    v = decide(CHALLENGER, CHAMPION, POLICY, (LabeledCounts(40, 100, 90, 38, 36), LabeledCounts(35, 100, 85, 30, 26)))
    assert v.verdict == "promote", v.reasons
    assert v.reasons[0].startswith("the NG shift is explained by labels: precision 0.9000 vs 0.8500")
    assert any(r.startswith("ng_rate 0.4000 vs 0.2500: higher beyond margin") for r in v.reasons)
    precision = [t for t in v.tests if t.metric == "precision"][0]
    assert (precision.direction, precision.method, precision.worse) == ("lower", "z", False)
    assert v.labels["canary"]["precision"] == 0.9 and v.labels["champion"]["ng_call_correct"] == pytest.approx(26 / 30)


def test_an_ng_shift_with_worse_labeled_precision_is_rolled_back_with_the_numbers() -> None:
    # 50/100 vs 90/100: z = ((0.9 - 0.5) - 0.05) / sqrt(.5*.5/100 + .9*.1/100) = 0.35 / 0.05831 = 6.0
    v = decide(CHALLENGER, CHAMPION, POLICY, (LabeledCounts(40, 100, 50, 40, 20), LabeledCounts(35, 100, 90, 30, 28)))
    assert v.verdict == "rollback"
    assert v.reasons[0].startswith("labeled precision 0.5000 vs 0.9000: lower beyond margin 0.05 (z, p=")
    assert "canary 50/100 boxes on 40 labeled frames, champion 90/100 on 35" in v.reasons[0]
    precision = [t for t in v.tests if t.metric == "precision"][0]
    assert precision.statistic == pytest.approx(6.0025, abs=1e-3)


def test_an_ng_shift_with_too_few_labels_is_held() -> None:
    short = decide(CHALLENGER, CHAMPION, POLICY, (LabeledCounts(29, 60, 55, 29, 27), LabeledCounts(40, 50, 45, 30, 28)))
    assert short.verdict == "hold"
    assert short.reasons[-1] == "held for labels or a person: labeled frames: canary 29, champion 40 (each needs 30)"
    assert decide(CHALLENGER, CHAMPION, POLICY).verdict == "hold"  # no labels read at all
    fewer = decide(CohortCounts(1000, 50, 100), CHAMPION, POLICY)  # the other direction is held too
    assert fewer.verdict == "hold" and fewer.reasons[0].startswith("ng_rate 0.1000 vs 0.2500: lower beyond margin")
    # a champion with no box on its labeled frames has no precision to compare with
    boxless = decide(CHALLENGER, CHAMPION, POLICY, (LabeledCounts(40, 50, 45, 40, 38), LabeledCounts(40, 0, 0, 0, 0)))
    assert boxless.verdict == "hold" and "champion's 40 labeled frames hold no predicted box" in boxless.reasons[-1]


def test_labels_never_excuse_what_they_do_not_measure_and_count_without_an_ng_shift() -> None:
    good_labels = (LabeledCounts(40, 100, 95, 38, 36), LabeledCounts(35, 100, 85, 30, 26))
    uncertain = decide(CohortCounts(1000, 200, 400), CHAMPION, POLICY, good_labels)
    assert uncertain.verdict == "rollback" and uncertain.reasons[0].startswith("uncertain_share 0.2000 vs 0.0500")
    # the NG rate within its margin, but the labels say the canary is wrong more often: rolled back
    same_ng = decide(
        CohortCounts(1000, 50, 255), CHAMPION, POLICY, (LabeledCounts(40, 100, 50, 40, 20), good_labels[1])
    )
    assert same_ng.verdict == "rollback" and same_ng.reasons[0].startswith("labeled precision 0.5000 vs 0.8500")
    # within every margin with labels: promoted, no reason needed
    assert decide(CohortCounts(1000, 50, 255), CHAMPION, POLICY, good_labels).verdict == "promote"


# ------------------------------------------------------------------ box matching
def label(class_id: int, left: float, top: float, width: float, height: float) -> dict[str, Any]:
    return {"class_id": class_id, "left": left, "top": top, "width": width, "height": height}


def test_a_box_matches_a_label_of_its_class_at_iou_half_or_more_once() -> None:
    truth = [label(0, 0, 0, 10, 10)]
    assert true_positives([[0, 0.9, 0, 0, 10, 10]], truth) == 1
    # IoU exactly 0.5 (the box covers half the label, inside it) counts; just under does not
    assert true_positives([[0, 0.9, 0, 0, 10, 5]], truth) == 1
    assert true_positives([[0, 0.9, 0, 0, 10, 4.99]], truth) == 0
    assert true_positives([[1, 0.9, 0, 0, 10, 10]], truth) == 0  # another class
    # two predictions of one defect: one true positive, one false
    assert true_positives([[0, 0.6, 0, 0, 10, 10], [0, 0.9, 1, 1, 10, 10]], truth) == 1
    assert true_positives([], truth) == 0 and true_positives([[0, 0.9, 0, 0, 10, 10]], []) == 0


def test_each_prediction_takes_its_best_free_label_most_confident_first() -> None:
    truth = [label(0, 0, 0, 10, 10), label(0, 6, 0, 10, 10)]
    # the confident box overlaps the second label best (IoU 1), the other one then takes the first label
    predicted = [[0, 0.5, 0, 0, 10, 10], [0, 0.9, 6, 0, 16, 10]]
    assert true_positives(predicted, truth) == 2


def ledger_item(boxes: Any, annotations: list[dict[str, Any]], orientation: int = 1) -> dict[str, Any]:
    origin: dict[str, Any] = {"kind": "edge_feedback", "device": "dev-a", "model_version": "m2"}
    if boxes is not None:
        origin["boxes"] = json.dumps(boxes)
    return {"origin": origin, "annotations": json.dumps(annotations), "orientation": orientation}


def test_frames_are_counted_per_call_and_the_uncomparable_are_skipped() -> None:
    got = count(
        [
            ledger_item([[0, 0.9, 0, 0, 10, 10]], [label(0, 0, 0, 10, 10)]),  # NG, right
            ledger_item([[0, 0.9, 0, 0, 10, 10], [1, 0.7, 20, 20, 30, 30]], []),  # NG, the part was good
            ledger_item([], [label(0, 0, 0, 10, 10)]),  # missed: no call
            ledger_item(None, [label(0, 0, 0, 10, 10)]),  # its boxes were not kept
            ledger_item([[0, 0.9, 0, 0, 10, 10]], [label(0, 0, 0, 10, 10)], orientation=6),  # rotated
        ]
    )
    assert got == LabeledCounts(frames=3, predicted=3, true_positives=1, ng_calls=2, ng_correct=1, skipped=2)
    assert got.precision == pytest.approx(1 / 3) and got.ng_call_correct == 0.5


# ------------------------------------------------------------------ the ledger's labeled frames of the window
@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="ledger", **template_table_properties("LedgerTable"))
        yield Ledger(dynamodb.Table("ledger"))


def record(ledger: Ledger, sha: str, origin: dict[str, Any], labels: list[dict[str, Any]] | None) -> None:
    """Ingest's record, then the labeling callback's claim and labels (the ledger's own transitions)."""
    info = Inspected(sha256=sha, format="png", size=10, width=64, height=48, mode="RGB")
    ledger.record_image(info, f"s3://raw/raw/feedback/{origin.get('device')}/{sha}.png", f"s3://raw/{sha}", origin)
    if labels is not None:
        assert ledger.claim([sha], "claim-1") == [sha]
        assert ledger.mark_labeled(sha, "claim-1", labels, "job-1")


def test_the_window_reads_each_models_labeled_frames_from_its_own_devices(ledger: Ledger) -> None:
    def fb(device: str, version: str, boxes: list[list[float]]) -> dict[str, Any]:
        return {"kind": "edge_feedback", "device": device, "model_version": version, "boxes": json.dumps(boxes)}

    hit, miss = [[0, 0.9, 0, 0, 10, 10]], [[0, 0.9, 30, 30, 40, 40]]
    truth = [label(0, 0, 0, 10, 10)]
    # labeled before the canary started, and recorded before it: not the window's
    record(ledger, "a" * 64, fb("dev-a", "m2", hit), truth)
    ledger.table.update_item(
        Key={"sha256": "a" * 64},
        UpdateExpression="SET created_at = :c",
        ExpressionAttributeValues={":c": "2020-01-01T00:00:00.000000+00:00"},
    )
    since = iso(time.time() - 1)
    record(ledger, "b" * 64, fb("dev-a", "m2", hit), truth)  # the challenger on the cohort: right
    record(ledger, "c" * 64, fb("dev-a", "m2", miss), truth)  # the challenger on the cohort: wrong
    record(ledger, "d" * 64, fb("dev-b", "m1", hit), truth)  # the champion on the rest: right
    record(ledger, "e" * 64, fb("dev-b", "m2", miss), truth)  # the challenger on a rest device: not the cohort's
    record(ledger, "f" * 64, fb("dev-a", "m0", miss), truth)  # another model
    record(ledger, "0" * 64, fb("dev-b", "m1", hit), None)  # not labeled yet
    record(ledger, "1" * 64, {"kind": "upload", "model_version": "m1"}, truth)  # a person's upload
    got = labeled_precision(
        ledger, {"challenger_version": "m2", "champion_version": "m1", "cohort": ["dev-a"], "rest": ["dev-b"]}, since
    )
    assert got["challenger"] == LabeledCounts(2, 2, 1, 2, 2, 0)
    assert got["champion"] == LabeledCounts(1, 1, 1, 1, 1, 0)


class _PagedTable:
    """A table answering the query in two pages, as DynamoDB does past 1 MB."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items, self.calls = items, []  # type: ignore[var-annotated]

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if "ExclusiveStartKey" not in kwargs:
            return {"Items": self.items[:1], "LastEvaluatedKey": {"sha256": "x"}}
        return {"Items": self.items[1:]}


def test_the_labeled_frames_are_read_page_by_page_from_the_status_index() -> None:
    items = [{"sha256": str(i), "origin": {"model_version": "m2"}} for i in range(3)]
    table = _PagedTable(items)
    assert [i["sha256"] for i in Ledger(table).labeled_feedback("2026-01-01", ["m2", "m1"])] == ["0", "1", "2"]  # type: ignore[arg-type]
    first, second = table.calls
    assert first["IndexName"] == "status-index" and second["ExclusiveStartKey"] == {"sha256": "x"}
    assert first["KeyConditionExpression"] == "#s = :labeled AND #u >= :since"


# ------------------------------------------------------------------ the hold in the workflow's verdict
class _Registry:
    def describe_model_package(self, ModelPackageName: str) -> dict[str, Any]:  # noqa: N803
        return {
            "ModelPackageArn": ModelPackageName,
            "ModelPackageGroupName": "g",
            "ModelPackageVersion": 2,
            "ModelApprovalStatus": "Approved",
            "InferenceSpecification": {"Containers": [{"ModelDataUrl": "s3://b/model.tar.gz"}]},
        }


class _NoLabels:
    def labeled_feedback(self, since: str, model_versions: Any) -> list[dict[str, Any]]:
        return []


class _Aws:
    def __init__(self, store: DeploymentsStore) -> None:
        self.store, self.sagemaker, self.ledger = store, _Registry(), _NoLabels()


@pytest.fixture
def store() -> Iterator[DeploymentsStore]:
    with mock_aws():
        table = boto3.resource("dynamodb", region_name="us-east-1").create_table(
            TableName="deployments", **template_table_properties("DeploymentsTable")
        )
        yield DeploymentsStore(table)


def held_state() -> dict[str, Any]:
    window = {"frames": 100, "uncertain": 0, "errors": 0, "latency_p95_ms": None}
    return {
        "thing_group": "fleet",
        "run_id": "run-7",
        "timeout_seconds": "60",
        "canary_hold_timeout_seconds": "600",
        "canary_min_labeled": "5",
        "package": {"arn": "arn:pkg/2"},
        "canary": {
            "cohort": ["dev-a"],
            "rest": ["dev-b"],
            "challenger_version": "m2",
            "champion_version": "m1",
            "baseline": {"challenger": {**window, "ng": 0}, "champion": {**window, "ng": 0}},
            "window_frames": 20,
            "window_timeout_seconds": 600,
            "window_started": 1000.0,
            "started_epoch": 1000.0,
            "ended": "the cohort served 100 frames (window 20)",
            "window": {"challenger": {**window, "ng": 100}, "champion": {**window, "ng": 0}},
        },
    }


def test_a_held_canary_notifies_once_keeps_deciding_and_rolls_back_at_its_timeout(store: DeploymentsStore) -> None:
    aws: Any = _Aws(store)
    state = held_state()
    store.put_canary("fleet", {"status": "RUNNING", "run_id": "run-7"})
    first = canary.verdict(aws, state, now=2000.0)["canary"]
    assert first["verdict"]["verdict"] == "hold"
    hold = first["hold"]
    assert hold["notify"] and hold["since"] == 2000.0 and hold["deadline"] == 2600.0 and hold["poll_seconds"] == 30
    assert "held for labels" in hold["subject"] and "loupe canary promote" in hold["message"]
    assert "canary: 100 NG of 100 frames; labeled frames 0" in hold["message"]
    item = store.canary("fleet") or {}
    assert item["status"] == "RUNNING" and "labeled frames: canary 0, champion 0" in item["hold"]["reasons"][-1]
    # the next check: still held, no second notification; a person can still decide
    again = canary.verdict(aws, {**state, "canary": first}, now=2300.0)["canary"]
    assert again["verdict"]["verdict"] == "hold" and not again["hold"]["notify"] and again["hold"]["since"] == 2000.0
    store.set_canary_override("fleet", "promote", "ana", "labeled them on paper")
    assert (store.canary("fleet") or {})["override"]["verdict"] == "promote"
    # the window check in a hold: done at once; a person's verdict ends it
    store.add_model_window("m2", "dev-a", "t9", {"frames": 50, "uncertain": 50, "ng": 0})  # served meanwhile
    checked = canary.window(aws, {**state, "canary": again}, now=2310.0)["canary"]
    assert checked["done"] and checked["ended"] == "by hand: promote by ana"
    assert checked["window"] == again["window"]  # the window closed when it ended: the hold waits for labels only
    # at the timeout: rolled back, the safe default, with that reason first
    late = canary.verdict(aws, {**state, "canary": again}, now=2600.0)["canary"]
    assert late["verdict"]["verdict"] == "rollback" and late["verdict"]["statistical_verdict"] == "hold"
    assert late["verdict"]["reasons"][0].startswith("held 600 s (CanaryHoldTimeoutSeconds) without enough labels")
    assert not late["hold"]["notify"]
