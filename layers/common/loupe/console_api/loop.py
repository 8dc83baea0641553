"""The console's Loop page (``GET /loop``): where the loop stands, from what a deployed stack records.

- the ledger's images by status (one ``Select=COUNT`` Query of its ``status-index`` per status);
- the dataset versions (``datasets/v<N>/dataset.json`` in the artifact bucket; immutable, so a warm function
  reads each once);
- the executions of the stack's state machines (labeling, training, edge deployment) and of the SageMaker training
  pipeline;
- the labeling runs: the ledger's job records (every run's job, Ground Truth's or the labeling app's) and, for the
  app's jobs, their progress in the labeling tasks table (never the job's task token);
- the stack's alarms and their states;
- a timeline that merges them, newest first.

Every function takes its clients, tables and names as arguments. What one source cannot answer (a pipeline that
was never started, an alarm being replaced) is left out with a ``note``, not raised: the rest of the page still
shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr

from loupe import aws_errors
from loupe.labeling.task_store import TaskStore, plain
from loupe.ledger import JOB_PREFIX, Ledger

LEDGER_STATUSES = ("unlabeled", "claimed", "labeled", "rejected")
RUNNING = ("RUNNING", "Executing")
JOB_FIELDS = ("status", "total", "done", "labelers_per_image", "expires_at")
MAX_DATASET_VERSIONS = 20

_DATASETS: dict[tuple[str, int], dict[str, Any]] = {}  # (bucket, version) -> summary: versions are immutable


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value or "")


def ledger_counts(ledger: Ledger) -> dict[str, int]:
    """Images by status."""
    return {status: ledger.count(status) for status in LEDGER_STATUSES}


def dataset_versions(s3: Any, bucket: str, limit: int | None = MAX_DATASET_VERSIONS) -> list[dict[str, Any]]:
    """The newest ``limit`` dataset versions (None: all), newest first: version, parent, created, counts, digest,
    uri."""
    numbers = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="datasets/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            name = str(prefix["Prefix"]).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith("v") and name[1:].isdigit():
                numbers.append(int(name[1:]))
    out = []
    for version in sorted(numbers, reverse=True)[:limit]:
        if (bucket, version) not in _DATASETS:
            try:
                body = s3.get_object(Bucket=bucket, Key=f"datasets/v{version}/dataset.json")["Body"].read()
            except Exception as exc:
                if aws_errors.is_not_found(exc):
                    continue  # reserved, not written yet
                raise
            doc = json.loads(body)
            _DATASETS[(bucket, version)] = {
                k: doc.get(k) for k in ("version", "parent", "created", "counts", "digest", "class_map")
            } | {"uri": f"s3://{bucket}/datasets/v{version}/"}
        out.append(_DATASETS[(bucket, version)])
    return out


def state_machine_executions(sfn: Any, machines: Mapping[str, str], limit: int = 20) -> list[dict[str, Any]]:
    """The newest executions of each state machine (``machines``: kind -> state machine ARN)."""
    out = []
    for kind, arn in machines.items():
        for e in sfn.list_executions(stateMachineArn=arn, maxResults=limit).get("executions", []):
            out.append(
                {
                    "kind": kind,
                    "name": str(e["name"]),
                    "status": str(e["status"]),
                    "started": _iso(e.get("startDate")),
                    "stopped": _iso(e.get("stopDate")) if e.get("stopDate") else "",
                }
            )
    return out


def pipeline_executions(sagemaker: Any, pipeline: str, limit: int = 20) -> list[dict[str, Any]]:
    """The training pipeline's newest executions (none when it was never created or started)."""
    try:
        listed = sagemaker.list_pipeline_executions(PipelineName=pipeline, MaxResults=limit)
    except Exception as exc:
        if aws_errors.error_code(exc) in ("ResourceNotFound", "ValidationException"):
            return []
        raise
    return [
        {
            "kind": "TrainingPipeline",
            "name": str(e.get("PipelineExecutionDisplayName") or str(e["PipelineExecutionArn"]).rsplit("/", 1)[-1]),
            "status": str(e.get("PipelineExecutionStatus", "")),
            "started": _iso(e.get("StartTime")),
            "stopped": "",
        }
        for e in listed.get("PipelineExecutionSummaries", [])
    ]


