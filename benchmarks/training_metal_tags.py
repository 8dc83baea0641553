"""Benchmark: `loupe train` with the default configuration on ../shared/datasets/metal-tags.

Measures wall time of prepare / train / export / evaluate, test mAP50 and mAP50-95 (the test split, never seen in
training), FP32 vs INT8 (size, latency, test mAP50), and copies model.onnx / model_int8.onnx to
/tmp/loupe-models/metal-tags/ for the edge benchmarks. Target: test mAP50 >= 0.7 in <= 10 min on the 2-core CPU.

    .venv/bin/python benchmarks/training_metal_tags.py [--epochs N] [--imgsz S] [--out DIR]

The machine is shared: the load average at start and end is printed with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "metal-tags"


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/loupe-bench/metal-tags")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--imgsz", type=int)
    parser.add_argument("--copy-to", default="/tmp/loupe-models/metal-tags")
    args = parser.parse_args()

    from loupe_training.jobs import evaluate_job, prepare_job, train_job
    from loupe_training.train import HyperParams

    values = {k: v for k, v in (("epochs", args.epochs), ("imgsz", args.imgsz)) if v is not None}
    hps = HyperParams.from_mapping(values)
    out = Path(args.out)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    prepared = prepare_job(DATASET, out / "prepared", log=log)
    t1 = time.monotonic()
    summary = train_job(
        prepared.root, out / "model", hps, work_dir=out / "work", log=log, progress_file=out / "progress.json"
    )
    t2 = time.monotonic()
    res = evaluate_job(out / "model", prepared.root, out / "evaluation", out / "package", log=log)
    t3 = time.monotonic()
    load1 = os.getloadavg()
    copy_to = Path(args.copy_to)
    copy_to.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model_int8.onnx"):
        shutil.copyfile(out / "model" / name, copy_to / name)
    shutil.copyfile(out / "evaluation" / "model_card.json", copy_to / "model_card.json")
    fp32, int8 = res["result"], res["int8"]
    report = {
        "dataset": str(DATASET),
        "hyperparameters": hps.as_dict(),
        "epochs_run": summary["epochs_run"],
        "seconds": {
            "prepare": round(t1 - t0, 1),
            "train_export_quantize": round(t2 - t1, 1),
            "train_only": summary["train_seconds"],
            "evaluate": round(t3 - t2, 1),
            "total": round(t3 - t0, 1),
        },
        "test": {
            "images": fp32["images"],
            "map50": fp32["map50"],
            "map50_95": fp32["map50_95"],
            "precision": fp32["precision"],
            "recall": fp32["recall"],
        },
        "fp32": {
            "bytes": (out / "model" / "model.onnx").stat().st_size,
            "latency_ms": fp32["latency_ms"],
            "map50": fp32["map50"],
        },
        "int8": {
            "bytes": int8.get("bytes"),
            "latency_ms": int8.get("latency_ms"),
            "map50": int8.get("map50"),
            "kept": int8["kept"],
            "reason": int8["reason"],
        },
        "loadavg_start": [round(x, 2) for x in load0],
        "loadavg_end": [round(x, 2) for x in load1],
        "cpus": os.cpu_count(),
        "models_copied_to": str(copy_to),
    }
    (out / "benchmark.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    target = fp32["map50"] >= 0.7 and (t3 - t0) <= 600
    log(f"target (test mAP50 >= 0.7 in <= 600 s): {'met' if target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
