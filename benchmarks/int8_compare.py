"""Benchmark: FP32 vs INT8 ONNX in one run: file size, single-image latency, test mAP50.

    .venv/bin/python benchmarks/int8_compare.py --model-dir DIR [--dataset DIR] [--threads 1]

DIR holds model.onnx (FP32, as exported by train_job); the INT8 model is re-made here from it (static QDQ, Conv
only, calibrated on the training images of the dataset) so the quantization time is measured too. Latency is the
median of 50 single-image runs with onnxruntime's CPU provider on this (shared, 2-core) machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--dataset", default=str(REPO.parent / "shared" / "datasets" / "metal-tags"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from loupe_training import evaluate as ev
    from loupe_training import export as ex
    from loupe_training.prepare import prepare

    model_dir = Path(args.model_dir)
    fp32 = model_dir / "model.onnx"
    imgsz = ev.onnx_input_size(fp32)
    with tempfile.TemporaryDirectory(prefix="loupe-int8-bench-") as tmp:
        work = Path(tmp)
        prepared = prepare(args.dataset, work / "prepared")
        t = time.monotonic()
        calib = ex.calibration_set(prepared.split_images("train"))
        int8 = ex.quantize_int8(fp32, work / "model_int8.onnx", calib, imgsz)
        quant_s = time.monotonic() - t
        rows = {}
        for name, path in (("fp32", fp32), ("int8", int8)):
            scored = ev.score(path, prepared, "test", work / name)
            rows[name] = {
                "bytes": path.stat().st_size,
                "latency_ms": ev.onnx_latency_ms(path, runs=50, threads=args.threads),
                "test_map50": scored["map50"],
                "test_map50_95": scored["map50_95"],
            }
        report = {
            "model_dir": str(model_dir),
            "imgsz": imgsz,
            "calibration_images": len(calib),
            "quantize_seconds": round(quant_s, 1),
            "int8_kept": ex.keep_int8(rows["fp32"]["test_map50"], rows["int8"]["test_map50"]),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            **rows,
        }
    print(json.dumps(report, indent=1))
    f, i = report["fp32"], report["int8"]
    print(f"{'':6}{'size MB':>9}{'median ms':>11}{'p90 ms':>8}{'mAP50':>8}")
    for name, r in (("FP32", f), ("INT8", i)):
        lat = r["latency_ms"]
        print(f"{name:6}{r['bytes'] / 1e6:9.2f}{lat['median']:11.1f}{lat['p90']:8.1f}{r['test_map50']:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