def labeling_runs(ledger: Ledger, tasks: TaskStore | None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest labeling and verification jobs the ledger records, with the labeling app's progress of its own.

    The ledger keeps one record per job (``#labeling-job#<name>``) beside its images: finding them is a Scan of the
    table filtered on ``kind`` (read capacity for the whole ledger, on each call: the page polls it slowly)."""
    records: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "FilterExpression": Attr("kind").eq("labeling_job"),
        "ProjectionExpression": "sha256, created_at, purpose, service, claim_id",
    }
    while True:
        page = ledger.table.scan(**kwargs)
        records += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    records.sort(key=lambda r: str(r.get("created_at", "")), reverse=True)
    runs = []
    for record in records[:limit]:
        name = str(record["sha256"]).removeprefix(JOB_PREFIX)
        service = str(record.get("service") or "groundtruth")
        run: dict[str, Any] = {
            "name": name,
            "purpose": str(record.get("purpose", "")),
            "service": service,
            "created": str(record.get("created_at", "")),
        }
        job = tasks.job(name) if tasks is not None and service == "loupe" else None
        if job is not None:
            run.update({k: plain(job.get(k)) for k in JOB_FIELDS})
        runs.append(run)
    return runs


def alarms(cloudwatch: Any, names: Iterable[str]) -> list[dict[str, Any]]:
    """The named alarms' states."""
    wanted = [n for n in names if n]
    if not wanted:
        return []
    found = cloudwatch.describe_alarms(AlarmNames=wanted[:100]).get("MetricAlarms", [])
    return [
        {
            "name": str(a["AlarmName"]),
            "state": str(a.get("StateValue", "")),
            "reason": str(a.get("StateReason", ""))[:300],
            "since": _iso(a.get("StateUpdatedTimestamp")),
            "description": str(a.get("AlarmDescription", "")),
        }
        for a in found
    ]


def _dataset_line(d: Mapping[str, Any]) -> str:
    parent = d.get("parent")
    return f"dataset v{d['version']}" + (f" (parent v{parent})" if parent is not None else " (first version)")


def timeline(
    executions: Iterable[Mapping[str, Any]],
    runs: Iterable[Mapping[str, Any]],
    datasets: Iterable[Mapping[str, Any]],
    limit: int = 30,
) -> list[dict[str, Any]]:
    """What happened, newest first: executions, labeling jobs and dataset versions."""
    events = [
        {"when": e["started"], "what": f"{e['kind']} execution {e['name']}", "status": e["status"]} for e in executions
    ]
    events += [{"when": r["created"], "what": f"labeling job {r['name']}", "status": r.get("status", "")} for r in runs]
    events += [{"when": str(d.get("created") or ""), "what": _dataset_line(d), "status": ""} for d in datasets]
    return sorted(events, key=lambda e: str(e["when"]), reverse=True)[:limit]


def loop_view(
    *,
    ledger: Ledger,
    tasks: TaskStore | None,
    s3: Any,
    artifact_bucket: str,
    sfn: Any,
    machines: Mapping[str, str],
    sagemaker: Any,
    pipeline: str | None,
    cloudwatch: Any,
    alarm_names: Iterable[str],
) -> dict[str, Any]:
    """What ``GET /loop`` answers."""
    executions = state_machine_executions(sfn, machines)
    if pipeline:
        executions += pipeline_executions(sagemaker, pipeline)
    executions.sort(key=lambda e: e["started"], reverse=True)
    datasets = dataset_versions(s3, artifact_bucket)
    runs = labeling_runs(ledger, tasks)
    return {
        "ledger": ledger_counts(ledger),
        "datasets": datasets,
        "executions": [e for e in executions if e["status"] in RUNNING],
        "labeling_runs": runs,
        "alarms": alarms(cloudwatch, alarm_names),
        "timeline": timeline(executions, runs, datasets),
    }
