"""Keep Ultralytics off the network: no downloads, no auto-installs, a font of our own.

Call :func:`prepare_offline` before ``import ultralytics``; Ultralytics reads these variables at import time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
)


def _find_font() -> Path | None:
    for candidate in _FONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    try:  # matplotlib ships DejaVuSans in its own package data
        import matplotlib

        bundled = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if bundled.is_file():
            return bundled
    except ImportError:
        pass
    return None


def prepare_offline(config_dir: str | Path | None = None, threads: int | None = None) -> Path:
    """Set the environment so Ultralytics never reaches the network; returns its config dir.

    The font Ultralytics wants (Arial.ttf / Arial.Unicode.ttf) is a local font copied under that name, so
    ``check_font`` finds it instead of downloading one.
    """
    if config_dir is None:
        config_dir = os.environ.get("YOLO_CONFIG_DIR") or Path(tempfile.gettempdir()) / "loupe-yolo-config"
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "0"
    os.environ.setdefault("YOLO_VERBOSE", "False")  # no progress bars; our own lines report
    os.environ.setdefault("MPLBACKEND", "Agg")
    # no telemetry, no hub; settings file lives in our config dir
    os.environ.setdefault("ULTRALYTICS_SYNC", "0")
    font = _find_font()
    if font is not None:
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            target = config_dir / name
            if not target.exists():
                shutil.copyfile(font, target)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    return config_dir


def quiet_settings() -> None:
    """Turn off Ultralytics' sync and third-party loggers (call after importing ultralytics)."""
    from ultralytics.utils import SETTINGS

    off = {k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")}
    SETTINGS.update({k: v for k, v in off.items() if k in SETTINGS})
