"""A Loupe labeling job's life: created with the waiting execution's task token, its images settled one by one
(consolidated, reviewed or released), and, once every image is settled, its output manifest written exactly as
Ground Truth writes a bounding-box job's (:mod:`loupe.manifests`, read back by ``collect_labels``) and the token
answered: ``SendTaskSuccess`` when some image was labeled, ``SendTaskFailure`` when none was.

Expiry (:func:`expire_job`) keeps what was answered: an image with answers is consolidated from the answers it
has; an image nobody answered, or whose labelers disagreed with no reviewer before the end, is released with its
reason (a failed line in the output: the labeling run puts it back to unlabeled). The answers themselves stay in
the table.

A job is of one ``kind``: ``label`` (boxes drawn) or ``verify`` (the verification step: each image shows the boxes
to check, each answer is a verdict; :mod:`loupe.labeling.verdicts` consolidates them by majority, never to a
reviewer, and writes Ground Truth's label-verification line). Leases, declines, expiry and the finish are the same.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from loupe import aws_errors, manifests
from loupe.aws_clients import S3, StepFunctions
from loupe.labeling import answers as answers_mod
from loupe.labeling import verdicts
from loupe.labeling.answers import AnswerError
from loupe.labeling.config import (
    APP_VERIFICATION_CATEGORIES,
    DEFAULT_DECLINE_LIMIT,
    LABEL_ATTRIBUTE,
    MAX_DECLINE_LIMIT,
    MAX_LABELERS_PER_IMAGE,
    VERIFY_ATTRIBUTE,
)
from loupe.labeling.consolidation import DEFAULT_MIN_AGREEMENT, consolidate
from loupe.labeling.task_store import LABEL_QUEUE, REVIEW_QUEUE, Conflict, TaskStore, item_key, job_key

# how long a labeler keeps an image before another labeler may take its slot (a late answer is still taken while
# nobody else has); the order of Ground Truth's TaskTimeLimitInSeconds (loupe.labeling.groundtruth)
LEASE_SECONDS = 600
# the token no longer waits: a duplicate finish, or an execution that stopped waiting (loupe.labeling.callback)
GONE_TOKEN_CODES = ("InvalidToken", "TaskTimedOut", "TaskDoesNotExist")
# agreement and confidences in the output, as Ground Truth rounds its confidences
_DIGITS = 2
LABEL_KIND = "label"
VERIFY_KIND = "verify"


def dec(value: float) -> Decimal:
    return Decimal(str(round(float(value), 4)))


def is_open(job: dict[str, Any], now: float) -> bool:
    return job.get("status") == "open" and now < float(job["expires_at"])


def output_key(job: dict[str, Any]) -> tuple[str, str]:
    """Where Ground Truth puts a job's output manifest: ``<S3OutputPath>/<job>/manifests/output/output.manifest``
    (the path the labeling run reads; loupe_local's Ground Truth stand-in writes the same)."""
    prefix = str(job["output_uri"]).rstrip("/") + "/"
    return manifests.split_s3_uri(f"{prefix}{job['job_name']}/manifests/output/output.manifest")


@dataclass(frozen=True)
class JobImage:
    source_ref: str
    sha256: str
    width: int
    height: int
    # boxes a device sent with its uncertain frame, or the deployed model's, in the answer shape
    prefill: Sequence[dict[str, Any]] = field(default_factory=tuple)
    # a verify job's: the boxes to accept or reject (answer shape), and the labeling output's line of the image
    # (passed through to the verification line, as Ground Truth passes the input line's attributes)
    verify: Sequence[dict[str, Any]] = field(default_factory=tuple)
    base: dict[str, Any] = field(default_factory=dict)
    # who labeled (or reviewed) the boxes to verify: never handed their own work to verify
    labeled_by: Sequence[str] = field(default_factory=tuple)


def create_job(
    store: TaskStore,
    job_name: str,
    task_token: str,
    images: Sequence[JobImage],
    class_map: dict[str, str],
    output_uri: str,
    image_bucket: str,
    now: float,
    labelers_per_image: int = 1,
    lifetime_seconds: int = 86400,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_boxes: int = answers_mod.MAX_BOXES,
    decline_limit: int = DEFAULT_DECLINE_LIMIT,
    kind: str = LABEL_KIND,
) -> dict[str, Any]:
    """Store a job and its images. The same job name again (a Lambda retry with the same token) finds the job it
    created; a bad image or parameter is a ValueError naming it, and nothing is stored. A ``verify`` job's images
    carry the boxes to verify (``JobImage.verify``); a box that is not a valid answer of the image is refused."""
    if kind not in (LABEL_KIND, VERIFY_KIND):
        raise ValueError(f"a job's kind is {LABEL_KIND} or {VERIFY_KIND}, not {kind!r}")
    if not 1 <= labelers_per_image <= MAX_LABELERS_PER_IMAGE:
        raise ValueError(f"LabelersPerImage must be 1 to {MAX_LABELERS_PER_IMAGE}, not {labelers_per_image}")
    if not 1 <= decline_limit <= MAX_DECLINE_LIMIT:
        raise ValueError(f"LabelingDeclineLimit must be 1 to {MAX_DECLINE_LIMIT}, not {decline_limit}")
    if lifetime_seconds < 60 or not images or not 0 <= min_agreement <= 1:
        raise ValueError("a job needs images, a task lifetime of at least 60 s and a min_agreement in 0..1")
    manifests.split_s3_uri(output_uri.rstrip("/") + "/x")
    existing = store.job(job_name)
    if existing is not None:
        if existing.get("task_token") != task_token:
            raise ValueError(f"job {job_name} exists for another task token")
        return {"job_name": job_name, "images": existing["total"], "created": False}
    rows = []
    for index, image in enumerate(images):
        bucket, _ = manifests.split_s3_uri(image.source_ref)
        if bucket != image_bucket:
            raise ValueError(f"image {index} ({image.source_ref}) is not in the raw bucket {image_bucket}")
        if image.width <= 0 or image.height <= 0:
            raise ValueError(f"image {index} ({image.source_ref}) has no size")
        extra: dict[str, Any] = {}
        if kind == VERIFY_KIND:
            try:
                shown = answers_mod.validate({"boxes": list(image.verify)}, image.width, image.height, class_map)
            except AnswerError as exc:
                raise ValueError(f"image {index} ({image.source_ref}): its boxes to verify: {exc.message}") from None
            extra = {
                "verify_json": json.dumps(shown.as_json(class_map)),
                "base_json": json.dumps(image.base),
                "labeled_by": sorted(set(image.labeled_by)),
            }
        # pre-filled boxes are a hint from a device or a model: the ones a labeler could not submit are left out
        prefill = []
        for box in list(image.prefill)[:max_boxes] if kind == LABEL_KIND else []:
            try:
                answers_mod.validate({"boxes": [box]}, image.width, image.height, class_map)
            except AnswerError:
                continue
            prefill.append(box)
        rows.append(
            {
                **item_key(job_name, index),
                "job_name": job_name,
                "index": index,
                "source_ref": image.source_ref,
                "sha256": image.sha256,
                "width": int(image.width),
                "height": int(image.height),
                "prefill_json": json.dumps(prefill),
                "status": "labeling",
                "queue": LABEL_QUEUE,
                "queue_order": f"{int(now):012d}#{job_name}#{index:05d}",
                "slots": {},
                "answers": 0,
                "version": 0,
                **extra,
            }
        )
    for row in rows:  # the images first: an image without its job is never handed out (next_task reads the job)
        store.put_new(row)
    store.put_new(
        {
            **job_key(job_name),
            "job_name": job_name,
            "task_token": task_token,
            "labelers_per_image": labelers_per_image,
            "decline_limit": decline_limit,
            "lease_seconds": LEASE_SECONDS,
            "expires_at": int(now) + int(lifetime_seconds),
            "class_map": dict(class_map),
            "max_boxes": max_boxes,
            "min_agreement": dec(min_agreement),
            "output_uri": output_uri,
            "kind": kind,
            "attribute": VERIFY_ATTRIBUTE if kind == VERIFY_KIND else LABEL_ATTRIBUTE,
            **({"categories": list(APP_VERIFICATION_CATEGORIES)} if kind == VERIFY_KIND else {}),
            "total": len(rows),
            "done": 0,
            "status": "open",
            "created_at": int(now),
        }
    )
    return {"job_name": job_name, "images": len(rows), "created": True}


def finalize(
    name: str,
    index: int,
    version: int,
    boxes: list[dict[str, Any]],
    confidences: Sequence[float],
    agreement: float,
    by: str,
    from_status: str,
    labelers: int | None = None,
) -> dict[str, Any]:
    """The transaction entry that makes an image final (conditioned on its version and status)."""
    values: dict[str, Any] = {
        ":final": "final",
        ":from": from_status,
        ":v": version,
        ":one": 1,
        ":r": json.dumps(boxes),
        ":c": json.dumps([round(c, _DIGITS) for c in confidences]),
        ":a": dec(agreement),
        ":by": by,
    }
    extra = ""
    if labelers is not None:
        extra = ", labelers = :n"
        values[":n"] = labelers
    return {
        "Update": {
            "Key": item_key(name, index),
            "UpdateExpression": "SET #st = :final, result_json = :r, confidences_json = :c, agreement = :a, "
            f"final_by = :by, version = version + :one{extra} REMOVE #q, queue_order",
            "ConditionExpression": "version = :v AND #st = :from",
            "ExpressionAttributeNames": {"#st": "status", "#q": "queue"},
            "ExpressionAttributeValues": values,
        }
    }


def _release(name: str, index: int, version: int, reason: str, from_status: str) -> dict[str, Any]:
    return {
        "Update": {
            "Key": item_key(name, index),
            "UpdateExpression": "SET #st = :released, release_reason = :why, version = version + :one "
            "REMOVE #q, queue_order",
            "ConditionExpression": "version = :v AND #st = :from",
            "ExpressionAttributeNames": {"#st": "status", "#q": "queue"},
            "ExpressionAttributeValues": {
                ":released": "released",
                ":why": reason,
                ":one": 1,
                ":v": version,
                ":from": from_status,
            },
        }
    }


def move_to_review(
    name: str, index: int, version: int, suggestion: list[dict[str, Any]], agreement: float, why: str
) -> dict[str, Any]:
    return {
        "Update": {
            "Key": item_key(name, index),
            "UpdateExpression": "SET #st = :review, #q = :review, result_json = :r, agreement = :a, "
            "review_reason = :why, version = version + :one",
            "ConditionExpression": "version = :v AND #st = :labeling",
            "ExpressionAttributeNames": {"#st": "status", "#q": "queue"},
            "ExpressionAttributeValues": {
                ":review": REVIEW_QUEUE,
                ":labeling": "labeling",
                ":r": json.dumps(suggestion),
                ":a": dec(agreement),
                ":why": why,
                ":one": 1,
                ":v": version,
            },
        }
    }


def _labeler_boxes(store: TaskStore, job: dict[str, Any], index: int) -> list[list[Any]]:
    out = []
    for row in store.answers(job["job_name"], index):
        if "#review#" in row["sk"]:
            continue
        out.append(answers_mod.boxes_from_json(json.loads(row["boxes_json"]), job["class_map"]))
    return out


def _verdicts(store: TaskStore, job: dict[str, Any], index: int) -> list[answers_mod.Verdict]:
    return [
        answers_mod.Verdict.from_json(json.loads(row["verdict_json"])) for row in store.answers(job["job_name"], index)
    ]


def declines(item: dict[str, Any]) -> tuple[int, str]:
    """How many labelers declined an image, and their reasons in one line. The labelers stay unnamed (as reviewers
    see answers): a release reason reaches the ledger and the dataset's history."""
    declined = [s for s in (item.get("slots") or {}).values() if s.get("declined")]
    return len(declined), "; ".join(sorted({str(s.get("reason") or "no reason given") for s in declined}))


def settle(
    store: TaskStore,
    s3: S3,
    sfn: StepFunctions,
    name: str,
    index: int,
    now: float,
    expiring: bool = False,
    declined: str | None = None,
) -> str:
    """Consolidate an image's answers: ``final``, ``review``, or (when ``expiring``, or ``declined`` by the job's
    decline limit with no answer: the reason) ``released``; idempotent."""
    job, item = store.job(name), store.item(name, index)
    if job is None or item is None or item["status"] != "labeling":
        return str((item or {}).get("status", "gone"))
    given: list[Any] = (
        _verdicts(store, job, index) if job.get("kind") == VERIFY_KIND else _labeler_boxes(store, job, index)
    )
    if not given:
        if declined is not None:
            reason = declined
        else:
            ended = datetime.fromtimestamp(job["expires_at"], UTC)
            reason = f"no labeler answered before the tasks expired at {ended:%Y-%m-%dT%H:%M:%SZ}"
            refused, why = declines(item)
            if refused:
                reason += f" (declined by {refused}: {why})"
        write, status = _release(name, index, item["version"], reason, "labeling"), "released"
    elif job.get("kind") == VERIFY_KIND:
        # verdicts are consolidated by majority (loupe.labeling.verdicts): never a review, even when expiring
        outcome = verdicts.consolidate(given, job["categories"])
        write = finalize(
            name,
            index,
            item["version"],
            [outcome.as_json()],
            [outcome.confidence],
            outcome.confidence,
            "verifiers",
            "labeling",
            len(given),
        )
        status = "final"
    else:
        result = consolidate(given, float(job["min_agreement"]))
        boxes = [answers_mod.box_json(b, job["class_map"]) for b in result.boxes]
        if not result.needs_review:
            write = finalize(
                name,
                index,
                item["version"],
                boxes,
                result.confidences,
                result.agreement,
                "labelers",
                "labeling",
                len(given),
            )
            status = "final"
        elif expiring:
            reason = f"the labelers disagreed ({result.reason}) and the tasks expired before a review"
            write, status = _release(name, index, item["version"], reason, "labeling"), "released"
        else:
            write = move_to_review(name, index, item["version"], boxes, result.agreement, result.reason)
            status = "review"
    try:
        store.transact(write)
    except Conflict:
        return str((store.item(name, index) or {}).get("status", "gone"))
    if status != "review":
        count_done(store, s3, sfn, name, now)
    return status


def count_done(store: TaskStore, s3: S3, sfn: StepFunctions, name: str, now: float) -> None:
    """One more image settled; the one that settles the last image finishes the job."""
    job = store.update(job_key(name), UpdateExpression="ADD done :one", ExpressionAttributeValues={":one": 1})
    if int(job["done"]) >= int(job["total"]):
        finish_job(store, s3, sfn, name, now)


def _line(job: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    extra = {manifests.SHA_ATTRIBUTE: item["sha256"]}
    attribute = job["attribute"]
    if job.get("kind") == VERIFY_KIND:
        base = {k: v for k, v in json.loads(item.get("base_json") or "{}").items() if k != "source-ref"}
        extra = {**base, **extra}
    if item["status"] != "final":
        reason = item.get("release_reason") or f"image {item['status']} when the job finished"
        return manifests.failed_line(item["source_ref"], attribute, reason, job["job_name"], extra)
    if job.get("kind") == VERIFY_KIND:
        (result,) = json.loads(item["result_json"])
        outcome = verdicts.Outcome(
            bool(result["accepted"]),
            str(result["category"]),
            float(result["confidence"]),
            str(result.get("comment") or ""),
            int(result["verifiers"]),
        )
        return verdicts.output_line(item["source_ref"], attribute, job["categories"], outcome, job["job_name"], extra)
    boxes = answers_mod.boxes_from_json(json.loads(item["result_json"]), job["class_map"])
    line = manifests.output_line(
        item["source_ref"],
        attribute,
        boxes,
        int(item["width"]),
        int(item["height"]),
        3,
        job["class_map"],
        job["job_name"],
        confidences=json.loads(item.get("confidences_json") or "[]"),
        extra=extra,
    )
    meta = line[f"{attribute}-metadata"]
    meta["loupe-agreement"] = round(float(item.get("agreement", 1.0)), _DIGITS)
    meta["loupe-labelers"] = int(item.get("labelers") or job["labelers_per_image"])
    meta["loupe-final-by"] = "reviewer" if str(item.get("final_by", "")).startswith("reviewer:") else "labelers"
    return line


def finish_job(store: TaskStore, s3: S3, sfn: StepFunctions, name: str, now: float) -> dict[str, Any]:
    """Write the output manifest and answer the task token (idempotent: a second call rewrites the same lines and
    finds the token gone)."""
    try:
        job = store.update(
            job_key(name),
            UpdateExpression="SET #st = :finishing",
            ConditionExpression="#st IN (:open, :finishing)",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={":finishing": "finishing", ":open": "open"},
        )
    except Conflict:
        return {"job_name": name, "finished": False}
    items = sorted(store.items(name), key=lambda i: int(i["index"]))
    lines = [_line(job, item) for item in items]
    bucket, key = output_key(job)
    s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(line) + "\n" for line in lines).encode())
    labeled = sum(1 for item in items if item["status"] == "final")
    uri = f"s3://{bucket}/{key}"
    status = "Completed" if labeled else "Failed"
    try:
        if labeled:
            output = {
                "job_name": name,
                "status": status,
                "output_uri": uri,
                "labeled": labeled,
                "released": len(items) - labeled,
            }
            sfn.send_task_success(taskToken=job["task_token"], output=json.dumps(output))
        else:
            sfn.send_task_failure(
                taskToken=job["task_token"],
                error="LabelingJobFailed",
                cause=(
                    f"verification job {name} has a verdict on none of its {len(items)} images (output {uri})"
                    if job.get("kind") == VERIFY_KIND
                    else f"labeling job {name} labeled none of its {len(items)} images (output {uri})"
                )[:32768],
            )
    except Exception as exc:
        if aws_errors.error_code(exc) not in GONE_TOKEN_CODES:
            raise
    store.update(
        job_key(name),
        UpdateExpression="SET #st = :end, output_manifest = :uri, finished_at = :now",
        ExpressionAttributeNames={"#st": "status"},
        ExpressionAttributeValues={":end": "completed" if labeled else "failed", ":uri": uri, ":now": int(now)},
    )
    return {"job_name": name, "finished": True, "status": status, "output_uri": uri, "labeled": labeled}


