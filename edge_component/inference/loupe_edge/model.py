"""Model loading: locate the artifacts, check digests, build an onnxruntime session, smoke-test it.

A model folder (the decompressed artifacts of ``com.loupe.model``) holds ``model.onnx``, optionally
``model_int8.onnx``, and ``model_card.json``: ``{"version", "class_map": {"0": "scratch"}, "imgsz",
"sha256": {"model.onnx": hex, "model_int8.onnx": hex}}``.  The folder may also be one level down (a ZIP that
unpacks to a sub-folder).  The model component's Install step writes a pointer file
``{"dir": <decompressed path>, "version": <model version>}`` that the inference component follows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loupe_edge.postprocess import decode_yolo

log = logging.getLogger(__name__)

MODEL_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
CARD_FILE = "model_card.json"


class ModelError(RuntimeError):
    """The model cannot be served (missing, corrupt, digest mismatch, failed smoke test)."""


@dataclass
class ModelSettings:
    precision: str = "fp32"  # fp32 | int8 (int8 falls back to fp32 when the component carries no INT8 file)
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    intra_op_threads: int = 0  # 0 = onnxruntime's default (one per physical core)
    inter_op_threads: int = 1
    conf_threshold: float = 0.25
    iou_threshold: float = 0.7
    max_detections: int = 300
    verify_digest: bool = True


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_dir(path: Path) -> Path:
    """The folder holding model_card.json: ``path`` itself or its single sub-folder that has one."""
    if (path / CARD_FILE).is_file():
        return path
    if path.is_dir():
        subs = [p for p in sorted(path.iterdir()) if p.is_dir() and (p / CARD_FILE).is_file()]
        if len(subs) == 1:
            return subs[0]
        if len(subs) > 1:
            raise ModelError(f"{path} holds several model folders: {[p.name for p in subs]}")
    raise ModelError(f"no {CARD_FILE} in {path} (or a sub-folder of it)")


def read_pointer(pointer: Path) -> tuple[Path, str | None, dict[str, str]]:
    """Follow the pointer file the model component writes: returns (model folder, version, registered digests)."""
    try:
        doc = json.loads(pointer.read_text())
        digests = {str(k): str(v) for k, v in (doc.get("sha256") or {}).items() if v}
        return Path(doc["dir"]), (str(doc["version"]) if doc.get("version") else None), digests
    except FileNotFoundError as exc:
        raise ModelError(f"model pointer {pointer} does not exist (is com.loupe.model deployed?)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"model pointer {pointer} is not valid JSON with a 'dir': {exc}") from exc


@dataclass
class ModelCard:
    version: str | None
    class_names: dict[int, str]
    sha256: dict[str, str]
    imgsz: Any = None
    raw: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> ModelCard:
        """Read a model card. Accepts the training pipeline's ``loupe-model-card/1`` (digests under
        ``artifacts.<file>.sha256``, no version: the registry assigns it) and the flat form (``version``,
        ``sha256: {file: hex}``)."""
        path = folder / CARD_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelError(f"{path} is missing") from exc
        except ValueError as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ModelError(f"{path} must hold a JSON object")
        cmap = doc.get("class_map") or doc.get("names") or {}
        if isinstance(cmap, list):
            cmap = dict(enumerate(cmap))
        try:
            names = {int(k): str(v) for k, v in cmap.items()}
        except (AttributeError, ValueError) as exc:
            raise ModelError(f"{path}: class_map must map class ids to names") from exc
        digests = doc.get("sha256") or {}
        if isinstance(digests, str):
            digests = {MODEL_FILES["fp32"]: digests}
        for name, art in (doc.get("artifacts") or {}).items():
            if isinstance(art, dict) and art.get("sha256"):
                digests.setdefault(str(art.get("file") or name), str(art["sha256"]))
        version = doc.get("version", doc.get("model_version"))
        imgsz = doc.get("imgsz") or (doc.get("input") or {}).get("imgsz")
        return cls(
            str(version) if version is not None else None,
            names,
            {str(k): str(v) for k, v in digests.items()},
            imgsz,
            doc,
        )


class LoadedModel:
    """A ready session plus what it needs to turn a tensor into detections."""

    def __init__(
        self,
        session: Any,
        card: ModelCard,
        path: Path,
        precision: str,
        settings: ModelSettings,
        version: str | None = None,
    ):
        self.session = session
        self.card = card
        self.path = path
        self.precision = precision
        self.settings = settings
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise ModelError(f"{path.name}: input must be static NCHW, got {shape}")
        self.input_h, self.input_w = int(shape[2]), int(shape[3])
        self.output_names = [session.get_outputs()[0].name]
        self.digest = card.sha256.get(path.name) or ""
        # the deployment's version (pointer) wins; then the card's; then the content itself names the model
        self.version = version or card.version or f"sha256-{self.digest[:12] or 'unknown'}"

    def class_name(self, cls_id: int) -> str:
        return self.card.class_names.get(cls_id, str(cls_id))

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run(self.output_names, {self.input_name: tensor})[0]

    def decode(self, raw: np.ndarray) -> np.ndarray:
        s = self.settings
        return decode_yolo(raw, s.conf_threshold, s.iou_threshold, s.max_detections)

    def smoke_test(self) -> None:
        """One inference on a grey frame: the output must be a detection tensor for this card's classes."""
        x = np.full((1, 3, self.input_h, self.input_w), 114 / 255, dtype=np.float32)
        try:
            raw = self.infer(x)
        except Exception as exc:
            raise ModelError(f"{self.path.name}: smoke inference failed: {exc}") from exc
        if raw.ndim != 3 or raw.shape[0] != 1:
            raise ModelError(f"{self.path.name}: unexpected output shape {raw.shape}")
        if raw.shape[-1] != 6:  # [1, 4 + nc, N]
            nc = raw.shape[1] - 4
            if nc < 1:
                raise ModelError(f"{self.path.name}: output {raw.shape} has no class rows")
            if self.card.class_names and nc != len(self.card.class_names):
                raise ModelError(
                    f"{self.path.name}: output has {nc} classes, model card names {len(self.card.class_names)}"
                )
        if not np.all(np.isfinite(raw)):
            raise ModelError(f"{self.path.name}: smoke inference produced NaN/inf")
        self.decode(raw)


