"""The console's HTTP API (API Gateway HTTP API, payload format 2.0, JWT authorizer on the stack's user pool).

Every route is behind the JWT authorizer, which answers 401 itself to a request without a valid token, except the
web app's own files (``GET /``, ``GET /web/{file+}``) and ``GET /config.json`` (public identifiers), which the
template routes with ``Authorizer: NONE``: :mod:`loupe.console_api.static` decides what they serve. A route
that belongs to a group checks the caller's ``cognito:groups`` here (403), since the authorizer only validates the
token and its scopes (API Gateway Developer Guide, "Controlling access to HTTP APIs with JWT authorizers").
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client, lazy_table
from loupe.console_api import evaluation, fleet, loop, models, static
from loupe.console_api.identity import Caller, Forbidden, caller_from_claims
from loupe.deployment.store import DeploymentsStore
from loupe.labeling import answers, workforce
from loupe.labeling.task_store import TaskStore
from loupe.ledger import Ledger

logger = Logger()
tracer = Tracer()

SETTINGS = settings_mod.load()
SETTINGS.require(
    "model_package_group", "labeling_tasks_table", "user_pool_id", "user_pool_client_id", "artifact_bucket"
)
PACKAGE_GROUP = str(SETTINGS.model_package_group)
sagemaker = lazy_client("sagemaker")
# the shadow counters (field agreement) live in the deployments table; a stack without one lists no agreement
STORE = DeploymentsStore(lazy_table(SETTINGS.deployments_table)) if SETTINGS.deployments_table else None

# SigV4 presigned GETs (botocore may still presign with SigV2 by default, which AWS deprecates)
s3 = lazy_client("s3", signature_version="s3v4")
sfn = lazy_client("stepfunctions")
tasks = TaskStore(lazy_table(str(SETTINGS.labeling_tasks_table)))
# the Fleet and Loop pages' reads (each client made on first use: the labeling routes never pay for them)
iot = lazy_client("iot")
greengrass = lazy_client("greengrassv2")
cloudwatch = lazy_client("cloudwatch")
ledger = Ledger(lazy_table(str(SETTINGS.ledger_table))) if SETTINGS.ledger_table else None
STATE_MACHINES = {
    kind: arn
    for kind, arn in (
        ("Labeling", SETTINGS.labeling_state_machine_arn),
        ("Training", SETTINGS.training_state_machine_arn),
        ("EdgeDeployment", SETTINGS.edge_deployment_state_machine_arn),
    )
    if arn
}
cognito = lazy_client("cognito-idp")
WEB = static.WebRoot(Path(__file__).parent / "web")

app = APIGatewayHttpResolver()


def caller() -> Caller:
    return caller_from_claims(app.current_event.request_context.authorizer.jwt_claim or {})


def _error(status: int, message: str) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"message": message})


@app.exception_handler(Forbidden)
def forbidden(exc: Forbidden) -> Response:
    logger.warning("forbidden", extra={"reason": str(exc), "route": app.current_event.route_key})
    return _error(403, str(exc))


@app.exception_handler(models.NotFound)
def not_found(exc: models.NotFound) -> Response:
    return _error(404, str(exc))


@app.exception_handler(models.Conflict)
def conflict(exc: models.Conflict) -> Response:
    return _error(409, str(exc))


@app.exception_handler(answers.AnswerError)
def refused_answer(exc: answers.AnswerError) -> Response:
    logger.info("refused", extra={"status": exc.status, "reason": exc.message, "route": app.current_event.route_key})
    return _error(exc.status, exc.message)


@cache
def _csp() -> str:
    buckets = [b for b in (SETTINGS.raw_bucket, SETTINGS.artifact_bucket) if b]
    images = [static.presign_origin(s3, bucket) for bucket in buckets]
    return static.content_security_policy(images, [static.origin_of(static.endpoint_of(cognito))])


def _static(name: str) -> Response:
    found = WEB.get(name)
    if found is None:
        return _error(404, "Not Found")
    return Response(
        status_code=200, content_type=found.content_type, body=found.body, headers=static.security_headers(_csp())
    )


@app.get("/")
def home() -> Response:
    return Response(status_code=302, body="", headers={"Location": static.HOME, **static.security_headers(_csp())})


@app.get("/web/<name>")
def web_file(name: str) -> Response:
    return _static(name)


@app.get("/web/<folder>/<name>")
def web_file_in_folder(folder: str, name: str) -> Response:
    return _static(f"{folder}/{name}")


@app.get("/config.json")
def config() -> Response:
    body = static.app_config(
        cognito.meta.region_name,
        str(SETTINGS.user_pool_id),
        str(SETTINGS.user_pool_client_id),
        static.endpoint_of(cognito),
    )
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=body, headers={"Cache-Control": "no-cache"}
    )


@app.get("/me")
def me() -> dict[str, Any]:
    return caller().as_json()


@app.get("/models")
def list_models() -> dict[str, Any]:
    return {"group": PACKAGE_GROUP, "packages": models.list_packages(sagemaker, PACKAGE_GROUP, store=STORE)}


@app.get("/models/<package>/evaluation")
def model_evaluation(package: str) -> dict[str, Any]:
    desc = models.describe(sagemaker, PACKAGE_GROUP, package)
    return {"version": desc.get("ModelPackageVersion"), **evaluation.samples(s3, desc, str(SETTINGS.artifact_bucket))}


@app.post("/models/<package>/approval")
def approval(package: str) -> dict[str, Any]:
    who = caller()
    who.require("approvers")
    try:
        body = app.current_event.json_body
    except ValueError as exc:
        raise BadRequestError("the body must be JSON") from exc
    try:
        decision = models.Decision.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise BadRequestError(
            f'the body must be {{"decision": "Approved"|"Rejected", "reason": "..."}}: {problems}'
        ) from None
    result = models.decide(sagemaker, PACKAGE_GROUP, package, decision, who.name, store=STORE)
    logger.info("model package decision", extra={**result, "by": who.username})
    return result


@app.get("/fleet")
def fleet_page() -> dict[str, Any]:
    """The devices, their deployments and the uncertain frames they sent. Any signed-in group may read it: it shows
    how the fleet runs (what a labeler's work turned into, what an approver's decision deployed) and changes
    nothing; the frames are the same kind of image a labeler is shown, by short-lived presigned GETs."""
    caller().require_any()
    SETTINGS.require("thing_group_name", "raw_bucket")
    return fleet.fleet_view(iot, greengrass, s3, STORE, str(SETTINGS.thing_group_name), str(SETTINGS.raw_bucket))


@app.get("/loop")
def loop_page() -> dict[str, Any]:
    """Where the loop stands: ledger counts, dataset versions, running executions, labeling runs, alarms and a
    timeline. Any signed-in group may read it, for the reason ``GET /fleet`` gives: counts and states only, no
    image, no task token, no action."""
    caller().require_any()
    SETTINGS.require("ledger_table", "artifact_bucket")
    assert ledger is not None
    return loop.loop_view(
        ledger=ledger,
        tasks=tasks,
        s3=s3,
        artifact_bucket=str(SETTINGS.artifact_bucket),
        sfn=sfn,
        machines=STATE_MACHINES,
        sagemaker=sagemaker,
        pipeline=SETTINGS.training_pipeline_name,
        cloudwatch=cloudwatch,
        alarm_names=SETTINGS.alarm_names,
    )


def _answer_body() -> Any:
    event = app.current_event
    return answers.parse_body(event.decoded_body if event.is_base64_encoded else event.body)


@app.get("/labeling/tasks/next")
def next_labeling_task() -> dict[str, Any]:
    who = caller()
    who.require("labelers")
    task = workforce.next_task(tasks, who.username, time.time())
    if task is None:
        return {"task": None, "message": "no image needs your answer now"}
    task["image_url"] = workforce.image_url(s3, task["source_ref"])
    return {"task": task}


@app.post("/labeling/tasks/<assignment_id>")
def answer_labeling_task(assignment_id: str) -> dict[str, Any]:
    who = caller()
    who.require("labelers")
    result = workforce.submit_answer(tasks, s3, sfn, who.username, assignment_id, _answer_body(), time.time())
    logger.info("answer recorded", extra={**result, "by": who.username})
    return result


@app.post("/labeling/tasks/<assignment_id>/decline")
def decline_labeling_task(assignment_id: str) -> dict[str, Any]:
    who = caller()
    who.require("labelers")
    reason = workforce.decline_reason(_answer_body())
    result = workforce.decline_task(tasks, s3, sfn, who.username, assignment_id, time.time(), reason)
    logger.info("task declined", extra={**result, "by": who.username})
    return result


@app.get("/review/next")
def next_review() -> dict[str, Any]:
    who = caller()
    who.require("reviewers")
    item = workforce.next_review(tasks, who.username, time.time())
    if item is None:
        return {"item": None, "message": "no image waits for a review now"}
    item["image_url"] = workforce.image_url(s3, item["source_ref"])
    return {"item": item}


@app.post("/review/<item_id>")
def answer_review(item_id: str) -> dict[str, Any]:
    who = caller()
    who.require("reviewers")
    result = workforce.submit_review(tasks, s3, sfn, who.username, item_id, _answer_body(), time.time())
    logger.info("review recorded", extra={**result, "by": who.username})
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
