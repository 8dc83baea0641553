"""Is the synthetic two-phase task learnable fast enough for ``make demo``?

Generates phase-1 and phase-2 data with ``loupe_local.synth``, trains v1 (YOLOv8n from ``yolov8n.yaml``, no
pretrained weights) on phase 1, scores it on held-out phase-1 and phase-2 test sets, then warm-starts v2
from v1's weights on phase 1 + some phase-2 frames and scores it on the same phase-2 test set.

    .venv/bin/python benchmarks/synth_training.py [--quick] [--json] [--imgsz 256] [--v1-epochs 40] ...

Measured numbers and the recommended demo configuration: the docstring of ``loupe_local/synth.py``
(``DEMO_DEFAULTS``); this script's defaults are that configuration.

The helpers here (``setup_ultralytics``, ``make_splits``, ``train``, ``map50``, ``max_confidences``) are
also used by ``benchmarks/active_learning.py``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from loupe_local import synth

THREADS = 2


def setup_ultralytics(workdir: Path) -> None:
    """Ultralytics offline: own config dir with a local font, no downloads, 2 torch threads."""
    cfg = workdir / "yolo-config"
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(cfg))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    font_dir = Path(os.environ["YOLO_CONFIG_DIR"])
    if not (font_dir / "Arial.ttf").exists():
        for cand in (
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
        ):
            if Path(cand).exists():
                shutil.copy(cand, font_dir / "Arial.ttf")
                break
    import torch

    torch.set_num_threads(THREADS)


def make_splits(root: Path, spec: dict[str, tuple[int, int, int, float]], size=synth.DEFAULT_SIZE) -> dict[str, Path]:
    """Generate splits ``{name: (phase, count, seed, carryover)}`` under ``root``; returns their folders."""
    out = {}
    for name, (phase, count, seed, carryover) in spec.items():
        d = root / name
        if not (d / "answers.jsonl").exists() or len(synth.read_answers(d)) != count:
            synth.generate(d, phase, count, seed, size=size, carryover=carryover)
        out[name] = d
    return out


def subset(root: Path, name: str, sources: list[tuple[Path, list[str]]]) -> Path:
    """A folder ``root/name`` with ``images/`` and ``labels/`` symlinked from chosen files of other splits."""
    d = root / name
    if d.exists():
        shutil.rmtree(d)
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir(parents=True)
    for src, files in sources:
        for f in files:
            stem = Path(f).stem
            (d / "images" / f"{stem}.jpg").symlink_to((src / "images" / f"{stem}.jpg").resolve())
            (d / "labels" / f"{stem}.txt").symlink_to((src / "labels" / f"{stem}.txt").resolve())
    return d


def train(
    data_yaml: Path,
    model: str | Path,
    *,
    epochs: int,
    imgsz: int,
    project: Path,
    name: str,
    batch: int = 16,
    warm: bool = False,
    **overrides: Any,
) -> tuple[Path, float]:
    """Train and return (weights of the last epoch, seconds)."""
    from ultralytics import YOLO

    args: dict[str, Any] = dict(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        workers=0,
        device="cpu",
        project=str(project),
        name=name,
        exist_ok=True,
        plots=False,
        val=False,
        amp=False,
        verbose=False,
        seed=0,
        deterministic=False,
        close_mosaic=max(1, epochs // 4),
    )
    if warm:
        # fine-tuning: a fixed, small AdamW learning rate and no warmup. With optimizer="auto" Ultralytics
        # restarts at the from-scratch peak rate (0.002) and warms up for at least 100 iterations with a bias lr
        # starting at 0.1; on a small fine-tuning set that covers every step and wrecks what v1 knew.
        args.update(optimizer="AdamW", lr0=0.001, warmup_epochs=0)
    args.update(overrides)
    t0 = time.monotonic()
    YOLO(str(model)).train(**args)
    seconds = time.monotonic() - t0
    return project / name / "weights" / "last.pt", seconds


def map50(weights: Path, images_dir: Path, imgsz: int, workdir: Path) -> float:
    """mAP50 of ``weights`` on a folder of images (labels in the sibling ``labels/``)."""
    from ultralytics import YOLO

    y = synth.write_dataset_yaml(workdir / f"eval-{images_dir.parent.name}.yaml", [images_dir], [images_dir])
    m = YOLO(str(weights)).val(
        data=str(y),
        imgsz=imgsz,
        batch=16,
        workers=0,
        device="cpu",
        plots=False,
        verbose=False,
        project=str(workdir / "val"),
        name="v",
        exist_ok=True,
    )
    return float(m.box.map50)


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
    p.add_argument("--curve", action="store_true", help="validate every epoch (mAP50 per epoch in results.csv)")
    p.add_argument("--quick", action="store_true", help="tiny run for a smoke test")
    p.add_argument("--json", action="store_true")
    p.add_argument("--v1", help="reuse these v1 weights instead of training")
    a = p.parse_args(argv)
    if a.quick:
        a.p1_train, a.p2_frames, a.test, a.v1_epochs, a.v2_epochs, a.replay = 16, 8, 8, 1, 1, 8
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    setup_ultralytics(work)
    d = make_splits(
        work / "data",
        {
            "p1-train": (1, a.p1_train, 101, 0.0),
            "p1-test": (1, a.test, 102, 0.0),
            "p2-pool": (2, a.p2_frames, 201, a.carryover),
            "p2-test": (2, a.test, 202, a.carryover),
        },
    )
    result: dict[str, Any] = {"config": vars(a)}
    y1 = synth.write_dataset_yaml(work / "v1.yaml", [d["p1-train"] / "images"], [d["p1-test"] / "images"])
    if a.v1:
        v1 = Path(a.v1)
    else:
        v1, secs = train(
            y1,
            "yolov8n.yaml",
            epochs=a.v1_epochs,
            imgsz=a.imgsz,
            project=work / "runs",
            name="v1",
            batch=a.batch,
            val=a.curve,
        )
        result["v1_train_seconds"] = round(secs, 1)
    result["v1_p1_map50"] = map50(v1, d["p1-test"] / "images", a.imgsz, work)
    result["v1_p2_map50"] = map50(v1, d["p2-test"] / "images", a.imgsz, work)
    print(json.dumps(result), file=sys.stderr)
    replay = [x["file"] for x in synth.read_answers(d["p1-train"])][: a.replay]
    pool = [x["file"] for x in synth.read_answers(d["p2-pool"])]
    mix = subset(work / "data", "v2-train", [(d["p1-train"], replay), (d["p2-pool"], pool)])
    y2 = synth.write_dataset_yaml(work / "v2.yaml", [mix / "images"], [d["p2-test"] / "images"])
    v2, secs = train(
        y2, v1, epochs=a.v2_epochs, imgsz=a.imgsz, project=work / "runs", name="v2", warm=True, batch=a.batch
    )
    result["v2_train_seconds"] = round(secs, 1)
    result["v2_p2_map50"] = map50(v2, d["p2-test"] / "images", a.imgsz, work)
    result["v2_p1_map50"] = map50(v2, d["p1-test"] / "images", a.imgsz, work)
    result["gain_p2"] = result["v2_p2_map50"] - result["v1_p2_map50"]
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