def load_model(
    folder: Path,
    settings: ModelSettings,
    expected_version: str | None = None,
    expected_digests: dict[str, str] | None = None,
) -> LoadedModel:
    """Build a verified, smoke-tested model from a model folder. Raises ModelError with a clear reason.

    ``expected_digests`` are the SHA-256s registered with the deployment (from the model component's
    configuration); when given they must agree with the model card, so a swapped archive is caught too.
    """
    import onnxruntime as ort

    t0 = time.perf_counter()
    folder = resolve_model_dir(Path(folder))
    card = ModelCard.load(folder)
    if expected_version and card.version and card.version != expected_version:
        log.warning("model pointer names version %s but the card says %s", expected_version, card.version)
    precision = settings.precision
    path = folder / MODEL_FILES.get(precision, MODEL_FILES["fp32"])
    if precision == "int8" and not path.is_file():
        log.warning("model in %s carries no %s; serving fp32", folder, path.name)
        precision, path = "fp32", folder / MODEL_FILES["fp32"]
    if not path.is_file():
        raise ModelError(f"model file {path} is missing")
    if settings.verify_digest:
        want = card.sha256.get(path.name)
        registered = (expected_digests or {}).get(path.name)
        if registered and want and registered.lower() != want.lower():
            raise ModelError(
                f"{path.name}: deployment registered sha256 {registered[:12]}…, model card says {want[:12]}…"
            )
        want = want or registered
        if not want:
            raise ModelError(f"model card in {folder} has no sha256 for {path.name}")
        got = sha256_file(path)
        if got.lower() != want.lower():
            raise ModelError(f"{path.name} digest mismatch: card {want[:12]}…, file {got[:12]}…")
    opts = ort.SessionOptions()
    if settings.intra_op_threads > 0:
        opts.intra_op_num_threads = settings.intra_op_threads
    opts.inter_op_num_threads = max(1, settings.inter_op_threads)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = set(ort.get_available_providers())
    providers = [p for p in settings.providers if p in available] or ["CPUExecutionProvider"]
    missing = [p for p in settings.providers if p not in available]
    if missing:
        log.warning("execution providers %s not available here; using %s", missing, providers)
    try:
        session = ort.InferenceSession(os.fspath(path), opts, providers=providers)
    except Exception as exc:
        raise ModelError(f"{path.name} is not a loadable ONNX model: {exc}") from exc
    model = LoadedModel(session, card, path, precision, settings, version=expected_version)
    model.smoke_test()
    log.info(
        "model %s (%s, %dx%d, %s) ready in %.0f ms",
        model.version,
        precision,
        model.input_w,
        model.input_h,
        ",".join(providers),
        (time.perf_counter() - t0) * 1000,
    )
    return model
