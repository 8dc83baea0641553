"""The Ground Truth stand-in's automatic workforce: answers from the labels sources, optionally noisy.

The labels sources are JSONL files ``<state_dir>/workforce/*.jsonl`` with lines
``{"sha256", "annotations": [{"class_id", "left", "top", "width", "height"}]}`` (the demo generator's
``answers.jsonl``, or what ``loupe import`` writes). ``<state_dir>/workforce/config.json`` may set
``{"noise_rate": 0.1, "seed": 0, "delay_seconds": 0.2, "mode": "auto"}``: a noisy worker drops a box or misplaces
it; ``"mode": "manual"`` puts a person in the workforce instead (:mod:`loupe_local.standins.groundtruth.task_queue`).
An object nobody has an answer for fails as it would in Ground Truth when no worker takes the task.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from pathlib import Path
from typing import Any

from loupe import manifests
from loupe.datasets import Box
from loupe_local.standins.groundtruth.browser import Browser, CorsRefused

log = logging.getLogger("loupe_local.groundtruth")

NO_WORKER = "ClientError: no worker completed this task (the local workforce has no answer for this image)"

Line = tuple[dict[str, Any], bool]  # an output-manifest line, and whether it carries a label


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.left + a.width, b.left + b.width) - max(a.left, b.left))
    iy = max(0.0, min(a.top + a.height, b.top + b.height) - max(a.top, b.top))
    inter = ix * iy
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


def set_workforce_mode(state_dir: Path, mode: str) -> None:
    """Make the local workforce ``auto`` (known labels) or ``manual`` (a person, in the console) for new jobs."""
    if mode not in ("auto", "manual"):
        raise ValueError(f"workforce mode must be auto or manual, not {mode!r}")
    path = Path(state_dir) / "workforce" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**config, "mode": mode}, indent=2))


class Workforce:
    """Answers from the labels sources, optionally noisy."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.answers: dict[str, list[dict[str, Any]]] = {}
        self.noise_rate = 0.0
        self.seed = 0
        self.delay = 0.2
        self.mode = "auto"
        self.reload()

    def reload(self) -> None:
        answers: dict[str, list[dict[str, Any]]] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.jsonl")):
                for number, line in enumerate(path.read_text().splitlines(), start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                        answers[str(obj["sha256"])] = [Box.from_dict(a).__dict__ for a in obj.get("annotations") or []]
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("%s:%d: not a workforce answer (%s)", path, number, exc)
            config = self.directory / "config.json"
            if config.is_file():
                cfg = json.loads(config.read_text())
                self.noise_rate = float(cfg.get("noise_rate", 0.0))
                self.seed = int(cfg.get("seed", 0))
                self.delay = float(cfg.get("delay_seconds", 0.2))
                self.mode = str(cfg.get("mode", "auto"))
        self.answers = answers

    def label(self, sha256: str, width: int, height: int, rng: random.Random) -> list[Box] | None:
        raw = self.answers.get(sha256)
        if raw is None:
            return None
        boxes = [Box.from_dict(a) for a in raw]
        if boxes and rng.random() < self.noise_rate:
            if rng.random() < 0.5:
                boxes.pop(rng.randrange(len(boxes)))  # missed a scratch
            else:
                i = rng.randrange(len(boxes))
                b = boxes[i]
                # misplaced by at least 60% of its size: overlaps the true box by less than half (IoU < 0.5)
                dx = b.width * rng.uniform(0.6, 1.0) * rng.choice((-1, 1))
                dy = b.height * rng.uniform(0.0, 0.3) * rng.choice((-1, 1))
                left = min(max(0.0, b.left + dx), max(0.0, width - b.width))
                top = min(max(0.0, b.top + dy), max(0.0, height - b.height))
                boxes[i] = Box(b.class_id, round(left), round(top), b.width, b.height)
        return boxes

    def label_one(
        self,
        browser: Browser,
        obj: dict[str, Any],
        attribute: str,
        categories: dict[str, Any],
        rng: random.Random,
        job_name: str,
    ) -> Line:
        """The output line of a labeling task: the worker's boxes, or a failure line."""
        from PIL import Image

        ref = obj["source-ref"]
        extra = {k: v for k, v in obj.items() if k != "source-ref"}
        try:
            data = browser.load(ref)
        except CorsRefused as exc:
            return manifests.failed_line(ref, attribute, str(exc), job_name, extra), False
        except Exception as exc:
            return manifests.failed_line(
                ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, extra
            ), False
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                depth = len(img.getbands())
        except Exception as exc:
            return manifests.failed_line(
                ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, extra
            ), False
        sha = obj.get(manifests.SHA_ATTRIBUTE) or hashlib.sha256(data).hexdigest()
        boxes = self.label(sha, width, height, rng)
        if boxes is None:
            return manifests.failed_line(ref, attribute, NO_WORKER, job_name, extra), False
        class_map = manifests.class_map_from_config(categories) if categories.get("labels") else {"0": "scratch"}
        confidences = [round(rng.uniform(0.85, 0.99), 2) for _ in boxes]
        return (
            manifests.output_line(ref, attribute, boxes, width, height, depth, class_map, job_name, confidences, extra),
            True,
        )

    def verify_one(
        self,
        browser: Browser,
        obj: dict[str, Any],
        attribute: str,
        audit: str,
        categories: dict[str, Any],
        job_name: str,
    ) -> Line:
        """The output line of a verification task: the worker's verdict on the boxes shown, or a failure line."""
        ref = obj["source-ref"]
        names = [item["label"] for item in categories.get("labels", [])]
        try:
            browser.load(ref)  # the verifier sees the image under the boxes
        except CorsRefused as exc:
            return manifests.failed_line(ref, attribute, str(exc), job_name, obj), False
        except Exception as exc:
            return manifests.failed_line(ref, attribute, f"ClientError: cannot read {ref}: {exc}", job_name, obj), False
        try:
            shown = manifests.parse_output_line(obj, audit)
        except manifests.ManifestError as exc:
            return manifests.failed_line(ref, attribute, f"ClientError: {exc}", job_name, obj), False
        truth = self.answers.get(shown.sha256 or "")
        if truth is None:
            return manifests.failed_line(ref, attribute, NO_WORKER, job_name, obj), False
        expected = [Box.from_dict(a) for a in truth]
        if len(expected) > len(shown.boxes):
            verdict = names[1] if len(names) > 1 else names[0]
        elif all(any(iou(e, s) >= 0.5 for s in shown.boxes) for e in expected) and len(expected) == len(shown.boxes):
            verdict = names[0]
        else:
            verdict = names[2] if len(names) > 2 else names[-1]
        return manifests.verification_line(ref, attribute, names, verdict, job_name, base=obj), True
