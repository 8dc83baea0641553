"""Loupe's own labeling workforce: a job's images handed to the stack's labelers, their answers consolidated, the
disagreements resolved by a reviewer, and the job's output written as Ground Truth writes it.

The labeling state machine creates a job (:func:`loupe.labeling.workforce_jobs.create_job`) with its task token and
waits; labelers take images one at a time (:func:`next_task`, a lease of :data:`LEASE_SECONDS`) and answer
(:func:`submit_answer`); an image with ``LabelersPerImage`` answers is consolidated (:mod:`consolidation`) and is
either final or waits for a reviewer (:func:`next_review`, :func:`submit_review`, whose answer is final). When every
image is final or released, :func:`loupe.labeling.workforce_jobs.finish_job` writes the output manifest and sends
the task token its outcome.

Every refusal is an :class:`~loupe.labeling.answers.AnswerError` carrying the HTTP status; an answer is stored in
the same transaction that marks the labeler's slot answered, so an answer that got a 200 is never lost, and one that
was refused changed nothing.

The same queue hands out the verification step's images (a job of kind ``verify``): the task shows the boxes to
check, and the answer is a verdict (:func:`loupe.labeling.answers.validate_verdict`), leased, declined, expired and
refused twice exactly as a labeling task.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from loupe import manifests
from loupe.aws_clients import S3, StepFunctions
from loupe.labeling import answers as answers_mod
from loupe.labeling.answers import MAX_REASON_CHARS, AnswerError
from loupe.labeling.config import DEFAULT_DECLINE_LIMIT, REJECT_REASONS, VERIFICATION_OTHER
from loupe.labeling.task_store import (
    LABEL_QUEUE,
    REVIEW_QUEUE,
    Conflict,
    TaskStore,
    answer_key,
    assignment_key,
    item_key,
)
from loupe.labeling.workforce_jobs import (
    LABEL_KIND,
    LEASE_SECONDS,
    VERIFY_KIND,
    count_done,
    declines,
    finalize,
    is_open,
    settle,
)

REVIEW_LEASE_SECONDS = 900
# a presigned GET of an image lives this long (the page loads it at once)
IMAGE_URL_SECONDS = 300
# the images of a queue looked at per request before answering "nothing for you now"
MAX_CANDIDATES = 200
_RETRIES = 5


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def image_url(s3: Any, source_ref: str, seconds: int = IMAGE_URL_SECONDS) -> str:
    bucket, key = manifests.split_s3_uri(source_ref)
    url: str = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=seconds)
    return url


def item_id(item: dict[str, Any]) -> str:
    return f"{item['job_name']}.{int(item['index'])}"


def _parse_item_id(value: str) -> tuple[str, int]:
    job, _, index = value.rpartition(".")
    if not job or not index.isdigit() or len(index) > 5:
        raise AnswerError(404, f"{value!r} is not a review item (expected <job>.<index>)")
    return job, int(index)


def _named(user: str) -> str:
    """Leases and answers are keyed by the caller's Cognito username; a token without one gets no work."""
    if not user:
        raise AnswerError(403, "the token names no user (no cognito:username or username claim)")
    return user


def _queued_key(queued: dict[str, Any]) -> tuple[str, int]:
    """(job name, image index) of a queue-index entry (KEYS_ONLY: ``JOB#<name>`` / ``ITEM#<index>``)."""
    return str(queued["pk"]).removeprefix("JOB#"), int(str(queued["sk"]).removeprefix("ITEM#"))


def _kind(job: dict[str, Any]) -> str:
    return str(job.get("kind") or LABEL_KIND)


