"""Dataset versions: the immutable, versioned training sets that labeling produces and training consumes.

The format is described in docs/DEVELOPING.md ("Dataset versions"). An image's split is a pure function of its
capture when it has one (its origin's ``capture``: crops of one camera capture are near-duplicates, and one of them
in train with another in test would flatter every score), else of its content hash; so an image keeps its split in
every version and test scores stay comparable across versions.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import math
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loupe import aws_errors, safe_paths
from loupe.aws_clients import S3
from loupe.imaging import sniff_format

FORMAT = "loupe-dataset/1"
SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.70, 0.15, 0.15)
DEFAULT_CLASS_MAP = {"0": "scratch"}


class DatasetError(ValueError):
    """A dataset (or a label in it) that cannot be used, with the reason."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_for(sha256: str, ratios: tuple[float, float, float] = DEFAULT_RATIOS) -> str:
    """The split of an image, decided once and forever by its content hash."""
    if len(sha256) < 8:
        raise DatasetError(f"not a SHA-256 hex digest: {sha256!r}")
    bucket = int(sha256[:8], 16) / 0xFFFFFFFF
    if bucket < ratios[0]:
        return "train"
    if bucket < ratios[0] + ratios[1]:
        return "val"
    return "test"


# A capture id: what a camera (or whoever uploads) names one exposure; every crop of it shares the id. It travels as
# S3 user metadata ``x-amz-meta-loupe-capture`` (ingest) and in an image's origin (ledger, dataset.json).
_CAPTURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}$")
# Folders of camera crops name them ``<capture>-cropped-<where>.<ext>`` (the metal-tags photos do: one capture,
# cropped to four tags). A name without the suffix is a capture of its own.
_CROP_NAME = re.compile(r"^(?P<capture>.+?)-cropped(?:[-_][A-Za-z0-9]+)*$")


def valid_capture(value: Any) -> str:
    """``value`` as a capture id, or :class:`DatasetError` with the rule it breaks."""
    text = str(value)
    if not _CAPTURE.match(text):
        raise DatasetError(
            f"capture id {text[:64]!r} is not 1-128 letters, digits or . _ : @ + = - starting with a letter or digit"
        )
    return text


def capture_of_name(name: str) -> str | None:
    """The capture a file of a folder belongs to, by the crop naming convention; None for a name without it."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    found = _CROP_NAME.match(stem)
    if not found:
        return None
    try:
        return valid_capture(found.group("capture"))
    except DatasetError:
        return None


def capture_origin(name: str) -> dict[str, str]:
    """``{"capture": id}`` for an origin when ``name`` follows the crop convention, else ``{}``."""
    capture = capture_of_name(name)
    return {"capture": capture} if capture else {}


def capture_metadata(name: str) -> dict[str, str]:
    """S3 user metadata for an upload of file ``name``: ``loupe-capture`` when its name gives one (ingest reads it)."""
    capture = capture_of_name(name)
    return {"loupe-capture": capture} if capture else {}


def split_of(sha256: str, capture: str | None = None) -> str:
    """The split of an image: its capture's when it has one (all crops of a capture together), else its own."""
    if capture:  # the SHA-256 of the id, as an image's split is the SHA-256 of its bytes
        return split_for(sha256_bytes(valid_capture(capture).encode()))
    return split_for(sha256)


