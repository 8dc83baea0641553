"""A verify task's answer (``POST /labeling/tasks/{id}`` on a task of kind ``verify``): accept, or reject with a
reason from Ground Truth's verification categories or in the verifier's own words; anything else is a 400 that
names the shape. And the verdicts of several verifiers consolidated by majority."""

from __future__ import annotations

import pytest

from loupe import manifests
from loupe.labeling import verdicts
from loupe.labeling.answers import AnswerError, Verdict, validate, validate_verdict
from loupe.labeling.config import (
    APP_VERIFICATION_CATEGORIES,
    REJECT_REASONS,
    VERIFICATION_CATEGORIES,
    VERIFICATION_OTHER,
)

MISSED, LOOSE = REJECT_REASONS


def parse(body: object) -> Verdict:
    return validate_verdict(body, manifests.VERIFICATION_CORRECT, REJECT_REASONS, VERIFICATION_OTHER)


def test_the_reject_reasons_are_ground_truths_verification_categories() -> None:
    assert [manifests.VERIFICATION_CORRECT, *REJECT_REASONS] == VERIFICATION_CATEGORIES
    assert [*VERIFICATION_CATEGORIES, VERIFICATION_OTHER] == APP_VERIFICATION_CATEGORIES


def test_accept_and_the_listed_reasons() -> None:
    assert parse({"verdict": "accept"}) == Verdict(True, "Label correct")
    assert parse({"verdict": "accept", "reason": ""}) == Verdict(True, "Label correct")
    assert parse({"verdict": "reject", "reason": MISSED}) == Verdict(False, MISSED)
    assert parse({"verdict": "reject", "reason": f"  {LOOSE} "}) == Verdict(False, LOOSE)


def test_a_reason_of_ones_own_is_kept_under_the_other_category() -> None:
    got = parse({"verdict": "reject", "reason": "the box  covers\tthe  label, not the scratch"})
    assert got == Verdict(False, VERIFICATION_OTHER, "the box covers the label, not the scratch")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, '{"verdict": "accept"}'),
        ([], '{"verdict": "accept"}'),
        ({}, '{"verdict": "accept"}'),
        ({"verdict": "maybe"}, "not 'maybe'"),
        ({"verdict": True}, "not True"),
        ({"verdict": "reject"}, "a reject needs a reason"),
        ({"verdict": "reject", "reason": "   "}, "a reject needs a reason"),
        ({"verdict": "reject", "reason": 3}, "a reject needs a reason"),
        ({"verdict": "reject", "reason": "x" * 201}, "at most 200 printable"),
        ({"verdict": "reject", "reason": "bad\x00byte"}, "printable"),
        ({"verdict": "accept", "reason": MISSED}, "an accept takes no reason"),
        ({"verdict": "accept", "note": "x"}, "and nothing else"),
        ({"boxes": []}, "this is a verify task: boxes are not changed here"),
        ({"verdict": "accept", "boxes": []}, "this is a verify task"),
    ],
)
def test_a_wrong_shape_is_a_400_that_names_it(body: object, says: str) -> None:
    with pytest.raises(AnswerError) as info:
        parse(body)
    assert info.value.status == 400 and says in info.value.message, info.value.message


def test_a_verdict_on_a_labeling_task_is_a_400_that_names_the_task() -> None:
    with pytest.raises(AnswerError) as info:
        validate({"verdict": "accept"}, 100, 100, {"0": "scratch"})
    assert info.value.status == 400 and "this is a labeling task" in info.value.message


def test_the_majority_decides_and_a_tie_rejects() -> None:
    yes, missed, other = Verdict(True, "Label correct"), Verdict(False, MISSED), Verdict(False, VERIFICATION_OTHER, "x")
    cats = APP_VERIFICATION_CATEGORIES
    assert verdicts.consolidate([yes], cats) == verdicts.Outcome(True, "Label correct", 1.0, "", 1)
    assert verdicts.consolidate([yes, yes, missed], cats) == verdicts.Outcome(True, "Label correct", 0.67, "", 3)
    assert verdicts.consolidate([yes, missed], cats) == verdicts.Outcome(False, MISSED, 0.5, "", 2)
    # the reason most rejecters gave; a tie goes to the first in Ground Truth's order, own words kept
    assert verdicts.consolidate([other, missed], cats).category == MISSED
    tied = verdicts.consolidate([other, Verdict(False, VERIFICATION_OTHER, "y"), missed], cats)
    assert (tied.category, tied.comment, tied.confidence) == (VERIFICATION_OTHER, "x; y", 1.0)
    with pytest.raises(ValueError):
        verdicts.consolidate([], cats)


def test_the_output_line_reads_back_as_ground_truths_with_the_reason() -> None:
    base = {"source-ref": "s3://raw/a.jpg", manifests.SHA_ATTRIBUTE: "ab" * 32, "loupe-boxes": {"annotations": []}}
    outcome = verdicts.Outcome(False, VERIFICATION_OTHER, 1.0, "glare, not a scratch", 1)
    line = verdicts.output_line("s3://raw/a.jpg", "loupe-verify", APP_VERIFICATION_CATEGORIES, outcome, "job", base)
    assert line["loupe-verify"] == APP_VERIFICATION_CATEGORIES.index(VERIFICATION_OTHER)
    assert line["loupe-boxes"] == base["loupe-boxes"]  # the labeling line's attributes pass through
    meta = line["loupe-verify-metadata"]
    assert meta["type"] == manifests.LABEL_VERIFICATION and meta["loupe-verifiers"] == 1
    found = manifests.parse_verification_line(line, "loupe-verify")
    assert (found.sha256, found.accepted, found.category) == ("ab" * 32, False, VERIFICATION_OTHER)
    assert found.comment == "glare, not a scratch"
