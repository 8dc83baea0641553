"""A tiny synthetic dataset version (PIL only) for tests and smoke runs: grey tags with dark 'scratches'."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from loupe.datasets import SPLITS, Box, LabeledImage, split_for, write_version_dir


def _picture(rng: random.Random, size: int) -> tuple[bytes, list[Box]]:
    im = Image.new("RGB", (size, size), tuple([rng.randint(150, 190)] * 3))
    draw = ImageDraw.Draw(im)
    for _ in range(30):  # speckle
        x, y = rng.randrange(size), rng.randrange(size)
        draw.point((x, y), fill=tuple([rng.randint(120, 220)] * 3))
    boxes = []
    for _ in range(rng.choice([0, 1, 1, 2])):
        w, h = rng.randint(size // 5, size // 2), rng.randint(size // 10, size // 4)
        left, top = rng.randint(0, size - w - 1), rng.randint(0, size - h - 1)
        draw.line((left, top, left + w, top + h), fill=(30, 30, 30), width=3)
        draw.line((left, top + h, left + w, top), fill=(40, 40, 40), width=2)
        boxes.append(Box(0, left, top, w, h))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue(), boxes


def make_tiny_version(
    out_dir: str | Path, count: int = 40, size: int = 96, seed: int = 0, version: int = 1
) -> dict[str, Any]:
    """Write a dataset version with ``count`` pictures (at least one boxed picture in every split)."""
    rng = random.Random(seed)
    images: list[LabeledImage] = []
    data: dict[str, bytes] = {}
    boxed = dict.fromkeys(SPLITS, 0)
    attempts = 0
    while len(images) < count or min(boxed.values()) == 0:
        attempts += 1
        if attempts > count * 20:
            raise RuntimeError("could not fill every split")
        raw, boxes = _picture(rng, size)
        sha = hashlib.sha256(raw).hexdigest()
        if sha in data:
            continue
        split = split_for(sha)
        if len(images) >= count and (boxed[split] > 0 or not boxes):
            continue
        data[sha] = raw
        boxed[split] += bool(boxes)
        images.append(
            LabeledImage(
                sha256=sha,
                width=size,
                height=size,
                boxes=boxes,
                source_ref=f"tiny/{sha}.png",
                ext="png",
                origin={"kind": "upload"},
            )
        )
    return write_version_dir(Path(out_dir), version, None, images, image_bytes=lambda img: data[img.sha256])
