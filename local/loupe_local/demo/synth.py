"""Synthetic metal tags with scratches, in two phases (the stream ``make demo`` feeds the loop with).

The pictures imitate the real crops in ``../shared/datasets/metal-tags``: a 450x300 grey picture of a dark
stamped metal tag (rounded corners, a punched hole near one corner, a shaded left edge) held by a light
clamp on a white background, with faint hairlines that are *not* defects and bright thin scratches that are
(class 0 ``scratch``). Every scratch is drawn on its own layer, so its ground-truth box is the exact extent
of its pixels (plus a small margin, like the human labels), never a guess.

Phase 1 is the "factory as first seen": dark matte finish, even light, straight or gently bent scratches.
Phase 2 is the drift the loop has to recover from: a lighter brushed-satin finish with streaks, a warm light
with a gradient and a specular hot spot, and new scratch shapes (C-shaped arcs, wavy gouges, branched
scratches) at a lower contrast. ``carryover`` keeps a share of phase-2 frames in the old style (old stock
still on the line), which is what makes picking frames by model uncertainty pay off against picking them at
random.

Everything is a pure function of ``(seed, phase, index)``: the same arguments give byte-identical files, and
image ``i`` does not depend on ``count``.

Output of :func:`generate` in ``out_dir``:

- ``images/<name>.jpg`` — the pictures (RGB JPEG).
- ``answers.jsonl`` — one line per picture for the local Ground Truth workforce: ``{"sha256", "file":
  "images/<name>.jpg", "width", "height", "phase", "annotations": [{"class_id": 0, "left", "top", "width",
  "height"}], "style": {...}}`` (pixels, Ground Truth style; an empty list = no defect).
- ``labels/<name>.txt`` + ``dataset.yaml`` — the same labels as an Ultralytics (YOLO) dataset, for
  experiments.

Recommended demo configuration (``DEMO_DEFAULTS``), measured on the shared 2-core CPU with
``benchmarks/synth_training.py`` (YOLOv8n from ``yolov8n.yaml``, no pretrained weights, 2 torch threads):

- data: 450x300 pictures; v1 trains on 200 phase-1 pictures; phase 2 with ``carryover=0.3``; held-out
  test sets of 100 pictures per phase; 15 % clean pictures.
- v1: imgsz 224, 30 epochs, batch 16 (Ultralytics defaults otherwise) -> phase-1 test mAP50 0.57, phase-2
  test mAP50 0.26. About 6,000 image passes: ~5 min on the idle machine (0.053 s per picture per epoch at
  224, timed with the machine partly busy), 27 min when the machine was shared by four training jobs.
- v2: warm start from v1's weights, 10 epochs on 60 phase-1 (replay) + 100 phase-2 pictures, AdamW lr0 0.001,
  no warmup -> phase-2 test mAP50 0.45 (+0.19 over v1), phase-1 kept at 0.57. ~1.5 min on the idle machine.
  With Ultralytics' default fine-tuning settings (optimizer "auto" = AdamW at 0.002 with a >=100-iteration
  warmup whose bias lr starts at 0.1) the same v2 only reached 0.23-0.31: set the optimizer explicitly.
- A longer v1 (imgsz 256, 40 epochs: ~10 min idle) reaches 0.85 on phase 1 and 0.17 on pure phase 2
  (``carryover=0``); a v2 from it on 100 replay + 100 phase-2 pictures reached 0.60 (+0.44; measured on an
  earlier phase 2 with fainter scratches, default fine-tuning recipe, 8 epochs).
- ``make demo``'s own shape (140 phase-1 train pictures after the content-hash split, 134 phase-2 frames, all of
  phase 1 replayed, 80 test pictures; v1 50 epochs at 224 on both cores, 227 s idle): v1 0.28 on phase 2; v2
  warm-started 15 epochs 0.62 (129 s), 40 epochs 0.85 (339 s) -- hence the demo's longer retrain (50 epochs).
- Label efficiency (``benchmarks/active_learning.py``): 25 phase-2 frames picked by v1's uncertainty give
  about the mAP50 of 100 random ones (0.55).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASS_NAMES = {0: "scratch"}
PHASES = (1, 2)
DEFAULT_SIZE = (450, 300)

# Measured configuration for the demo (see the module docstring and benchmarks/synth_training.py).
DEMO_DEFAULTS: dict[str, Any] = {
    "size": DEFAULT_SIZE,
    "phase1_train": 200,
    "test_per_phase": 100,
    "clean_fraction": 0.15,
    "carryover": 0.3,
    "imgsz": 224,
    "v1": {"epochs": 30, "batch": 16},
    "v2": {
        "epochs": 10,
        "batch": 16,
        "phase1_replay": 60,
        "phase2_frames": 100,
        "optimizer": "AdamW",
        "lr0": 0.001,
        "warmup_epochs": 0,
    },
    # what the devices should send back (see benchmarks/active_learning.py): the frame's top detection
    # confidence in [0.1, 0.4)
    "uncertainty_band": (0.1, 0.4),
}


_PHASE1_SHAPES = ("straight", "bent")
_PHASE2_SHAPES = ("arc", "wavy", "branched")


def _rng(seed: int, phase: int, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(phase), int(index), int(stream)])


# ------------------------------------------------------------------------------------------ drawing helpers


def _smooth_rows(noise: np.ndarray, length: int) -> np.ndarray:
    """Box-blur each row (axis 1) with a window of ``length`` — the brushed-metal streaks."""
    if length <= 1:
        return noise
    pad = np.pad(noise, ((0, 0), (length, length)), mode="reflect")
    c = np.cumsum(pad, axis=1)
    out = (c[:, length:] - c[:, :-length]) / length
    start = (out.shape[1] - noise.shape[1]) // 2
    return out[:, start : start + noise.shape[1]]


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), mode="L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)


def _tag_mask(w: int, h: int, box: tuple[int, int, int, int], radius: int) -> np.ndarray:
    m = Image.new("L", (w, h), 0)
    ImageDraw.Draw(m).rounded_rectangle(box, radius=radius, fill=255)
    return np.asarray(m, dtype=np.float32) / 255.0


def _path_points(rng: np.random.Generator, shape: str, length: float, s: float) -> list[np.ndarray]:
    """Polylines (in a local frame centred on 0, main axis along x) for one scratch of the given shape."""
    n = max(12, int(length / 4))
    t = np.linspace(-0.5, 0.5, n)
    x = t * length
    if shape == "straight":
        y = np.zeros_like(x) + rng.normal(0, 0.4 * s, n).cumsum() * 0.15
    elif shape == "bent":
        sag = rng.uniform(0.04, 0.12) * length * rng.choice([-1, 1])
        y = sag * (1 - (2 * t) ** 2)
    elif shape == "arc":
        # a C-shaped arc: a piece of circle spanning 140-220 degrees
        span = math.radians(rng.uniform(140, 220))
        r = length / span
        a = np.linspace(-span / 2, span / 2, n)
        x = r * np.sin(a)
        y = r * (1 - np.cos(a)) - r * (1 - math.cos(span / 2)) / 2
    elif shape == "wavy":
        amp = rng.uniform(0.06, 0.12) * length
        periods = rng.uniform(1.2, 2.2)
        y = amp * np.sin(2 * math.pi * periods * t + rng.uniform(0, 2 * math.pi))
    elif shape == "branched":
        sag = rng.uniform(0.0, 0.08) * length * rng.choice([-1, 1])
        y = sag * (1 - (2 * t) ** 2)
    else:  # pragma: no cover - guarded by callers
        raise ValueError(f"unknown scratch shape {shape!r}")
    paths = [np.stack([x, y], axis=1)]
    if shape == "branched":
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(n // 5, 4 * n // 5))
            ang = math.radians(rng.uniform(25, 60)) * rng.choice([-1, 1])
            bl = rng.uniform(0.3, 0.55) * length
            m = max(6, int(bl / 4))
            u = np.linspace(0, 1, m)[:, None]
            direction = np.array([math.cos(ang), math.sin(ang)]) * rng.choice([-1, 1])
            paths.append(paths[0][k] + u * bl * direction)
    return paths


def _draw_scratch(
    rng: np.random.Generator,
    size: tuple[int, int],
    tag_box: tuple[int, int, int, int],
    shape: str,
    s: float,
    dotted: bool,
) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Draw one scratch on its own alpha layer; returns (alpha in 0..1, pixel bbox of the visible trace)."""
    w, h = size
    x0, y0, x1, y1 = tag_box
    length = rng.uniform(55, 190) * s
    angle = rng.uniform(0, math.pi)
    margin = 10 * s
    cx = rng.uniform(x0 + margin + 0.3 * length, x1 - margin - 0.3 * length)
    cy = (
        rng.uniform(y0 + margin + 0.2 * length, y1 - margin - 0.2 * length)
        if y1 - y0 > 0.5 * length
        else ((y0 + y1) / 2)
    )
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    width = max(1, int(round(rng.uniform(2.0, 3.6) * s)))
    for pts in _path_points(rng, shape, length, s):
        p = pts @ rot.T + np.array([cx, cy])
        # keep strokes on the tag
        p[:, 0] = np.clip(p[:, 0], x0 + margin, x1 - margin)
        p[:, 1] = np.clip(p[:, 1], y0 + margin, y1 - margin)
        # brightness varies along the stroke; dotted strokes have gaps like the real scuffs
        level = np.clip(rng.normal(1.0, 0.12, len(p) - 1), 0.55, 1.0)
        if dotted:
            level[rng.random(len(level)) < 0.25] *= 0.35
        for i in range(len(p) - 1):
            draw.line([tuple(p[i]), tuple(p[i + 1])], fill=int(255 * level[i]), width=width)
    alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.6 * max(s, 0.5))), dtype=np.float32) / 255.0
    ys, xs = np.nonzero(alpha > 0.3)
    if len(xs) < 8:
        return None
    pad = max(1, int(round(3 * s)))
    bbox = (
        max(0, int(xs.min()) - pad),
        max(0, int(ys.min()) - pad),
        min(w, int(xs.max()) + 1 + pad),
        min(h, int(ys.max()) + 1 + pad),
    )
    return alpha, bbox


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


