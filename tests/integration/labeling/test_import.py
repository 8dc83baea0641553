"""`loupe import ../shared/datasets/metal-tags` against the local AWS: one dataset version holding all its labels;
its unlabeled images (odd extensions included) go through the real ingest and are queued as unlabeled."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json

import pytest
from support.waiting import wait_for

from loupe.datasets import parse_annotations

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def imported(env, metal_tags_dir):
    return run_import(env, metal_tags_dir)


def run_import(env, folder):
    from loupe_local.cli import main

    env.rt.write_state()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["import", str(folder), "--state", str(env.rt.state_dir), "--name", "metal-tags", "--json"])
    assert rc == 0
    # one JSON line is the report (Lambda metrics printed by concurrent ingests may surround it)
    return next(json.loads(line) for line in out.getvalue().splitlines() if line.startswith('{"name"'))


def test_import_gives_a_version_with_every_label(env, metal_tags_dir, imported):
    with open(metal_tags_dir / "labels.csv", newline="") as fh:
        rows = {row["source_ref"]: row for row in csv.DictReader(fh)}
    assert imported["labeled"] == len(rows) == 193
    version = imported["version"]
    prefix = f"datasets/v{version}/"
    manifest = json.loads(env.s3.get_object(Bucket=env.artifacts, Key=prefix + "dataset.json")["Body"].read())
    entries = {e["sha256"]: e for e in manifest["images"]}
    for ref, row in rows.items():
        sha = hashlib.sha256((metal_tags_dir / ref).read_bytes()).hexdigest()
        entry = entries[sha]
        assert entry["boxes"] == len(parse_annotations(row["annotations"]))
        label = env.s3.get_object(Bucket=env.artifacts, Key=prefix + entry["label"])["Body"].read().decode()
        assert len(label.splitlines()) == entry["boxes"]
        ledger_entry = env.ledger.get(sha)
        assert ledger_entry["status"] == "labeled"
        assert ledger_entry["labeling_job"] == row["labeling_job"]
    assert manifest["class_map"] == {"0": "scratch"}


def test_unlabeled_images_are_queued_through_ingest(env, metal_tags_dir, imported):
    labeled_refs = set()
    with open(metal_tags_dir / "labels.csv", newline="") as fh:
        labeled_refs = {row["source_ref"] for row in csv.DictReader(fh)}
    unlabeled = [
        p
        for p in sorted((metal_tags_dir / "images").rglob("*"))
        if p.is_file() and p.relative_to(metal_tags_dir).as_posix() not in labeled_refs
    ]
    assert len(unlabeled) == imported["queued"] == 10
    assert any(p.suffix.startswith(".jpg_") for p in unlabeled)
    for path in unlabeled:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        key = f"raw/imports/metal-tags/{path.relative_to(metal_tags_dir).as_posix()}"

        def queued(sha=sha, key=key):
            entry = env.ledger.get(sha)
            return entry if entry and f"s3://{env.raw}/{key}" in entry["source_keys"] else None

        entry = wait_for(queued, what=f"{path.name} in the ledger")
        assert entry["status"] == "unlabeled" and entry["format"] == "jpg"


def test_imported_labels_become_workforce_answers(env, metal_tags_dir, imported):
    answers = env.rt.state_dir / "workforce" / "import-metal-tags.jsonl"
    lines = [json.loads(line) for line in answers.read_text().splitlines()]
    assert len(lines) == 193 and all(set(a) == {"sha256", "annotations"} for a in lines)


def test_importing_again_adds_nothing_new(env, metal_tags_dir, imported):
    before = env.ledger.count("labeled")
    again = run_import(env, metal_tags_dir)
    assert again["labeled"] == 193
    assert again["version"] == imported["version"]  # the same set again: no new dataset version
    assert env.ledger.count("labeled") == before


def test_crops_of_one_capture_share_a_split_through_import_and_ingest(env, metal_tags_dir, imported):
    """Imported labels carry their capture into dataset.json; the queued unlabeled crops carry it through the real
    ingest (``loupe-capture`` metadata) into the ledger, so once labeled they join their capture's split."""
    from loupe.datasets import capture_of_name, split_of

    prefix = f"datasets/v{imported['version']}/"
    manifest = json.loads(env.s3.get_object(Bucket=env.artifacts, Key=prefix + "dataset.json")["Body"].read())
    by_capture: dict[str, set[str]] = {}
    for entry in manifest["images"]:
        capture = entry["origin"].get("capture")
        assert capture == capture_of_name(entry["source_ref"]), entry["source_ref"]
        if capture is not None:  # the session's other labeled images (other tests') have none
            by_capture.setdefault(capture, set()).add(entry["split"])
    assert len(by_capture) > 40 and all(len(splits) == 1 for splits in by_capture.values())
    queued = [p for p in sorted((metal_tags_dir / "images").rglob("*")) if p.is_file() and capture_of_name(p.name)]
    unlabeled = [
        p for p in queued if env.ledger.get(hashlib.sha256(p.read_bytes()).hexdigest())["status"] == "unlabeled"
    ]
    assert unlabeled
    for path in unlabeled:
        entry = env.ledger.get(hashlib.sha256(path.read_bytes()).hexdigest())
        assert entry["origin"]["capture"] == capture_of_name(path.name), path.name
        sibling_splits = by_capture.get(capture_of_name(path.name))
        if sibling_splits:  # its labeled siblings' split is the one it will get
            assert sibling_splits == {split_of(entry["sha256"], entry["origin"]["capture"])}
