"""The pipeline stand-in answers an execution nobody started as SageMaker does: ResourceNotFound, HTTP 400.

API_DescribePipelineExecution, API_ListPipelineExecutionSteps and API_StopPipelineExecution list ResourceNotFound
("Resource being access is not found.", HTTP 400) among their errors. The answers are parsed with botocore's own
parser for the operation, so the test sees what a boto3 caller sees.
"""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from loupe_local.standins.base import AwsRequest
from loupe_local.standins.pipelines.interpreter import Execution
from loupe_local.standins.pipelines.service import PipelineExecutions

MODEL = botocore.session.get_session().get_service_model("sagemaker")
PIPELINE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/loupe-training"
OPERATIONS = ["DescribePipelineExecution", "ListPipelineExecutionSteps", "StopPipelineExecution"]


def _arn(execution_id: str, pipeline: str = "loupe-training") -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/{pipeline}/execution/{execution_id}"


class _Paginator:
    def __init__(self, stored: dict[str, list[str]]) -> None:
        self.stored = stored

    def paginate(self, PipelineName: str):  # noqa: N803 - boto3's argument name
        if PipelineName not in self.stored:  # moto: ValidationException for a pipeline it does not have
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "no pipeline"}}, "List")
        arns = self.stored[PipelineName]
        yield {"PipelineExecutionSummaries": [{"PipelineExecutionArn": a} for a in arns[:1]], "NextToken": "t"}
        yield {"PipelineExecutionSummaries": [{"PipelineExecutionArn": a} for a in arns[1:]]}


class _SageMaker:
    def __init__(self, stored: dict[str, list[str]]) -> None:
        self.stored = stored

    def get_paginator(self, name: str) -> _Paginator:
        assert name == "list_pipeline_executions"
        return _Paginator(self.stored)


class _Runtime:
    """What the stand-in uses of the local AWS here: a SageMaker client onto moto's stored executions."""

    def __init__(self, stored: dict[str, list[str]]) -> None:
        self.stored = stored

    def client(self, service: str) -> _SageMaker:
        assert service == "sagemaker"
        return _SageMaker(self.stored)


@pytest.fixture
def standin() -> PipelineExecutions:
    standin = PipelineExecutions()
    # moto stores two executions of loupe-training; the stand-in runs the first (started while it was attached)
    standin.runtime = _Runtime({"loupe-training": [_arn("ran0001"), _arn("before0001")]})
    standin.executions[_arn("ran0001")] = Execution(
        arn=_arn("ran0001"),
        pipeline_name="loupe-training",
        pipeline_arn=PIPELINE_ARN,
        display_name="ran0001",
        description="",
        parameters={},
        definition={"Steps": []},
        root=Path("/nonexistent"),
    )
    return standin


def _request(operation: str, **body) -> AwsRequest:
    return AwsRequest("POST", "/", {}, {}, json.dumps(body).encode(), service="sagemaker", target=operation)


def _answer(standin: PipelineExecutions, operation: str, **body) -> tuple[int, dict]:
    """The stand-in's answer as boto3 parses it (``Error`` for an error response)."""
    request = _request(operation, **body)
    assert standin.handles(request), f"{operation} {body} would go to moto"
    status, headers, data = standin.handle(request).encode()
    parsed = create_parser("json").parse(
        {"status_code": status, "headers": headers, "body": data}, MODEL.operation_model(operation).output_shape
    )
    return status, parsed


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(
    "arn", [_arn("nobody0001"), _arn("nobody0002", pipeline="no-such-pipeline")], ids=["known-pipeline", "no-pipeline"]
)
def test_an_execution_nobody_started_is_resource_not_found(standin, operation, arn):
    status, parsed = _answer(standin, operation, PipelineExecutionArn=arn)
    assert status == 400
    assert parsed["Error"]["Code"] == "ResourceNotFound"
    assert parsed["Error"]["Code"] in {e.name for e in MODEL.operation_model(operation).error_shapes}
    assert arn in parsed["Error"]["Message"] and "does not exist" in parsed["Error"]["Message"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_malformed_execution_arn_is_a_validation_error(standin, operation):
    status, parsed = _answer(standin, operation, PipelineExecutionArn="loupe-training/execution/x")
    assert status == 400
    assert parsed["Error"]["Code"] == "ValidationException"
    assert "pipelineExecutionArn" in parsed["Error"]["Message"]


def test_executions_it_runs_are_answered_and_moto_keeps_the_ones_it_stored_before(standin):
    status, parsed = _answer(standin, "DescribePipelineExecution", PipelineExecutionArn=_arn("ran0001"))
    assert status == 200 and parsed["PipelineExecutionArn"] == _arn("ran0001")
    status, parsed = _answer(standin, "ListPipelineExecutionSteps", PipelineExecutionArn=_arn("ran0001"))
    assert status == 200 and parsed["PipelineExecutionSteps"] == []
    # stored by moto (on a later page of its list) but not run by the stand-in: moto answers, as before
    assert not standin.handles(_request("DescribePipelineExecution", PipelineExecutionArn=_arn("before0001")))
    # other operations are never claimed
    assert not standin.handles(_request("ListPipelineExecutions", PipelineName="loupe-training"))
    other = AwsRequest("POST", "/", {}, {}, b"{}", service="states", target="DescribePipelineExecution")
    assert not standin.handles(other)


class _Jobs:
    """The job runner's stop seam: records each terminate (which kills the job process running now)."""

    def __init__(self) -> None:
        self.terminated = 0

    def terminate(self, wait: float = 5.0) -> None:
        self.terminated += 1


def _execution(execution_id: str) -> Execution:
    return Execution(
        arn=_arn(execution_id),
        pipeline_name="loupe-training",
        pipeline_arn=PIPELINE_ARN,
        display_name=execution_id,
        description="",
        parameters={},
        definition={"Steps": []},
        root=Path("/nonexistent"),
    )


def test_stopping_a_queued_execution_leaves_the_running_executions_job_alone(standin):
    """One execution runs, another waits behind it: stopping the waiting one must not kill the running one's job."""
    jobs = _Jobs()
    standin.jobs = jobs  # type: ignore[assignment]
    running, queued = _execution("run0001"), _execution("queued0001")
    standin.executions.update({running.arn: running, queued.arn: queued})
    standin._running = running

    status, _ = _answer(standin, "StopPipelineExecution", PipelineExecutionArn=queued.arn)
    assert status == 200
    assert queued.status == "Stopping" and queued.stop_requested
    assert jobs.terminated == 0 and not running.stop_requested

    status, _ = _answer(standin, "StopPipelineExecution", PipelineExecutionArn=running.arn)
    assert status == 200
    assert running.status == "Stopping" and jobs.terminated == 1