def _task_view(job: dict[str, Any], item: dict[str, Any], assignment_id: str, until: int) -> dict[str, Any]:
    verify = _kind(job) == VERIFY_KIND
    extra: dict[str, Any] = {}
    if verify:
        # the boxes to accept or reject, and the reasons a reject may name (or the verifier's own words)
        extra = {"boxes": json.loads(item.get("verify_json") or "[]"), "reasons": list(REJECT_REASONS)}
    return {
        "assignment_id": assignment_id,
        "kind": _kind(job),
        **extra,
        "job_name": job["job_name"],
        "source_ref": item["source_ref"],
        "width": item["width"],
        "height": item["height"],
        "labels": [job["class_map"][str(i)] for i in range(len(job["class_map"]))],
        "prefill": json.loads(item.get("prefill_json") or "[]"),
        "max_boxes": job["max_boxes"],
        "lease_until": _iso(until),
    }


# ------------------------------------------------------------------------------------------------ labelers


def next_task(store: TaskStore, user: str, now: float) -> dict[str, Any] | None:
    """Lease ``user`` the oldest image that still needs answers and that they have not answered (their own
    unexpired lease comes back as it is), never the verify task of an image they labeled. None when there is
    none."""
    _named(user)
    jobs: dict[str, dict[str, Any] | None] = {}
    tried = 0
    for queued in store.queued(LABEL_QUEUE):
        name, index = _queued_key(queued)
        if name not in jobs:
            jobs[name] = store.job(name)
        job = jobs[name]
        if job is None or not is_open(job, now):
            continue  # an expired job's images wait for expire_job; they cost an index entry each, no item read
        tried += 1
        if tried > MAX_CANDIDATES:
            return None
        for _ in range(_RETRIES):
            item = store.item(name, index)
            if item is None or item.get("queue") != LABEL_QUEUE:
                break
            if user in (item.get("labeled_by") or []):
                break  # a verify task of boxes this person drew (or resolved): someone else checks them
            slots: dict[str, Any] = item.get("slots") or {}
            mine = slots.get(user)
            if mine and (mine["answered"] or mine.get("declined")):
                break
            if mine and mine["until"] > now:
                return _task_view(job, item, mine["assignment"], mine["until"])
            # a decline is kept (it is never handed back to that labeler, and it counts towards the job's
            # decline limit) but holds no slot
            held = {u: s for u, s in slots.items() if s["answered"] or s["until"] > now or s.get("declined")}
            if sum(1 for s in held.values() if not s.get("declined")) >= int(job["labelers_per_image"]):
                break
            assignment_id = uuid.uuid4().hex
            until = int(now) + int(job.get("lease_seconds", LEASE_SECONDS))
            held[user] = {"assignment": assignment_id, "until": until, "answered": False}
            try:
                store.transact(
                    {
                        "Update": {
                            "Key": item_key(name, int(item["index"])),
                            "UpdateExpression": "SET slots = :s, version = version + :one",
                            "ConditionExpression": "version = :v AND #q = :label",
                            "ExpressionAttributeNames": {"#q": "queue"},
                            "ExpressionAttributeValues": {
                                ":s": held,
                                ":one": 1,
                                ":v": item["version"],
                                ":label": LABEL_QUEUE,
                            },
                        }
                    },
                    {
                        "Put": {
                            "Item": {
                                **assignment_key(assignment_id),
                                "kind": _kind(job),
                                "user": user,
                                "job_name": name,
                                "index": int(item["index"]),
                                "until": until,
                                "status": "leased",
                                "created_at": int(now),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                )
            except Conflict:
                continue  # another labeler changed the image first: read it again
            return _task_view(job, item, assignment_id, until)
    return None


def submit_answer(
    store: TaskStore, s3: S3, sfn: StepFunctions, user: str, assignment_id: str, body: Any, now: float
) -> dict[str, Any]:
    """Record ``user``'s answer on their assignment; settles the image once it has every labeler's answer."""
    _named(user)
    assignment = store.get(assignment_key(assignment_id)) if assignment_id.isalnum() else None
    if assignment is None or assignment.get("kind") not in (LABEL_KIND, VERIFY_KIND):
        raise AnswerError(404, f"no labeling assignment {assignment_id!r}")
    if assignment["user"] != user:
        raise AnswerError(403, f"assignment {assignment_id} is another labeler's")
    if assignment["status"] == "answered":
        raise AnswerError(409, f"assignment {assignment_id} was already answered; an answer is not changed")
    name, index = assignment["job_name"], int(assignment["index"])
    for _ in range(_RETRIES):
        job, item = store.job(name), store.item(name, index)
        if job is None or item is None:
            raise AnswerError(404, f"the job of assignment {assignment_id} is gone")
        if not is_open(job, now):
            raise AnswerError(
                410, f"the tasks of job {name} expired at {_iso(job['expires_at'])}; this answer was not recorded"
            )
        slot = (item.get("slots") or {}).get(user)
        if item["status"] != "labeling" or slot is None or slot["assignment"] != assignment_id or slot.get("declined"):
            raise AnswerError(
                410,
                f"your lease on this image ended at {_iso(assignment['until'])} and it was handed to another "
                "labeler, or already has all its answers; this answer was not recorded: ask for the next task",
            )
        if slot["answered"]:
            raise AnswerError(409, f"assignment {assignment_id} was already answered; an answer is not changed")
        stored, summary = _answer_of(job, item, body)
        slots = dict(item["slots"])
        slots[user] = {**slot, "answered": True}
        try:
            store.transact(
                {
                    "Update": {
                        "Key": item_key(name, index),
                        "UpdateExpression": "SET slots = :s, answers = answers + :one, version = version + :one",
                        "ConditionExpression": "version = :v AND #st = :labeling",
                        "ExpressionAttributeNames": {"#st": "status"},
                        "ExpressionAttributeValues": {
                            ":s": slots,
                            ":one": 1,
                            ":v": item["version"],
                            ":labeling": "labeling",
                        },
                    }
                },
                {
                    "Put": {
                        "Item": {
                            **answer_key(name, index, user),
                            "user": user,
                            "assignment": assignment_id,
                            **stored,
                            "answered_at": int(now),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                _close_lease(assignment_id, "answered", now),
            )
        except Conflict:
            if (store.get(assignment_key(assignment_id)) or {}).get("status") == "answered":
                raise AnswerError(409, f"assignment {assignment_id} was already answered") from None
            continue
        result = "answered"
        if int(item.get("answers", 0)) + 1 >= int(job["labelers_per_image"]):
            result = settle(store, s3, sfn, name, index, now)
        return {"assignment_id": assignment_id, "status": "answered", "image": result, **summary}
    raise AnswerError(409, "the image changed under this answer too often; send it again")


def _answer_of(job: dict[str, Any], item: dict[str, Any], body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid answer of the task's kind: what its row stores, and what the route says about it."""
    if _kind(job) == VERIFY_KIND:
        verdict = answers_mod.validate_verdict(body, manifests.VERIFICATION_CORRECT, REJECT_REASONS, VERIFICATION_OTHER)
        said = {"verdict": "accept" if verdict.accepted else "reject", "category": verdict.category}
        return {"verdict_json": json.dumps(verdict.as_json())}, said
    answer = answers_mod.validate(body, int(item["width"]), int(item["height"]), job["class_map"], job["max_boxes"])
    return {"boxes_json": json.dumps(answer.as_json(job["class_map"]))}, {"boxes": len(answer.boxes)}


def _close_lease(assignment_id: str, status: str, now: float) -> dict[str, Any]:
    """The transaction entry that ends a live lease as ``status`` (answered or declined), only while it is leased."""
    return {
        "Update": {
            "Key": assignment_key(assignment_id),
            "UpdateExpression": f"SET #st = :status, {status}_at = :now",
            "ConditionExpression": "#st = :leased",
            "ExpressionAttributeNames": {"#st": "status"},
            "ExpressionAttributeValues": {":status": status, ":leased": "leased", ":now": int(now)},
        }
    }


def decline_reason(body: Any) -> str:
    """The optional body of a decline: nothing, or ``{"reason": "..."}`` (at most :data:`MAX_REASON_CHARS`
    printable characters); anything else is a 400 naming the shape."""
    if body is None or body == {}:
        return ""
    reason = body.get("reason") if isinstance(body, dict) and set(body) == {"reason"} else None
    if not isinstance(reason, str):
        raise AnswerError(400, 'a decline takes no body, or {"reason": "<why you cannot label this image>"}')
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise AnswerError(400, f"the reason must be at most {MAX_REASON_CHARS} printable characters")
    return reason


def decline_task(
    store: TaskStore, s3: S3, sfn: StepFunctions, user: str, assignment_id: str, now: float, reason: str = ""
) -> dict[str, Any]:
    """``user`` passes on their leased image (they cannot tell, or it is not theirs to judge): the lease ends now,
    the image goes to another labeler and is never handed to ``user`` again. No answer existed, so none is lost.

    The job's ``decline_limit`` (``LabelingDeclineLimit``) settles an image declined by that many labelers at once,
    so that an image nobody can answer does not hold the job until its tasks expire: with answers of other
    labelers it is consolidated from them (:func:`loupe.labeling.workforce_jobs.settle`), without any it is
    released as unlabeled with the decliners' reasons; the job finishes when its other images are settled."""
    _named(user)
    assignment = store.get(assignment_key(assignment_id)) if assignment_id.isalnum() else None
    if assignment is None or assignment.get("kind") not in (LABEL_KIND, VERIFY_KIND):
        raise AnswerError(404, f"no labeling assignment {assignment_id!r}")
    if assignment["user"] != user:
        raise AnswerError(403, f"assignment {assignment_id} is another labeler's")
    if assignment["status"] != "leased":
        raise AnswerError(409, f"assignment {assignment_id} is {assignment['status']}; only a lease can be declined")
    name, index = assignment["job_name"], int(assignment["index"])
    for _ in range(_RETRIES):
        item = store.item(name, index)
        slot = ((item or {}).get("slots") or {}).get(user)
        if item is None or item["status"] != "labeling" or slot is None or slot["assignment"] != assignment_id:
            raise AnswerError(410, f"your lease on this image ended at {_iso(assignment['until'])}; nothing to decline")
        slots = dict(item["slots"])
        slots[user] = {**slot, "until": 0, "declined": True, "reason": reason}
        try:
            store.transact(
                {
                    "Update": {
                        "Key": item_key(name, index),
                        "UpdateExpression": "SET slots = :s, version = version + :one",
                        "ConditionExpression": "version = :v AND #st = :labeling",
                        "ExpressionAttributeNames": {"#st": "status"},
                        "ExpressionAttributeValues": {
                            ":s": slots,
                            ":one": 1,
                            ":v": item["version"],
                            ":labeling": "labeling",
                        },
                    }
                },
                _close_lease(assignment_id, "declined", now),
            )
        except Conflict:
            if (store.get(assignment_key(assignment_id)) or {}).get("status") != "leased":
                raise AnswerError(409, f"assignment {assignment_id} is no longer a lease") from None
            continue
        declined, reasons = declines({"slots": slots})
        job = store.job(name) or {}
        limit = int(job.get("decline_limit") or DEFAULT_DECLINE_LIMIT)
        out: dict[str, Any] = {"assignment_id": assignment_id, "status": "declined", "declined": declined}
        if declined >= limit:
            why = (
                f"declined by {declined} labeler{'s' if declined > 1 else ''} (LabelingDeclineLimit {limit}): {reasons}"
            )
            out["image"] = settle(store, s3, sfn, name, index, now, declined=why)
        return out
    raise AnswerError(409, "the image changed under this request too often; send it again")


# ------------------------------------------------------------------------------------------------ reviewers


def _review_view(job: dict[str, Any], item: dict[str, Any], until: int, store: TaskStore) -> dict[str, Any]:
    labelers = [
        json.loads(a["boxes_json"])
        for a in store.answers(job["job_name"], int(item["index"]))
        if "#review#" not in a["sk"]
    ]
    return {
        "item_id": item_id(item),
        "job_name": job["job_name"],
        "source_ref": item["source_ref"],
        "width": item["width"],
        "height": item["height"],
        "labels": [job["class_map"][str(i)] for i in range(len(job["class_map"]))],
        "answers": labelers,  # one list per labeler, unnamed: the reviewer judges boxes, not people
        "suggestion": json.loads(item.get("result_json") or "[]"),
        "agreement": item.get("agreement"),
        "reason": item.get("review_reason", ""),
        "max_boxes": job["max_boxes"],
        "lease_until": _iso(until),
    }


def next_review(store: TaskStore, user: str, now: float) -> dict[str, Any] | None:
    """Lease ``user`` the oldest image waiting for review that nobody else reviews now and that they did not label
    themselves (a reviewer does not settle their own disagreement). None when there is none."""
    _named(user)
    jobs: dict[str, dict[str, Any] | None] = {}
    tried = 0
    for queued in store.queued(REVIEW_QUEUE):
        name, index = _queued_key(queued)
        if name not in jobs:
            jobs[name] = store.job(name)
        job = jobs[name]
        if job is None or not is_open(job, now):
            continue
        tried += 1
        if tried > MAX_CANDIDATES:
            return None
        for _ in range(_RETRIES):
            item = store.item(name, index)
            if item is None or item.get("queue") != REVIEW_QUEUE or user in (item.get("slots") or {}):
                break
            if item.get("reviewer") == user and int(item.get("review_until", 0)) > now:
                return _review_view(job, item, int(item["review_until"]), store)
            if item.get("reviewer") and int(item.get("review_until", 0)) > now:
                break
            until = int(now) + REVIEW_LEASE_SECONDS
            try:
                store.update(
                    item_key(name, int(item["index"])),
                    UpdateExpression="SET reviewer = :u, review_until = :t, version = version + :one",
                    ConditionExpression="version = :v AND #q = :review",
                    ExpressionAttributeNames={"#q": "queue"},
                    ExpressionAttributeValues={
                        ":u": user,
                        ":t": until,
                        ":one": 1,
                        ":v": item["version"],
                        ":review": REVIEW_QUEUE,
                    },
                )
            except Conflict:
                continue
            return _review_view(job, item, until, store)
    return None


def submit_review(
    store: TaskStore, s3: S3, sfn: StepFunctions, user: str, review_item: str, body: Any, now: float
) -> dict[str, Any]:
    """The reviewer's answer is the image's final label."""
    _named(user)
    name, index = _parse_item_id(review_item)
    for _ in range(_RETRIES):
        job, item = store.job(name), store.item(name, index)
        if job is None or item is None:
            raise AnswerError(404, f"no review item {review_item!r}")
        if item["status"] == "final":
            raise AnswerError(409, f"{review_item} was already resolved; the first reviewer's answer is final")
        if item["status"] != "review":
            raise AnswerError(409, f"{review_item} is {item['status']}, not waiting for a review")
        if not is_open(job, now):
            raise AnswerError(
                410, f"the tasks of job {name} expired at {_iso(job['expires_at'])}; this review was not recorded"
            )
        if item.get("reviewer") != user:
            raise AnswerError(
                409,
                f"{review_item} is not leased to you: take it with GET /review/next first"
                + (" (another reviewer holds it)" if item.get("reviewer") else ""),
            )
        answer = answers_mod.validate(body, int(item["width"]), int(item["height"]), job["class_map"], job["max_boxes"])
        boxes = answer.as_json(job["class_map"])
        try:
            store.transact(
                {
                    "Put": {
                        "Item": {
                            **answer_key(name, index, f"review#{user}"),
                            "user": user,
                            "boxes_json": json.dumps(boxes),
                            "answered_at": int(now),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                finalize(
                    name,
                    index,
                    item["version"],
                    boxes,
                    [1.0] * len(boxes),
                    float(item.get("agreement", 0.0)),
                    by=f"reviewer:{user}",
                    from_status="review",
                ),
            )
        except Conflict:
            continue
        count_done(store, s3, sfn, name, now)
        return {"item_id": review_item, "status": "final", "boxes": len(boxes)}
    raise AnswerError(409, "the image changed under this review too often; send it again")
