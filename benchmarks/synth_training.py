"""Is the synthetic two-phase task learnable fast enough for ``make demo``?

Generates phase-1 and phase-2 data with ``loupe_local.demo.synth``, trains v1 (YOLOv8n from ``yolov8n.yaml``, no
pretrained weights) on phase 1, scores it on held-out phase-1 and phase-2 test sets, then warm-starts v2
from v1's weights on phase 1 + some phase-2 frames and scores it on the same phase-2 test set.

Training and scoring are the pipeline's own (``loupe_training``): each training set is a dataset version
(``loupe.datasets``, with the benchmark's splits) prepared by ``prepare_job``, trained by ``train`` (validating
every epoch on a held-out val split of the same phase, best checkpoint kept) and scored on its test split by
``evaluate.score`` on the ONNX export.

    .venv/bin/python benchmarks/synth_training.py [--quick] [--json] [--imgsz 256] [--v1-epochs 40] ...

Measured numbers and the recommended demo configuration: the docstring of ``loupe_local/demo/synth.py``
(``DEMO_DEFAULTS``); this script's defaults are that configuration.

The helpers here (``make_splits``, ``labeled``, ``dataset``, ``train``, ``map50``, ``max_confidences``) are also
used by ``benchmarks/active_learning.py`` and ``benchmarks/training_synth.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from loupe.datasets import Box, LabeledImage, write_version_dir
from loupe_local.demo import synth
from loupe_training import evaluate, export
from loupe_training.jobs import prepare_job
from loupe_training.prepare import Prepared
from loupe_training.train import HyperParams
from loupe_training.train import train as train_model

THREADS = 2
Frames = list[tuple[Path, list[str] | None]]  # (a synth folder, its image files to take; None: all)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def make_splits(root: Path, spec: dict[str, tuple[int, int, int, float]], size=synth.DEFAULT_SIZE) -> dict[str, Path]:
    """Generate splits ``{name: (phase, count, seed, carryover)}`` under ``root``; returns their folders."""
    out = {}
    for name, (phase, count, seed, carryover) in spec.items():
        d = root / name
        if not (d / "answers.jsonl").exists() or len(synth.read_answers(d)) != count:
            synth.generate(d, phase, count, seed, size=size, carryover=carryover)
        out[name] = d
    return out


def labeled(folder: Path, files: list[str] | None = None, split: str = "") -> list[LabeledImage]:
    """Synth pictures of ``folder`` (``files``: their ``images/...`` names or stems; None: all) as dataset images.

    ``split`` "" leaves the split to ``loupe.datasets.split_for`` (the content hash), as the loop does.
    """
    wanted = None if files is None else {Path(f).stem for f in files}
    return [
        LabeledImage(
            sha256=a["sha256"],
            width=a["width"],
            height=a["height"],
            boxes=[Box(int(b["class_id"]), b["left"], b["top"], b["width"], b["height"]) for b in a["annotations"]],
            source_ref=f"synth/{folder.name}/{a['file']}",
            ext="jpg",
            path=folder / a["file"],
            split=split,
        )
        for a in synth.read_answers(folder)
        if wanted is None or Path(a["file"]).stem in wanted
    ]


def dataset(root: Path, name: str, train: Frames, val: Frames, test: Frames) -> Prepared:
    """A dataset version with exactly these splits under ``root/name``, prepared as the pipeline's Prepare step."""
    images = [
        img
        for split, frames in (("train", train), ("val", val), ("test", test))
        for folder, files in frames
        for img in labeled(folder, files, split)
    ]
    write_version_dir(root / name / "version", 1, None, images)
    return prepare_job(root / name / "version", root / name / "prepared", log=log)


def train(
    prepared: Prepared,
    out: Path,
    *,
    epochs: int,
    imgsz: int,
    batch: int = 16,
    weights: Path | None = None,
) -> tuple[Path, float]:
    """``loupe_training.train`` (a warm start with ``weights``); returns (best checkpoint, seconds)."""
    hps = HyperParams(epochs=epochs, imgsz=imgsz, batch=batch, patience=epochs, threads=THREADS, device="cpu")
    result = train_model(prepared.root, out, hps, weights=weights, log=log)
    return result.weights, result.seconds


