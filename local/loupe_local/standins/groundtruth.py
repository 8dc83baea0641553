"""SageMaker Ground Truth stand-in: labeling jobs answered by a local workforce.

``CreateLabelingJob`` / ``DescribeLabelingJob`` / ``ListLabelingJobs`` / ``StopLabelingJob`` (JSON protocol,
``SageMaker.<Op>``). A job reads its input manifest from the local S3, and a worker thread labels each object
from the **labels sources**: JSONL files ``<state_dir>/workforce/*.jsonl`` with lines
``{"sha256", "annotations": [{"class_id", "left", "top", "width", "height"}]}`` (the demo generator's
``answers.jsonl``, or what ``loupe import`` writes). ``<state_dir>/workforce/config.json`` may set
``{"noise_rate": 0.1, "seed": 0, "delay_seconds": 0.2}``: a noisy worker drops a box or misplaces it.

An object nobody has an answer for fails as it would in Ground Truth when no worker takes the task: its output
line carries a ``failure-reason`` and no label (the labeling run puts such images back to ``unlabeled``). A job
where every object failed ends ``Failed``. The output manifest is written with the same converters the cloud
path reads (``loupe.manifests``), to ``<S3OutputPath>/<job>/manifests/output/output.manifest``, and each state
change is announced as the ``SageMaker Ground Truth Labeling Job State Change`` event.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loupe import manifests
from loupe.datasets import Box
from loupe_local.standins.base import AwsRequest, Response, StandIn, error

log = logging.getLogger("loupe_local.groundtruth")

OPERATIONS = {"CreateLabelingJob", "DescribeLabelingJob", "ListLabelingJobs", "StopLabelingJob"}
EVENT = "SageMaker Ground Truth Labeling Job State Change"
ACCOUNT = "123456789012"
NO_WORKER = "ClientError: no worker completed this task (the local workforce has no answer for this image)"


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.left + a.width, b.left + b.width) - max(a.left, b.left))
    iy = max(0.0, min(a.top + a.height, b.top + b.height) - max(a.top, b.top))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


class Workforce:
    """Answers from the labels sources, optionally noisy."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.noise_rate = 0.0
        self.seed = 0
        self.delay = 0.2
        self.reload()

    def reload(self) -> None:
        answers: dict[str, list[dict[str, Any]]] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.jsonl")):
                for number, line in enumerate(path.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                        answers[str(obj["sha256"])] = [Box.from_dict(a).__dict__ for a in obj.get("annotations") or []]
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("%s:%d: not a workforce answer (%s)", path, number, exc)
            config = self.directory / "config.json"
            if config.is_file():
                cfg = json.loads(config.read_text())
                self.noise_rate = float(cfg.get("noise_rate", 0.0))
                self.seed = int(cfg.get("seed", 0))
                self.delay = float(cfg.get("delay_seconds", 0.2))
        self.answers = answers

    def label(self, sha256: str, width: int, height: int, rng: random.Random) -> list[Box] | None:
        raw = self.answers.get(sha256)
        if raw is None:
            return None
        boxes = [Box.from_dict(a) for a in raw]
        if boxes and rng.random() < self.noise_rate:
            if rng.random() < 0.5:
                boxes.pop(rng.randrange(len(boxes)))  # missed a scratch
            else:
                i = rng.randrange(len(boxes))
                b = boxes[i]
                # misplaced by at least 60% of its size: overlaps the true box by less than half (IoU < 0.5)
                dx = b.width * rng.uniform(0.6, 1.0) * rng.choice((-1, 1))
                dy = b.height * rng.uniform(0.0, 0.3) * rng.choice((-1, 1))
                left = min(max(0.0, b.left + dx), max(0.0, width - b.width))
                top = min(max(0.0, b.top + dy), max(0.0, height - b.height))
                boxes[i] = Box(b.class_id, round(left), round(top), b.width, b.height)
        return boxes


class GroundTruth(StandIn):
    name = "groundtruth"

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def attach(self, runtime: Any) -> None:
        super().attach(runtime)
        self.workforce_dir = Path(runtime.state_dir) / "workforce"

    def handles(self, request: AwsRequest) -> bool:
        return request.service == "sagemaker" and request.target in OPERATIONS

    def handle(self, request: AwsRequest) -> Response:
        body = request.json()
        if request.target == "CreateLabelingJob":
            return self._create(body)
        if request.target == "DescribeLabelingJob":
            job = self.jobs.get(body.get("LabelingJobName", ""))
            if job is None:
                return error("ResourceNotFound", f"Could not find labeling job {body.get('LabelingJobName')}")
            return Response(body=self._describe(job))
        if request.target == "ListLabelingJobs":
            return Response(body=self._list(body))
        if request.target == "StopLabelingJob":
            return self._stop_job(body.get("LabelingJobName", ""))
        return error("NotImplemented", f"{request.target}", 501)

    # ------------------------------------------------------------------ API
    def _create(self, body: dict[str, Any]) -> Response:
        missing = [
            path
            for path, value in {
                "LabelingJobName": body.get("LabelingJobName"),
                "LabelAttributeName": body.get("LabelAttributeName"),
                "InputConfig.DataSource.S3DataSource.ManifestS3Uri": (
                    ((body.get("InputConfig") or {}).get("DataSource") or {}).get("S3DataSource") or {}
                ).get("ManifestS3Uri"),
                "OutputConfig.S3OutputPath": (body.get("OutputConfig") or {}).get("S3OutputPath"),
                "RoleArn": body.get("RoleArn"),
                "HumanTaskConfig.UiConfig": (body.get("HumanTaskConfig") or {}).get("UiConfig"),
                "HumanTaskConfig.WorkteamArn": (body.get("HumanTaskConfig") or {}).get("WorkteamArn"),
            }.items()
            if not value
        ]
        if missing:
            return error("ValidationException", f"missing required parameter(s): {', '.join(missing)}")
        name = body["LabelingJobName"]
        attribute = body["LabelAttributeName"]
        if attribute.endswith("-metadata") or attribute.endswith("-ref"):
            return error("ValidationException", f"LabelAttributeName {attribute} may not end in -metadata or -ref")
        with self._lock:
            if name in self.jobs:
                return error("ResourceInUse", f"Labeling job {name} already exists")
            now = datetime.now(UTC)
            arn = f"arn:aws:sagemaker:{self.runtime.region}:{ACCOUNT}:labeling-job/{name}"
            job = {
                **body,
                "LabelingJobArn": arn,
                "LabelingJobStatus": "InProgress",
                "CreationTime": now.timestamp(),
                "LastModifiedTime": now.timestamp(),
                "JobReferenceCode": hashlib.sha256(name.encode()).hexdigest()[:12],
                "LabelCounters": {
                    "TotalLabeled": 0,
                    "HumanLabeled": 0,
                    "MachineLabeled": 0,
                    "FailedNonRetryableError": 0,
                    "Unlabeled": 0,
                },
            }
            self.jobs[name] = job
        self._emit(job)
        thread = threading.Thread(target=self._work, args=(name,), name=f"gt-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return Response(body={"LabelingJobArn": arn})

    def _describe(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if k != "_stop"}

    def _list(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = body.get("StatusEquals")
        contains = body.get("NameContains", "")
        summaries = []
        for job in sorted(self.jobs.values(), key=lambda j: j["CreationTime"], reverse=True):
            if wanted and job["LabelingJobStatus"] != wanted:
                continue
            if contains and contains not in job["LabelingJobName"]:
                continue
            summaries.append(
                {
                    k: job[k]
                    for k in (
                        "LabelingJobName",
                        "LabelingJobArn",
                        "CreationTime",
                        "LastModifiedTime",
                        "LabelingJobStatus",
                        "LabelCounters",
                    )
                }
                | {
                    "WorkteamArn": job["HumanTaskConfig"]["WorkteamArn"],
                    "PreHumanTaskLambdaArn": job["HumanTaskConfig"].get("PreHumanTaskLambdaArn", ""),
                    **({"LabelingJobOutput": job["LabelingJobOutput"]} if "LabelingJobOutput" in job else {}),
                }
            )
        limit = int(body.get("MaxResults") or 100)
        return {"LabelingJobSummaryList": summaries[:limit]}

    def _stop_job(self, name: str) -> Response:
        job = self.jobs.get(name)
        if job is None:
            return error("ResourceNotFound", f"Could not find labeling job {name}")
        with self._lock:
            if job["LabelingJobStatus"] == "InProgress":
                job["LabelingJobStatus"] = "Stopping"
                job["_stop"] = True
        return Response(body={})

    # ------------------------------------------------------------------ the workforce
    def _emit(self, job: dict[str, Any]) -> None:
        try:
            self.runtime.emit_event(
                "aws.sagemaker", EVENT, {"LabelingJobStatus": job["LabelingJobStatus"]}, [job["LabelingJobArn"]]
            )
        except Exception:
            log.exception("could not emit the state change of %s", job["LabelingJobName"])

    def _finish(self, job: dict[str, Any], status: str, **fields: Any) -> None:
        with self._lock:
            job.update(fields)
            job["LabelingJobStatus"] = status
            job["LastModifiedTime"] = time.time()
        self._emit(job)

    def _work(self, name: str) -> None:
        job = self.jobs[name]
        try:
            workforce = Workforce(self.workforce_dir)
            if self._stop.wait(workforce.delay):
                return
            self._label(job, workforce)
        except Exception as exc:
            log.exception("labeling job %s failed", name)
            self._finish(job, "Failed", FailureReason=f"ClientError: {exc}"[:1024])

    def _label(self, job: dict[str, Any], workforce: Workforce) -> None:
        s3 = self.runtime.client("s3")
        name = job["LabelingJobName"]
        attribute = job["LabelAttributeName"]
        source = job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
        bucket, key = manifests.split_s3_uri(source)
        lines = manifests.read_lines(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
        category_uri = job.get("LabelCategoryConfigS3Uri")
        categories: dict[str, Any] = {}
        if category_uri:
            cb, ck = manifests.split_s3_uri(category_uri)
            categories = json.loads(s3.get_object(Bucket=cb, Key=ck)["Body"].read())
        audit = categories.get("auditLabelAttributeName")
        rng = random.Random(f"{workforce.seed}:{name}")
        out, labeled, failed = [], 0, 0
        for _, obj in lines:
            if job.get("_stop"):
                self._finish(job, "Stopped")
                return
            if audit:
                line, ok = self._verify_one(obj, attribute, audit, categories, workforce, name)
            else:
                line, ok = self._label_one(s3, obj, attribute, categories, workforce, rng, name)
            out.append(line)
            labeled += ok
            failed += not ok
        prefix = job["OutputConfig"]["S3OutputPath"].rstrip("/") + "/"
        ob, okey = manifests.split_s3_uri(prefix + f"{name}/manifests/output/output.manifest")
        s3.put_object(Bucket=ob, Key=okey, Body=("".join(json.dumps(line) + "\n" for line in out)).encode())
        counters = {
            "TotalLabeled": labeled,
            "HumanLabeled": labeled,
            "MachineLabeled": 0,
            "FailedNonRetryableError": failed,
            "Unlabeled": 0,
        }
        output = {"OutputDatasetS3Uri": f"s3://{ob}/{okey}"}
        if labeled == 0:
            self._finish(
                job,
                "Failed",
                LabelCounters=counters,
                LabelingJobOutput=output,
                FailureReason="ClientError: no data object was labeled",
            )
        else:
            self._finish(job, "Completed", LabelCounters=counters, LabelingJobOutput=output)

    def _label_one(
        self,
        s3: Any,
        obj: dict[str, Any],
        attribute: str,
        categories: dict[str, Any],
        workforce: Workforce,
        rng: random.Random,
        job_name: str,
    ) -> tuple[dict[str, Any], bool]:
        from PIL import Image

        ref = obj["source-ref"]
        extra = {k: v for k, v in obj.items() if k != "source-ref"}
        try:
            bucket, key = manifests.split_s3_uri(ref)
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                depth = len(img.getbands())
        except Exception as exc:
            return manifests.failed_line(
                ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, extra
            ), False
        sha = obj.get(manifests.SHA_ATTRIBUTE) or hashlib.sha256(data).hexdigest()
        boxes = workforce.label(sha, width, height, rng)
        if boxes is None:
            return manifests.failed_line(ref, attribute, NO_WORKER, job_name, extra), False
        class_map = manifests.class_map_from_config(categories) if categories.get("labels") else {"0": "scratch"}
        confidences = [round(rng.uniform(0.85, 0.99), 2) for _ in boxes]
        return (
            manifests.output_line(ref, attribute, boxes, width, height, depth, class_map, job_name, confidences, extra),
            True,
        )

    def _verify_one(
        self,
        obj: dict[str, Any],
        attribute: str,
        audit: str,
        categories: dict[str, Any],
        workforce: Workforce,
        job_name: str,
    ) -> tuple[dict[str, Any], bool]:
        ref = obj["source-ref"]
        names = [item["label"] for item in categories.get("labels", [])]
        try:
            shown = manifests.parse_output_line(obj, audit)
        except manifests.ManifestError as exc:
            return manifests.failed_line(ref, attribute, f"ClientError: {exc}", job_name, obj), False
        truth = workforce.answers.get(shown.sha256 or "")
        if truth is None:
            return manifests.failed_line(ref, attribute, NO_WORKER, job_name, obj), False
        expected = [Box.from_dict(a) for a in truth]
        if len(expected) > len(shown.boxes):
            verdict = names[1] if len(names) > 1 else names[0]
        elif all(any(iou(e, s) >= 0.5 for s in shown.boxes) for e in expected) and len(expected) == len(shown.boxes):
            verdict = names[0]
        else:
            verdict = names[2] if len(names) > 2 else names[-1]
        return manifests.verification_line(ref, attribute, names, verdict, job_name, base=obj), True

    def status(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job["LabelingJobStatus"]] = by_status.get(job["LabelingJobStatus"], 0) + 1
        return {"jobs": by_status}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