# ------------------------------------------------------------------------------------------ one picture


def render(
    seed: int,
    phase: int,
    index: int,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    clean: bool = False,
    carryover: float = 0.3,
) -> tuple[Image.Image, list[dict[str, int]], dict[str, Any]]:
    """Render picture ``index`` of ``(seed, phase)``.

    Returns the RGB image, its boxes (``{"class_id", "left", "top", "width", "height"}`` in pixels) and a
    style description. ``clean`` pictures have no scratch (but still have the non-defect hairlines).
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be 1 or 2, got {phase!r}")
    w, h = int(size[0]), int(size[1])
    if w < 96 or h < 64:
        raise ValueError(f"image size must be at least 96x64, got {w}x{h}")
    rng = _rng(seed, phase, index)
    s = min(w / 450.0, h / 300.0)
    old_style = phase == 1 or rng.random() < carryover
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # background: bright, slightly uneven, with the clamp above and below the tag
    bg = rng.uniform(228, 252)
    img = np.full((h, w), bg, np.float32) + (xx / w - 0.5) * rng.uniform(-12, 12)
    tag_box = (
        int(w * rng.uniform(0.02, 0.06)),
        int(h * rng.uniform(0.08, 0.14)),
        int(w * (1 - rng.uniform(0.02, 0.06))),
        int(h * (1 - rng.uniform(0.03, 0.08))),
    )
    for top in (True, False):
        if not top and rng.random() < 0.3:
            continue
        cl = int(w * rng.uniform(0.25, 0.34))
        cr = int(w * rng.uniform(0.62, 0.72))
        ya, yb = (0, tag_box[1] + 4) if top else (tag_box[3] - 4, h)
        grey = rng.uniform(150, 205)
        stripes = grey + 25 * (np.sin(yy[ya:yb, cl:cr] * rng.uniform(0.8, 1.6)) > 0.6)
        shade = (xx[ya:yb, cl:cr] - cl) / max(1, cr - cl)
        img[ya:yb, cl:cr] = stripes - 40 * np.clip(shade - 0.55, 0, 1)

    # the tag: finish, lighting, shaded left edge
    mask = _tag_mask(w, h, tag_box, radius=max(2, int(9 * s)))
    if old_style:
        base = rng.uniform(72, 108)
        finish = "matte"
        surface = base + rng.normal(0, 3.0, (h, w)) + _blur(rng.normal(128, 40, (h, w)), 6 * s) * 0.15 - 19
        light = (yy / h - 0.5) * rng.uniform(-10, 10) + (xx / w - 0.5) * rng.uniform(-8, 14)
        tint = (1.0, 1.0, 1.0)
        peak, contrast = rng.uniform(215, 252), 0.0
    else:
        base = rng.uniform(118, 150)
        finish = "brushed"
        streaks = _smooth_rows(rng.normal(0, 1, (h, w)), max(2, int(45 * s))) * 40
        surface = base + streaks + rng.normal(0, 4.0, (h, w))
        ang = rng.uniform(0, 2 * math.pi)
        grad = ((xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang)) * rng.uniform(30, 55)
        hx, hy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        spot = np.exp(-(((xx - hx) / (0.25 * w)) ** 2 + ((yy - hy) / (0.18 * h)) ** 2)) * rng.uniform(15, 35)
        light = grad + spot
        tint = (1.0, rng.uniform(0.9, 0.96), rng.uniform(0.75, 0.86))
        # the scratches catch the warm light: a brightening of 65-105 grey levels over the local surface
        peak, contrast = 0.0, rng.uniform(65, 105)
    tag = surface + light
    edge = np.clip(1 - (xx - tag_box[0]) / (14 * s), 0, 1) * rng.uniform(20, 35)
    tag -= edge
    img = img * (1 - mask) + tag * mask

    # the punched hole near a corner shows the background
    r = rng.uniform(8, 12) * s
    off = 22 * s
    hcx, hcy = (tag_box[0] + off, tag_box[1] + off) if rng.random() < 0.6 else (tag_box[2] - off, tag_box[3] - off)
    hole = np.clip(r + 0.5 - np.hypot(xx - hcx, yy - hcy), 0, 1)
    img = img * (1 - hole) + (bg + 3) * hole

    # faint hairlines and specks: not defects, but the model must learn to ignore them
    hair = Image.new("L", (w, h), 0)
    hd = ImageDraw.Draw(hair)
    for _ in range(int(rng.integers(3, 10))):
        L = rng.uniform(15, 90) * s
        a = rng.uniform(0, math.pi)
        px = rng.uniform(tag_box[0] + 10 * s, tag_box[2] - 10 * s)
        py = rng.uniform(tag_box[1] + 10 * s, tag_box[3] - 10 * s)
        hd.line(
            [(px, py), (px + L * math.cos(a), py + L * math.sin(a))],
            fill=int(rng.uniform(8, 28)),
            width=1,
        )
    for _ in range(int(rng.integers(0, 12))):
        px = rng.uniform(tag_box[0], tag_box[2])
        py = rng.uniform(tag_box[1], tag_box[3])
        hd.point((px, py), fill=int(rng.uniform(20, 60)))
    img += np.asarray(hair.filter(ImageFilter.GaussianBlur(0.5)), dtype=np.float32) * mask

    # scratches
    boxes: list[tuple[int, int, int, int]] = []
    shapes: list[str] = []
    if not clean:
        n = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.4, 0.2, 0.1]))
        palette = _PHASE1_SHAPES if old_style else _PHASE2_SHAPES
        tries = 0
        while len(boxes) < n and tries < 40:
            tries += 1
            shape = str(rng.choice(palette))
            drawn = _draw_scratch(rng, (w, h), tag_box, shape, s, dotted=rng.random() < 0.4)
            if drawn is None:
                continue
            alpha, bbox = drawn
            if any(_iou(bbox, b) > 0.2 for b in boxes):
                continue
            alpha = alpha * mask
            img = img * (1 - alpha) + peak * alpha if peak else img + contrast * alpha
            boxes.append(bbox)
            shapes.append(shape)

    img = np.clip(img + rng.normal(0, 1.5, (h, w)), 0, 255)
    rgb = np.stack([np.clip(img * t, 0, 255) for t in tint], axis=2).astype(np.uint8)
    annotations = [
        {"class_id": 0, "left": b[0], "top": b[1], "width": b[2] - b[0], "height": b[3] - b[1]} for b in boxes
    ]
    style = {"finish": finish, "old_style": bool(old_style), "shapes": shapes, "clean": bool(clean)}
    return Image.fromarray(rgb, mode="RGB"), annotations, style


# ------------------------------------------------------------------------------------------ datasets


def clean_indices(count: int, seed: int, phase: int, clean_fraction: float) -> set[int]:
    """Which of ``count`` pictures are clean: exactly ``round(count * clean_fraction)`` of them."""
    k = int(round(count * clean_fraction))
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(phase), 0xC1EA]).permutation(count)
    return {int(i) for i in order[:k]}


def yolo_lines(annotations: Sequence[dict[str, int]], width: int, height: int) -> list[str]:
    """Ground Truth pixel boxes as YOLO ``class cx cy w h`` lines (normalized)."""
    out = []
    for a in annotations:
        cx = (a["left"] + a["width"] / 2) / width
        cy = (a["top"] + a["height"] / 2) / height
        out.append(f"{a['class_id']} {cx:.6f} {cy:.6f} {a['width'] / width:.6f} {a['height'] / height:.6f}")
    return out


def write_dataset_yaml(path: str | Path, train: Sequence[str | Path], val: Sequence[str | Path]) -> Path:
    """An Ultralytics dataset yaml over ``images/`` folders (labels are found in the sibling ``labels/``)."""
    path = Path(path)

    def _list(items: Sequence[str | Path]) -> str:
        return "[" + ", ".join(json.dumps(str(Path(p).resolve())) for p in items) + "]"

    path.write_text(f"train: {_list(train)}\nval: {_list(val)}\nnames:\n  0: scratch\n")
    return path


def generate(
    out_dir: str | Path,
    phase: int,
    count: int,
    seed: int = 0,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    clean_fraction: float = 0.15,
    carryover: float = 0.3,
    prefix: str | None = None,
    quality: int = 90,
) -> list[dict[str, Any]]:
    """Write ``count`` pictures of ``phase`` into ``out_dir`` (see the module docstring); returns the answers.

    Re-running with the same arguments rewrites identical files; ``answers.jsonl`` is rewritten, not appended.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be 1 or 2, got {phase!r}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must be within [0, 1], got {clean_fraction}")
    if not 0.0 <= carryover <= 1.0:
        raise ValueError(f"carryover must be within [0, 1], got {carryover}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    prefix = prefix if prefix is not None else f"p{phase}-s{seed}-"
    cleans = clean_indices(count, seed, phase, clean_fraction)
    answers: list[dict[str, Any]] = []
    for i in range(count):
        img, annotations, style = render(seed, phase, i, size=size, clean=i in cleans, carryover=carryover)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        data = buf.getvalue()
        name = f"{prefix}{i:05d}"
        (out / "images" / f"{name}.jpg").write_bytes(data)
        (out / "labels" / f"{name}.txt").write_text(
            "".join(line + "\n" for line in yolo_lines(annotations, img.width, img.height))
        )
        answers.append(
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "file": f"images/{name}.jpg",
                "width": img.width,
                "height": img.height,
                "phase": phase,
                "annotations": annotations,
                "style": style,
            }
        )
    with open(out / "answers.jsonl", "w") as f:
        for a in answers:
            f.write(json.dumps(a, sort_keys=True) + "\n")
    write_dataset_yaml(out / "dataset.yaml", [out / "images"], [out / "images"])
    return answers


