"""A deployment that carries a candidate beside production: the ``com.loupe.shadow`` component and the inference
component's ``settings.shadow`` block, which the device's own validation accepts as it is."""

from __future__ import annotations

import json

import pytest

from loupe import settings
from loupe.deployment import document
from loupe.deployment.errors import DeploymentError
from loupe_edge.config import validate

VALUES = {
    "modelVersion": "8",
    "modelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/8",
    "modelSha256": "d" * 64,
    "modelInt8Sha256": "",
}
SETTINGS = settings.Settings(artifact_bucket="art", raw_bucket="raw", thing_group_name="fleet")
MODEL = {"name": "com.loupe.model", "version": "1.7.0"}
INFERENCE = {"name": "com.loupe.inference", "version": "1.0.4"}


def test_a_candidate_travels_as_com_loupe_shadow_with_its_digests_in_the_inference_configuration() -> None:
    shadow = {"name": "com.loupe.shadow", "version": "1.8.0", "values": VALUES, "every_nth_frame": 10}
    doc = document.deployment_document("arn:t", "n", MODEL, INFERENCE, SETTINGS, 90, shadow=shadow)
    entry = doc["components"]["com.loupe.shadow"]
    assert entry["componentVersion"] == "1.8.0"
    assert entry["configurationUpdate"]["reset"] == [""] and json.loads(entry["configurationUpdate"]["merge"]) == VALUES
    update = doc["components"]["com.loupe.inference"]["configurationUpdate"]
    assert "/settings/shadow" in update["reset"]  # reset, then merged: no key of an earlier candidate survives
    merged = json.loads(update["merge"])["settings"]
    assert merged["shadow"] == {
        "enabled": True,
        "modelVersion": "8",
        "modelPackageArn": VALUES["modelPackageArn"],
        "sha256": {"model.onnx": "d" * 64, "model_int8.onnx": ""},
        "everyNthFrame": 10,
    }
    assert merged["feedback"] == {"bucket": "raw"}
    on_device = validate({"shadow": merged["shadow"]})
    assert on_device.problems == [] and on_device.get("shadow.everyNthFrame") == 10


def test_a_deployment_without_a_candidate_ends_the_shadow() -> None:
    doc = document.deployment_document("arn:t", "n", MODEL, INFERENCE, SETTINGS, 90)
    assert "com.loupe.shadow" not in doc["components"]
    update = doc["components"]["com.loupe.inference"]["configurationUpdate"]
    assert "/settings/shadow" in update["reset"] and "shadow" not in json.loads(update["merge"])["settings"]


def test_every_nth_frame_below_one_is_refused() -> None:
    shadow = {"name": "com.loupe.shadow", "version": "1.8.0", "values": VALUES, "every_nth_frame": 0}
    with pytest.raises(DeploymentError, match="everyNthFrame must be 1 or more"):
        document.deployment_document("arn:t", "n", MODEL, INFERENCE, SETTINGS, 90, shadow=shadow)
