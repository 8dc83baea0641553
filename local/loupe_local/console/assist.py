"""Model-assisted labeling: the deployed model's boxes for a task's image, as pre-annotations the person corrects.

"The deployed model" is the group's latest Approved package (what the edge deployment rolls out). Its archive is
fetched once per package, and the edge component's own loader, letterbox and decoder (``loupe_edge``) run it, so a
pre-annotation is what a device would have reported for the same image.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

from loupe.safe_paths import extract_tar
from loupe_local.observer import Observer


class Assistant:
    def __init__(self, observer: Observer, conf_threshold: float = 0.25) -> None:
        self.observer = observer
        self.conf_threshold = conf_threshold
        self._lock = threading.Lock()
        self._loaded: tuple[str, Any] | None = None  # (package arn, LoadedModel)
        self._tmp = tempfile.TemporaryDirectory(prefix="loupe-assist-")

    def _model(self) -> tuple[dict[str, Any], Any] | None:
        package = next((p for p in self.observer.packages(with_cards=False) if p["approval"] == "Approved"), None)
        if package is None or not package["model_data"]:
            return None
        with self._lock:
            if self._loaded is None or self._loaded[0] != package["arn"]:
                from loupe_edge.model import ModelSettings, load_model

                bucket, _, key = package["model_data"].removeprefix("s3://").partition("/")
                data = self.observer.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
                folder = Path(self._tmp.name) / str(package["version"])
                folder.mkdir(parents=True, exist_ok=True)
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
                    extract_tar(tar, folder)
                settings = ModelSettings(conf_threshold=self.conf_threshold, intra_op_threads=1)
                self._loaded = (package["arn"], load_model(folder, settings))
            return package, self._loaded[1]

    def predict(self, image: bytes) -> dict[str, Any]:
        """``{"model": version or None, "boxes": [{class_id, left, top, width, height, confidence}]}``."""
        found = self._model()
        if found is None:
            return {"model": None, "boxes": []}
        package, model = found
        from loupe.ingest import MAX_PIXELS  # the images here passed ingest
        from loupe_edge.engine import Preparer, run_model
        from loupe_edge.imaging import open_image, to_rgb_array

        rgb = to_rgb_array(open_image(image, MAX_PIXELS))
        tensor, letterbox = Preparer().letterbox(rgb, (model.input_w, model.input_h))
        result = run_model(model, tensor, letterbox, self.conf_threshold)
        height, width = rgb.shape[:2]
        boxes = []
        for x1, y1, x2, y2, score, cls in result.boxes.tolist():
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(width), x2), min(float(height), y2)
            if x2 - x1 >= 1 and y2 - y1 >= 1:
                boxes.append(
                    {
                        "class_id": int(cls),
                        "left": round(x1),
                        "top": round(y1),
                        "width": round(x2 - x1),
                        "height": round(y2 - y1),
                        "confidence": round(float(score), 3),
                    }
                )
        return {"model": str(package["version"]), "boxes": boxes}
