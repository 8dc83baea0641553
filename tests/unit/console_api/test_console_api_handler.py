"""``functions/console_api`` through its real ``lambda_handler`` with the HTTP API sample (events/console_api.json):
an approver's decision reaches UpdateModelPackage naming them; another group gets 403 and no AWS call."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SAMPLE = json.loads((REPO / "events" / "console_api.json").read_text())
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/2"
CONTEXT = SimpleNamespace(
    function_name="console_api",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:console_api",
    aws_request_id="r-1",
)


class Registry:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        return {"ModelPackageSummaryList": [{"ModelPackageArn": ARN, "ModelPackageVersion": 2}]}

    def describe_model_package(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "ModelPackageArn": ARN,
            "ModelPackageVersion": 2,
            "ModelPackageGroupName": "loupe-models",
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": "PendingManualApproval",
        }

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ModelPackageArn": ARN}


class Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused request reached sagemaker.{name}")


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "loupe",
        "MODEL_PACKAGE_GROUP": "loupe-models",
        "LABELING_TASKS_TABLE": "loupe-labeling-tasks",
        "USER_POOL_ID": "us-east-1_example",
        "USER_POOL_CLIENT_ID": "exampleclient",
        "ARTIFACT_BUCKET": "loupe-artifacts",
    }.items():
        monkeypatch.setenv(key, value)
    # a stack without the deployments table (no field agreement to read): this module's world is the one above, not
    # what an earlier test of the same run left in os.environ (in a full run the local AWS's functions' variables)
    monkeypatch.delenv("DEPLOYMENTS_TABLE", raising=False)
    spec = importlib.util.spec_from_file_location("test_fn_console_api", REPO / "functions" / "console_api" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_approver_approves_with_the_sample(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    monkeypatch.setattr(handler, "sagemaker", registry)
    response = handler.lambda_handler(copy.deepcopy(SAMPLE), CONTEXT)
    assert response["statusCode"] == 200, response
    assert registry.updates == [
        {
            "ModelPackageArn": ARN,
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": "Approved by ann@example.com: gate passed on scratches",
        }
    ]


def test_a_labeler_gets_403_and_no_aws_call(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "sagemaker", Untouchable())
    event = copy.deepcopy(SAMPLE)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[labelers reviewers]"
    response = handler.lambda_handler(event, CONTEXT)
    assert response["statusCode"] == 403 and "approvers" in json.loads(response["body"])["message"]


def _route(method: str, route: str, path: str, groups: str, body: str | None = None, **params: str) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE)
    event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {route}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["pathParameters"] = params or None
    event["body"] = body
    event["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = groups
    return event


@pytest.mark.parametrize(
    ("method", "route", "path", "params", "group"),
    [
        ("GET", "/review/next", "/review/next", {}, "reviewers"),
        ("POST", "/review/{itemId}", "/review/loupe-c-1.0", {"itemId": "loupe-c-1.0"}, "reviewers"),
        ("GET", "/labeling/tasks/next", "/labeling/tasks/next", {}, "labelers"),
        ("POST", "/labeling/tasks/{assignmentId}", "/labeling/tasks/ab12", {"assignmentId": "ab12"}, "labelers"),
    ],
)
def test_labeling_routes_refuse_other_groups_before_any_aws_call(
    handler: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    route: str,
    path: str,
    params: dict[str, str],
    group: str,
) -> None:
    for name in ("tasks", "s3", "sfn"):
        monkeypatch.setattr(handler, name, Untouchable())
    other = "[labelers approvers]" if group == "reviewers" else "[reviewers approvers]"
    body = '{"boxes": []}' if method == "POST" else None
    response = handler.lambda_handler(_route(method, route, path, other, body, **params), CONTEXT)
    assert response["statusCode"] == 403, response
    assert group in json.loads(response["body"])["message"]


def test_an_oversized_answer_is_413_before_any_table_call(handler: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler, "tasks", Untouchable())
    body = json.dumps({"boxes": [], "pad": "x" * 20000})
    event = _route(
        "POST", "/labeling/tasks/{assignmentId}", "/labeling/tasks/ab12", "[labelers]", body, assignmentId="ab12"
    )
    response = handler.lambda_handler(event, CONTEXT)
    assert response["statusCode"] == 413 and "at most" in json.loads(response["body"])["message"]


def test_a_decline_with_a_bad_body_is_400_before_any_table_call(
    handler: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decline takes no body or {"reason": ...}: anything else is refused with the shape, nothing is declined."""
    for name in ("tasks", "s3", "sfn"):
        monkeypatch.setattr(handler, name, Untouchable())
    route, path = "/labeling/tasks/{assignmentId}/decline", "/labeling/tasks/ab12/decline"
    for body in ('{"reason": 3}', '{"boxes": []}', "not json"):
        event = _route("POST", route, path, "[labelers]", body, assignmentId="ab12")
        response = handler.lambda_handler(event, CONTEXT)
        assert response["statusCode"] == 400, (body, response)
        assert "body" in json.loads(response["body"])["message"]
