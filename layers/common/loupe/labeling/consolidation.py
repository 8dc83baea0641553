"""Several labelers' boxes for one image -> one label, an agreement score, and whether a reviewer must decide.

Ground Truth's bounding-box consolidation "finds the most similar boxes from different workers based on the
Jaccard index, or intersection over union, of the boxes and averages them" (SageMaker Developer Guide, "Annotation
consolidation", sms-annotation-consolidation.html). This module follows that idea with its own, simpler rules:

- Matching: boxes of the same class from different labelers are grouped into objects, greedily by descending IoU,
  at most one box per labeler in an object, and only when the IoU with the object's first box is at least
  :data:`IOU_MATCH` = 0.5. 0.5 is the PASCAL VOC / mAP@50 criterion the training gate already scores the model with
  (a box the model must hit with IoU 0.5 to count is the same box a labeler must hit to agree); at 0.7 two careful
  people drawing the same thin scratch differ by a few pixels and "disagree".
- The label: each object's box is the mean of its boxes; its confidence is the share of labelers that drew it
  times the mean IoU of their boxes with the mean box.
- Agreement per image (0..1): the mean of the objects' confidences; an image where nobody drew a box has
  agreement 1 (everybody agrees there is no defect).
- Disagreement, which sends the image to the ``reviewers`` group: any object not drawn by every labeler (a missing
  or an extra box, or a box of another class), or an agreement below the job's ``min_agreement``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from loupe.datasets import Box

IOU_MATCH = 0.5
# below this agreement an image goes to review even when every object was matched (loose boxes)
DEFAULT_MIN_AGREEMENT = 0.7


def iou(a: Box, b: Box) -> float:
    left, top = max(a.left, b.left), max(a.top, b.top)
    right = min(a.left + a.width, b.left + b.width)
    bottom = min(a.top + a.height, b.top + b.height)
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Object:
    class_id: int
    members: dict[int, Box] = field(default_factory=dict)  # labeler index -> box

    def mean(self) -> Box:
        boxes = list(self.members.values())
        n = len(boxes)
        return Box(
            self.class_id,
            sum(b.left for b in boxes) / n,
            sum(b.top for b in boxes) / n,
            sum(b.width for b in boxes) / n,
            sum(b.height for b in boxes) / n,
        )


@dataclass(frozen=True)
class Consolidated:
    boxes: tuple[Box, ...]
    confidences: tuple[float, ...]
    agreement: float
    needs_review: bool
    reason: str
    labelers: int


def _group(answers: Sequence[Sequence[Box]]) -> list[_Object]:
    objects: list[_Object] = []
    for who, boxes in enumerate(answers):
        # every (box, object) pair of this labeler that may match, best first; a box and an object are used once
        pairs = sorted(
            (
                (iou(box, obj.members[min(obj.members)]), i, j)
                for i, box in enumerate(boxes)
                for j, obj in enumerate(objects)
                if obj.class_id == box.class_id and who not in obj.members
            ),
            reverse=True,
        )
        used_boxes: set[int] = set()
        used_objects: set[int] = set()
        for score, i, j in pairs:
            if score < IOU_MATCH or i in used_boxes or j in used_objects:
                continue
            objects[j].members[who] = boxes[i]
            used_boxes.add(i)
            used_objects.add(j)
        for i, box in enumerate(boxes):
            if i not in used_boxes:
                objects.append(_Object(box.class_id, {who: box}))
    return objects


def consolidate(answers: Sequence[Sequence[Box]], min_agreement: float = DEFAULT_MIN_AGREEMENT) -> Consolidated:
    """Consolidate the answers of ``len(answers)`` labelers (each a list of boxes) of one image."""
    n = len(answers)
    if n == 0:
        raise ValueError("no answer to consolidate")
    objects = _group(answers)
    boxes, confidences = [], []
    partial = 0
    for obj in objects:
        mean = obj.mean()
        closeness = sum(iou(b, mean) for b in obj.members.values()) / len(obj.members)
        boxes.append(mean)
        confidences.append(round(len(obj.members) / n * closeness, 4))
        partial += len(obj.members) < n
    agreement = round(sum(confidences) / len(confidences), 4) if confidences else 1.0
    if partial:
        reason = f"{partial} of {len(objects)} boxes were not drawn by every labeler"
    elif agreement < min_agreement:
        reason = f"agreement {agreement:.2f} is below {min_agreement:.2f}"
    else:
        reason = ""
    return Consolidated(tuple(boxes), tuple(confidences), agreement, bool(reason), reason, n)