def expire_job(store: TaskStore, s3: S3, sfn: StepFunctions, name: str, now: float) -> dict[str, Any]:
    """End a job whose tasks' lifetime is over: answered images are kept, unanswered ones released with a reason.
    Before the expiry time it changes nothing."""
    job = store.job(name)
    if job is None:
        raise ValueError(f"no labeling job {name}")
    if now < float(job["expires_at"]) or job["status"] not in ("open", "finishing"):
        return {"job_name": name, "expired": False, "status": job["status"]}
    settled: dict[str, int] = {}
    for item in store.items(name):
        index = int(item["index"])
        if item["status"] == "labeling":
            status = settle(store, s3, sfn, name, index, now, expiring=True)
        elif item["status"] == "review":
            try:
                store.transact(
                    _release(
                        name,
                        index,
                        item["version"],
                        f"the labelers disagreed ({item.get('review_reason', '')}) and no reviewer resolved it "
                        "before the tasks expired",
                        "review",
                    )
                )
            except Conflict:
                continue
            count_done(store, s3, sfn, name, now)
            status = "released"
        else:
            continue
        settled[status] = settled.get(status, 0) + 1
    # every image was settled earlier but the finish did not end (its Lambda failed after the last answer): again
    job = store.job(name) or job
    if int(job["done"]) >= int(job["total"]) and job["status"] in ("open", "finishing"):
        finish_job(store, s3, sfn, name, now)
    return {"job_name": name, "expired": True, "settled": settled}
