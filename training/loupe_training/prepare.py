"""prepare: a dataset version (local folder, S3 prefix, metal-tags layout) -> an Ultralytics dataset folder.

The output folder is self-contained (it is a SageMaker processing output and a training channel):

    data.yaml            names + relative train/val/test folders (``path`` is set where it is used)
    dataset.json         the version's manifest, copied as is (version, digest, class map)
    images/<split>/<sha256>.<ext>
    labels/<split>/<sha256>.txt

Every label line is checked; anything Ultralytics would silently drop or misread is an error here.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loupe.datasets import SPLITS, DatasetError, materialize, read_version_dir
from loupe.safe_paths import download_prefix


@dataclass
class Prepared:
    root: Path
    manifest: dict[str, Any]

    @property
    def yaml_path(self) -> Path:
        return self.root / "data.yaml"

    @property
    def class_map(self) -> dict[str, str]:
        return dict(self.manifest["class_map"])

    def split_images(self, split: str) -> list[Path]:
        return sorted(p for p in (self.root / "images" / split).iterdir() if p.is_file())


def validate_label_text(text: str, n_classes: int, where: str) -> int:
    """Check YOLO label text (``class cx cy w h`` normalized); returns the number of boxes."""
    boxes = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise DatasetError(f"{where}:{lineno}: expected 'class cx cy w h', got {line.strip()!r}")
        try:
            cls_f = float(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError as exc:
            raise DatasetError(f"{where}:{lineno}: not a number in {line.strip()!r}") from exc
        if not all(math.isfinite(v) for v in (cls_f, cx, cy, w, h)):
            raise DatasetError(f"{where}:{lineno}: non-finite value in {line.strip()!r}")
        if cls_f != int(cls_f) or not 0 <= int(cls_f) < n_classes:
            raise DatasetError(
                f"{where}:{lineno}: unknown class id {parts[0]} (the class map has ids 0..{n_classes - 1})"
            )
        eps = 1e-4
        if w <= 0 or h <= 0:
            raise DatasetError(f"{where}:{lineno}: box with no area: {line.strip()!r}")
        if cx - w / 2 < -eps or cy - h / 2 < -eps or cx + w / 2 > 1 + eps or cy + h / 2 > 1 + eps:
            raise DatasetError(f"{where}:{lineno}: box outside the image (coordinates must be in 0..1)")
        boxes += 1
    return boxes


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def download_s3_prefix(uri: str, dest: Path, s3: Any = None) -> Path:
    """Copy every object under ``s3://bucket/prefix/`` to ``dest`` (keys relative to the prefix).

    A key that would land outside ``dest`` (``..``, an empty segment, an absolute path, a backslash, a symlink)
    refuses the whole download with :class:`loupe.safe_paths.UnsafeKeyError` before anything is written.
    """
    if not uri.startswith("s3://"):
        raise DatasetError(f"not an S3 URI: {uri}")
    bucket, _, prefix = uri[5:].partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    if download_prefix(s3, bucket, prefix, dest) == 0:
        raise DatasetError(f"{uri}: no objects under this prefix (empty dataset)")
    return dest


def resolve_source(source: str | Path, work_dir: Path, s3: Any = None) -> Path:
    """A local dataset version folder for ``source`` (S3 prefix, version folder, or metal-tags folder)."""
    if isinstance(source, str) and source.startswith("s3://"):
        source = download_s3_prefix(source, work_dir / "download", s3=s3)
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source}: no such dataset folder")
    if not any(source.iterdir()):
        raise DatasetError(f"{source}: empty dataset folder")
    if (source / "dataset.json").is_file():
        return source
    return materialize(source, work_dir / "materialized")


def prepare(source: str | Path, out_dir: str | Path, s3: Any = None, work_dir: str | Path | None = None) -> Prepared:
    """Build the Ultralytics dataset folder for a dataset version; raises DatasetError on bad input."""
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="loupe-prepare-", dir=work_dir) as tmp:
        version_dir = resolve_source(source, Path(tmp), s3=s3)
        manifest = read_version_dir(version_dir)
        class_map = manifest.get("class_map") or {}
        try:
            names = {int(k): str(v) for k, v in class_map.items()}
        except ValueError as exc:
            raise DatasetError(f"class map keys must be integers: {class_map}") from exc
        if not names or sorted(names) != list(range(len(names))):
            raise DatasetError(f"class map must map ids 0..n-1 to names, got {class_map}")
        by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        for entry in manifest["images"]:
            split = entry.get("split")
            if split not in by_split:
                raise DatasetError(f"image {entry.get('sha256')}: unknown split {split!r}")
            by_split[split].append(entry)
        empty = [s for s in SPLITS if not by_split[s]]
        if empty:
            raise DatasetError(
                f"dataset v{manifest.get('version')}: split(s) {', '.join(empty)} have no images "
                f"(counts: {', '.join(f'{s}={len(by_split[s])}' for s in SPLITS)}); "
                "add images before training"
            )
        if out.exists():
            shutil.rmtree(out)
        total_boxes = 0
        for split, entries in by_split.items():
            (out / "images" / split).mkdir(parents=True)
            (out / "labels" / split).mkdir(parents=True)
            for entry in entries:
                src_img = version_dir / entry["file"]
                label = (version_dir / entry["label"]).read_text()
                total_boxes += validate_label_text(label, len(names), entry["label"])
                name = Path(entry["file"]).name
                _link_or_copy(src_img, out / "images" / split / name)
                (out / "labels" / split / (Path(name).stem + ".txt")).write_text(label)
        if total_boxes == 0:
            raise DatasetError(f"dataset v{manifest.get('version')}: no boxes at all, nothing to learn")
        shutil.copyfile(version_dir / "dataset.json", out / "dataset.json")
    data = {"path": ".", "train": "images/train", "val": "images/val", "test": "images/test", "names": names}
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return Prepared(root=out, manifest=manifest)


def load_prepared(root: str | Path) -> Prepared:
    """Open a folder written by :func:`prepare` (e.g. a training channel)."""
    root = Path(root)
    if not (root / "data.yaml").is_file() or not (root / "dataset.json").is_file():
        raise DatasetError(f"{root}: not a prepared dataset (data.yaml and dataset.json expected)")
    return Prepared(root=root, manifest=json.loads((root / "dataset.json").read_text()))


def runtime_yaml(prepared: Prepared, work_dir: str | Path) -> Path:
    """data.yaml with an absolute ``path`` (channel folders move between hosts), written to ``work_dir``."""
    data = yaml.safe_load(prepared.yaml_path.read_text())
    data["path"] = str(prepared.root.resolve())
    target = Path(work_dir) / "data.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target
