"""``loupe train`` and ``loupe evaluate``: the pipeline's entry points on the command line.

Heavy imports (torch, ultralytics, onnxruntime) happen inside the command functions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loupe.datasets import DatasetError


def _hp(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``loupe train`` and ``loupe evaluate`` to the ``loupe`` CLI."""
    t = subparsers.add_parser(
        "train",
        help="train, export (ONNX FP32 + INT8) and evaluate a model on a dataset version",
        description="prepare -> train -> export -> evaluate on the test split, exactly like the pipeline. "
        "Writes OUT/prepared, OUT/model (best.pt, model.onnx, model_int8.onnx), OUT/evaluation "
        "(evaluation.json, gate.json, evaluation.png, model_card.json) and OUT/package/model.tar.gz.",
    )
    t.add_argument("--dataset", required=True, help="dataset version folder, s3://bucket/datasets/vN/, or metal-tags")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--weights", help="starting weights (.pt, a folder or a model.tar.gz): warm start")
    t.add_argument("--epochs", type=int, help="epochs (default from the hyperparameters)")
    t.add_argument("--imgsz", type=int, help="square input size, multiple of 32")
    t.add_argument("--batch", type=int, help="batch size")
    t.add_argument("--model", help="model yaml (e.g. yolov8n.yaml)")
    t.add_argument("--hp", type=_hp, action="append", default=[], metavar="KEY=VALUE", help="other hyperparameter")
    t.add_argument("--min-map50", type=float, default=None, help="exit 3 when test mAP50 is below this")
    t.set_defaults(func=_train_cmd)

    e = subparsers.add_parser(
        "evaluate",
        help="score an ONNX model on a dataset's test split",
        description="Scores MODEL.onnx on the test split (or --split) of a dataset version / metal-tags folder "
        "with Ultralytics' validator on its onnxruntime backend.",
    )
    e.add_argument("--model", required=True, help="model.onnx (FP32 or INT8)")
    e.add_argument("--dataset", required=True, help="dataset version folder, s3:// prefix, or metal-tags")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--latency", action="store_true", help="also measure single-image ONNX latency")
    e.set_defaults(func=_evaluate_cmd)


def _log(msg: str) -> None:
    print(f"[loupe] {msg}", file=sys.stderr, flush=True)


def _train_cmd(args: argparse.Namespace) -> int:
    from loupe_training.jobs import evaluate_job, prepare_job, train_job
    from loupe_training.train import HyperParams, TrainingError

    values = dict(args.hp)
    for key in ("epochs", "imgsz", "batch", "model"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    out = Path(args.out)
    started = time.monotonic()
    try:
        hps = HyperParams.from_mapping(values)
        prepared = prepare_job(args.dataset, out / "prepared", log=_log)
        weights = None
        if args.weights:
            from loupe_training.jobs import fetch_weights

            weights = fetch_weights(args.weights, out / "weights", log=_log)
        train_job(
            prepared.root,
            out / "model",
            hps,
            weights=weights,
            work_dir=out / "work",
            log=_log,
            progress_file=out / "progress.json",
        )
        res = evaluate_job(out / "model", prepared.root, out / "evaluation", out / "package", log=_log)
    except (DatasetError, TrainingError, ValueError, FileNotFoundError) as exc:
        _log(f"error: {exc}")
        return 2
    gate = res["gate"]
    _log(
        f"done in {time.monotonic() - started:.0f}s: test mAP50={gate['map50']:.4f} "
        f"(90% interval {res['result']['spread']['map50']['ci90']}) mAP50-95={gate['map50_95']:.4f}"
        f", INT8 {'kept' if res['int8']['kept'] else 'dropped'}; package {res['package']}"
    )
    print(
        json.dumps(
            {
                k: gate[k]
                for k in (
                    "map50",
                    "map50_95",
                    "dataset_version",
                    "dataset_digest",
                    "model_sha256",
                    "int8_kept",
                    "diagnosis_text",
                )
            }
            | {"package": str(res["package"])}
        )
    )
    if args.min_map50 is not None and gate["map50"] < args.min_map50:
        _log(
            f"test mAP50 {gate['map50']:.4f} is below --min-map50 {args.min_map50}; training: {gate['diagnosis_text']}"
        )
        return 3
    return 0


def _evaluate_cmd(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not model.is_file():
        _log(f"error: {model}: no such model file")
        return 2
    with tempfile.TemporaryDirectory(prefix="loupe-evaluate-") as tmp:
        try:
            # third-party loggers bind to the stdout of import time: keep stdout for the JSON result alone
            with contextlib.redirect_stdout(sys.stderr):
                from loupe_training import evaluate as ev
                from loupe_training.prepare import prepare

                prepared = prepare(args.dataset, Path(tmp) / "prepared")
                from loupe_training import spread as sp

                stats: list[dict[str, Any]] = []
                result = ev.score(model, prepared, args.split, Path(tmp) / "work", image_stats=stats)
                result["spread"] = sp.bootstrap(stats)
                if args.latency:
                    result["latency_ms"] = ev.onnx_latency_ms(model)
        except (DatasetError, ValueError, FileNotFoundError) as exc:
            _log(f"error: {exc}")
            return 2
    result["model"] = str(model)
    result["dataset_version"] = prepared.manifest.get("version")
    result["dataset_digest"] = prepared.manifest.get("digest")
    if args.json:
        slim = {k: v for k, v in result.items() if k not in ("pr_curve",)}
        print(json.dumps(slim))
    else:
        print(
            f"{model.name} on {args.split} ({result['images']} images): mAP50={result['map50']:.4f} "
            f"mAP50-95={result['map50_95']:.4f} precision={result['precision']:.4f} recall={result['recall']:.4f}"
            f"; mAP50 90% interval {result['spread']['map50']['ci90']} ({result['spread']['bootstrap']} resamples "
            "of these images)"
        )
    return 0
