"""loupe import's readers: Ground Truth output manifests and YOLO folders (the metal-tags reader is tested with
the real data in tests/integration/labeling/test_import.py)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from loupe import manifests
from loupe.datasets import Box, DatasetError
from loupe_local import importer


def jpeg(path, size=(120, 80), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    img = Image.new("RGB", size, (seed, 100, 150))
    img.save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


def test_groundtruth_manifest_folder(tmp_path):
    jpeg(tmp_path / "images" / "a.jpg", seed=1)
    jpeg(tmp_path / "images" / "b.jpg", seed=2)
    jpeg(tmp_path / "images" / "c.jpg", seed=3)  # not in the manifest: unlabeled
    lines = [
        manifests.output_line(
            "s3://src/x/a.jpg", "scratch-boxes", [Box(0, 10, 10, 20, 20)], 120, 80, 3, {"0": "scratch"}, "job-a"
        ),
        manifests.output_line("s3://src/x/b.jpg", "scratch-boxes", [], 120, 80, 3, {"0": "scratch"}, "job-a"),
        manifests.failed_line("s3://src/x/gone.jpg", "scratch-boxes", "ClientError: expired", "job-a"),
    ]
    (tmp_path / "output.manifest").write_text("".join(json.dumps(line) + "\n" for line in lines))
    fmt, loaded = importer.load(tmp_path)
    assert fmt == "groundtruth"
    by_name = {img.path.name: img for img in loaded.labeled}
    assert set(by_name) == {"a.jpg", "b.jpg"}
    assert by_name["a.jpg"].boxes == [Box(0, 10, 10, 20, 20)] and by_name["b.jpg"].boxes == []
    assert by_name["a.jpg"].origin == {"kind": "import", "labeling_job": "job-a"}
    assert [p.name for p in loaded.other] == ["c.jpg"]
    assert len(loaded.problems) == 1 and "expired" in loaded.problems[0]


def test_yolo_folder(tmp_path):
    jpeg(tmp_path / "images" / "train" / "a.jpg", size=(200, 100))
    jpeg(tmp_path / "images" / "train" / "b.jpg")  # no label file: unlabeled
    jpeg(tmp_path / "images" / "train" / "c.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (tmp_path / "labels" / "train" / "c.txt").write_text("0 0.5 oops\n")
    (tmp_path / "classes.txt").write_text("scratch\n")
    fmt, loaded = importer.load(tmp_path)
    assert fmt == "yolo" and loaded.class_map == {"0": "scratch"}
    [img] = loaded.labeled
    assert img.boxes == [Box(0, 80.0, 30.0, 40.0, 40.0)]
    assert img.boxes[0].yolo(200, 100) == "0 0.500000 0.500000 0.200000 0.400000"
    assert sorted(p.name for p in loaded.other) == ["b.jpg", "c.jpg"]
    assert "not a YOLO line" in loaded.problems[0]


def test_unknown_folder_is_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a format loupe can import"):
        importer.load(tmp_path)


class _RecordingS3:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803 - boto3's names
        self.keys.append(Key)


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", "x\\..\\y"])
def test_an_import_name_that_is_not_one_plain_segment_is_refused_before_anything_is_sent(tmp_path, name):
    jpeg(tmp_path / "set" / "images" / "train" / "a.jpg")
    (tmp_path / "set" / "labels" / "train").mkdir(parents=True)
    s3 = _RecordingS3()
    with pytest.raises(DatasetError, match="is not one plain path segment"):
        importer.import_dataset(tmp_path / "set", s3, None, "raw", "art", name=name, workforce_dir=tmp_path / "wf")
    assert s3.keys == []
    assert not (tmp_path / "wf").exists()
