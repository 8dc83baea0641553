"""Test models and images for the edge component, built on the fly (never downloaded).

``write_model`` writes a model folder like the model component's artifacts: a tiny ONNX graph with a YOLOv8-shaped
output ``[1, 4 + nc, N]`` and a model card with real SHA-256 digests.  The graph's output is a constant table of
candidate boxes, except that the class-0 score of candidate 0 is ``base + mean(input)``: a frame's brightness sets
that detection's confidence, so tests choose confident, uncertain or empty frames by choosing pixel values.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def build_graph(table: np.ndarray, size: int, bright_row: int | None = 4) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rows, n = table.shape
    mask = np.zeros((1, rows, n), dtype=np.float32)
    if bright_row is not None:
        mask[0, bright_row, 0] = 1.0
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["mask", "m"], ["scaled"]),
        helper.make_node("Add", ["table", "scaled"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "loupe_test_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, n])],
        initializer=[
            numpy_helper.from_array(table[None].astype(np.float32), "table"),
            numpy_helper.from_array(mask, "mask"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def default_table(size: int, nc: int = 1, base: float = 0.0) -> np.ndarray:
    """Candidates (centre-x, centre-y, w, h, scores...) in model-input pixels.

    0: the brightness-driven box; 1: a fixed confident box (0.9); 2: overlaps 1 heavily (0.8, suppressed by NMS);
    3: a low-score box (0.1, under every threshold).
    """
    s = size
    cands = [
        (0.30 * s, 0.30 * s, 0.20 * s, 0.20 * s, base),
        (0.70 * s, 0.70 * s, 0.20 * s, 0.20 * s, 0.9),
        (0.71 * s, 0.70 * s, 0.20 * s, 0.20 * s, 0.8),
        (0.50 * s, 0.20 * s, 0.10 * s, 0.10 * s, 0.1),
    ]
    table = np.zeros((4 + nc, len(cands)), dtype=np.float32)
    for i, (cx, cy, w, h, score) in enumerate(cands):
        table[:4, i] = (cx, cy, w, h)
        table[4, i] = score
    return table


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_model(
    folder: Path,
    version: str,
    size: int = 64,
    nc: int = 1,
    table: np.ndarray | None = None,
    int8: bool = False,
    corrupt: bool = False,
    wrong_digest: bool = False,
) -> Path:
    """A model folder: model.onnx (+ model_int8.onnx), model_card.json with digests."""
    folder.mkdir(parents=True, exist_ok=True)
    if table is None:
        table = default_table(size, nc)
    blob = build_graph(table, size)
    if corrupt:
        blob = blob[: len(blob) // 3] + b"\x00garbage"
    (folder / "model.onnx").write_bytes(blob)
    digests = {"model.onnx": sha256(blob)}
    if int8:
        (folder / "model_int8.onnx").write_bytes(blob)
        digests["model_int8.onnx"] = sha256(blob)
    if wrong_digest:
        digests["model.onnx"] = "0" * 64
    card = {
        "version": version,
        "class_map": {str(i): ("scratch" if i == 0 else f"class{i}") for i in range(nc)},
        "imgsz": size,
        "sha256": digests,
    }
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def write_pointer(pointer: Path, folder: Path, version: str) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps({"dir": str(folder), "version": version}))
    tmp.replace(pointer)


def brightness_for(score: float, size: int, w: int = 64, h: int = 64) -> int:
    """Pixel value v (uniform grey w x h image) whose letterboxed mean gives candidate 0 the given score."""
    from loupe_edge.imaging import Letterbox

    lb = Letterbox.fit(w, h, size, size)
    frac = (lb.new_w * lb.new_h) / (size * size)
    # mean = frac * v/255 + (1 - frac) * 114/255
    v = (score - (1 - frac) * 114 / 255) / frac * 255
    return int(round(min(max(v, 0), 255)))


def grey_png(value: int, w: int = 64, h: int = 64) -> bytes:
    """A lossless uniform grey image (so its brightness, hence the test model's confidence, is exact)."""
    return grey_image(value, "PNG", w, h)


def grey_image(value: int, fmt: str, w: int = 64, h: int = 64) -> bytes:
    """A uniform grey image encoded by Pillow in ``fmt`` ("PNG", "BMP", "TIFF", "GIF", "EPS", ...)."""
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (value, value, value)).save(buf, format=fmt)
    return buf.getvalue()