def read_answers(out_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of ``out_dir/answers.jsonl``."""
    with open(Path(out_dir) / "answers.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------------ CLI


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 450x300, got {text!r}") from None
    return w, h


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {v}")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``loupe synth`` to the ``loupe`` CLI."""
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic metal-tag pictures with exact scratch labels",
        description="Write images/*.jpg, answers.jsonl (Ground Truth style labels), labels/*.txt and "
        "dataset.yaml (YOLO view) for one phase of the synthetic stream.",
    )
    p.add_argument("--phase", type=int, choices=PHASES, required=True, help="1 = original line, 2 = drifted")
    p.add_argument("--count", type=_count, required=True, help="number of pictures")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=_size, default=DEFAULT_SIZE, help="WIDTHxHEIGHT (default 450x300)")
    p.add_argument("--clean-fraction", type=_fraction, default=0.15, help="share of pictures without scratches")
    p.add_argument(
        "--carryover",
        type=_fraction,
        default=0.3,
        help="phase 2 only: share of frames still in the phase-1 style (default 0.3)",
    )
    p.set_defaults(func=_cmd)
    return p


def _cmd(args: argparse.Namespace) -> int:
    answers = generate(
        args.out,
        args.phase,
        args.count,
        args.seed,
        size=args.size,
        clean_fraction=args.clean_fraction,
        carryover=args.carryover,
    )
    boxes = sum(len(a["annotations"]) for a in answers)
    clean = sum(1 for a in answers if not a["annotations"])
    print(f"wrote {len(answers)} phase-{args.phase} pictures ({boxes} scratches, {clean} clean) to {args.out}")
    return 0
