"""Benchmark: FP32 vs INT8 ONNX in one run: file size, single-image latency, test mAP50.

    .venv/bin/python benchmarks/int8_compare.py --model-dir DIR [--dataset DIR] [--threads 1]
    .venv/bin/python benchmarks/int8_compare.py --model-dir DIR --sweep      # the INT8 recipe choices

``--sweep`` quantizes the model several ways (which ops, which nodes stay FP32, calibration method and size) and
runs benchmarks/edge_inference.py on every photo of the dataset for each: INT8 box agreement with FP32 (IoU 0.5,
conf 0.25) and INT8 speed against Ultralytics' FP32 ONNX predict, per-process CPU clock (robust on a busy machine).

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
    parser.add_argument("--sweep", action="store_true", help="compare INT8 recipes (agreement, speed)")
    args = parser.parse_args()
    if args.sweep:
        return sweep(Path(args.model_dir), Path(args.dataset), args.threads)

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


def sweep(model_dir: Path, dataset: Path, threads: int) -> int:
    import subprocess

    from loupe_training import evaluate as ev
    from loupe_training import export as ex
    from loupe_training.prepare import prepare

    conv_only = ("Conv",)
    first = ["/model.0/"]
    recipes = {
        "conv-only": {"op_types": conv_only, "exclude": []},
        "conv-only, head outputs fp32": {"op_types": conv_only, "exclude": None, "drop_first": True},
        "all ops, head outputs fp32": {"exclude": None, "drop_first": True},
        "all ops, head outputs + first conv fp32 (default)": {"exclude": None},
        "all ops, whole head + first conv fp32": {"exclude": ["/model.22/", *first]},
        "default, Percentile calibration": {"exclude": None, "method": "Percentile"},
        "default, Entropy calibration": {"exclude": None, "method": "Entropy"},
        "default, 3x calibration images": {"exclude": None, "images": 3 * ex.CALIBRATION_IMAGES},
    }
    fp32 = model_dir / "model.onnx"
    imgsz = ev.onnx_input_size(fp32)
    import onnx

    names = [n.name for n in onnx.load(str(fp32), load_external_data=False).graph.node]
    with tempfile.TemporaryDirectory(prefix="loupe-int8-sweep-") as tmp:
        work = Path(tmp)
        prepared = prepare(dataset, work / "prepared")
        for label, r in recipes.items():
            exclude = r.get("exclude")
            if exclude is None:
                exclude = ex.int8_fp32_nodes(names)
                if r.get("drop_first"):
                    exclude = [n for n in exclude if not n.startswith("/model.0/")]
            calib = ex.calibration_set(prepared.split_images("train"), limit=r.get("images", ex.CALIBRATION_IMAGES))
            out = work / "int8.onnx"
            t = time.monotonic()
            ex.quantize_int8(
                fp32,
                out,
                calib,
                imgsz,
                op_types=r.get("op_types", ex.INT8_OPS),
                exclude=exclude,
                method=r.get("method", "MinMax"),
            )
            quant_s = time.monotonic() - t
            cmd = [
                sys.executable,
                str(REPO / "benchmarks" / "edge_inference.py"),
                "--model",
                str(fp32),
                "--int8",
                str(out),
                "--images",
                str(prepared.root / "images"),
                "--rounds",
                "1",
                "--clock",
                "cpu",
                "--threads",
                str(threads),
                "--json",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                json.dumps(
                    {
                        "recipe": label,
                        "int8_box_agreement": res["int8_box_agreement"],
                        "speedup_int8": res["speedup_int8"],
                        "quantize_s": round(quant_s, 1),
                        "calibration_images": len(calib),
                    }
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
