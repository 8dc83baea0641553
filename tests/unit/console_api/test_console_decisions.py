"""The console's domain: who the caller is (groups from the authorizer's claims) and an approver's decision."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loupe.console_api import models
from loupe.console_api.identity import Forbidden, caller_from_claims

GROUP = "loupe-models"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/{}"


class Registry:
    def __init__(self, packages: dict[int, dict[str, Any]]) -> None:
        self.packages = packages
        self.updates: list[dict[str, Any]] = []

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ModelPackageGroupName"] == GROUP
        return {
            "ModelPackageSummaryList": [
                {"ModelPackageArn": ARN.format(v), "ModelPackageVersion": v} for v in sorted(self.packages)
            ]
        }

    def describe_model_package(self, **kwargs: Any) -> dict[str, Any]:
        version = int(kwargs["ModelPackageName"].rsplit("/", 1)[-1])
        return {
            "ModelPackageArn": ARN.format(version),
            "ModelPackageVersion": version,
            "ModelPackageGroupName": GROUP,
            **self.packages[version],
        }

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ModelPackageArn": kwargs["ModelPackageArn"]}


def _registry() -> Registry:
    return Registry(
        {
            1: {"ModelPackageStatus": "Completed", "ModelApprovalStatus": "Approved"},
            2: {
                "ModelPackageStatus": "Completed",
                "ModelApprovalStatus": "PendingManualApproval",
                "CustomerMetadataProperties": {"test_map50": "0.71", "champion_bar": "0.65", "model_sha256": "x"},
            },
            3: {"ModelPackageStatus": "InProgress", "ModelApprovalStatus": "PendingManualApproval"},
        }
    )


@pytest.mark.parametrize(
    ("claim", "groups"),
    [("[labelers approvers]", ("labelers", "approvers")), (["reviewers"], ("reviewers",)), (None, ())],
)
def test_groups_come_from_the_cognito_groups_claim(claim: Any, groups: tuple[str, ...]) -> None:
    claims = {"cognito:username": "u-1", "email": "a@example.com", "token_use": "id"}
    if claim is not None:
        claims["cognito:groups"] = claim
    caller = caller_from_claims(claims)
    assert caller.groups == groups and caller.name == "a@example.com"


def test_a_caller_outside_the_group_is_forbidden() -> None:
    labeler = caller_from_claims({"username": "u-2", "cognito:groups": "[labelers]"})
    with pytest.raises(Forbidden, match="approvers"):
        labeler.require("approvers")
    # a group whose name only contains "approvers" is not the group
    with pytest.raises(Forbidden):
        caller_from_claims({"username": "u-3", "cognito:groups": "[not-approvers]"}).require("approvers")


def test_the_listing_shows_status_and_the_gates_numbers() -> None:
    listed = models.list_packages(_registry(), GROUP)
    assert [p["version"] for p in listed] == [3, 2, 1]
    assert listed[1]["gate"] == {"test_map50": "0.71", "champion_bar": "0.65"}


def test_an_approval_names_the_approver_and_the_reason() -> None:
    registry = _registry()
    decision = models.Decision(decision="Approved", reason="better on scratches")
    out = models.decide(registry, GROUP, "2", decision, "ann@example.com")
    assert registry.updates == [
        {
            "ModelPackageArn": ARN.format(2),
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": "Approved by ann@example.com: better on scratches",
        }
    ]
    assert out["approval"] == "Approved"


@pytest.mark.parametrize(
    ("package", "decision", "error"),
    [
        ("1", "Approved", models.Conflict),  # already Approved
        ("3", "Approved", models.Conflict),  # not Completed yet
        ("9", "Approved", models.NotFound),
        ("../1", "Approved", models.NotFound),
        ("1e3", "Rejected", models.NotFound),
    ],
)
def test_bad_transitions_change_nothing(package: str, decision: str, error: type[Exception]) -> None:
    registry = _registry()
    with pytest.raises(error):
        models.decide(registry, GROUP, package, models.Decision(decision=decision), "ann@example.com")  # type: ignore[arg-type]
    assert registry.updates == []


@pytest.mark.parametrize(
    "body",
    [{"decision": "approved"}, {"decision": "Approved", "reason": "x" * 513}, {"decision": "Approved", "by": "me"}, {}],
)
def test_a_bad_body_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        models.Decision.model_validate(body)
