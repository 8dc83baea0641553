"""Ground Truth manifest converters on real-format output lines (written from the documented format), and the
metal-tags labels.csv (Feature Store export) converted to YOLO."""

from __future__ import annotations

import csv
import json

import pytest

from loupe import manifests
from loupe.datasets import Box, label_text, load_metal_tags, parse_annotations
from loupe.labeling import features

# A bounding-box job's output line, in the documented shape (the label attribute is the job's
# LabelAttributeName; "<attr>-metadata" holds objects' confidences, class-map, type, human-annotated, ...).
OUTPUT_LINE = {
    "source-ref": "s3://loupe-raw/raw/line-3/tag-0042.jpg",
    "loupe-sha256": "ab" * 32,
    "scratches": {
        "image_size": [{"width": 450, "height": 300, "depth": 3}],
        "annotations": [
            {"class_id": 0, "left": 81, "top": 123, "width": 82, "height": 97},
            {"class_id": 0, "left": 286, "top": 79, "width": 52, "height": 82},
        ],
    },
    "scratches-metadata": {
        "objects": [{"confidence": 0.93}, {"confidence": 0.88}],
        "class-map": {"0": "scratch"},
        "type": "groundtruth/object-detection",
        "human-annotated": "yes",
        "creation-date": "2026-11-21T22:18:13.527256",
        "job-name": "labeling-job/loupe-20261121t221800-1a2b3c4d-9f8e7d6c",
    },
}

NO_DEFECT_LINE = {
    "source-ref": "s3://loupe-raw/raw/line-3/tag-0043.jpg",
    "scratches": {"image_size": [{"width": 450, "height": 300, "depth": 3}], "annotations": []},
    "scratches-metadata": {
        "objects": [],
        "class-map": {"0": "scratch"},
        "type": "groundtruth/object-detection",
        "human-annotated": "yes",
        "creation-date": "2026-11-21T22:18:14.000001",
        "job-name": "labeling-job/loupe-x",
    },
}

FAILED_LINE = {
    "source-ref": "s3://loupe-raw/raw/line-3/tag-0044.jpg",
    "scratches-metadata": {
        "failure-reason": "ClientError: The task expired before a worker completed it",
        "job-name": "labeling-job/loupe-x",
    },
}


def test_output_line_with_boxes():
    label = manifests.parse_output_line(OUTPUT_LINE, "scratches")
    assert not label.failed
    assert label.sha256 == "ab" * 32
    assert (label.width, label.height, label.depth) == (450, 300, 3)
    assert label.boxes == [Box(0, 81, 123, 82, 97), Box(0, 286, 79, 52, 82)]
    assert label.confidences == [0.93, 0.88]
    assert label.class_map == {"0": "scratch"}
    assert label.job_name == "loupe-20261121t221800-1a2b3c4d-9f8e7d6c"
    # to YOLO: centre and size normalised by the image size
    assert Box(0, 81, 123, 82, 97).yolo(450, 300) == "0 0.271111 0.571667 0.182222 0.323333"


def test_output_line_with_no_defect_is_a_label():
    label = manifests.parse_output_line(NO_DEFECT_LINE, "scratches")
    assert not label.failed and label.boxes == [] and label.sha256 is None


def test_failed_object_carries_its_reason():
    label = manifests.parse_output_line(FAILED_LINE, "scratches")
    assert label.failed and "expired" in label.failure_reason


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d.pop("scratches-metadata"), "no scratches-metadata"),
        (lambda d: d.pop("scratches"), "no scratches label"),
        (
            lambda d: d["scratches"]["annotations"].append(
                {"class_id": 0, "left": 440, "top": 10, "width": 50, "height": 5}
            ),
            "outside",
        ),
        (
            lambda d: d["scratches"]["annotations"].append(
                {"class_id": 3, "left": 1, "top": 1, "width": 5, "height": 5}
            ),
            "unknown class",
        ),
        (lambda d: d["scratches"]["annotations"].append({"class_id": 0, "left": 1}), "malformed box"),
        (lambda d: d["scratches-metadata"].update(type="groundtruth/image-classification"), "not object detection"),
    ],
)
def test_bad_lines_are_refused_with_a_reason(mutate, words):
    line = json.loads(json.dumps(OUTPUT_LINE))
    mutate(line)
    with pytest.raises(manifests.ManifestError, match=words):
        manifests.parse_output_line(line, "scratches")


def test_manifest_keeps_bad_lines_as_failures_never_drops_them():
    text = "\n".join(json.dumps(x) for x in (OUTPUT_LINE, NO_DEFECT_LINE, FAILED_LINE)) + "\n"
    broken = dict(OUTPUT_LINE, **{"source-ref": "s3://b/raw/x.jpg"})
    broken["scratches"] = {"image_size": [], "annotations": []}
    labels, problems = manifests.parse_output_manifest(text + json.dumps(broken) + "\n\n", "scratches")
    assert [lb.failed for lb in labels] == [False, False, True, True]
    assert len(problems) == 1 and "line 4" in problems[0]
    with pytest.raises(manifests.ManifestError, match="line 2: not JSON"):
        manifests.read_lines(json.dumps(OUTPUT_LINE) + "\n{not json\n")


def test_writer_and_reader_agree():
    boxes = [Box(0, 10, 20, 30.5, 40)]
    line = manifests.output_line(
        "s3://b/k.jpg", "attr", boxes, 128, 96, 3, {"0": "scratch"}, "job-1", [0.9], extra={"loupe-sha256": "cd" * 32}
    )
    assert line["attr-metadata"]["job-name"] == "labeling-job/job-1"
    assert line["attr-metadata"]["type"] == "groundtruth/object-detection"
    label = manifests.parse_output_line(json.loads(json.dumps(line)), "attr")
    assert label.boxes == boxes and label.sha256 == "cd" * 32
    failed = manifests.parse_output_line(manifests.failed_line("s3://b/k.jpg", "attr", "no worker", "job-1"), "attr")
    assert failed.failed and failed.failure_reason == "no worker"


