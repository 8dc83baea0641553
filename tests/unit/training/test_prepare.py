"""prepare: a dataset version -> Ultralytics folders with the version's own splits; bad input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws
from support.hostile_keys import files_under, put_hostile_keys

from loupe.datasets import DatasetError, LabeledImage, sha256_bytes, write_version_dir
from loupe.safe_paths import UnsafeKeyError
from loupe_training.prepare import load_prepared, prepare, runtime_yaml, validate_label_text
from loupe_training.tiny import make_tiny_version


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("tiny")
    return folder, make_tiny_version(folder, count=24, size=64, seed=3)


def test_splits_follow_the_manifest(tiny, tmp_path):
    folder, manifest = tiny
    prepared = prepare(folder, tmp_path / "out")
    for split in ("train", "val", "test"):
        want = {Path(e["file"]).name for e in manifest["images"] if e["split"] == split}
        assert {p.name for p in prepared.split_images(split)} == want
        for entry in (e for e in manifest["images"] if e["split"] == split):
            label = tmp_path / "out" / "labels" / split / (entry["sha256"] + ".txt")
            assert label.read_text() == (folder / entry["label"]).read_text()
    data = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    assert data["names"] == {0: "scratch"} and data["test"] == "images/test"
    assert load_prepared(tmp_path / "out").manifest["digest"] == manifest["digest"]
    absolute = yaml.safe_load(runtime_yaml(prepared, tmp_path / "work").read_text())
    assert Path(absolute["path"]).is_absolute()


def test_metal_tags_layout_is_accepted_in_place(metal_tags_dir, tmp_path):
    prepared = prepare(metal_tags_dir, tmp_path / "out")
    counts = prepared.manifest["counts"]
    assert counts["images"] == sum(len(prepared.split_images(s)) for s in ("train", "val", "test"))
    assert min(counts[s] for s in ("train", "val", "test")) > 0
    # the *.jpg_3 files are JPEGs by content and get a proper extension
    assert all(p.suffix in (".jpg", ".png") for p in prepared.split_images("train"))


def test_s3_prefix_source(tiny, tmp_path):
    folder, manifest = tiny
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        for path in folder.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "art", f"datasets/v1/{path.relative_to(folder).as_posix()}")
        prepared = prepare("s3://art/datasets/v1/", tmp_path / "out", s3=s3)
        assert prepared.manifest["digest"] == manifest["digest"]
        with pytest.raises(DatasetError, match="empty dataset"):
            prepare("s3://art/datasets/v2/", tmp_path / "out2", s3=s3)


def test_empty_folder_and_missing_folder_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty dataset folder"):
        prepare(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(DatasetError, match="no such dataset folder"):
        prepare(tmp_path / "nope", tmp_path / "out")


def test_a_split_without_images_is_refused(tiny, tmp_path):
    folder, manifest = tiny
    images = []
    for entry in manifest["images"]:
        images.append(
            LabeledImage(
                sha256=entry["sha256"],
                width=64,
                height=64,
                boxes=[],
                source_ref="x",
                ext="png",
                split="train",
                path=folder / entry["file"],
            )
        )
    write_version_dir(tmp_path / "v", 2, 1, images)
    with pytest.raises(DatasetError, match=r"split\(s\) val, test have no images"):
        prepare(tmp_path / "v", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 'class cx cy w h'"),
        ("0 0.5 abc 0.2 0.2", "not a number"),
        ("0 0.5 nan 0.2 0.2", "non-finite"),
        ("3 0.5 0.5 0.2 0.2", "unknown class id 3"),
        ("0.5 0.5 0.5 0.2 0.2", "unknown class id 0.5"),
        ("0 0.95 0.5 0.2 0.2", "outside the image"),
        ("0 0.5 0.5 0 0.2", "no area"),
    ],
)
def test_bad_label_lines(line, message):
    with pytest.raises(DatasetError, match=message):
        validate_label_text(f"0 0.5 0.5 0.2 0.2\n{line}\n", 1, "labels/x.txt")


def test_a_bad_label_in_a_version_names_the_file(tiny, tmp_path):
    folder, manifest = tiny
    copy = tmp_path / "v"
    shutil.copytree(folder, copy)
    victim = next(e for e in manifest["images"] if e["boxes"])
    (copy / victim["label"]).write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=rf"{victim['label']}:1: unknown class id 7"):
        prepare(copy, tmp_path / "out")


def test_altered_manifest_is_refused(tiny, tmp_path):
    folder, _ = tiny
    copy = tmp_path / "v"
    shutil.copytree(folder, copy)
    data = json.loads((copy / "dataset.json").read_text())
    data["images"] = data["images"][:-1]
    (copy / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="digest mismatch"):
        prepare(copy, tmp_path / "out")


def test_an_s3_dataset_with_escaping_keys_is_refused_and_writes_nothing(tiny, tmp_path):
    folder, _ = tiny
    work = tmp_path / "work"
    work.mkdir()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="art")
        for path in folder.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "art", f"datasets/v7/{path.relative_to(folder).as_posix()}")
        put_hostile_keys(s3, "art", "datasets/v7/", tmp_path)
        with pytest.raises(UnsafeKeyError, match="key 'datasets/v7/.*' escapes"):
            prepare("s3://art/datasets/v7/", tmp_path / "out", s3=s3, work_dir=work)
    assert files_under(tmp_path) == set()


def test_a_manifest_path_leaving_the_version_folder_is_refused(tiny, tmp_path):
    folder, _ = tiny
    copy = tmp_path / "v"
    shutil.copytree(folder, copy)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for training")
    data = json.loads((copy / "dataset.json").read_text())
    data["images"][0]["file"] = "../secret.png"
    data["digest"] = sha256_bytes(json.dumps(data["images"], sort_keys=True, separators=(",", ":")).encode())
    (copy / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"file key '\.\./secret\.png' escapes"):
        prepare(copy, tmp_path / "out")
    assert not (tmp_path / "out").exists()
