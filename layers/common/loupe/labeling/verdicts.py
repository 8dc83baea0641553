"""A verify task's verdicts -> one verdict per image, and the verification output line Ground Truth writes.

The labeling app's verification job (``LabelingService=Loupe``, ``EnableVerification=true``) shows the run's new
boxes to ``LabelersPerImage`` verifiers; each accepts or rejects them with a reason
(:func:`loupe.labeling.answers.validate_verdict`). Their verdicts are consolidated by majority, as Ground Truth
consolidates a label verification (a classification of the label: the answer most workers gave wins): the boxes
are accepted only when more than half of the verifiers accepted them — a tie rejects, so a label half the
verifiers doubt does not enter a dataset version. A rejection's category is the reason most rejecters gave (ties:
the first in Ground Truth's order); the confidence is the share of verifiers who agree with the outcome.

The output line is :func:`loupe.manifests.verification_line` over the labeling output's line (Ground Truth passes
the input line's attributes through), so :func:`loupe.labeling.verification.apply_verification` reads it as it
reads Ground Truth's; a free-text reason travels as ``loupe-reason`` in its metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loupe import manifests
from loupe.labeling.answers import Verdict

# the metadata keys the app adds to Ground Truth's verification line
REASON_KEY = manifests.VERIFICATION_REASON
VERIFIERS_KEY = "loupe-verifiers"


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    category: str
    confidence: float
    comment: str
    verifiers: int

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "category": self.category,
            "confidence": self.confidence,
            "comment": self.comment,
            "verifiers": self.verifiers,
        }


def consolidate(verdicts: Sequence[Verdict], categories: Sequence[str]) -> Outcome:
    """The image's verdict from its verifiers' (at least one)."""
    n = len(verdicts)
    if n == 0:
        raise ValueError("no verdict to consolidate")
    accepts = [v for v in verdicts if v.accepted]
    if 2 * len(accepts) > n:
        return Outcome(True, accepts[0].category, round(len(accepts) / n, 2), "", n)
    rejects = [v for v in verdicts if not v.accepted]
    counts = Counter(v.category for v in rejects)
    order = {c: i for i, c in enumerate(categories)}
    category = min(counts, key=lambda c: (-counts[c], order.get(c, len(order))))
    comments = sorted({v.comment for v in rejects if v.category == category and v.comment})
    return Outcome(False, category, round(len(rejects) / n, 2), "; ".join(comments), n)


def output_line(
    source_ref: str,
    attribute: str,
    categories: list[str],
    outcome: Outcome,
    job_name: str,
    base: dict[str, Any],
) -> dict[str, Any]:
    """The verification output line of an image with a verdict."""
    line = manifests.verification_line(
        source_ref, attribute, categories, outcome.category, job_name, base=base, confidence=outcome.confidence
    )
    meta = line[f"{attribute}-metadata"]
    meta[VERIFIERS_KEY] = outcome.verifiers
    if outcome.comment:
        meta[REASON_KEY] = outcome.comment
    return line
