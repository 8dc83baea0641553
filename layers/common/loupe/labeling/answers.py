"""A labeler's (or reviewer's) answer to one image of a Loupe labeling job, validated before anything is stored.

The body of ``POST /labeling/tasks/{assignmentId}`` (a ``label`` task) and ``POST /review/{itemId}``::

    {"boxes": [{"label": "scratch", "left": 12, "top": 30, "width": 40, "height": 18}, ...]}

An empty list says "no defect on this image". A ``verify`` task (the labeling run's verification step) is answered
with a verdict on the boxes it shows, never with boxes (:func:`validate_verdict`)::

    {"verdict": "accept"}
    {"verdict": "reject", "reason": "Incorrect label - missed object"}   # or the verifier's own words

Every refusal is an :class:`AnswerError` with the HTTP status the
route answers and a message that names the box and the rule; a refused answer changes nothing, so the labeler can
correct it and send it again on the same assignment.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from loupe.datasets import Box

# An answer is a few dozen boxes of five fields: 16 KiB holds 100 boxes with room to spare, far under the HTTP API's
# 10 MB payload quota, so a client cannot make the function parse (and DynamoDB store) megabytes per image.
MAX_BODY_BYTES = 16 * 1024
# the most boxes one answer may hold (a metal tag with more than 50 separate scratches is rejected, not labeled)
MAX_BOXES = 50
# a box narrower or lower than this, in image pixels, is a stray click rather than a defect
MIN_BOX_PIXELS = 2.0
# a decline's or a reject's reason, as the person typed it
MAX_REASON_CHARS = 200
VERDICTS = ("accept", "reject")
_VERDICT_SHAPE = '{"verdict": "accept"} or {"verdict": "reject", "reason": "<why>"}'


class AnswerError(ValueError):
    """A refused answer or assignment: ``status`` is the HTTP status of the route's answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Answer:
    boxes: tuple[Box, ...]

    def as_json(self, class_map: Mapping[str, str]) -> list[dict[str, Any]]:
        return [box_json(b, class_map) for b in self.boxes]


def box_json(box: Box, class_map: Mapping[str, str]) -> dict[str, Any]:
    return {
        "label": class_map.get(str(box.class_id), str(box.class_id)),
        "left": box.left,
        "top": box.top,
        "width": box.width,
        "height": box.height,
    }


def boxes_from_json(raw: list[dict[str, Any]], class_map: Mapping[str, str]) -> list[Box]:
    """Boxes stored by :func:`box_json` (already validated) back to :class:`Box`."""
    ids = {name: int(i) for i, name in class_map.items()}
    return [
        Box(ids[str(b["label"])], float(b["left"]), float(b["top"]), float(b["width"]), float(b["height"])) for b in raw
    ]


def parse_body(raw: str | bytes | None) -> Any:
    """The request body as JSON; 413 over :data:`MAX_BODY_BYTES`, 400 when it is not JSON."""
    data = raw.encode() if isinstance(raw, str) else (raw or b"")
    if len(data) > MAX_BODY_BYTES:
        raise AnswerError(413, f"the answer is {len(data)} bytes; at most {MAX_BODY_BYTES} are accepted")
    try:
        return json.loads(data or b"null")
    except ValueError:
        raise AnswerError(
            400, 'the body must be JSON: {"boxes": [{"label", "left", "top", "width", "height"}]}'
        ) from None


def _number(box: Mapping[str, Any], key: str, where: str) -> float:
    value = box.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerError(400, f"{where}: {key} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise AnswerError(400, f"{where}: {key} must be a finite number (NaN and Infinity are refused)")
    return float(value)


def validate(body: Any, width: int, height: int, class_map: Mapping[str, str], max_boxes: int = MAX_BOXES) -> Answer:
    """Check an answer against its image (``width`` x ``height`` pixels) and the job's labels."""
    if isinstance(body, dict) and "verdict" in body:
        raise AnswerError(400, 'this is a labeling task: answer {"boxes": [...]}; a verdict answers a verify task')
    if not isinstance(body, dict) or set(body) != {"boxes"} or not isinstance(body["boxes"], list):
        raise AnswerError(400, 'the body must be {"boxes": [...]} and nothing else (an empty list: no defect)')
    raw_boxes = body["boxes"]
    if len(raw_boxes) > max_boxes:
        raise AnswerError(400, f"{len(raw_boxes)} boxes; an answer holds at most {max_boxes}")
    ids = {name: int(i) for i, name in class_map.items()}
    boxes = []
    for n, raw in enumerate(raw_boxes, start=1):
        where = f"box {n}"
        if not isinstance(raw, dict) or set(raw) != {"label", "left", "top", "width", "height"}:
            raise AnswerError(400, f"{where}: needs exactly label, left, top, width and height")
        if raw["label"] not in ids:
            raise AnswerError(400, f"{where}: label {raw['label']!r} is not one of this job's ({', '.join(ids)})")
        left, top = _number(raw, "left", where), _number(raw, "top", where)
        w, h = _number(raw, "width", where), _number(raw, "height", where)
        if w < MIN_BOX_PIXELS or h < MIN_BOX_PIXELS:
            raise AnswerError(
                400, f"{where}: {w:g}x{h:g} px is empty; a box is at least {MIN_BOX_PIXELS:g}x{MIN_BOX_PIXELS:g} px"
            )
        if left < 0 or top < 0 or left + w > width or top + h > height:
            raise AnswerError(
                400,
                f"{where}: left={left:g} top={top:g} width={w:g} height={h:g} leaves the {width}x{height} image",
            )
        boxes.append(Box(ids[raw["label"]], left, top, w, h))
    return Answer(tuple(boxes))


@dataclass(frozen=True)
class Verdict:
    """One verifier's verdict on the boxes of one image. ``category`` is the verification output's class name
    (Ground Truth's categories, :data:`loupe.labeling.config.APP_VERIFICATION_CATEGORIES`); ``comment`` is the
    verifier's own words when their reason was none of the listed ones."""

    accepted: bool
    category: str
    comment: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "category": self.category, "comment": self.comment}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Verdict:
        return cls(bool(raw["accepted"]), str(raw["category"]), str(raw.get("comment") or ""))


def validate_verdict(body: Any, correct: str, reasons: Sequence[str], other: str) -> Verdict:
    """Check a verify task's answer: accept (no reason), or reject with a reason that is one of ``reasons`` (its
    category) or the verifier's own words (category ``other``, the words as ``comment``)."""
    if isinstance(body, dict) and "boxes" in body:
        raise AnswerError(400, f"this is a verify task: boxes are not changed here; answer {_VERDICT_SHAPE}")
    if not isinstance(body, dict) or "verdict" not in body or not set(body) <= {"verdict", "reason"}:
        raise AnswerError(400, f"the body must be {_VERDICT_SHAPE} and nothing else")
    verdict, reason = body["verdict"], body.get("reason")
    if verdict not in VERDICTS:
        raise AnswerError(400, f'verdict must be "accept" or "reject", not {verdict!r}')
    if verdict == "accept":
        if reason not in (None, ""):
            raise AnswerError(400, "an accept takes no reason; to refuse the boxes, answer reject with the reason")
        return Verdict(True, correct)
    if not isinstance(reason, str) or not " ".join(reason.split()):
        listed = "; ".join(reasons)
        raise AnswerError(400, f"a reject needs a reason: one of ({listed}) or your own words")
    reason = " ".join(reason.split())
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise AnswerError(400, f"the reason must be at most {MAX_REASON_CHARS} printable characters")
    if reason in reasons:
        return Verdict(False, reason)
    return Verdict(False, other, reason)
