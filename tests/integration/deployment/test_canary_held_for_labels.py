"""A canary whose challenger calls far more frames NG than the champion, end to end in the local AWS: the real ASL in
moto's engine, the real handlers (deployment tasks, edge health through the IoT rule, ingest of feedback uploads
through S3's events), two local core devices running the real inference component, MQTT on loopback.

The champion C finds nothing (no frame NG); the challenger B boxes the middle of every frame at 0.9 (every frame NG,
none uncertain). The NG rate alone cannot say whether B finds defects C misses or scraps good parts, so the canary
is held: one notification, the rollout lock kept, a check every few seconds.

- People label frames of both models (uploaded under ``raw/feedback/<thing>/`` with the metadata a device writes,
  recorded by the real ingest, labeled through the ledger's claim and ``mark_labeled`` as the labeling callback
  does): B's boxes are right on all its frames, C's on two of three; the canary promotes by itself, the reason
  naming both precisions.
- Nobody labels: at CanaryHoldTimeoutSeconds the cohort is rolled back, the safe default, with that reason.

The uploads play the devices' part: a confident model sends no frame back, and the champion here sees nothing, so
the labeled frames are written as a device would write its uncertain ones (``loupe_edge.results.boxes_metadata``).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from support import canary_fleet
from support.canary_fleet import Cameras, deploy_champion, groups_of, notifications, serving
from support.deploy_packages import register_package
from support.fixture_models import box_detector
from support.health_fleet import deployments_store, finished_run, fleet_group_of_its_own, health_fleet
from support.stack_tables import stack_table
from support.waiting import wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT_TIMEOUT = 60  # s: DeploymentTimeoutSeconds here (status checks from 2 s on, at most every 3 s)
WINDOW_FRAMES = 6  # this module's CanaryWindowFrames: also each cohort's minimum sample
MIN_LABELED = 3  # this module's CanaryMinLabeledFrames
DEFECT = [50.0, 40.0, 110.0, 80.0]  # box_detector's box in a 160x120 frame (x1, y1, x2, y2)


@pytest.fixture(scope="module")
def rt(local_aws: Any) -> Iterator[Any]:
    """The session's local AWS with a thing group holding only this module's devices, and the state machine's
    definition restored at the end."""
    sfn = local_aws.client("stepfunctions")
    arn = local_aws.arn("EdgeDeploymentStateMachine")
    original = sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    try:
        with fleet_group_of_its_own(local_aws):
            yield local_aws
    finally:
        sfn.update_state_machine(stateMachineArn=arn, definition=original)


@pytest.fixture(scope="module")
def fleet(rt: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    prefix = f"loupe-device-held{uuid.uuid4().hex[:6]}"
    with health_fleet(rt, tmp_path_factory.mktemp("held-overlay"), prefix) as (_, names, _):
        yield names


@pytest.fixture(scope="module")
def notify_queue(rt: Any) -> str:
    return canary_fleet.notify_queue(rt, "held-notes")


def canary_of(rt: Any, tag: str, hold_timeout: int) -> dict[str, Any]:
    """The champion on the fleet, then this module's canary (50 %, a short window, few labels needed)."""
    prod = deploy_champion(rt, tag, DEPLOYMENT_TIMEOUT, WINDOW_FRAMES)
    canary_fleet.configure(
        rt,
        50,
        WINDOW_FRAMES,
        DEPLOYMENT_TIMEOUT,
        canary_hold_timeout_seconds=str(hold_timeout),
        canary_min_labeled=str(MIN_LABELED),
    )
    return prod


def held(rt: Any, package_arn: str) -> dict[str, Any]:
    table, group = deployments_store(rt), rt.physical("FleetThingGroup")

    def item() -> dict[str, Any] | None:
        got = table.canary(group) or {}
        ok = got.get("package_arn") == package_arn and got.get("status") == "RUNNING" and got.get("hold")
        return got if ok else None

    return wait_for(item, 180, "the canary held for labels")


