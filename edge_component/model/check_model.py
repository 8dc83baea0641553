"""Install-time check of a ``com.loupe.model`` version, run on the core device by the recipe's ``Install`` step.

1. Every model file has the SHA-256 registered with the model package (``--sha256 FILE=HEX``; an empty HEX means
   the file is not part of the package).
2. The model loads and answers once (a smoke inference on zeros) with the detector's output shape
   ``[1, 4 + classes, anchors]``, finite values.

With ``--install`` (how the recipe runs it) everything comes from the environment the recipe's ``Setenv`` gives
(``LOUPE_MODEL_DIR``, ``LOUPE_MODEL_SHA256``, ``LOUPE_MODEL_INT8_SHA256``, ``LOUPE_MODEL_VERSION``,
``LOUPE_MODEL_COMPONENT_VERSION``, ``LOUPE_MODEL_POINTER``) and, once the checks pass, the script writes the pointer
``com.loupe.inference`` follows (``current.json``: JSON written here, never text assembled by a shell). The values
never pass through shell text: the nucleus substitutes configuration into a recipe as text, so a value spliced into
a script would run as code.

A non-zero exit fails the Install step, so Greengrass fails the deployment on this device and, with
``failureHandlingPolicy: ROLLBACK``, reinstalls the previous components: a corrupt or incompatible model never
becomes the one the inference component is pointed at.

Standalone on purpose (it ships inside the model artifact): the standard library, plus numpy and onnxruntime for
the smoke inference. When the interpreter has no onnxruntime (a fresh device whose inference venv does not exist
yet), the smoke inference is left to ``com.loupe.inference``, which loads a new model before it swaps it in and
reports ERRORED otherwise (that fails the deployment too); this script says so in the component log.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

DEFAULT_IMGSZ = 640


class CheckFailed(Exception):
    pass


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_digests(folder: Path, wanted: dict[str, str]) -> list[str]:
    checked = []
    for name, digest in sorted(wanted.items()):
        if not digest:
            continue
        path = folder / name
        if not path.is_file():
            raise CheckFailed(f"{name} is registered (sha256 {digest}) but missing from {folder}")
        got = sha256_file(path)
        if got != digest.lower():
            raise CheckFailed(f"{name}: sha256 {got} does not match the registered {digest}")
        checked.append(name)
    if "model.onnx" not in checked:
        raise CheckFailed("no registered sha256 for model.onnx: refusing an unverifiable model")
    return checked


def read_card(folder: Path) -> dict:
    try:
        doc = json.loads((folder / "model_card.json").read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise CheckFailed(f"model_card.json is not valid JSON: {exc}") from exc
    return doc if isinstance(doc, dict) else {}


def _imgsz(card: dict) -> int:
    size = card.get("imgsz") or (card.get("input") or {}).get("imgsz") or DEFAULT_IMGSZ
    if isinstance(size, list | tuple):
        size = size[0]
    try:
        return int(size)
    except (TypeError, ValueError):
        return DEFAULT_IMGSZ


def _classes(card: dict) -> int | None:
    cmap = card.get("class_map") or card.get("names")
    return len(cmap) if isinstance(cmap, dict | list) and cmap else None


def smoke(path: Path, card: dict) -> str:
    """Load the model and run it once on zeros; returns a one-line description."""
    import numpy as np
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load error is the answer
        raise CheckFailed(f"{path.name} does not load: {type(exc).__name__}: {exc}") from exc
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CheckFailed(f"{path.name} has {len(inputs)} inputs; a detector takes one image tensor")
    spec = inputs[0]
    size = _imgsz(card)
    fill = (1, 3, size, size)  # batch, channels, height, width where the model leaves them dynamic
    shape = [d if isinstance(d, int) and d > 0 else fill[min(i, 3)] for i, d in enumerate(spec.shape)]
    if len(shape) != 4:
        raise CheckFailed(f"{path.name} input {spec.name} has shape {spec.shape}, not NCHW")
    dtype = np.float16 if "float16" in spec.type else np.float32
    try:
        outputs = session.run(None, {spec.name: np.zeros(shape, dtype=dtype)})
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"{path.name} fails on a {shape} input: {type(exc).__name__}: {exc}") from exc
    out = np.asarray(outputs[0])
    if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] < 5:
        raise CheckFailed(f"{path.name} output has shape {list(out.shape)}, not [1, 4 + classes, anchors]")
    classes = _classes(card)
    if classes is not None and out.shape[1] != 4 + classes:
        raise CheckFailed(f"{path.name} outputs {out.shape[1] - 4} classes, the model card names {classes}")
    if not np.isfinite(out).all():
        raise CheckFailed(f"{path.name} outputs non-finite values")
    return f"{path.name}: input {shape}, output {list(out.shape)}"


INSTALL_ENV = {
    "dir": "LOUPE_MODEL_DIR",
    "pointer": "LOUPE_MODEL_POINTER",
    "version": "LOUPE_MODEL_VERSION",
    "component_version": "LOUPE_MODEL_COMPONENT_VERSION",
    "model.onnx": "LOUPE_MODEL_SHA256",
    "model_int8.onnx": "LOUPE_MODEL_INT8_SHA256",
}


def write_pointer(pointer: Path, folder: Path, version: str, component_version: str, wanted: dict[str, str]) -> None:
    """``current.json`` (atomically): the folder, the version results report, and the registered digests."""
    doc = {
        "dir": str(folder.parent),
        "version": version,
        "component_version": component_version,
        "sha256": {name: wanted.get(name, "") for name in ("model.onnx", "model_int8.onnx")},
    }
    tmp = pointer.with_name(pointer.name + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    os.replace(tmp, pointer)


def run_checks(folder: Path, wanted: dict[str, str]) -> None:
    checked = check_digests(folder, wanted)
    print(f"digests ok: {', '.join(checked)}")
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        print(f"smoke inference left to com.loupe.inference: {sys.executable} has no {exc.name}")
        return
    card = read_card(folder)
    for name in checked:
        print(f"smoke inference ok: {smoke(folder / name, card)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check a com.loupe.model version on the device before it is used.")
    p.add_argument("--install", action="store_true", help="the recipe's Install step: values from LOUPE_MODEL_*")
    p.add_argument("--dir", help="the unarchived model folder")
    p.add_argument("--sha256", action="append", default=[], metavar="FILE=HEX", help="registered digest")
    args = p.parse_args(argv)
    if args.install:
        missing = [var for var in (INSTALL_ENV["dir"], INSTALL_ENV["pointer"]) if not os.environ.get(var)]
        if missing:
            print(f"com.loupe.model check failed: {', '.join(missing)} not set", file=sys.stderr)
            return 2
        folder = Path(os.environ[INSTALL_ENV["dir"]])
        wanted = {name: os.environ.get(INSTALL_ENV[name], "") for name in ("model.onnx", "model_int8.onnx")}
    elif args.dir:
        folder = Path(args.dir)
        wanted = dict(item.partition("=")[::2] for item in args.sha256)
    else:
        p.error("--dir or --install is required")
    try:
        run_checks(folder, wanted)
    except CheckFailed as exc:
        print(f"com.loupe.model check failed: {exc}", file=sys.stderr)
        return 3
    if args.install:
        version = os.environ.get(INSTALL_ENV["version"], "")
        write_pointer(
            Path(os.environ[INSTALL_ENV["pointer"]]),
            folder,
            version,
            os.environ.get(INSTALL_ENV["component_version"], ""),
            wanted,
        )
        print(f"pointer {os.environ[INSTALL_ENV['pointer']]} -> model version {version!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