def map50(weights: Path, prepared: Prepared, imgsz: int, workdir: Path) -> float:
    """Test-split mAP50 of ``weights`` (exported to ONNX at ``imgsz``) by the pipeline's scorer."""
    onnx = weights.with_name(f"{weights.stem}-{imgsz}.onnx")
    if not onnx.is_file():
        export.export_onnx(weights, onnx, imgsz)
    return float(evaluate.score(onnx, prepared, "test", work_dir=workdir / "scores")["map50"])


def max_confidences(weights: Path, images_dir: Path, imgsz: int, conf: float = 0.05) -> dict[str, list[float]]:
    """Per image (file stem): confidences of the model's detections above ``conf``."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    out: dict[str, list[float]] = {}
    files = sorted(images_dir.glob("*.jpg"))
    for i in range(0, len(files), 16):
        chunk = [str(f) for f in files[i : i + 16]]
        for f, r in zip(chunk, model.predict(chunk, imgsz=imgsz, conf=conf, device="cpu", verbose=False), strict=True):
            out[Path(f).stem] = [float(c) for c in r.boxes.conf.tolist()]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/loupe-synth-bench")
    p.add_argument("--imgsz", type=int, default=224)
    p.add_argument("--p1-train", type=int, default=200)
    p.add_argument("--p2-frames", type=int, default=100)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--v1-epochs", type=int, default=30)
    p.add_argument("--v2-epochs", type=int, default=10)
    p.add_argument("--replay", type=int, default=60, help="phase-1 frames replayed when training v2")
    p.add_argument("--carryover", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--curve", action="store_true", help="(always on: loupe_training validates every epoch)")
    p.add_argument("--quick", action="store_true", help="tiny run for a smoke test")
    p.add_argument("--json", action="store_true")
    p.add_argument("--v1", help="reuse these v1 weights instead of training")
    a = p.parse_args(argv)
    if a.quick:
        a.p1_train, a.p2_frames, a.test, a.v1_epochs, a.v2_epochs, a.replay = 16, 8, 8, 1, 1, 8
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    val = max(4, a.test // 2)  # held-out frames the training validates on (best checkpoint), never scored
    d = make_splits(
        work / "data",
        {
            "p1-train": (1, a.p1_train, 101, 0.0),
            "p1-val": (1, val, 103, 0.0),
            "p1-test": (1, a.test, 102, 0.0),
            "p2-pool": (2, a.p2_frames, 201, a.carryover),
            "p2-val": (2, val, 203, a.carryover),
            "p2-test": (2, a.test, 202, a.carryover),
        },
    )
    result: dict[str, Any] = {"config": vars(a)}
    replay = [x["file"] for x in synth.read_answers(d["p1-train"])][: a.replay]
    sets = work / "datasets"
    v1_data = dataset(sets, "v1", [(d["p1-train"], None)], [(d["p1-val"], None)], [(d["p1-test"], None)])
    v2_data = dataset(
        sets, "v2", [(d["p1-train"], replay), (d["p2-pool"], None)], [(d["p2-val"], None)], [(d["p2-test"], None)]
    )
    if a.v1:
        v1 = Path(a.v1)
    else:
        v1, secs = train(v1_data, work / "runs" / "v1", epochs=a.v1_epochs, imgsz=a.imgsz, batch=a.batch)
        result["v1_train_seconds"] = round(secs, 1)
    result["v1_p1_map50"] = map50(v1, v1_data, a.imgsz, work)
    result["v1_p2_map50"] = map50(v1, v2_data, a.imgsz, work)
    print(json.dumps(result), file=sys.stderr)
    v2, secs = train(v2_data, work / "runs" / "v2", epochs=a.v2_epochs, imgsz=a.imgsz, batch=a.batch, weights=v1)
    result["v2_train_seconds"] = round(secs, 1)
    result["v2_p2_map50"] = map50(v2, v2_data, a.imgsz, work)
    result["v2_p1_map50"] = map50(v2, v1_data, a.imgsz, work)
    result["gain_p2"] = result["v2_p2_map50"] - result["v1_p2_map50"]
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
