"""The largest Step Functions state a labeling run can carry, measured on statemachines/labeling.asl.json's own
ResultSelectors and ResultPaths with the task results' real shapes, at the claim bound LabelingMaxPerJob allows.

Step Functions fails an execution whose state input or output passes 256 KiB (UTF-8) with States.DataLimitExceeded,
which no Catch sees (Step Functions service quotas; "Handling errors in Step Functions workflows"), so the claim
bound (template.yaml MaxValue, loupe.settings) must keep the worst state under it: every image's hash rides in
the state three times (the claim, the manifest, the labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from loupe import settings
from loupe.labeling.trigger import new_claim_id

REPO = Path(__file__).resolve().parents[3]
QUOTA = 256 * 1024
MAX_CAUSE = 32768  # Step Functions keeps an error's Cause to 32768 characters (TaskFailed event details)
ARN = "arn:aws:states:eu-central-1:123456789012:stateMachine:" + "x" * 80
BUCKET = "b" * 63  # the longest bucket name


def asl() -> dict[str, Any]:
    return json.loads((REPO / "statemachines" / "labeling.asl.json").read_text())


def apply(state: dict[str, Any], spec: dict[str, Any], payload: Any) -> dict[str, Any]:
    """A Task state's result as the ASL puts it in the state: ResultSelector on {"Payload": ...}, then ResultPath."""
    result: Any = {"Payload": payload, "StatusCode": 200}
    selector = spec.get("ResultSelector")
    if selector:
        result = {k[:-2]: payload[v.split(".")[-1]] for k, v in selector.items() if v.startswith("$.Payload.")}
    path = spec.get("ResultPath", "$")
    if path is None:
        return state
    assert path.startswith("$.") and "." not in path[2:], path
    return {**state, path[2:]: result}


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def largest_state(n: int) -> tuple[int, str]:
    """The largest state of a run of ``n`` images, on the success path with verification and on the failure path
    of its last task (the longest error cause, then ReleaseClaims)."""
    states = asl()["States"]
    hashes = [f"{i:064x}" for i in range(n)]
    claim = new_claim_id(hashes)
    uri = f"s3://{BUCKET}/labeling/{claim}/"
    job = f"loupe-{claim}-verify-abcdef12"
    state: dict[str, Any] = {"claim_id": claim, "images": hashes, "reason": "schedule"}
    state = {**state, "config": states["Configure"]["Result"]}
    payloads = {
        "WriteManifest": {
            "manifest_uri": uri + "input.manifest",
            "categories_uri": uri + "categories.json",
            "ui_uri": uri + "ui/bounding-box.liquid.html",
            "verify_ui_uri": uri + "ui/verify.liquid.html",
            "output_uri": uri + "output/",
            "count": n,
            "images": hashes,
            "wait_seconds": 951000,
        },
        "LabelingJob": {"job_name": job, "status": "Completed", "output_uri": uri + "output/" + job},
        "CollectLabels": {
            "job_name": job,
            "output_uri": uri + "output/" + job + "/manifests/output/output.manifest",
            "labeled": hashes,
            "failed": 0,
            "missing": 0,
        },
        "VerificationJob": {"job_name": job, "status": "Completed"},
        "ApplyVerification": {
            "job_name": job,
            "output_uri": uri + "output/" + job + "/manifests/output/output.manifest",
            "labeled": hashes,
            "rejected": 0,
        },
        "BuildDataset": {
            "version": 9999,
            "parent": 9998,
            "uri": f"s3://{BUCKET}/datasets/v9999/",
            "counts": {"images": 10**6, "boxes": 10**7, "train": 10**6, "val": 10**5, "test": 10**5},
        },
        "PutFeatures": {"records": n},
        "StartTraining": {"execution_arn": ARN.replace(":stateMachine:", ":execution:") + ":v9999"},
    }
    worst, where = 0, ""
    for name, payload in payloads.items():
        spec = states[name]
        # the Lambda's input: Parameters' Payload carries the whole state (plus the task, token, ARNs)
        invoke = {"FunctionName": ARN, "Payload": {"task": name, "input": state, "token": "t" * 1024}}
        state = apply(state, spec, payload)
        for label, value in ((f"{name} input", invoke), (f"{name} output", state)):
            if size(value) > worst:
                worst, where = size(value), label
    failed = {**state, "error": {"Error": "Lambda.Unknown", "Cause": "c" * MAX_CAUSE}, "failed_state": "StartTraining"}
    released = apply(failed, states["ReleaseClaims"], {"released": n})
    for label, value in (("failure path", failed), ("ReleaseClaims output", released)):
        if size(value) > worst:
            worst, where = size(value), label
    return worst, where


def test_the_largest_run_state_at_the_claim_bound_fits_the_quota() -> None:
    bound = settings.LABELING_MAX_PER_JOB_BOUND
    small, _ = largest_state(10)
    worst, where = largest_state(bound)
    per_image = (worst - small) / (bound - 10)
    print(f"\nlabeling run state: {per_image:.0f} B an image; {worst} B at {bound} images ({where}); quota {QUOTA} B")
    assert worst <= QUOTA
    over, _ = largest_state(int((QUOTA - small) / per_image) + 20)
    assert over > QUOTA  # the measurement is tight: a much larger bound would not fit


def test_the_claim_bound_is_the_templates_and_the_settings() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    assert template["Parameters"]["LabelingMaxPerJob"]["MaxValue"] == settings.LABELING_MAX_PER_JOB_BOUND
    assert settings.Settings.model_validate({"LABELING_MAX_PER_JOB": "1000"}).labeling_max_per_job == 1000
    with pytest.raises(ValidationError, match="LABELING_MAX_PER_JOB"):
        settings.Settings.model_validate({"LABELING_MAX_PER_JOB": "1001"})
