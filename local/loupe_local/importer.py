"""``loupe import DIR``: register an existing labeled set as a dataset version, and queue its unlabeled images.

Formats (``--format auto`` detects them):
- ``metal-tags``: ``labels.csv`` (Feature Store export: Python-literal annotation lists) + ``images/**``;
- ``groundtruth``: a Ground Truth output manifest (``*.manifest``) whose ``source-ref`` names are found under DIR;
- ``yolo``: ``images/**`` + ``labels/**/*.txt`` (``class cx cy w h``), class names from ``classes.txt`` or a
  ``dataset.json`` (a Loupe dataset version folder is a YOLO folder too).

Labeled images that pass the same content checks as ingest are stored under ``imports/<name>/`` in the raw
bucket, recorded in the ledger as ``labeled`` and written as a new dataset version (the same builder the labeling
state machine uses). Everything else (unlabeled images, and files ingest would refuse) is uploaded under
``raw/imports/<name>/`` and so goes through the real ingest: unlabeled images are queued as ``unlabeled``, bad
files are quarantined with their reason. The labels also become answers of the local Ground Truth workforce.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe import manifests, safe_paths
from loupe.datasets import (
    Box,
    DatasetError,
    LabeledImage,
    capture_metadata,
    capture_origin,
    load_metal_tags,
    sha256_bytes,
)
from loupe.imaging import ImageRejected, inspect_image, sniff_format
from loupe.labeling.config import LabelingConfig
from loupe.labeling.dataset import build_dataset
from loupe.ledger import Ledger


@dataclass
class Loaded:
    labeled: list[LabeledImage]
    other: list[Path]  # unlabeled, or not an image: both go through ingest
    class_map: dict[str, str]
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    name: str
    format: str
    version: int | None = None
    dataset_uri: str = ""
    labeled: int = 0
    queued: list[str] = field(default_factory=list)  # raw/ keys sent through ingest
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "format": self.format,
            "version": self.version,
            "dataset_uri": self.dataset_uri,
            "labeled": self.labeled,
            "queued": len(self.queued),
            "problems": self.problems,
        }


def detect_format(root: Path) -> str:
    if (root / "labels.csv").is_file():
        return "metal-tags"
    if root.is_file() and root.suffix == ".manifest" or list(root.glob("*.manifest")):
        return "groundtruth"
    if (root / "labels").is_dir() and (root / "images").is_dir():
        return "yolo"
    raise DatasetError(f"{root}: no labels.csv, *.manifest or images/ + labels/ - not a format loupe can import")


def _image_files(root: Path) -> list[Path]:
    base = root / "images" if (root / "images").is_dir() else root
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))


def load_groundtruth(root: Path, attribute: str | None = None) -> Loaded:
    manifest_files = [root] if root.is_file() else sorted(root.glob("*.manifest"))
    folder = root.parent if root.is_file() else root
    by_name: dict[str, Path] = {}
    for path in _image_files(folder):
        by_name.setdefault(path.name, path)
    labeled, problems, used = [], [], set()
    class_map: dict[str, str] = {}
    for mf in manifest_files:
        lines = manifests.read_lines(mf.read_text())
        attr = attribute or _label_attribute(lines)
        for number, obj in lines:
            try:
                label = manifests.parse_output_line(obj, attr)
            except manifests.ManifestError as exc:
                problems.append(f"{mf.name}:{number}: {exc}")
                continue
            if label.failed:
                problems.append(f"{mf.name}:{number}: {label.source_ref} has no label ({label.failure_reason})")
                continue
            found = by_name.get(label.source_ref.rsplit("/", 1)[-1])
            if found is None:
                problems.append(f"{mf.name}:{number}: image {label.source_ref} not found under {folder}")
                continue
            data = found.read_bytes()
            class_map = class_map or label.class_map
            used.add(found)
            labeled.append(
                LabeledImage(
                    sha256=sha256_bytes(data),
                    width=label.width,
                    height=label.height,
                    boxes=label.boxes,
                    source_ref=found.relative_to(folder).as_posix(),
                    ext=sniff_format(data) or "jpg",
                    origin={"kind": "import", "labeling_job": label.job_name, **capture_origin(found.name)},
                    path=found,
                )
            )
    other = [p for p in _image_files(folder) if p not in used]
    return Loaded(labeled, other, class_map or {"0": "scratch"}, problems)


def _label_attribute(lines: list[tuple[int, dict[str, Any]]]) -> str:
    for _, obj in lines:
        for key, value in obj.items():
            if (
                key.endswith("-metadata")
                and isinstance(value, dict)
                and value.get("type") == manifests.OBJECT_DETECTION
            ):
                return key.removesuffix("-metadata")
    raise DatasetError("no bounding-box label attribute in the manifest (pass --attribute)")


def load_yolo(root: Path) -> Loaded:
    from PIL import Image

    names: list[str] = []
    if (root / "classes.txt").is_file():
        names = [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
    elif (root / "dataset.json").is_file():
        cmap = json.loads((root / "dataset.json").read_text()).get("class_map") or {}
        names = [cmap[str(i)] for i in range(len(cmap))]
    class_map = {str(i): n for i, n in enumerate(names or ["scratch"])}
    labeled, other, problems = [], [], []
    for path in _image_files(root):
        rel = path.relative_to(root / "images")
        label_path = (root / "labels" / rel).with_suffix(".txt")
        data = path.read_bytes()
        fmt = sniff_format(data)
        if fmt is None or not label_path.is_file():
            other.append(path)
            continue
        with Image.open(path) as img:
            width, height = img.size
        boxes: list[Box] = []
        bad = ""
        for number, line in enumerate(label_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                cls, cx, cy, w, h = line.split()
                bw, bh = float(w) * width, float(h) * height
                left, top = float(cx) * width - bw / 2, float(cy) * height - bh / 2
                boxes.append(Box(int(cls), round(left, 2), round(top, 2), round(bw, 2), round(bh, 2)))
            except ValueError as exc:
                bad = f"{label_path}:{number}: not a YOLO line ({exc}); image queued as unlabeled"
                break
        if bad:
            problems.append(bad)
            other.append(path)
            continue
        labeled.append(
            LabeledImage(
                sha256=sha256_bytes(data),
                width=width,
                height=height,
                boxes=boxes,
                source_ref=rel.as_posix(),
                ext=fmt,
                origin={"kind": "import", **capture_origin(path.name)},
                path=path,
            )
        )
    return Loaded(labeled, other, class_map, problems)


def load(root: Path, fmt: str = "auto", attribute: str | None = None) -> tuple[str, Loaded]:
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "metal-tags":
        tags = load_metal_tags(root)
        problems = [f"{path.relative_to(root).as_posix()}: {reason}" for path, reason in tags.rejected]
        return fmt, Loaded(tags.labeled, tags.unlabeled + [p for p, _ in tags.rejected], tags.class_map, problems)
    if fmt == "groundtruth":
        return fmt, load_groundtruth(root, attribute)
    if fmt == "yolo":
        return fmt, load_yolo(root)
    raise DatasetError(f"unknown import format {fmt!r}")


def import_dataset(
    root: Path,
    s3: Any,
    ledger: Ledger,
    raw_bucket: str,
    artifact_bucket: str,
    name: str | None = None,
    fmt: str = "auto",
    attribute: str | None = None,
    workforce_dir: Path | None = None,
    region: str = "us-east-1",
) -> ImportReport:
    root = Path(root)
    name = name or root.name
    # the name is one segment of the S3 keys (imports/<name>/...) and of the workforce file's name
    reason = "a '/' in it" if "/" in name else safe_paths.unsafe_reason(name)
    if reason:
        raise DatasetError(f"import name {name!r} is not one plain path segment ({reason})")
    fmt, loaded = load(root, fmt, attribute)
    report = ImportReport(name=name, format=fmt, problems=list(loaded.problems))
    base = root if root.is_dir() else root.parent
    accepted: list[LabeledImage] = []
    for img in loaded.labeled:
        if img.path is None:  # a folder's loaders always keep the file's path
            raise DatasetError(f"{img.source_ref}: no local file to import")
        path = img.path
        data = path.read_bytes()
        try:
            info = inspect_image(data)
        except ImageRejected as rej:
            report.problems.append(f"{img.source_ref}: {rej.reason}; sent through ingest instead")
            loaded.other.append(path)
            continue
        if info.normalized is not None or (info.width, info.height) != (img.width, img.height):
            report.problems.append(
                f"{img.source_ref}: labels are for {img.width}x{img.height} but the image needs normalising "
                f"({', '.join(info.notes) or f'{info.width}x{info.height}'}); queued as unlabeled"
            )
            loaded.other.append(path)
            continue
        try:
            for box in img.boxes:
                box.validate(img.width, img.height, len(loaded.class_map))
        except DatasetError as exc:
            report.problems.append(f"{img.source_ref}: {exc}; queued as unlabeled")
            loaded.other.append(path)
            continue
        rel = path.relative_to(base).as_posix()
        key = f"imports/{name}/{rel}"
        s3.put_object(Bucket=raw_bucket, Key=key, Body=data)
        uri = f"s3://{raw_bucket}/{key}"
        annotations = [b.__dict__ for b in img.boxes]
        ledger.record_labeled_import(
            img.sha256,
            uri,
            image_uri=uri,
            fmt=info.format,
            size=len(data),
            width=img.width,
            height=img.height,
            annotations=annotations,
            origin={**img.origin, "import": name},
            labeling_job=str(img.origin.get("labeling_job") or f"import/{name}"),
        )
        accepted.append(img)
    if workforce_dir is not None and accepted:
        workforce_dir.mkdir(parents=True, exist_ok=True)
        with open(workforce_dir / f"import-{name}.jsonl", "w") as fh:
            for img in accepted:
                fh.write(json.dumps({"sha256": img.sha256, "annotations": [b.__dict__ for b in img.boxes]}) + "\n")
    if accepted:
        cfg = LabelingConfig(
            region=region,
            raw_bucket=raw_bucket,
            artifact_bucket=artifact_bucket,
            role_arn="",
            class_map=loaded.class_map,
        )
        built = build_dataset(s3, ledger, cfg, new=[img.sha256 for img in accepted])
        report.version, report.dataset_uri = built["version"], built["uri"]
        report.labeled = len(accepted)
    for path in dict.fromkeys(loaded.other):
        key = f"raw/imports/{name}/{path.relative_to(base).as_posix()}"
        # the capture goes with the image (ingest records it), so its crops share one split once labeled
        s3.put_object(Bucket=raw_bucket, Key=key, Body=path.read_bytes(), Metadata=capture_metadata(path.name))
        report.queued.append(key)
    return report


# ---------------------------------------------------------------------------------------------------- CLI


def _cmd(args: argparse.Namespace) -> int:
    import boto3

    from loupe_local import state as state_mod
    from loupe_local.local_auth import RunCredentials

    raw, artifacts, table, workforce, endpoint, region = (
        args.raw_bucket,
        args.artifact_bucket,
        args.ledger_table,
        None,
        None,
        args.region,
    )
    state: dict[str, Any] = {}
    if not (raw and artifacts and table):
        state, state_path = state_mod.load_at(args.state, "or pass --raw-bucket, --artifact-bucket and --ledger-table")
        raw = raw or state_mod.physical(state, "RawBucket")
        artifacts = artifacts or state_mod.physical(state, "ArtifactBucket")
        table = table or state_mod.physical(state, "LedgerTable")
        endpoint, region = state["endpoint"], state.get("region", region)
        workforce = state_path.parent / "workforce"
    creds = RunCredentials.from_state(state) if endpoint else None  # the local AWS refuses any other key
    session = boto3.Session(
        aws_access_key_id=creds.access_key_id if creds else None,
        aws_secret_access_key=creds.secret_access_key if creds else None,
        region_name=region,
    )
    s3 = session.client("s3", endpoint_url=endpoint)
    ledger = Ledger(session.resource("dynamodb", endpoint_url=endpoint).Table(table))
    started = time.monotonic()
    report = import_dataset(
        Path(args.dir),
        s3,
        ledger,
        raw,
        artifacts,
        name=args.name,
        fmt=args.format,
        attribute=args.attribute,
        workforce_dir=workforce,
        region=region,
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(
            f"imported {report.labeled} labeled images from {args.dir} ({report.format}) as dataset "
            f"v{report.version} ({report.dataset_uri}); {len(report.queued)} files sent through ingest "
            f"(unlabeled or refused) in {time.monotonic() - started:.1f}s"
        )
        for problem in report.problems[:50]:
            print(f"  note: {problem}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="register a labeled set (metal-tags, Ground Truth manifest, YOLO) as a dataset version",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", help="the folder (or a Ground Truth .manifest file) to import")
    p.add_argument("--format", default="auto", choices=["auto", "metal-tags", "groundtruth", "yolo"])
    p.add_argument("--name", help="import name (S3 prefix imports/<name>/); default: the folder name")
    p.add_argument("--attribute", help="Ground Truth label attribute name (default: detected)")
    p.add_argument("--state", help="the local AWS's local.json (or its folder); default .loupe/local.json")
    p.add_argument("--raw-bucket", help="raw bucket (cloud); default from the local AWS state")
    p.add_argument("--artifact-bucket", help="artifact bucket (cloud)")
    p.add_argument("--ledger-table", help="ledger table (cloud)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd)
