"""Benchmark: seconds per training epoch, Loupe's training path vs plain Ultralytics defaults, same device and data.

Issue 12's target for the cloud default: Loupe's epoch within 1.1x of plain Ultralytics' on the same GPU (AMP where
the device supports it, dataloader workers from the host's cores, deterministic kernels only when asked). Both runs
train yolov8n.yaml from scratch on the metal-tags photos (the dataset's own train split) for ``--epochs`` epochs
at ``--imgsz``; the epoch time is the median of the per-epoch times Ultralytics writes to results.csv, leaving out
the first two epochs (warm-up, dataset caching). The runs alternate ``--rounds`` times; each side's best round is
kept (the least disturbed by other load).

    .venv/bin/python benchmarks/gpu_epoch.py [--device 0] [--epochs 12] [--imgsz 640] [--rounds 2] [--out DIR]

Prints one JSON object: epoch seconds of each side, the ratio loupe / plain, the device, its name and the host's
cores. Runs offline (Ultralytics' AMP check would download yolo26n.pt: both sides skip it the same way).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
DATASET = REPO.parent / "shared" / "datasets" / "metal-tags"


def epoch_seconds(results_csv: Path) -> float:
    rows = list(csv.DictReader(results_csv.open()))
    stamps = [float(r["time"]) for r in rows]
    steps = [b - a for a, b in zip([0.0, *stamps], stamps, strict=False)]
    kept = steps[2:] if len(steps) > 3 else steps
    return statistics.median(kept)


def plain(prepared: Any, out: Path, args: argparse.Namespace) -> float:
    from ultralytics import YOLO

    from loupe_training.prepare import runtime_yaml

    data = runtime_yaml(prepared, out / "work")
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data),
        epochs=args.epochs,
        imgsz=args.imgsz,
        device=args.device,
        project=str(out),
        name="run",
        exist_ok=True,
        plots=False,
        verbose=False,
    )
    return epoch_seconds(out / "run" / "results.csv")


def loupe(prepared: Any, out: Path, args: argparse.Namespace) -> float:
    from loupe_training.train import HyperParams, train

    hps = HyperParams.from_mapping({"epochs": args.epochs, "imgsz": args.imgsz, "device": args.device})
    train(prepared.root, out, hps, log=lambda _m: None)
    return epoch_seconds(out / "run" / "results.csv")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="0", help="CUDA device index, or cpu")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="/tmp/loupe-bench/gpu-epoch")
    args = parser.parse_args()

    from loupe_training.offline import prepare_offline, quiet_settings
    from loupe_training.prepare import load_prepared, prepare
    from loupe_training.train import _trust_amp

    out = Path(args.out)
    prepare_offline(out / ".yolo-config")
    quiet_settings()
    os.environ["YOLO_OFFLINE"] = "1"
    _trust_amp(lambda _m: None)  # both sides: no download for the AMP check
    root = out / "prepared"
    if not (root / "dataset.json").is_file():
        (out / "source").mkdir(parents=True, exist_ok=True)
        prepare(DATASET, root, work_dir=out / "source")
    prepared = load_prepared(root)
    best: dict[str, float] = {}
    for r in range(args.rounds):
        for name, run in (("plain", plain), ("loupe", loupe)):
            started = time.monotonic()
            seconds = run(prepared, out / f"{name}-{r}", args)
            print(
                f"[gpu-epoch] round {r + 1} {name}: {seconds:.3f} s/epoch ({time.monotonic() - started:.0f} s run)",
                file=sys.stderr,
                flush=True,
            )
            best[name] = min(best.get(name, float("inf")), seconds)
    import torch

    on_gpu = args.device != "cpu" and torch.cuda.is_available()
    report = {
        "epoch_seconds_plain": round(best["plain"], 3),
        "epoch_seconds_loupe": round(best["loupe"], 3),
        "ratio_loupe_over_plain": round(best["loupe"] / best["plain"], 3),
        "target": "<= 1.1",
        "device": torch.cuda.get_device_name(int(args.device)) if on_gpu else "cpu",
        "host_cpus": os.cpu_count(),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "train_images": len(prepared.split_images("train")),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
