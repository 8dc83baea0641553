"""SageMaker Ground Truth stand-in: labeling jobs answered by a local workforce.

``CreateLabelingJob`` / ``DescribeLabelingJob`` / ``ListLabelingJobs`` / ``StopLabelingJob`` (JSON protocol,
``SageMaker.<Op>``). A job reads its input manifest from the local S3, and a worker thread labels each object
from the **labels sources**: JSONL files ``<state_dir>/workforce/*.jsonl`` with lines
``{"sha256", "annotations": [{"class_id", "left", "top", "width", "height"}]}`` (the demo generator's
``answers.jsonl``, or what ``loupe import`` writes). ``<state_dir>/workforce/config.json`` may set
``{"noise_rate": 0.1, "seed": 0, "delay_seconds": 0.2}``: a noisy worker drops a box or misplaces it.

``"mode": "manual"`` in that file (``loupe local up --label manual``) puts a person in the workforce instead: each
object of a job becomes a pending task (``pending_tasks()``) that the local console shows, and the person's answer
(``submit()``) becomes the same output-manifest line the automatic workforce writes. A task nobody answers within
the job's ``TaskAvailabilityLifetimeInSeconds`` fails with ``failure-reason``, as in Ground Truth.

An object nobody has an answer for fails as it would in Ground Truth when no worker takes the task: its output
line carries a ``failure-reason`` and no label (the labeling run puts such images back to ``unlabeled``). A job
where every object failed ends ``Failed``.

The worker's browser loads each image straight from S3, from the worker portal's origin, so Ground Truth needs a CORS
rule on every bucket that holds input images; without one "labeling tasks for those input data objects will fail"
(https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html). The stand-in evaluates each input bucket's CORS
configuration (GetBucketCors) for a GET from the workers' origin, as S3 does for their browsers, and fails the
objects of a bucket that does not allow it, with a ``failure-reason`` that names the bucket.

The output manifest is written with the same converters the cloud path reads (``loupe.manifests``), to
``<S3OutputPath>/<job>/manifests/output/output.manifest``, and each state change is announced as the
``SageMaker Ground Truth Labeling Job State Change`` event.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.session
from botocore.exceptions import ClientError

from loupe import manifests
from loupe.datasets import Box
from loupe_local.standins.base import AwsRequest, Response, StandIn, error

log = logging.getLogger("loupe_local.groundtruth")

OPERATIONS = {"CreateLabelingJob", "DescribeLabelingJob", "ListLabelingJobs", "StopLabelingJob"}
EVENT = "SageMaker Ground Truth Labeling Job State Change"
ACCOUNT = "123456789012"
NO_WORKER = "ClientError: no worker completed this task (the local workforce has no answer for this image)"
CORS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html"
# Amazon Mechanical Turk: the public workforce's workteam lives in this AWS account in every region.
PUBLIC_CROWD_ACCOUNT = "394669845002"
MTURK_WORKER_ORIGIN = "https://worker.mturk.com"
LOCAL_WORKTEAM = "loupe-local"


def local_workteam_arn(region: str) -> str:
    """The private workteam the local AWS's workforce stands for (what the local stack deploys with)."""
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/{LOCAL_WORKTEAM}"


def worker_origin(workteam_arn: str, region: str) -> str:
    """The origin the workers' browsers load images from: MTurk's worker site for the public workforce, the
    labeling portal (``https://<subdomain>.labeling.<region>.sagemaker.aws``) for a private or vendor workteam.
    AWS gives the portal a generated subdomain; the local one is named after the workteam."""
    if f":{PUBLIC_CROWD_ACCOUNT}:workteam/public-crowd/" in workteam_arn:
        return MTURK_WORKER_ORIGIN
    team = workteam_arn.rsplit("/", 1)[-1].lower() or LOCAL_WORKTEAM
    return f"https://{re.sub(r'[^a-z0-9-]', '-', team)}.labeling.{region}.sagemaker.aws"