def test_verification_lines():
    categories = [
        "Label correct",
        "Incorrect label - missed object",
        "Incorrect label - bounding box not accurate enough",
    ]
    ok = manifests.verification_line("s3://b/k.jpg", "verify", categories, "Label correct", "v1", base=OUTPUT_LINE)
    assert ok["verify"] == 0 and ok["verify-metadata"]["type"] == "groundtruth/label-verification"
    verdict = manifests.parse_verification_line(ok, "verify")
    assert verdict.accepted and verdict.sha256 == "ab" * 32
    bad = manifests.verification_line("s3://b/k.jpg", "verify", categories, categories[1], "v1")
    assert not manifests.parse_verification_line(bad, "verify").accepted


def test_category_config_round_trip():
    config = manifests.category_config({"0": "scratch", "1": "dent"})
    assert config["labels"] == [{"label": "scratch"}, {"label": "dent"}]
    assert manifests.class_map_from_config(config) == {"0": "scratch", "1": "dent"}


def test_feature_record_matches_the_feature_group():
    record = features.feature_record(
        "s3://b/k.jpg",
        "ab" * 32,
        450,
        300,
        3,
        [{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}],
        1763766000.5,
        "labeling-job/x",
        "APPROVED",
        7,
    )
    values = features.record_dict(record)
    assert set(values) == {
        "source_ref",
        "image_sha256",
        "image_width",
        "image_height",
        "image_depth",
        "annotations",
        "event_time",
        "labeling_job",
        "status",
        "dataset_version",
    }
    assert parse_annotations(values["annotations"]) == [Box(0, 1, 2, 3, 4)]  # readable like labels.csv
    assert values["event_time"] == "1763766000.500" and values["dataset_version"] == "7"


def test_labels_csv_rows_convert_to_yolo(metal_tags_dir):
    with open(metal_tags_dir / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    for row in rows:
        boxes = parse_annotations(row["annotations"])
        width, height = int(row["image_width"]), int(row["image_height"])
        for box in boxes:
            box.validate(width, height, 1)
            cls, cx, cy, w, h = box.yolo(width, height).split()
            assert cls == "0" and all(0 <= float(v) <= 1 for v in (cx, cy, w, h))
    first = parse_annotations(rows[0]["annotations"])
    assert first[0] == Box(0, 81, 123, 82, 97)  # {'class_id': 0, 'top': 123, 'left': 81, 'height': 97, 'width': 82}


def test_metal_tags_loads_every_labeled_row_and_the_unlabeled_rest(metal_tags_dir):
    tags = load_metal_tags(metal_tags_dir)
    with open(metal_tags_dir / "labels.csv", newline="") as fh:
        approved = [r for r in csv.DictReader(fh) if r["status"] == "APPROVED"]
    assert len(tags.labeled) == len(approved)
    assert {img.source_ref for img in tags.labeled} == {r["source_ref"] for r in approved}
    assert any(p.suffix.startswith(".jpg_") for p in tags.unlabeled)  # odd extensions, sniffed as JPEG
    by_ref = {img.source_ref: img for img in tags.labeled}
    row = approved[0]
    assert label_text(by_ref[row["source_ref"]]).count("\n") == len(parse_annotations(row["annotations"]))


def test_malformed_annotations_are_refused():
    with pytest.raises(ValueError, match="malformed annotations"):
        parse_annotations("[{'class_id': 0, 'top': 1,")
    with pytest.raises(ValueError, match="must be a list"):
        parse_annotations("{'class_id': 0}")


def _tags_folder(root, rows: list[tuple[str, str, str, str]]):
    """A metal-tags folder of 60x40 JPEGs, one per row (name, image_width, image_height, annotations)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    lines = ["source_ref,image_width,image_height,image_depth,annotations,event_time,labeling_job,status"]
    for name, width, height, boxes in rows:
        Image.new("RGB", (60, 40), (120, 120, 120)).save(root / "images" / name, format="JPEG")
        lines.append(f'images/{name},{width},{height},3,"{boxes}",1657199072.0,labeling-job/x,APPROVED')
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_a_missing_image_size_is_read_from_the_image_and_a_bad_row_costs_only_that_row(tmp_path):
    box = "[{'class_id': 0, 'top': 5, 'left': 10, 'height': 20, 'width': 30}]"
    root = _tags_folder(
        tmp_path / "tags",
        [
            ("ok.jpg", "60", "40", box),
            ("nan.jpg", "nan", "nan", box),  # Feature Store exports write missing values as nan
            ("empty.jpg", "", "", box),
            ("half.jpg", "60", "nan", box),
            ("garbled.jpg", "60", "40", "[{'class_id': 0, 'top': oops}]"),
            ("infinite.jpg", "60", "40", "[{'class_id': 0, 'top': 5, 'left': float('inf')}]"),
        ],
    )
    tags = load_metal_tags(root)
    sizes = {img.source_ref: (img.width, img.height) for img in tags.labeled}
    assert sizes == {"images/ok.jpg": (60, 40), "images/nan.jpg": (60, 40), "images/empty.jpg": (60, 40)}
    reasons = {path.name: reason for path, reason in tags.rejected}
    assert set(reasons) == {"half.jpg", "garbled.jpg", "infinite.jpg"}
    assert "only one of image_width/image_height" in reasons["half.jpg"]
    assert "malformed annotations" in reasons["garbled.jpg"]
    assert all(reason.startswith("labels.csv row: ") for reason in reasons.values())
