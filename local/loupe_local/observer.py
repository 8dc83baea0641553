"""A read-only view of the running loop: what the AWS consoles would show, read through the public APIs.

Everything here is a read: boto3 against the local endpoint (DynamoDB ledger and deployments tables, S3 dataset
versions, Step Functions executions, SageMaker pipeline executions, labeling jobs and the model package group with
its evaluation output (``loupe_local.evaluations``: details.json, sample test images), Greengrass core devices, the
uncertain frames devices uploaded (``loupe_local.fleet_frames``)), the device folders under the state dir, and
(optionally) the devices' MQTT health, inference and low-confidence topics. The console uses it; the demo and
``loupe local status`` can too.

Build one with :meth:`Observer.from_runtime` (in the process running the local AWS) or :meth:`Observer.from_state`
(from ``.loupe/local.json``). In the runtime's process it also reads the stand-ins' own state (pending labeling
tasks, pipeline progress) through their public ``name`` and ``status()``.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr
from botocore.config import Config
from botocore.exceptions import ClientError

from loupe_local.evaluations import EvaluationReader
from loupe_local.fleet_frames import FramePixels
from loupe_local.local_auth import RunCredentials, mqtt_login

log = logging.getLogger("loupe_local.observer")

LEDGER_STATUSES = ("unlabeled", "claimed", "labeled", "rejected")
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
        self._datasets: dict[int, dict[str, Any]] = {}  # versions are immutable: read each once
        self._cards: dict[str, dict[str, Any]] = {}
        self.feed: MqttFeed | None = None
        self._evaluations = EvaluationReader(lambda: self.client("s3"))
        self._pixels: FramePixels | None = None

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

    def start_feed(self, host: str, port: int) -> MqttFeed:
        self.feed = MqttFeed(host, port, credentials=self.credentials)
        self.feed.start()
        return self.feed

    def close(self) -> None:
        if self.feed:
            self.feed.stop()

    # ------------------------------------------------------------------ ledger and datasets
    def ledger_counts(self) -> dict[str, Any]:
        """Images by status and, within each, by origin kind (upload, edge_feedback, import)."""
        table = self.table("LedgerTable")
        by_status: dict[str, Counter[str]] = {s: Counter() for s in LEDGER_STATUSES}
        kwargs: dict[str, Any] = {"FilterExpression": Attr("status").exists() & Attr("sha256").exists()}
        while True:
            page = table.scan(**kwargs)
            for item in page.get("Items", []):
                if len(str(item.get("sha256", ""))) != 64:
                    continue  # the ledger's job and version records
                status = str(item.get("status"))
                origin = item.get("origin")
                origin = origin.get("kind", "unknown") if isinstance(origin, dict) else "unknown"
                by_status.setdefault(status, Counter())[str(origin)] += 1
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return {
            "by_status": {s: sum(c.values()) for s, c in by_status.items()},
            "by_status_origin": {s: dict(c) for s, c in by_status.items()},
        }

    def ledger_totals(self) -> dict[str, int]:
        """Images by status, the statuses that have any."""
        return {s: n for s, n in self.ledger_counts()["by_status"].items() if n}

    def pending_labeling_tasks(self) -> int:
        """Labeling tasks waiting for a person (the manual workforce's queue)."""
        groundtruth = self.standin("groundtruth")
        return len(groundtruth.pending_tasks()) if groundtruth is not None else 0

    def dataset_versions(self) -> list[dict[str, Any]]:
        """Every dataset version, newest first: version, parent, created, counts, digest."""
        s3 = self.client("s3")
        bucket = self.physical("ArtifactBucket")
        out = []
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix="datasets/", Delimiter="/"):
            for prefix in page.get("CommonPrefixes", []):
                name = prefix["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if not (name.startswith("v") and name[1:].isdigit()):
                    continue
                version = int(name[1:])
                if version not in self._datasets:
                    try:
                        body = s3.get_object(Bucket=bucket, Key=f"{prefix['Prefix']}dataset.json")["Body"].read()
                    except ClientError:
                        continue  # reserved, not written yet
                    doc = json.loads(body)
                    self._datasets[version] = {
                        k: doc.get(k) for k in ("version", "parent", "created", "counts", "digest", "class_map")
                    } | {"uri": f"s3://{bucket}/{prefix['Prefix']}"}
                out.append(self._datasets[version])
        return sorted(out, key=lambda d: int(d["version"]), reverse=True)

    # ------------------------------------------------------------------ executions and jobs
    def executions(self, limit: int = 20) -> list[dict[str, Any]]:
        """Step Functions executions of the template's state machines and SageMaker pipeline executions."""
        sfn = self.client("stepfunctions")
        out = []
        for lid in STATE_MACHINES:
            if lid not in self.resources:
                continue
            for e in sfn.list_executions(stateMachineArn=self.arn(lid), maxResults=limit)["executions"]:
                out.append(
                    {
                        "kind": lid.removesuffix("StateMachine"),
                        "name": e["name"],
                        "status": e["status"],
                        "started": _iso(e.get("startDate")),
                        "stopped": _iso(e.get("stopDate")) if e.get("stopDate") else "",
                    }
                )
        if "TrainingPipeline" in self.resources:
            name = self.physical("TrainingPipeline").rsplit("/", 1)[-1]
            try:
                summaries = self.client("sagemaker").list_pipeline_executions(PipelineName=name, MaxResults=limit)
            except ClientError as exc:
                log.debug("no pipeline executions: %s", exc)
                summaries = {}
            for e in summaries.get("PipelineExecutionSummaries", []):
                out.append(
                    {
                        "kind": "TrainingPipeline",
                        "name": e.get("PipelineExecutionDisplayName") or e["PipelineExecutionArn"].rsplit("/", 1)[-1],
                        "status": e.get("PipelineExecutionStatus", ""),
                        "started": _iso(e.get("StartTime")),
                        "stopped": "",
                    }
                )
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

    def labeling_jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        jobs = self.client("sagemaker").list_labeling_jobs(MaxResults=limit)["LabelingJobSummaryList"]
        return [
            {
                "name": j["LabelingJobName"],
                "status": j["LabelingJobStatus"],
                "created": _iso(j.get("CreationTime")),
                "counters": j.get("LabelCounters", {}),
            }
            for j in jobs
        ]

    def timeline(self, limit: int = 30) -> list[dict[str, Any]]:
        """What happened, newest first: executions, labeling jobs, dataset versions, model packages."""
        events = [
            {"when": e["started"], "what": f"{e['kind']} execution {e['name']}", "status": e["status"]}
            for e in self.executions()
        ]
        events += [
            {"when": j["created"], "what": f"labeling job {j['name']}", "status": j["status"]}
            for j in self.labeling_jobs()
        ]
        events += [
            {
                "when": d.get("created") or "",
                "what": _dataset_line(d),
                "status": "",
            }
            for d in self.dataset_versions()
        ]
        events += [
            {"when": p["created"], "what": f"model package {p['version']}", "status": p["approval"]}
            for p in self.packages(with_cards=False)
        ]
        return sorted(events, key=lambda e: str(e["when"]), reverse=True)[:limit]

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

    def evaluation_sample(self, package_arn: str, relative: str) -> tuple[bytes, str]:
        """A sample test image of the package's evaluation (``samples/<file>`` next to its details.json): bytes and
        type. ValueError: not a sample path; LookupError: no such image."""
        desc = self.client("sagemaker").describe_model_package(ModelPackageName=package_arn)
        return self._evaluations.sample(desc, relative)

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
            health = self.feed.health.get(thing) if self.feed else None
            out.append(
                {
                    "thing": thing,
                    "status": core.get("status", ""),
                    "last_update": _iso(core.get("lastStatusUpdateTimestamp")),
                    "model_component": (components.get("com.loupe.model") or {}).get("version", ""),
                    "serving": status.get("model_version") or (health or {}).get("model_version"),
                    "inference_state": status.get("state", ""),
                    "deployment": doc.get("deployment") or {},
                    "health": health,
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

    @property
    def frame_pixels(self) -> FramePixels:
        if self._pixels is None:
            announced = self.feed.uploaded if self.feed else None
            self._pixels = FramePixels(lambda: self.client("s3"), self.physical("RawBucket"), announced)
        return self._pixels

    def latest_results(self, per_device: int = 4) -> dict[str, list[dict[str, Any]]]:
        """Each device's latest inference results seen on MQTT, newest first, each with ``pixels``: ``{"key"}``
        where the device uploaded the frame (an uncertain one, in the raw bucket), else ``{"missing": why}``."""
        if self.feed is None:
            return {}
        return {
            thing: [self.frame_pixels.annotate(thing, r) for r in results[:per_device]]
            for thing, results in self.feed.latest().items()
        }

    def frame_image(self, thing: str, frame_id: str) -> tuple[bytes, str]:
        """The image a device uploaded for that frame (bytes, type); LookupError when it sent none."""
        return self.frame_pixels.image(thing, frame_id)


def _shadow_run(execution_input: Any) -> bool:
    """An edge deployment run that sends a package beside production (``shadow``) or ends that (``end_shadow``)."""
    try:
        asked = json.loads(str(execution_input or "{}"))
    except ValueError:
        return False
    return isinstance(asked, dict) and asked.get("mode") in ("shadow", "end_shadow")


def _dataset_line(d: dict[str, Any]) -> str:
    parent = d.get("parent")
    return f"dataset v{d['version']}" + (f" (parent v{parent})" if parent is not None else " (first version)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class MqttFeed:
    """The devices' health, inference results and uncertain-frame announcements as they arrive (a subscriber on the
    local broker). The thing is always the topic's (the device policy ties it to the connection)."""

    TOPICS = ("health", "inference", "low-confidence")

    def __init__(
        self,
        host: str,
        port: int,
        per_device: int = 8,
        uploads: int = 2000,
        credentials: RunCredentials | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.credentials = credentials
        self.health: dict[str, dict[str, Any]] = {}
        self.results: dict[str, deque[dict[str, Any]]] = {}
        self.per_device = per_device
        self.uploads: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()  # (thing, frame) -> (bucket, key)
        self.max_uploads = uploads
        self._client: Any = None
        self._lock = threading.Lock()

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loupe-console-{uuid.uuid4().hex[:6]}")
        mqtt_login(client, self.credentials)
        client.on_connect = lambda c, *_: c.subscribe([(f"loupe/+/{topic}", 0) for topic in self.TOPICS])
        client.on_message = self._on_message
        client.connect_async(self.host, self.port)
        client.loop_start()
        self._client = client

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        parts = msg.topic.split("/")
        if len(parts) != 3 or not isinstance(payload, dict):
            return
        thing, kind = parts[1], parts[2]
        with self._lock:
            if kind == "health":
                self.health[thing] = payload
            elif kind == "inference":
                results = self.results.setdefault(thing, deque(maxlen=self.per_device))
                results.append({**payload, "thing": thing})
            elif kind == "low-confidence" and payload.get("frame_id") and payload.get("key"):
                self.uploads[(thing, str(payload["frame_id"]))] = (str(payload.get("bucket")), str(payload["key"]))
                while len(self.uploads) > self.max_uploads:
                    self.uploads.popitem(last=False)

    def latest(self) -> dict[str, list[dict[str, Any]]]:
        """Each device's latest results, newest first."""
        with self._lock:
            return {thing: list(reversed(results)) for thing, results in sorted(self.results.items())}

    def uploaded(self, thing: str, frame_id: str) -> tuple[str, str] | None:
        """(bucket, key) of the image the device announced for that frame, or None."""
        with self._lock:
            return self.uploads.get((thing, frame_id))

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