@functools.cache
def _member_pattern(shape: str, member: str) -> str:
    """A member's regular expression from botocore's SageMaker model, the same one the service validates."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return str(model.shape_for(shape).members[member].metadata["pattern"])


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
        self.mode = "auto"
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
                self.mode = str(cfg.get("mode", "auto"))
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


@dataclass(frozen=True)
class _Browser:
    """What a worker's browser needs to load the job's images: S3, the portal's origin, each bucket's CORS answer."""

    s3: Any
    origin: str
    cors_by_bucket: dict[str, bool]


def _origin_matches(allowed: str, origin: str) -> bool:
    """S3's AllowedOrigin match: exact, or with its (at most one) ``*`` wildcard standing for any characters."""
    if "*" not in allowed:
        return allowed == origin
    head, _, tail = allowed.partition("*")
    return len(origin) >= len(head) + len(tail) and origin.startswith(head) and origin.endswith(tail)


def _cors_allows_get(s3: Any, bucket: str, origin: str) -> bool:
    """Whether a CORS rule of the bucket matches a GET from ``origin`` (the rule S3 applies to the browser's
    request: https://docs.aws.amazon.com/AmazonS3/latest/userguide/cors.html). No configuration: no rule."""
    try:
        rules = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchCORSConfiguration":
            return False
        raise
    return any(
        "GET" in rule.get("AllowedMethods", []) and any(_origin_matches(o, origin) for o in rule["AllowedOrigins"])
        for rule in rules
    )


class CorsRefused(Exception):
    """S3 did not let the worker portal's origin read an input image."""


class AnswerError(ValueError):
    """A person's answer the labeling UI refuses; ``status`` is the HTTP status the console answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def set_workforce_mode(state_dir: Path, mode: str) -> None:
    """Make the local workforce ``auto`` (known labels) or ``manual`` (a person, in the console) for new jobs."""
    if mode not in ("auto", "manual"):
        raise ValueError(f"workforce mode must be auto or manual, not {mode!r}")
    path = Path(state_dir) / "workforce" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**config, "mode": mode}, indent=2))


def check_boxes(raw: Any, width: int, height: int, class_map: dict[str, str]) -> list[Box]:
    """A person's boxes, or :class:`AnswerError` naming the first one the task refuses."""
    if not isinstance(raw, list):
        raise AnswerError("the answer needs a list of boxes (an empty list: no defect in this image)")
    boxes = []
    for number, item in enumerate(raw, start=1):
        try:
            box = Box.from_dict(item)
            values = [float(box.left), float(box.top), float(box.width), float(box.height)]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AnswerError(
                f"box {number} is not a box ({exc}); expected class_id, left, top, width, height"
            ) from exc
        left, top, w, h = values
        if str(box.class_id) not in class_map:
            raise AnswerError(f"box {number} has class {box.class_id}, not one of the job's classes {class_map}")
        if round(w) < 1 or round(h) < 1:
            raise AnswerError(f"box {number} is empty ({w:g} x {h:g} px): drag to give it an area, or delete it")
        if left < 0 or top < 0 or left + w > width + 0.5 or top + h > height + 0.5:
            raise AnswerError(
                f"box {number} ({left:g}, {top:g}, {w:g} x {h:g}) goes outside the {width} x {height} image"
            )
        boxes.append(Box(int(box.class_id), round(left), round(top), round(w), round(h)))
    return boxes


