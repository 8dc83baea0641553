"""export: ONNX FP32 (static, simplified, pinned opset), an INT8 QDQ variant, the model card and package."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loupe import recipe_values
from loupe_training.offline import prepare_offline, quiet_settings

OPSET = 17
INT8_MAX_MAP50_DROP = 0.01
CALIBRATION_IMAGES = 64
# INT8 recipe, measured with benchmarks/int8_compare.py --sweep on a metal-tags model (197 real photos, 1 ORT thread,
# CPU clock; FP32 box agreement at IoU 0.5 / conf 0.25, speed against Ultralytics' FP32 ONNX predict):
#   Conv only 0.935 / 1.59x · + head's output convs FP32 0.942 / 1.61x · every op below, head outputs FP32 0.947 /
#   1.77x · the same and the first conv FP32 0.949 / 1.91x (chosen) · whole head FP32 0.947 / 1.39x ·
#   Percentile or Entropy calibration, 3x the calibration images, class branch FP32: no better.
# Quantizing the SiLU (Sigmoid, Mul), Add, Concat, pooling and resize ops keeps the tensors in INT8 between convs
# instead of a DequantizeLinear/QuantizeLinear pair around every activation: that, not the convs, is the speed.
INT8_OPS = ("Conv", "Mul", "Sigmoid", "Add", "Concat", "MaxPool", "Resize", "Split")


def int8_fp32_nodes(node_names: Sequence[str]) -> list[str]:
    """Nodes that stay FP32: the first conv (raw pixels) and the Detect head's outputs and box decoding.

    The head is the last ``/model.N/`` layer of an Ultralytics export: its final 1x1 convs (``cvK.I.2``, the box
    distribution and the class logits), the DFL, and every non-conv op directly in it (sigmoid, concat, decode).
    """
    layers = [int(m.group(1)) for n in node_names if (m := re.match(r"^/model\.(\d+)/", n))]
    if not layers:
        return []
    head = f"/model.{max(layers)}/"
    keep = []
    for name in node_names:
        if name.startswith("/model.0/"):
            keep.append(name)
        elif name.startswith(head):
            rest = name[len(head) :]
            if re.match(r"^cv[23]\.\d+/cv[23]\.\d+\.2/", rest) or rest.startswith("dfl/") or "/" not in rest:
                keep.append(name)
    return keep


MODEL_CARD_FORMAT = "loupe-model-card/1"
PACKAGE_NAME = "model.tar.gz"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_onnx(weights: str | Path, out_path: str | Path, imgsz: int, opset: int = OPSET) -> Path:
    """FP32 ONNX with a static 1x3xHxW input, simplified (onnxslim), opset pinned."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loupe-export-") as tmp:
        prepare_offline(Path(tmp) / ".yolo-config")
        from ultralytics import YOLO

        quiet_settings()
        local = Path(tmp) / "model.pt"
        shutil.copyfile(weights, local)
        produced = YOLO(str(local)).export(
            format="onnx",
            imgsz=imgsz,
            opset=opset,
            simplify=True,
            dynamic=False,
            batch=1,
            half=False,
            nms=False,
            device="cpu",
        )
        shutil.move(str(produced), out_path)
    return out_path


def letterbox(path: str | Path, imgsz: int) -> np.ndarray:
    """An image as the model sees it: RGB, aspect-kept resize, grey (114) padding, 1x3xSxS float 0..1."""
    from PIL import Image

    with Image.open(path) as opened:
        im = opened.convert("RGB")
        scale = min(imgsz / im.width, imgsz / im.height)
        w, h = max(1, round(im.width * scale)), max(1, round(im.height * scale))
        resized = im.resize((w, h), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (imgsz, imgsz), (114, 114, 114))
    canvas.paste(resized, ((imgsz - w) // 2, (imgsz - h) // 2))
    arr = np.asarray(canvas, dtype=np.float32) / 255.0
    return arr.transpose(2, 0, 1)[None]


def _copy_metadata(src: Path, dst: Path) -> None:
    """Keep Ultralytics' metadata (names, imgsz, stride) on the quantized model so any backend can read it."""
    import onnx

    source = onnx.load(str(src), load_external_data=False)
    target = onnx.load(str(dst))
    existing = {p.key for p in target.metadata_props}
    for prop in source.metadata_props:
        if prop.key not in existing:
            target.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(target, str(dst))


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration_images: Sequence[str | Path],
    imgsz: int,
    op_types: Sequence[str] = INT8_OPS,
    exclude: Sequence[str] | None = None,
    method: str = "MinMax",
) -> Path:
    """Static INT8 quantization, QDQ format, calibrated on the given (training) images.

    ``op_types``: the operator types quantized; ``exclude``: node names kept in FP32 (substrings of the name;
    default :func:`int8_fp32_nodes`); ``method``: onnxruntime's CalibrationMethod (MinMax, Entropy, Percentile).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration_images:
        raise ValueError("INT8 calibration needs at least one training image")

    class Reader(CalibrationDataReader):
        def __init__(self, images: Iterable[str | Path], name: str) -> None:
            self._it = iter(list(images))
            self._name = name

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._it, None)
            return None if path is None else {self._name: letterbox(path, imgsz)}

    import onnx

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="loupe-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        names = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node]
        excluded = int8_fp32_nodes(names) if exclude is None else [n for n in names if any(p in n for p in exclude)]
        quantize_static(
            str(pre),
            str(out_path),
            Reader(calibration_images, input_name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types),
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # U8S8: the fast path of onnxruntime on x86
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod[method],
        )
    _copy_metadata(Path(fp32_path), out_path)
    return out_path


def calibration_set(train_images: Sequence[Path], limit: int = CALIBRATION_IMAGES) -> list[Path]:
    """A deterministic spread of training images (sorted by content hash = file name)."""
    images = sorted(train_images)
    if len(images) <= limit:
        return images
    step = len(images) / limit
    return [images[int(i * step)] for i in range(limit)]


def keep_int8(fp32_map50: float, int8_map50: float, max_drop: float = INT8_MAX_MAP50_DROP) -> bool:
    return int8_map50 >= fp32_map50 - max_drop


def model_card(
    *,
    manifest: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    imgsz: int,
    artifacts: dict[str, Path],
    code_version: str,
    int8: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": MODEL_CARD_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "version": manifest.get("version"),
            "digest": manifest.get("digest"),
            "counts": manifest.get("counts"),
        },
        "class_map": manifest.get("class_map"),
        "input": {
            "imgsz": imgsz,
            "shape": [1, 3, imgsz, imgsz],
            "layout": "NCHW",
            "color": "RGB",
            "scale": "0..1",
            "letterbox_pad": 114,
        },
        "opset": OPSET,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
        "int8": int8,
        "code_version": code_version,
        "artifacts": {
            name: {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            for name, path in artifacts.items()
        },
        **(extra or {}),
    }


def write_package(out_dir: str | Path, files: Sequence[Path]) -> Path:
    """model.tar.gz with the given files at its root (what the edge model component unarchives)."""
    out = Path(out_dir) / PACKAGE_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:gz") as tar:
        for f in files:
            tar.add(f, arcname=f.name)
    return out


def write_card(path: str | Path, card: dict[str, Any]) -> Path:
    """The model card the package carries. Refused (:class:`loupe.recipe_values.RecipeValueError`, nothing written)
    when a value that reaches the devices' recipe (its ``version``, the artifact digests) is off its whitelist: the
    registered digests will vouch for these bytes, not for what they say."""
    recipe_values.check_card(card)
    path = Path(path)
    path.write_text(json.dumps(card, indent=1, sort_keys=False))
    return path
