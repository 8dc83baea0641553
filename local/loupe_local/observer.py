"""A read-only view of the running loop: what the AWS consoles would show, read through the public APIs.

Everything here is a read: boto3 against the local endpoint (DynamoDB ledger and deployments tables, S3 dataset
versions, Step Functions executions, SageMaker pipeline executions and the model package group with its evaluation
output (``loupe_local.evaluations``: details.json, sample test images), Greengrass core devices) and the device
folders under the state dir. The demo and ``loupe local status`` use it. What the console shows of the same things
comes from the stack's console API (``loupe.console_api.loop`` and ``fleet``), which this view calls where they
overlap (ledger counts, dataset versions, executions).

Build one with :meth:`Observer.from_runtime` (in the process running the local AWS) or :meth:`Observer.from_state`
(from ``.loupe/local.json``). In the runtime's process it also reads the stand-ins' own state (pending labeling
tasks, pipeline progress) through their public ``name`` and ``status()``.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr
from botocore.config import Config
from botocore.exceptions import ClientError

from loupe.console_api import loop
from loupe.ledger import Ledger
from loupe_local.evaluations import EvaluationReader
from loupe_local.local_auth import RunCredentials

log = logging.getLogger("loupe_local.observer")

STATE_MACHINES = ("LabelingStateMachine", "TrainingStateMachine", "EdgeDeploymentStateMachine")
FAILED_DEPLOYMENTS = ("REFUSED", "ERROR", "DEPLOYED_NOT_SERVING", "FAILED")  # a run that will not serve the model


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints/floats, recursively (for JSON)."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return value


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    if isinstance(value, int | float):
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(value))
    return str(value or "")


class Observer:
    def __init__(
        self,
        endpoint: str,
        region: str,
        resources: dict[str, dict[str, Any]],
        state_dir: Path,
        standins: list[Any] | None = None,
        credentials: RunCredentials | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.resources = resources
        self.state_dir = Path(state_dir)
        self.standins = list(standins or [])
        # the run's credential (the local AWS refuses any other); None: the SDK's own chain (the environment)
        self.credentials = credentials
        self._session = boto3.Session(
            aws_access_key_id=credentials.access_key_id if credentials else None,
            aws_secret_access_key=credentials.secret_access_key if credentials else None,
            region_name=region,
        )
        self._clients: dict[str, Any] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._evaluations = EvaluationReader(lambda: self.client("s3"))

    @classmethod
    def from_runtime(cls, runtime: Any) -> Observer:
        resources = {lid: res.as_json() for lid, res in runtime.resources.items()}
        for lid, res in runtime.resources.items():
            resources[lid]["attrs"] = dict(res.attrs)
        return cls(
            runtime.endpoint,
            runtime.region,
            resources,
            runtime.state_dir,
            standins=runtime.standins,
            credentials=runtime.credentials,
        )

    @classmethod
    def from_state(cls, state: dict[str, Any], state_dir: Path) -> Observer:
        return cls(
            state["endpoint"],
            state["region"],
            state["resources"],
            state_dir,
            credentials=RunCredentials.from_state(state),
        )

    # ------------------------------------------------------------------ plumbing
    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, endpoint_url=self.endpoint, config=Config(retries={"max_attempts": 2})
            )
        return self._clients[service]

    def table(self, logical_id: str) -> Any:
        dynamodb = self._session.resource("dynamodb", endpoint_url=self.endpoint)
        return dynamodb.Table(self.physical(logical_id))

    def physical(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["physical"])

    def arn(self, logical_id: str) -> str:
        res = self.resources[logical_id]
        return str(res.get("arn") or res["physical"])

    @property
    def package_group(self) -> str:
        res = self.resources["ModelPackageGroup"]
        name = (res.get("attrs") or {}).get("ModelPackageGroupName") or res["physical"]
        return str(name).rsplit("/", 1)[-1]

    def standin(self, name: str) -> Any:
        """The stand-in of that name (``groundtruth``, ``sagemaker-pipelines``…), or None (not in this process)."""
        return next((s for s in self.standins if s.name == name), None)

    # ------------------------------------------------------------------ ledger and datasets
    def ledger(self) -> Ledger:
        return Ledger(self.table("LedgerTable"))

    def ledger_totals(self) -> dict[str, int]:
        """Images by status, the statuses that have any (``loupe.console_api.loop.ledger_counts``)."""
        return {s: n for s, n in loop.ledger_counts(self.ledger()).items() if n}

    def pending_labeling_tasks(self) -> int:
        """Images waiting for a person: those of the labeling app's open jobs not settled yet (queued, or leased to
        someone labeling them now), and the Ground Truth stand-in's manual queue (in the runtime's process)."""
        groundtruth = self.standin("groundtruth")
        pending = len(groundtruth.pending_tasks()) if groundtruth is not None else 0
        if "LabelingTasksTable" in self.resources:
            table = self.table("LabelingTasksTable")
            kwargs: dict[str, Any] = {"FilterExpression": Attr("sk").eq("JOB") & Attr("status").eq("open")}
            while True:  # a local table: a scan of its job items is cheap enough for the demo's waits
                page = table.scan(**kwargs)
                pending += sum(int(job["total"]) - int(job["done"]) for job in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return pending

    def dataset_versions(self) -> list[dict[str, Any]]:
        """Every dataset version, newest first (``loupe.console_api.loop.dataset_versions``)."""
        return loop.dataset_versions(self.client("s3"), self.physical("ArtifactBucket"), limit=None)

    # ------------------------------------------------------------------ executions and jobs
    def executions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Step Functions executions of the template's state machines and SageMaker pipeline executions, newest
        first (``loupe.console_api.loop``)."""
        machines = {lid.removesuffix("StateMachine"): self.arn(lid) for lid in STATE_MACHINES if lid in self.resources}
        out = loop.state_machine_executions(self.client("stepfunctions"), machines, limit)
        if "TrainingPipeline" in self.resources:
            name = self.physical("TrainingPipeline").rsplit("/", 1)[-1]
            out += loop.pipeline_executions(self.client("sagemaker"), name, limit)
        return sorted(out, key=lambda e: e["started"], reverse=True)

    def state_machine_executions(self, logical_id: str) -> list[dict[str, Any]]:
        """One state machine's executions as Step Functions lists them."""
        return self.client("stepfunctions").list_executions(stateMachineArn=self.arn(logical_id))["executions"]

    def labeling_running(self) -> bool:
        return any(e["status"] == "RUNNING" for e in self.state_machine_executions("LabelingStateMachine"))

    def _pipeline_executions(self) -> dict[str, dict[str, Any]] | None:
        pipelines = self.standin("sagemaker-pipelines")
        return None if pipelines is None else (pipelines.status() or {}).get("executions", {})

    def pipeline_failures(self) -> dict[str, str]:
        """Failed training pipeline executions: ARN → why."""
        executions = self._pipeline_executions() or {}
        return {arn: e.get("failure") or "failed" for arn, e in executions.items() if e.get("status") == "Failed"}

    def training_status(self) -> str:
        """A line on the running training pipeline: its step, or the epoch and its metrics while training."""
        executions = self._pipeline_executions()
        if executions is None:
            return "no pipeline stand-in"
        running = [e for e in executions.values() if e.get("status") in ("Executing", "Running")]
        if not running:
            return "pipeline queued"
        ex = running[-1]
        prog = ex.get("training") or {}
        last = prog.get("last") or {}
        if ex.get("step") == "Train" and prog.get("epoch") is not None:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if isinstance(v, float))
            return f"training epoch {prog.get('epoch')}/{prog.get('epochs')} {metrics}".strip()
        return f"pipeline step {ex.get('step') or 'starting'}"

    def alarm_state(self, logical_id: str) -> str:
        alarms = self.client("cloudwatch").describe_alarms(AlarmNames=[self.physical(logical_id)])["MetricAlarms"]
        return alarms[0]["StateValue"] if alarms else "?"

    # ------------------------------------------------------------------ the model registry
    def packages(self, with_cards: bool = True) -> list[dict[str, Any]]:
        """The group's packages, newest first, with approval status, metrics and (optionally) the model card."""
        sm = self.client("sagemaker")
        try:
            listed = sm.list_model_packages(ModelPackageGroupName=self.package_group, MaxResults=100)
        except ClientError as exc:
            log.debug("no packages: %s", exc)
            return []
        out = []
        for summary in listed.get("ModelPackageSummaryList", []):
            desc = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            meta = desc.get("CustomerMetadataProperties") or {}
            url = ((desc.get("InferenceSpecification") or {}).get("Containers") or [{}])[0].get("ModelDataUrl", "")
            item = {
                "arn": desc["ModelPackageArn"],
                "version": desc.get("ModelPackageVersion"),
                "approval": desc.get("ModelApprovalStatus", ""),
                "status": desc.get("ModelPackageStatus", ""),
                "description": desc.get("ModelPackageDescription", ""),
                "created": _iso(desc.get("CreationTime")),
                "metadata": meta,
                "model_data": url,
                "metrics": self._metrics(desc),
            }
            item["field_agreement"] = self._field_agreement(desc["ModelPackageArn"])
            if with_cards and url:
                item["card"] = self._card(url)
            if with_cards:
                item["evaluation"] = self._evaluations.summary(desc)
            out.append(item)
        return sorted(out, key=lambda p: int(p["version"] or 0), reverse=True)

    def package_arn(self, version: int) -> str | None:
        """The ARN of the group's package of that version, or None."""
        listed = self.client("sagemaker").list_model_packages(ModelPackageGroupName=self.package_group, MaxResults=100)
        for summary in listed.get("ModelPackageSummaryList", []):
            arn = str(summary["ModelPackageArn"])
            if str(summary.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]) == str(version):
                return arn
        return None

    def approval(self, package_arn: str) -> str:
        desc = self.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        return str(desc.get("ModelApprovalStatus", ""))

    def _s3_json(self, uri: str) -> Any:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return json.loads(self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())

    def _metrics(self, desc: dict[str, Any]) -> dict[str, Any]:
        stats = ((desc.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
        if not stats.get("S3Uri"):
            return {}
        try:
            return dict(self._s3_json(stats["S3Uri"]))
        except (ClientError, ValueError) as exc:
            return {"error": f"cannot read {stats['S3Uri']}: {exc}"}

    def _card(self, url: str) -> dict[str, Any]:
        if url not in self._cards:
            bucket, _, key = url.removeprefix("s3://").partition("/")
            try:
                data = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    member = tar.extractfile("model_card.json")
                    self._cards[url] = json.loads(member.read()) if member else {}
            except (ClientError, KeyError, tarfile.TarError, ValueError) as exc:
                return {"error": f"no model card in {url}: {exc}"}
        return self._cards[url]

    # ------------------------------------------------------------------ the fleet
    def devices(self) -> list[dict[str, Any]]:
        """The thing group's core devices: Greengrass status, the model each serves, its latest health."""
        gg = self.client("greengrassv2")
        cores = gg.list_core_devices().get("coreDevices", [])
        out = []
        for core in cores:
            thing = core["coreDeviceThingName"]
            root = self.state_dir / "devices" / thing
            doc = _read_json(root / "device.json") or {}
            components = doc.get("components") or {}
            status = _read_json(root / "work" / "com.loupe.inference" / "status.json") or {}
            out.append(
                {
                    "thing": thing,
                    "status": core.get("status", ""),
                    "last_update": _iso(core.get("lastStatusUpdateTimestamp")),
                    "model_component": (components.get("com.loupe.model") or {}).get("version", ""),
                    "serving": status.get("model_version"),
                    "inference_state": status.get("state", ""),
                    "deployment": doc.get("deployment") or {},
                }
            )
        return sorted(out, key=lambda d: d["thing"])

    def deployments(self, limit: int = 20) -> list[dict[str, Any]]:
        """Deployment runs from the deployments table (package → deployment → per-device outcome), newest first."""
        table = self.table("DeploymentsTable")
        items: list[dict[str, Any]] = []
        runs_only = Attr("pk").begins_with("PACKAGE#") & Attr("sk").begins_with("RUN#")
        kwargs: dict[str, Any] = {"FilterExpression": runs_only}
        while True:
            page = table.scan(**kwargs)
            items += [_plain(i) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        keep = ("outcome", "reason", "mode", "model_version", "package_arn", "deployment_id", "devices", "finished")
        runs = [{k: i.get(k) for k in keep} for i in items]
        return sorted(runs, key=lambda r: str(r.get("finished")), reverse=True)[:limit]

    def device_state(self, thing: str) -> dict[str, Any]:
        """A device's last deployment (id, status, reason) and components (version, lifecycle state, the
        component's own status.json) from its device.json."""
        doc = _read_json(self.state_dir / "devices" / thing / "device.json") or {}
        return {"deployment": doc.get("deployment") or {}, "components": doc.get("components") or {}}

    def deployment_failure(self, package_arn: str) -> tuple[str, str] | None:
        """Why the edge deployment of this package will not serve it, if it has failed or been refused: a run in the
        deployments table with a failed outcome, or a FAILED EdgeDeployment execution for it. ``(outcome, reason)``."""
        for run in self.deployments(limit=1000):
            if run.get("package_arn") == package_arn and run.get("outcome") in FAILED_DEPLOYMENTS:
                return str(run["outcome"]), str(run.get("reason") or "")
        if "EdgeDeploymentStateMachine" not in self.resources:
            return None
        sfn = self.client("stepfunctions")
        for execution in self.state_machine_executions("EdgeDeploymentStateMachine"):
            if execution["status"] != "FAILED":
                continue
            desc = sfn.describe_execution(executionArn=execution["executionArn"])
            if _shadow_run(desc.get("input")):  # the package beside production (or its end), never as production
                continue
            if package_arn in str(desc.get("input") or ""):
                why = ": ".join(str(desc[k]) for k in ("error", "cause") if desc.get(k))
                return "FAILED", why or f"EdgeDeployment execution {execution['name']} failed"
        return None

    def shadow_summary(self, package_arn: str) -> dict[str, Any] | None:
        """The package's shadow counters over the fleet (the console API's reading of the deployments table)."""
        from loupe.console_api.models import shadow_summary
        from loupe.deployment.store import DeploymentsStore

        if "DeploymentsTable" not in self.resources:
            return None
        return _plain(shadow_summary(DeploymentsStore(self.table("DeploymentsTable")), package_arn))

    def _field_agreement(self, package_arn: str) -> dict[str, Any] | None:
        from loupe.console_api.models import field_agreement

        try:
            return field_agreement(self.shadow_summary(package_arn))
        except ClientError as exc:
            log.debug("no field agreement for %s: %s", package_arn, exc)
            return None

    def field_evidence(self, package_arn: str) -> dict[str, Any] | None:
        """The package's field agreement with production (``console_api.models.field_agreement``), None if it
        never ran beside production."""
        return self._field_agreement(package_arn)

    def approval_metadata(self, package_arn: str, existing: dict[str, Any]) -> dict[str, str]:
        """The package's metadata with its field agreement of this moment (``console_api.models.evidence_metadata``),
        as an approval in the console API records it: the package's own entries kept."""
        from loupe.console_api.models import evidence_metadata

        return {**existing, **evidence_metadata(self.shadow_summary(package_arn), existing)}


def _shadow_run(execution_input: Any) -> bool:
    """An edge deployment run that sends a package beside production (``shadow``) or ends that (``end_shadow``)."""
    try:
        asked = json.loads(str(execution_input or "{}"))
    except ValueError:
        return False
    return isinstance(asked, dict) and asked.get("mode") in ("shadow", "end_shadow")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
