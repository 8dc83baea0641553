"""evaluate: score an ONNX model on the **test** split of a prepared dataset.

Scoring uses Ultralytics' validator with its ONNX (onnxruntime) backend, so the numbers are computed exactly
like the validation numbers seen during training, and the same code scores FP32, INT8 and champion models.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from loupe_training.offline import prepare_offline, quiet_settings
from loupe_training.prepare import Prepared, load_prepared, runtime_yaml

METRICS_FORMAT_KEY = "object_detection_metrics"


def onnx_input_size(model_path: str | Path) -> int:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value or 0)


def onnx_latency_ms(model_path: str | Path, runs: int = 20, warmup: int = 3, threads: int = 1) -> dict[str, float]:
    """Single-image latency of the ONNX session on this host (median / p90 / mean, milliseconds)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {inp.name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {
        "median": round(statistics.median(times), 3),
        "p90": round(times[min(len(times) - 1, int(0.9 * len(times)))], 3),
        "mean": round(statistics.fmean(times), 3),
        "threads": threads,
        "runs": runs,
    }


def score(
    model_path: str | Path,
    prepared: Prepared | str | Path,
    split: str = "test",
    work_dir: str | Path | None = None,
    conf: float = 0.001,
    image_stats: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """mAP50, mAP50-95, precision, recall, per-class AP, confusion matrix and PR curve of ``model_path``.

    ``image_stats``, when given, receives each image's matching result (Ultralytics' per-image ``tp``/``conf``/
    ``pred_cls``/``target_cls`` and the file name): what ``spread`` resamples.
    """
    if not isinstance(prepared, Prepared):
        prepared = load_prepared(prepared)
    images = prepared.split_images(split)
    if not images:
        raise ValueError(f"the {split} split of {prepared.root} has no images")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="loupe-eval-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare_offline(work / ".yolo-config")
    from ultralytics import YOLO

    quiet_settings()
    data_yaml = runtime_yaml(prepared, work)
    model = YOLO(str(model_path), task="detect")
    if image_stats is not None:
        model.add_callback("on_val_start", _recorder(image_stats))
    imgsz = onnx_input_size(model_path) if str(model_path).endswith(".onnx") else 320
    metrics = model.val(
        data=str(data_yaml),
        split=split,
        imgsz=imgsz,
        batch=1,
        device="cpu",
        workers=0,
        conf=conf,
        plots=True,
        project=str(work),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    box = metrics.box
    names = {int(k): v for k, v in prepared.class_map.items()}
    per_class: dict[str, dict[str, float | None]] = {}
    for i, cls in enumerate(box.ap_class_index):
        per_class[names.get(int(cls), str(cls))] = {
            "ap50": round(float(box.ap50[i]), 5),
            "ap50_95": round(float(box.ap[i]), 5),
        }
    for name in names.values():  # classes absent from the split still show up, with no AP
        per_class.setdefault(name, {"ap50": None, "ap50_95": None})
    cm = getattr(metrics, "confusion_matrix", None)
    matrix = cm.matrix.tolist() if cm is not None and getattr(cm, "matrix", None) is not None else None
    pr = None
    curves = metrics.curves_results
    if curves:
        px, py = np.asarray(curves[0][0]), np.asarray(curves[0][1])
        step = max(1, len(px) // 100)
        precision = [row[::step].round(4).tolist() for row in py]
        pr = {"recall": px[::step].round(4).tolist(), "precision": precision}
    return {
        "split": split,
        "images": len(images),
        "imgsz": imgsz,
        "map50": round(float(box.map50), 5),
        "map50_95": round(float(box.map), 5),
        "precision": round(float(box.mp), 5),
        "recall": round(float(box.mr), 5),
        "per_class": per_class,
        "confusion_matrix": matrix,
        "confusion_labels": [*names.values(), "background"],
        "pr_curve": pr,
    }


def _recorder(sink: list[dict[str, Any]]) -> Any:
    """on_val_start callback: copy every image's matching result into ``sink`` as the validator records it."""

    def on_val_start(validator: Any) -> None:
        metrics = validator.metrics
        record = metrics.update_stats

        def update_stats(stat: dict[str, Any]) -> None:
            sink.append({k: (v if k == "im_name" else np.array(v, copy=True)) for k, v in stat.items()})
            record(stat)

        metrics.update_stats = update_stats

    return on_val_start


def _label_boxes(label_file: Path, width: int, height: int) -> list[list[float]]:
    boxes = []
    if label_file.is_file():
        for line in label_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                cx, cy, w, h = (float(v) for v in parts[1:])
                boxes.append(
                    [
                        round((cx - w / 2) * width, 1),
                        round((cy - h / 2) * height, 1),
                        round((cx + w / 2) * width, 1),
                        round((cy + h / 2) * height, 1),
                    ]
                )
    return boxes


def pick_samples(prepared: Prepared, split: str = "test", count: int = 6) -> list[Path]:
    """A fixed, varied handful of the split's images: mostly ones with boxes, one or two without (by name)."""
    images = prepared.split_images(split)
    labeled = [p for p in images if (prepared.root / "labels" / split / f"{p.stem}.txt").read_text().strip()]
    clean = [p for p in images if p not in labeled]
    n_clean = min(len(clean), max(1, count // 3))
    return labeled[: count - n_clean] + clean[:n_clean]


def predict_boxes(
    model_path: str | Path, images: list[Path], conf: float, iou: float = 0.7
) -> dict[str, list[dict[str, Any]]]:
    """Boxes (original pixels) and confidences of ``model_path`` on ``images`` at the deployed thresholds."""
    from ultralytics import YOLO

    model = YOLO(str(model_path), task="detect")
    imgsz = onnx_input_size(model_path) if str(model_path).endswith(".onnx") else 320
    found: dict[str, list[dict[str, Any]]] = {}
    for path in images:
        results: Any = model.predict(str(path), imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)
        res = results[0]
        boxes = res.boxes  # a detection model's Results always carry boxes (possibly none)
        found[path.name] = [
            {"box": [round(float(v), 1) for v in xyxy], "conf": round(float(c), 4)}
            for xyxy, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True)
        ]
    return found


def write_samples(
    prepared: Prepared,
    out_dir: Path,
    model_path: Path,
    champion_path: Path | None = None,
    conf: float = 0.25,
    split: str = "test",
    count: int = 6,
) -> list[dict[str, Any]]:
    """Copy a few test images to ``out_dir/samples`` with truth and predicted boxes (details.json's ``samples``)."""
    import shutil

    from PIL import Image

    chosen = pick_samples(prepared, split, count)
    mine = predict_boxes(model_path, chosen, conf)
    theirs = predict_boxes(champion_path, chosen, conf) if champion_path is not None else None
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    samples = []
    for path in chosen:
        with Image.open(path) as im:
            width, height = im.size
        shutil.copyfile(path, out_dir / "samples" / path.name)
        entry: dict[str, Any] = {
            "image": f"samples/{path.name}",
            "width": width,
            "height": height,
            "conf_threshold": conf,
            "truth": _label_boxes(prepared.root / "labels" / split / f"{path.stem}.txt", width, height),
            "predictions": mine[path.name],
        }
        if theirs is not None:
            entry["champion_predictions"] = theirs[path.name]
        samples.append(entry)
    return samples


def model_quality_metrics(result: dict[str, Any], latency: dict[str, float] | None = None) -> dict[str, Any]:
    """Model-quality metrics: ``{"<problem>_metrics": {name: {"value", "standard_deviation"}}}``."""

    def metric(value: float | None, std: float | None = None) -> dict[str, Any]:
        return {"value": value, "standard_deviation": "NaN" if std is None else std}

    spread = (result.get("spread") or {}).get("map50") or {}
    body: dict[str, Any] = {
        "map50": metric(result["map50"], spread.get("std")),
        "map50_95": metric(result["map50_95"]),
        "precision": metric(result["precision"]),
        "recall": metric(result["recall"]),
        "test_images": metric(result["images"]),
    }
    for name, ap in result.get("per_class", {}).items():
        body[f"ap50_{name}"] = metric(ap["ap50"])
    if latency:
        body["onnx_latency_ms_median"] = metric(latency["median"])
        body["onnx_latency_ms_p90"] = metric(latency["p90"])
    return {METRICS_FORMAT_KEY: body}


def plot_evaluation(result: dict[str, Any], out_png: str | Path, title: str = "") -> Path:
    """PR curve + confusion matrix in one PNG (matplotlib Agg, its bundled font: no network)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_pr, ax_cm) = plt.subplots(1, 2, figsize=(10, 4.5))
    pr = result.get("pr_curve")
    if pr:
        for row, name in zip(pr["precision"], result["per_class"], strict=False):
            ax_pr.plot(pr["recall"], row, label=f"{name} AP50={result['per_class'][name]['ap50']}")
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    ax_pr.set_xlim(0, 1)
    ax_pr.set_ylim(0, 1.02)
    ax_pr.set_title(f"PR ({result['split']}, mAP50={result['map50']:.3f})")
    ax_pr.legend(loc="lower left", fontsize=8)
    matrix = result.get("confusion_matrix")
    if matrix:
        arr = np.asarray(matrix)
        ax_cm.imshow(arr, cmap="Blues")
        labels = result["confusion_labels"]
        ax_cm.set_xticks(range(len(labels)), labels)
        ax_cm.set_yticks(range(len(labels)), labels)
        ax_cm.set_xlabel("true")
        ax_cm.set_ylabel("predicted")
        for (r, c), v in np.ndenumerate(arr):
            ax_cm.text(c, r, f"{int(v)}", ha="center", va="center")
        ax_cm.set_title("confusion matrix")
    fig.suptitle(title or "Loupe evaluation")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png


def write_json(path: str | Path, obj: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))
    return path