def held_notes(rt: Any, queue_url: str, seen: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    seen.extend(notifications(rt, queue_url))
    return [n for n in seen if n.get("Subject") == f"Loupe canary of model {version}: held for labels"]


_FRAMES = itertools.count(1)


def frame() -> bytes:
    """A 160x120 frame of a colour no other frame of this module has (a new ledger entry each)."""
    from PIL import Image

    n = next(_FRAMES)
    buf = io.BytesIO()
    Image.new("RGB", (160, 120), (n * 37 % 256, n * 11 % 256, 200)).save(buf, format="PNG")
    return buf.getvalue()


def upload_and_label(rt: Any, thing: str, version: str, boxes: list[list[float]], truth: list[float], n: int) -> None:
    """A device's uncertain frames (the key and metadata ``loupe_edge`` writes) through the real ingest, then each
    labeled the way the labeling callback records it: the ledger's claim, then ``mark_labeled``."""
    from loupe.ledger import Ledger
    from loupe_edge.results import boxes_metadata

    s3, bucket, ledger = rt.client("s3"), rt.physical("RawBucket"), Ledger(stack_table(rt, "LedgerTable"))
    rows = [{"class_id": int(b[0]), "confidence": b[1], "xyxy": b[2:]} for b in boxes]
    labels = [
        {"class_id": 0, "left": truth[0], "top": truth[1], "width": truth[2] - truth[0], "height": truth[3] - truth[1]}
    ]
    for i in range(n):
        body = frame()
        s3.put_object(
            Bucket=bucket,
            Key=f"raw/feedback/{thing}/held-{uuid.uuid4().hex[:8]}.png",
            Body=body,
            ContentType="image/png",
            Metadata={
                "device": thing,
                "model-version": version,
                "max-confidence": f"{max(b[1] for b in boxes):.4f}",
                "reason": "confidence-band",
                "boxes": boxes_metadata(rows),
            },
        )
        sha = hashlib.sha256(body).hexdigest()
        entry = wait_for(lambda sha=sha: ledger.get(sha), 60, f"the ingest of {thing}'s frame {i}")
        assert json.loads(entry["origin"]["boxes"]) == [[int(b[0]), *b[1:]] for b in boxes]
        claim = f"held-test-{uuid.uuid4().hex[:8]}"
        assert ledger.claim([sha], claim) == [sha]
        assert ledger.mark_labeled(sha, claim, labels, "held-test-labels")


def test_a_held_canary_is_promoted_once_labels_explain_its_ng_shift(
    rt: Any, fleet: list[str], notify_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from loupe_local import cli

    sm, group = rt.client("sagemaker"), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    canary_of(rt, tag, hold_timeout=240)
    better = register_package(rt, onnx_bytes=box_detector(0.9), model_version=f"finds-{tag}")
    seen: list[dict[str, Any]] = []
    with Cameras(rt, fleet):
        sm.update_model_package(ModelPackageArn=better["arn"], ModelApprovalStatus="Approved")
        item = held(rt, better["arn"])
        assert any(r.startswith("ng_rate 1.0000 vs 0.0000: higher beyond margin") for r in item["hold"]["reasons"])
        notes = wait_for(lambda: held_notes(rt, notify_queue, seen, f"finds-{tag}") or None, 60, "the hold's note")
        assert "loupe canary promote" in notes[0]["Message"] and "labeling app" in notes[0]["Message"]
        assert cli.main(["canary", "status", "--state", str(rt.write_state())]) == 0  # what a person sees
        # the stack's handlers run in this process and print their metrics (EMF) to the same stdout meanwhile
        shown = "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith('{"_aws"'))
        assert shown.startswith("HELD since ") and "challenger labeled precision: - (0/0 boxes" in shown, shown
        (cohort,) = item["cohort"]
        (rest,) = [t for t in fleet if t != cohort]
        # people label: the challenger's box right on each of its frames; the champion's on two of its three
        upload_and_label(rt, cohort, f"finds-{tag}", [[0, 0.9, *DEFECT]], DEFECT, MIN_LABELED)
        upload_and_label(rt, rest, f"champ-{tag}", [[0, 0.4, *DEFECT]], DEFECT, 2)
        upload_and_label(rt, rest, f"champ-{tag}", [[0, 0.4, *DEFECT]], [0.0, 0.0, 20.0, 20.0], 1)
        run = finished_run(rt, better["arn"], "approved", timeout=240)
    out = json.loads(run.get("output") or "{}")
    why = sm.describe_model_package(ModelPackageName=better["arn"]).get("CustomerMetadataProperties")
    assert run["status"] == "SUCCEEDED", why
    summary = out["summary"]
    canary = summary["canary"]
    assert canary["verdict"] == "promote" and canary["held"], canary
    assert canary["reasons"][0].startswith("the NG shift is explained by labels: precision 1.0000 vs 0.6667")
    assert canary["labels"]["canary"]["true_positives"] == MIN_LABELED
    assert canary["labels"]["champion"] == {**canary["labels"]["champion"], "frames": 3, "true_positives": 2}
    assert "challenger labeled: 3 frames, 3/3 boxes right" in summary["message"]
    assert deployments_store(rt).current_target(group)["package_arn"] == better["arn"]
    for thing in fleet:
        assert serving(rt, thing) == f"finds-{tag}" and f"{group}-canary" not in groups_of(rt, thing)
    assert len(held_notes(rt, notify_queue, seen, f"finds-{tag}")) == 1  # one note for the whole hold


def test_a_held_canary_that_nobody_labels_is_rolled_back_at_its_hold_timeout(
    rt: Any, fleet: list[str], notify_queue: str
) -> None:
    sm, group = rt.client("sagemaker"), rt.physical("FleetThingGroup")
    tag = uuid.uuid4().hex[:6]
    canary_of(rt, tag, hold_timeout=20)
    unsure = register_package(rt, onnx_bytes=box_detector(0.9), model_version=f"nolabels-{tag}")
    seen: list[dict[str, Any]] = []
    with Cameras(rt, fleet):
        sm.update_model_package(ModelPackageArn=unsure["arn"], ModelApprovalStatus="Approved")
        run = finished_run(rt, unsure["arn"], "approved", timeout=240)
    assert run["status"] == "FAILED" and run.get("error") == "CanaryRolledBack", run
    desc = sm.describe_model_package(ModelPackageName=unsure["arn"])
    meta = desc["CustomerMetadataProperties"]
    assert desc["ModelApprovalStatus"] == "Rejected" and meta["canary_verdict"] == "rollback"
    assert meta["canary_reason"].startswith("held 20 s (CanaryHoldTimeoutSeconds) without enough labels"), meta
    assert json.loads(meta["canary_numbers"])["precision"] == ["0/0@0", "0/0@0"]
    assert len(held_notes(rt, notify_queue, seen, f"nolabels-{tag}")) == 1
    assert (deployments_store(rt).canary(group) or {}).get("status") == "ROLLED_BACK"
    for thing in fleet:
        assert serving(rt, thing) == f"champ-{tag}" and f"{group}-canary" not in groups_of(rt, thing)
