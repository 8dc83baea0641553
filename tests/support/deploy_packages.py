"""Fixture model packages for deployment tests: tiny valid ONNX detectors, packed like the training pipeline does."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from support.archives import tar_gz


def tiny_detector(imgsz: int = 32, classes: int = 1, anchors: int = 8) -> bytes:
    """A valid YOLO-shaped ONNX model: NCHW input, output [1, 4 + classes, anchors] of zeros (no detections)."""
    import onnx
    from onnx import TensorProto, helper

    n = (4 + classes) * anchors
    nodes = [
        helper.make_node("Flatten", ["images"], ["flat"], axis=1),
        helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["part"]),
        helper.make_node("Reshape", ["part", "shape"], ["shaped"]),
        helper.make_node("Mul", ["shaped", "zero"], ["output0"]),
    ]
    inits = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [n]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("shape", TensorProto.INT64, [3], [1, 4 + classes, anchors]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "loupe-fixture",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + classes, anchors])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register_package(
    runtime: Any,
    *,
    onnx_bytes: bytes | None = None,
    model_version: str | None = None,
    status: str = "PendingManualApproval",
    dataset_version: str = "1",
    training_card: bool = False,
    evaluation: dict[str, bytes] | None = None,
    card_extra: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Upload model.tar.gz (model.onnx + model_card.json) and register it with its digests in the local registry.

    ``training_card``: the card as the training pipeline writes it (no version: the registry assigns it).
    ``evaluation``: files of an evaluation step's output (``evaluation.json``, ``details.json``, ``samples/...``),
    uploaded to ``evaluations/<model version>/`` and registered as the pipeline does: ModelMetrics' statistics are
    that folder's evaluation.json, ``evaluation_uri`` in the metadata names the folder.
    ``card_extra``: more model card fields (e.g. the ``uncertainty_band`` the evaluation step writes).
    ``metadata``: more CustomerMetadataProperties (e.g. what the pipeline's RegisterRefused step adds)."""
    onnx_bytes = tiny_detector() if onnx_bytes is None else onnx_bytes
    model_version = model_version or f"fx-{uuid.uuid4().hex[:8]}"
    artifacts = {"model.onnx": {"file": "model.onnx", "sha256": sha(onnx_bytes), "bytes": len(onnx_bytes)}}
    if training_card:
        card: dict[str, Any] = {
            "format": "loupe-model-card/1",
            "dataset": {"version": dataset_version},
            "class_map": {"0": "scratch"},
            "input": {"imgsz": 32, "shape": [1, 3, 32, 32], "layout": "NCHW"},
            "artifacts": artifacts,
        }
    else:
        card = {
            "version": model_version,
            "class_map": {"0": "scratch"},
            "imgsz": 32,
            "sha256": {"model.onnx": sha(onnx_bytes)},
            "artifacts": artifacts,
            "dataset": {"version": dataset_version},
        }
    card.update(card_extra or {})
    card_bytes = json.dumps(card, indent=2).encode()
    archive = tar_gz({"model.onnx": onnx_bytes, "model_card.json": card_bytes})
    bucket = runtime.physical("ArtifactBucket")
    key = f"models/{model_version}/model.tar.gz"
    runtime.client("s3").put_object(Bucket=bucket, Key=key, Body=archive)
    group = runtime.resources["ModelPackageGroup"].attrs["ModelPackageGroupName"]
    extra: dict[str, Any] = {}
    metadata = dict(metadata or {})
    if evaluation is not None:
        folder = f"evaluations/{model_version}"
        for name, body in evaluation.items():
            runtime.client("s3").put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=body)
        metadata["evaluation_uri"] = f"s3://{bucket}/{folder}"
        statistics = {"ContentType": "application/json", "S3Uri": f"s3://{bucket}/{folder}/evaluation.json"}
        extra["ModelMetrics"] = {"ModelQuality": {"Statistics": statistics}}
    out = runtime.client("sagemaker").create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"fixture {model_version}",
        InferenceSpecification={
            "Containers": [{"Image": "loupe/onnx:fixture", "ModelDataUrl": f"s3://{bucket}/{key}"}],
            "SupportedContentTypes": ["application/x-image"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=status,
        CustomerMetadataProperties={
            "package_sha256": sha(archive),
            "model_sha256": sha(onnx_bytes),
            "model_card_sha256": sha(card_bytes),
            "dataset_version": dataset_version,
            **metadata,
        },
        **extra,
    )
    arn = out["ModelPackageArn"]
    return {
        "arn": arn,
        "model_version": arn.rsplit("/", 1)[-1] if training_card else model_version,
        "bucket": bucket,
        "key": key,
        "archive": archive,
    }
