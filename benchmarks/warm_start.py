"""Benchmark: retraining warm-started from the champion vs from scratch, at equal training time, on real photos.

The loop retrains on a grown dataset version and starts from the approved champion's weights (the pipeline's
``WarmStart=champion``). This measures what that buys on the metal-tags photos:

1. champion: Loupe's training from scratch on half of the dataset's train split (``--champion-epochs``);
2. retraining on the whole train split for the same ``--seconds`` (Ultralytics' ``time``: the schedule is planned
   to end inside it), (a) warm-started from the champion with Loupe's fine-tune settings, (b) from scratch.

All three are scored with Ultralytics' validator on the dataset's val + test splits (photos none of them trained
on or picked a checkpoint with). Loupe's own training path (``loupe_training.train``) runs every step.

    .venv/bin/python benchmarks/warm_start.py [--seconds 180] [--champion-epochs 60] [--out DIR]

Prints one JSON object: the three scores, epochs and seconds, and ``advantage`` (warm - scratch, mAP50).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
DATASET = REPO.parent / "shared" / "datasets" / "metal-tags"


def subset(prepared_root: Path, dest: Path, train: list[Path], held_out: list[Path]) -> Path:
    """A prepared-dataset folder (symlinks): ``train`` as its train split, every 8th of those as val (only for the
    epoch logs and picking the checkpoint: never the scored photos), ``held_out`` as test."""
    if dest.exists():
        shutil.rmtree(dest)
    for split, items in (("train", train), ("val", train[::8]), ("test", held_out)):
        (dest / "images" / split).mkdir(parents=True)
        (dest / "labels" / split).mkdir(parents=True)
        for img in items:
            label = img.parent.parent.parent / "labels" / img.parent.name / f"{img.stem}.txt"
            (dest / "images" / split / img.name).symlink_to(img.resolve())
            (dest / "labels" / split / label.name).symlink_to(label.resolve())
    shutil.copyfile(prepared_root / "data.yaml", dest / "data.yaml")
    shutil.copyfile(prepared_root / "dataset.json", dest / "dataset.json")
    return dest


def score(weights: Path, data_root: Path, imgsz: int) -> dict[str, float]:
    from ultralytics import YOLO

    from loupe_training.prepare import load_prepared, runtime_yaml

    data = runtime_yaml(load_prepared(data_root), data_root.parent / f"{data_root.name}-yaml")
    metrics = YOLO(str(weights)).val(data=str(data), split="test", imgsz=imgsz, plots=False, verbose=False)
    return {"map50": round(float(metrics.box.map50), 4), "map50_95": round(float(metrics.box.map), 4)}


def run(name: str, data_root: Path, out: Path, values: dict[str, Any], weights: Path | None) -> dict[str, Any]:
    from loupe_training.train import HyperParams, train

    hps = HyperParams.from_mapping(values)
    started = time.monotonic()
    result = train(data_root, out / name, hps, weights=weights, log=lambda m: print(f"[{name}] {m}", flush=True))
    seconds = round(time.monotonic() - started, 1)
    return {
        "weights": result.weights,
        "epochs_run": result.epochs_run,
        "seconds": seconds,
        **score(result.weights, data_root, hps.imgsz),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="training time of each retraining")
    parser.add_argument("--champion-epochs", type=int, default=60)
    parser.add_argument("--out", default="/tmp/loupe-bench/warm-start")
    args = parser.parse_args()

    from loupe_training.offline import prepare_offline, quiet_settings
    from loupe_training.prepare import prepare

    out = Path(args.out)
    prepare_offline(out / ".yolo-config")
    quiet_settings()
    os.environ["YOLO_OFFLINE"] = "1"
    root = out / "prepared"
    if not (root / "dataset.json").is_file():
        (out / "source").mkdir(parents=True, exist_ok=True)
        prepare(DATASET, root, work_dir=out / "source")
    train_all = sorted((root / "images" / "train").iterdir())
    held_out = sorted((root / "images" / "val").iterdir()) + sorted((root / "images" / "test").iterdir())
    v1 = subset(root, out / "v1", train_all[::2], held_out)
    v2 = subset(root, out / "v2", train_all, held_out)
    load0 = os.getloadavg()[0]
    champion = run("champion", v1, out, {"epochs": args.champion_epochs}, None)
    budget = {"time_budget_s": args.seconds}
    warm = run("warm", v2, out, budget, champion["weights"])
    scratch = run("scratch", v2, out, budget, None)
    report = {
        "champion_v1": {k: v for k, v in champion.items() if k != "weights"},
        "warm_v2": {k: v for k, v in warm.items() if k != "weights"},
        "scratch_v2": {k: v for k, v in scratch.items() if k != "weights"},
        "advantage_map50": round(warm["map50"] - scratch["map50"], 4),
        "seconds_each": args.seconds,
        "train_images": {"v1": len(train_all[::2]), "v2": len(train_all)},
        "held_out_images": len(held_out),
        "cpus": os.cpu_count(),
        "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