class GroundTruth(StandIn):
    name = "groundtruth"

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # manual mode: task id -> task; answered and expired tasks stay (as "done") so a late submit is explained
        self.tasks: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)

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
        workteam = str(body["HumanTaskConfig"]["WorkteamArn"])
        pattern = _member_pattern("HumanTaskConfig", "WorkteamArn")
        if not re.fullmatch(pattern, workteam):
            # the wording of AWS's JSON-protocol constraint errors
            return error(
                "ValidationException",
                f"1 validation error detected: Value '{workteam}' at 'humanTaskConfig.workteamArn' failed to "
                f"satisfy constraint: Member must satisfy regular expression pattern: {pattern}",
            )
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
        browser = self._browser(worker_origin(job["HumanTaskConfig"]["WorkteamArn"], self.runtime.region))
        out, labeled, failed = [], 0, 0
        answered = self._ask_people(job, browser, lines, categories) if workforce.mode == "manual" else None
        if workforce.mode == "manual" and answered is None:
            self._finish(job, "Stopped")
            return
        for index, (_, obj) in enumerate(lines):
            if job.get("_stop"):
                self._finish(job, "Stopped")
                return
            if answered is not None:
                line, ok = answered[index]
            elif audit:
                line, ok = self._verify_one(browser, obj, attribute, audit, categories, workforce, name)
            else:
                line, ok = self._label_one(browser, obj, attribute, categories, workforce, rng, name)
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

    def _browser(self, origin: str) -> _Browser:
        return _Browser(self.runtime.client("s3"), origin, {})

    @staticmethod
    def _load_in_browser(browser: _Browser, ref: str) -> bytes:
        """The image as the worker's browser gets it, or :class:`CorsRefused` when the bucket's CORS
        configuration does not let the portal's origin GET it."""
        bucket, key = manifests.split_s3_uri(ref)
        if bucket not in browser.cors_by_bucket:
            browser.cors_by_bucket[bucket] = _cors_allows_get(browser.s3, bucket, browser.origin)
        if not browser.cors_by_bucket[bucket]:
            raise CorsRefused(
                f"ClientError: the worker's browser cannot load {ref}: bucket {bucket} has no CORS rule that "
                f"allows GET from {browser.origin} (see {CORS_DOC})"
            )
        return browser.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _label_one(
        self,
        browser: _Browser,
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
            data = self._load_in_browser(browser, ref)
        except CorsRefused as exc:
            return manifests.failed_line(ref, attribute, str(exc), job_name, extra), False
        except Exception as exc:
            return manifests.failed_line(
                ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, extra
            ), False
        try:
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
        browser: _Browser,
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
            self._load_in_browser(browser, ref)  # the verifier sees the image under the boxes
        except CorsRefused as exc:
            return manifests.failed_line(ref, attribute, str(exc), job_name, obj), False
        except Exception as exc:
            return manifests.failed_line(ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, obj), False
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

    # ------------------------------------------------------------------ manual mode: a person answers in the console
    def _ask_people(
        self,
        job: dict[str, Any],
        browser: _Browser,
        lines: list[tuple[int, dict[str, Any]]],
        categories: dict[str, Any],
    ) -> list[tuple[dict[str, Any], bool]] | None:
        """Every object of the job as a pending task; once each is answered (or has expired), its output line.
        None when the job was stopped while people were working."""
        from PIL import Image

        name = job["LabelingJobName"]
        attribute = job["LabelAttributeName"]
        audit = categories.get("auditLabelAttributeName")
        lifetime = float(job["HumanTaskConfig"].get("TaskAvailabilityLifetimeInSeconds") or 864000)
        class_map = manifests.class_map_from_config(categories) if categories.get("labels") else {"0": "scratch"}
        verdicts = [item["label"] for item in categories.get("labels", [])]
        results: list[tuple[dict[str, Any], bool] | None] = [None] * len(lines)
        ids: list[str] = []
        for index, (_, obj) in enumerate(lines):
            ref = obj["source-ref"]
            base = obj if audit else {k: v for k, v in obj.items() if k != "source-ref"}
            try:
                data = self._load_in_browser(browser, ref)
                with Image.open(io.BytesIO(data)) as img:
                    width, height, depth = img.size[0], img.size[1], len(img.getbands())
                    mime = Image.MIME.get(img.format or "", "application/octet-stream")
                shown = manifests.parse_output_line(obj, audit) if audit else None
            except CorsRefused as exc:
                results[index] = (manifests.failed_line(ref, attribute, str(exc), name, base), False)
                continue
            except Exception as exc:
                reason = f"ClientError: cannot read {ref}: {exc}"
                results[index] = (manifests.failed_line(ref, attribute, reason, name, base), False)
                continue
            now = time.time()
            task = {
                "id": f"{name}.{index}",
                "job": name,
                "kind": "verify" if audit else "label",
                "source_ref": ref,
                "sha256": obj.get(manifests.SHA_ATTRIBUTE) or hashlib.sha256(data).hexdigest(),
                "width": width,
                "height": height,
                "class_map": class_map,
                "created": now,
                "expires": now + lifetime,
                "state": "pending",
                "_image": data,
                "_mime": mime,
                "_index": index,
                "_base": base,
                "_depth": depth,
            }
            if shown is not None:
                task["boxes"] = shown.annotations()
                task["verdicts"] = verdicts
            with self._lock:
                self.tasks[task["id"]] = task
            ids.append(task["id"])
        with self._answered:
            self._answered.notify_all()
            while True:
                pending = [self.tasks[i] for i in ids if self.tasks[i]["state"] == "pending"]
                if not pending:
                    break
                if job.get("_stop") or self._stop.is_set():
                    for task in pending:
                        task["state"] = "withdrawn"
                    return None
                for task in pending:
                    if time.time() >= task["expires"]:
                        task["state"] = "expired"
                self._answered.wait(0.5)
        for task_id in ids:
            task = self.tasks[task_id]
            ref, base, index = task["source_ref"], task["_base"], task["_index"]
            if task["state"] == "expired":
                reason = f"{NO_WORKER.split(' (')[0]} within TaskAvailabilityLifetimeInSeconds ({lifetime:g})"
                results[index] = (manifests.failed_line(ref, attribute, reason, name, base), False)
            elif task["kind"] == "verify":
                line = manifests.verification_line(ref, attribute, verdicts, task["_answer"], name, base=base)
                results[index] = (line, True)
            else:
                line = manifests.output_line(
                    ref, attribute, task["_answer"], task["width"], task["height"], task["_depth"], class_map, name,
                    extra=base,
                )  # fmt: skip
                results[index] = (line, True)
            task.pop("_image", None)
        return [r for r in results if r is not None]

    @staticmethod
    def _public(task: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in task.items() if not k.startswith("_")}

    def pending_tasks(self) -> list[dict[str, Any]]:
        """The tasks waiting for a person, oldest first (what the worker portal lists)."""
        with self._lock:
            return [self._public(t) for t in sorted(self.tasks.values(), key=lambda t: t["created"])
                    if t["state"] == "pending"]  # fmt: skip

    def task_image(self, task_id: str) -> tuple[bytes, str]:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or "_image" not in task:
                raise AnswerError(f"task {task_id} is not in the queue (answered, stopped or unknown)", 404)
            return task["_image"], task["_mime"]

    def submit(self, task_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A person's answer: boxes for a labeling task, a verdict for a verification task. :class:`AnswerError`
        (and the task unchanged) when the answer or the task's state does not allow it."""
        with self._answered:
            task = self.tasks.get(task_id)
            if task is None:
                raise AnswerError(f"no task {task_id}: it is not (or no longer) in the queue; reload the tasks", 404)
            if task["state"] == "answered":
                raise AnswerError(f"task {task_id} was already submitted; the first answer is kept", 409)
            if task["state"] != "pending":
                why = {"expired": "its time to be taken ran out", "withdrawn": "its labeling job was stopped"}
                raise AnswerError(f"task {task_id} is stale: {why.get(task['state'], task['state'])}", 409)
            if not isinstance(answer, dict):
                raise AnswerError("the answer must be a JSON object")
            if task["kind"] == "verify":
                verdict = answer.get("verdict")
                if verdict not in task["verdicts"]:
                    raise AnswerError(f"the verdict must be one of {task['verdicts']}, not {verdict!r}")
                task["_answer"] = verdict
            else:
                task["_answer"] = check_boxes(answer.get("boxes"), task["width"], task["height"], task["class_map"])
            task["state"] = "answered"
            task["answered"] = time.time()
            self._answered.notify_all()
            return self._public(task)

    def status(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for job in self.jobs.values():
            by_status[job["LabelingJobStatus"]] = by_status.get(job["LabelingJobStatus"], 0) + 1
        return {"jobs": by_status}

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
