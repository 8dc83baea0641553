"""Model registry observer: the "SageMaker Model Package State Change" event on approval status changes.

moto answers UpdateModelPackage but emits no event; this observer looks at each UpdateModelPackage before moto
answers it (``handles`` never claims the request) and after (``after``), and when ``ModelApprovalStatus``
changed emits the event SageMaker would, with the package's description as ``detail``. So
``aws sagemaker update-model-package --model-approval-status Approved`` against the local endpoint starts the
edge deployment exactly like in the cloud.

It also restores what moto 5.2.5 drops on UpdateModelPackage and SageMaker keeps: ``CustomerMetadataProperties``
(the registered artifact digests) when the request does not set them, or sets only some (SageMaker adds and updates
the keys a request gives and removes only ``...ToRemove``; moto replaces the whole map), and the
``ApprovalDescription`` an update gave (restoring the metadata with a second update would drop it).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from loupe_local.standins.base import AwsRequest, StandIn

log = logging.getLogger("loupe_local.modelregistry")

DETAIL_TYPE = "SageMaker Model Package State Change"
_KEEP = (
    "ModelPackageGroupName",
    "ModelPackageVersion",
    "ModelPackageArn",
    "ModelPackageName",
    "ModelPackageDescription",
    "CreationTime",
    "InferenceSpecification",
    "ModelPackageStatus",
    "ModelApprovalStatus",
    "ApprovalDescription",
    "CustomerMetadataProperties",
    "ModelMetrics",
    "LastModifiedTime",
    "CreatedBy",
    "LastModifiedBy",
)


class ModelRegistryObserver(StandIn):
    name = "model-registry-events"

    def __init__(self) -> None:
        self._before: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.emitted: list[dict[str, Any]] = []

    @staticmethod
    def _is_update(request: AwsRequest) -> bool:
        return request.service == "sagemaker" and request.target == "UpdateModelPackage"

    def handles(self, request: AwsRequest) -> bool:
        if self._is_update(request):
            arn = request.json().get("ModelPackageArn", "")
            try:
                before = self.runtime.client("sagemaker").describe_model_package(ModelPackageName=arn)
            except Exception:  # noqa: BLE001 - moto will answer the update with its own error
                before = {}
            with self._lock:
                self._before[id(request)] = before
        return False

    def after(self, request: AwsRequest, status: int, body: bytes) -> None:
        if not self._is_update(request):
            return
        with self._lock:
            before = self._before.pop(id(request), {})
        if status != 200 or not before:
            return
        asked = request.json()
        arn = before["ModelPackageArn"]
        sm = self.runtime.client("sagemaker")
        new_status = asked.get("ModelApprovalStatus") or before.get("ModelApprovalStatus")
        removed = set(asked.get("CustomerMetadataPropertiesToRemove") or [])
        given = set(asked.get("CustomerMetadataProperties") or {})
        lost_metadata = bool(set(before.get("CustomerMetadataProperties") or {}) - given - removed)
        lost_status = "ModelApprovalStatus" not in asked and before.get("ModelApprovalStatus")
        lost_description = "ApprovalDescription" not in asked and before.get("ApprovalDescription")
        if lost_metadata or lost_status or lost_description:
            kept = dict(before.get("CustomerMetadataProperties") or {})
            kept.update(asked.get("CustomerMetadataProperties") or {})
            for key in asked.get("CustomerMetadataPropertiesToRemove") or []:
                kept.pop(key, None)
            restore: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": new_status}
            if kept:
                restore["CustomerMetadataProperties"] = kept
            # the restoring update would drop the approval description too (moto sets what each request gives)
            description = asked.get("ApprovalDescription") or before.get("ApprovalDescription")
            if description:
                restore["ApprovalDescription"] = description
            sm.update_model_package(**restore)
        if new_status == before.get("ModelApprovalStatus"):
            return
        detail = {k: v for k, v in sm.describe_model_package(ModelPackageName=arn).items() if k in _KEEP}
        detail = json.loads(json.dumps(detail, default=_iso))
        self.runtime.emit_event("aws.sagemaker", DETAIL_TYPE, detail, [arn])
        self.emitted.append({"arn": arn, "status": new_status, "detail": detail})
        log.info("model package %s: %s -> %s", arn, before.get("ModelApprovalStatus"), new_status)

    def status(self) -> dict[str, Any]:
        return {
            "emitted": len(self.emitted),
            "last": [{"arn": e["arn"], "status": e["status"]} for e in self.emitted[-3:]],
        }


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