@dataclass(frozen=True)
class Box:
    """A bounding box in pixels, Ground Truth style (left, top, width, height)."""

    class_id: int
    left: float
    top: float
    width: float
    height: float

    def __post_init__(self) -> None:
        # NaN passes every bound check below (comparisons with it are false) and would reach YOLO labels as "nan"
        if not all(math.isfinite(v) for v in (self.left, self.top, self.width, self.height)):
            raise DatasetError(
                f"box coordinates must be finite numbers (NaN and Infinity are refused): "
                f"left={self.left} top={self.top} width={self.width} height={self.height}"
            )

    def validate(self, image_width: int, image_height: int, n_classes: int) -> None:
        if not 0 <= self.class_id < n_classes:
            raise DatasetError(f"unknown class id {self.class_id} (classes: 0..{n_classes - 1})")
        if self.width <= 0 or self.height <= 0:
            raise DatasetError(f"box with no area: {self}")
        tol = 1.0
        if (
            self.left < -tol
            or self.top < -tol
            or self.left + self.width > image_width + tol
            or self.top + self.height > image_height + tol
        ):
            raise DatasetError(f"box {self} outside the {image_width}x{image_height} image")

    def yolo(self, image_width: int, image_height: int) -> str:
        left = max(0.0, self.left)
        top = max(0.0, self.top)
        right = min(float(image_width), self.left + self.width)
        bottom = min(float(image_height), self.top + self.height)
        cx = (left + right) / 2 / image_width
        cy = (top + bottom) / 2 / image_height
        w = (right - left) / image_width
        h = (bottom - top) / image_height
        return f"{self.class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Box:
        try:
            return cls(
                class_id=int(d["class_id"]),
                left=float(d["left"]),
                top=float(d["top"]),
                width=float(d["width"]),
                height=float(d["height"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(Infinity)
            raise DatasetError(f"malformed box {d!r}: {exc}") from exc


@dataclass
class LabeledImage:
    sha256: str
    width: int
    height: int
    boxes: list[Box]
    source_ref: str
    ext: str = "jpg"
    origin: dict[str, Any] = field(default_factory=lambda: {"kind": "upload"})
    split: str = ""
    path: Path | None = None  # a local copy of the bytes, when there is one

    def __post_init__(self) -> None:
        if not self.split:
            self.split = split_of(self.sha256, self.origin.get("capture"))


def _canonical_digest(entries: list[dict[str, Any]]) -> str:
    return sha256_bytes(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode())


def build_manifest(
    version: int,
    parent: int | None,
    images: Iterable[LabeledImage],
    class_map: dict[str, str] | None = None,
) -> dict[str, Any]:
    """dataset.json for a set of labeled images (validated; sorted by hash so the digest is stable)."""
    class_map = dict(class_map or DEFAULT_CLASS_MAP)
    entries = []
    splits: Counter[str] = Counter()
    origins: Counter[str] = Counter()
    boxes = 0
    seen: set[str] = set()
    for img in sorted(images, key=lambda i: i.sha256):
        if img.sha256 in seen:
            continue
        seen.add(img.sha256)
        for box in img.boxes:
            box.validate(img.width, img.height, len(class_map))
        entries.append(
            {
                "sha256": img.sha256,
                "file": f"images/{img.sha256}.{img.ext}",
                "label": f"labels/{img.sha256}.txt",
                "label_sha256": sha256_bytes(label_text(img).encode()),  # the digest covers the labels too
                "split": img.split,
                "width": img.width,
                "height": img.height,
                "boxes": len(img.boxes),
                "source_ref": img.source_ref,
                "origin": img.origin,
            }
        )
        splits[img.split] += 1
        origins[str(img.origin.get("kind", "upload"))] += 1
        boxes += len(img.boxes)
    if not entries:
        raise DatasetError("a dataset version needs at least one labeled image")
    return {
        "format": FORMAT,
        "version": version,
        "parent": parent,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "class_map": class_map,
        "counts": {
            "images": len(entries),
            "boxes": boxes,
            **{s: splits.get(s, 0) for s in SPLITS},
            "by_origin": dict(origins),
        },
        "digest": _canonical_digest(entries),
        "images": entries,
    }


def label_text(img: LabeledImage) -> str:
    return "".join(box.yolo(img.width, img.height) + "\n" for box in img.boxes)


def write_version_dir(
    out_dir: Path,
    version: int,
    parent: int | None,
    images: Iterable[LabeledImage],
    class_map: dict[str, str] | None = None,
    image_bytes: Callable[[LabeledImage], bytes] | None = None,
) -> dict[str, Any]:
    """Write a dataset version folder; image bytes come from ``img.path`` unless ``image_bytes`` is given."""
    images = list(images)
    manifest = build_manifest(version, parent, images, class_map)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    by_hash = {img.sha256: img for img in images}
    for entry in manifest["images"]:
        img = by_hash[entry["sha256"]]
        target = out_dir / entry["file"]
        if image_bytes is not None:
            target.write_bytes(image_bytes(img))
        elif img.path is not None:
            shutil.copyfile(img.path, target)
        else:
            raise DatasetError(f"no bytes for image {img.sha256}")
        (out_dir / entry["label"]).write_text(label_text(img))
    (out_dir / "dataset.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def read_version_dir(path: Path, verify_labels: bool = False) -> dict[str, Any]:
    """Read and check a dataset version folder; raises DatasetError with the reason when it is unusable.

    ``verify_labels`` also checks each label file against its ``label_sha256`` in dataset.json (versions written
    by the labeling workflow carry it; the digest covers it, so no label can change unnoticed).
    """
    path = Path(path)
    manifest_path = path / "dataset.json"
    if not manifest_path.is_file():
        raise DatasetError(f"{path} is not a dataset version (no dataset.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{manifest_path}: not JSON: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{manifest_path}: unknown format {manifest.get('format')!r}")
    images = manifest.get("images") or []
    if not images:
        raise DatasetError(f"{path}: the dataset version has no images")
    if _canonical_digest(images) != manifest.get("digest"):
        raise DatasetError(f"{path}: digest mismatch, dataset.json was altered")
    for entry in images:
        for key in ("file", "label"):
            try:  # a manifest's paths are relative to its folder and never leave it
                member = safe_paths.confined(path, str(entry[key]))
            except safe_paths.UnsafeKeyError as exc:
                raise DatasetError(f"{manifest_path}: {key} {exc}") from exc
            if not member.is_file():
                raise DatasetError(f"{path}: missing {entry[key]}")
        expected = entry.get("label_sha256")
        if verify_labels and expected and sha256_file(path / entry["label"]) != expected:
            raise DatasetError(f"{path}: {entry['label']} was altered (its hash is not the one in dataset.json)")
    return manifest


# --- the ../shared/datasets/metal-tags layout (Feature Store export of Ground Truth labels) --------------------


def parse_annotations(text: str) -> list[Box]:
    """The Feature Store ``annotations`` column: a Python-literal list of dicts (never eval'd)."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        raw = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise DatasetError(f"malformed annotations {text[:80]!r}: {exc}") from exc
    if not isinstance(raw, list):
        raise DatasetError(f"annotations must be a list, got {type(raw).__name__}")
    return [Box.from_dict(item) for item in raw]


@dataclass
class MetalTags:
    labeled: list[LabeledImage]
    unlabeled: list[Path]
    rejected: list[tuple[Path, str]]
    class_map: dict[str, str]


def _row_size(row: dict[str, str], data: bytes) -> tuple[int, int]:
    """The labeled size of a row: its ``image_width``/``image_height`` when they are whole positive numbers, else
    (empty, ``nan`` - Feature Store exports write missing values so) the image's own size read from its header."""
    try:
        width, height = float(row.get("image_width") or "nan"), float(row.get("image_height") or "nan")
    except ValueError as exc:
        raise DatasetError(f"image_width/image_height are not numbers: {exc}") from exc
    if all(math.isfinite(v) and v > 0 and v == int(v) for v in (width, height)):
        return int(width), int(height)
    if any(math.isfinite(v) for v in (width, height)) and not all(math.isfinite(v) for v in (width, height)):
        raise DatasetError(f"only one of image_width/image_height is given ({width}, {height})")
    if any(math.isfinite(v) for v in (width, height)):
        raise DatasetError(f"image size {width}x{height} is not a whole positive number of pixels")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"no image size in labels.csv and none readable from the image: {exc}") from exc


def load_metal_tags(root: Path) -> MetalTags:
    """Read a metal-tags style folder: labels.csv + images/**; formats are sniffed from content, not names."""
    root = Path(root)
    class_map = dict(DEFAULT_CLASS_MAP)
    labels_json = root / "class_labels.json"
    if labels_json.is_file():
        names = [item["label"] for item in json.loads(labels_json.read_text()).get("labels", [])]
        if names:
            class_map = {str(i): name for i, name in enumerate(names)}
    rows: dict[str, dict[str, str]] = {}
    csv_path = root / "labels.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            for line in csv.DictReader(fh):
                rows[line["source_ref"]] = line
    labeled, unlabeled, rejected = [], [], []
    for path in sorted(p for p in (root / "images").rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        fmt = sniff_format(data)
        if fmt is None:
            rejected.append((path, "not a JPEG or PNG by content"))
            continue
        row = rows.get(rel)
        if row is None:
            unlabeled.append(path)
            continue
        if row.get("status", "APPROVED").upper() not in ("APPROVED", ""):
            unlabeled.append(path)
            continue
        try:
            width, height = _row_size(row, data)
            boxes = parse_annotations(row.get("annotations", ""))
        except DatasetError as exc:  # one bad row costs that row (its image is kept as unlabeled), not the import
            rejected.append((path, f"labels.csv row: {exc}"))
            continue
        labeled.append(
            LabeledImage(
                sha256=sha256_bytes(data),
                width=width,
                height=height,
                boxes=boxes,
                source_ref=rel,
                ext=fmt,
                origin={"kind": "import", "labeling_job": row.get("labeling_job", ""), **capture_origin(rel)},
                path=path,
            )
        )
    return MetalTags(labeled=labeled, unlabeled=unlabeled, rejected=rejected, class_map=class_map)


def materialize(source: Path, work_dir: Path | None = None, version: int = 1) -> Path:
    """A dataset version folder for ``source``: returned as is when it already is one, else converted."""
    source = Path(source)
    if (source / "dataset.json").is_file():
        read_version_dir(source)
        return source
    if (source / "labels.csv").is_file():
        tags = load_metal_tags(source)
        out = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="loupe-dataset-"))
        write_version_dir(out, version, None, tags.labeled, tags.class_map)
        return out
    raise DatasetError(f"{source}: neither a dataset version (dataset.json) nor a metal-tags folder (labels.csv)")


def describe(manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]
    return (
        f"v{manifest['version']} (parent {manifest['parent']}): {counts['images']} images, {counts['boxes']} boxes, "
        f"train/val/test {counts['train']}/{counts['val']}/{counts['test']}"
    )


# --- dataset versions in S3 (the labeling state machine writes them) -------------------------------------------


def version_prefix(version: int) -> str:
    return f"datasets/v{int(version)}/"


def write_version_s3(
    s3: S3,
    bucket: str,
    version: int,
    parent: int | None,
    images: Iterable[LabeledImage],
    copy_source: Callable[[LabeledImage], dict[str, str]],
    class_map: dict[str, str] | None = None,
    workers: int = 8,
) -> dict[str, Any]:
    """Write ``s3://bucket/datasets/v<version>/``: image copies (server side), YOLO labels, then dataset.json.

    dataset.json is written last and only if absent (``If-None-Match: *``): its presence marks a complete version
    and a version, once written, is never overwritten.
    """
    images = list(images)
    manifest = build_manifest(version, parent, images, class_map)
    prefix = version_prefix(version)
    by_hash = {img.sha256: img for img in images}

    def write_one(entry: dict[str, Any]) -> None:
        img = by_hash[entry["sha256"]]
        s3.copy_object(Bucket=bucket, Key=prefix + entry["file"], CopySource=copy_source(img))
        s3.put_object(
            Bucket=bucket, Key=prefix + entry["label"], Body=label_text(img).encode(), ContentType="text/plain"
        )

    # server-side copies are latency-bound: a few in flight at once (boto3 clients are thread-safe)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in pool.map(write_one, manifest["images"]):
            pass
    try:
        s3.put_object(
            Bucket=bucket,
            Key=prefix + "dataset.json",
            Body=json.dumps(manifest, indent=1).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except Exception as exc:
        if aws_errors.error_code(exc) in ("PreconditionFailed", "412"):
            raise DatasetError(f"s3://{bucket}/{prefix} already exists; dataset versions are immutable") from exc
        raise
    return manifest


def read_version_s3(s3: S3, bucket: str, version: int) -> dict[str, Any]:
    body = s3.get_object(Bucket=bucket, Key=version_prefix(version) + "dataset.json")["Body"].read()
    manifest = json.loads(body)
    if manifest.get("format") != FORMAT or _canonical_digest(manifest.get("images") or []) != manifest.get("digest"):
        raise DatasetError(f"s3://{bucket}/{version_prefix(version)}dataset.json is not a valid dataset version")
    return manifest
