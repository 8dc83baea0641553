"""Benchmark: local training time to test mAP50 >= 0.5 on the synthetic demo data (loupe_local.demo.synth).

1. from scratch: dataset v1 (phase-1 pictures, seed 0) -> train until val mAP50 >= 0.5 (stop_at_val_map50),
   then score the ONNX export on v1's test split;
2. warm start: dataset v2 = v1 + new phase-1 pictures (seed 1) -> train from v1's best.pt until val mAP50 >= 0.5,
   score on v2's test split.
Targets: <= 6 min from scratch, <= 2 min warm-started (2-core CPU; the machine is shared, see loadavg).

    .venv/bin/python benchmarks/training_synth.py [--count 200] [--extra 100] [--imgsz 320] [--max-epochs 80]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def synth_version(out: Path, parts: list[tuple[int, int]], version: int) -> Path:
    """A dataset version folder from synth pictures: ``parts`` = [(seed, count), ...] (phase 1)."""
    from synth_training import labeled

    from loupe.datasets import write_version_dir
    from loupe_local.demo.synth import generate

    images = []
    for seed, count in parts:
        raw = out / f"synth-s{seed}-n{count}"
        generate(raw, 1, count, seed)
        images += labeled(raw)
    folder = out / f"v{version}"
    write_version_dir(folder, version, version - 1 or None, images)
    return folder


def run(name: str, version_dir: Path, out: Path, hps, weights: Path | None) -> dict:
    from loupe_training.jobs import evaluate_job, prepare_job, train_job

    prepared = prepare_job(version_dir, out / name / "prepared", log=log)
    t = time.monotonic()
    summary = train_job(
        prepared.root, out / name / "model", hps, weights=weights, work_dir=out / name / "work", log=log
    )
    wall = time.monotonic() - t
    res = evaluate_job(out / name / "model", prepared.root, out / name / "evaluation", out / name / "package", log=log)
    reached = next((h for h in summary["history"] if h["val_map50"] >= hps.stop_at_val_map50), None)
    return {
        "dataset": prepared.manifest["counts"],
        "epochs_run": summary["epochs_run"],
        "train_seconds": summary["train_seconds"],
        "train_export_quantize_seconds": round(wall, 1),
        "val_target_reached_at": reached,
        "test_map50": res["result"]["map50"],
        "test_map50_95": res["result"]["map50_95"],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/loupe-bench/synth")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--extra", type=int, default=100)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--target", type=float, default=0.5)
    args = parser.parse_args()

    from loupe_training.train import HyperParams

    out = Path(args.out)
    v1 = synth_version(out, [(0, args.count)], 1)
    v2 = synth_version(out, [(0, args.count), (1, args.extra)], 2)
    hps = HyperParams(epochs=args.max_epochs, imgsz=args.imgsz, stop_at_val_map50=args.target, patience=args.max_epochs)
    report = {"hyperparameters": hps.as_dict(), "cpus": os.cpu_count()}
    report["scratch_v1"] = run("scratch", v1, out, hps, None)
    log(f"from scratch: {json.dumps(report['scratch_v1'])}")
    report["warm_v2"] = run("warm", v2, out, hps, out / "scratch" / "model" / "best.pt")
    log(f"warm start: {json.dumps(report['warm_v2'])}")
    (out / "benchmark.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
