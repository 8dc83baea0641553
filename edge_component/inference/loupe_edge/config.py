"""Component configuration: defaults, merging and validation.

Every key has a default; an invalid value is reported with a clear reason and replaced by the default, so a bad
deployment configuration never stops the component (the problems are logged and published in health messages).
The keys are documented in ``edge_component/README.md``.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The largest frame a device takes, by file size and by pixels: what the cloud's ingest accepts (loupe.ingest
# MAX_BYTES, MAX_PIXELS), so an uncertain frame sent back is never quarantined there for its size.
MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_PIXELS = 24_000_000

DEFAULTS: dict[str, Any] = {
    "thingName": "",
    "workDir": "",
    "logLevel": "info",
    "source": {
        "type": "directory",  # directory | opencv
        "path": "",  # directory to watch (type=directory)
        "uri": "",  # video file, RTSP URL or device index (type=opencv)
        "pollMs": 100,
        "settleMs": 250,  # a file counts as complete when size and mtime hold still this long
        "afterProcessing": "delete",  # delete | move | keep
        "processedDir": "",  # for afterProcessing=move (default <path>/.processed)
        "maxFileBytes": 20 * 1024 * 1024,
        "rejectedMaxBytes": 256 * 1024 * 1024,  # .rejected/ keeps refused files up to this, oldest deleted first
        "maxPixels": MAX_PIXELS,
        "fps": 0.0,  # opencv: frames per second to sample (0 = as fast as inference allows)
    },
    "model": {
        "dir": "",  # explicit model folder (local runs); else the pointer file
        "pointerFile": "",  # default <workDir>/../com.loupe.model/current.json
        "precision": "fp32",  # fp32 | int8
        "providers": ["CPUExecutionProvider"],
        "intraOpThreads": 0,
        "interOpThreads": 1,
        "confThreshold": 0.25,
        "iouThreshold": 0.7,
        "maxDetections": 300,
        "verifyDigest": True,
        "pollSeconds": 5.0,  # how often the pointer file is checked besides update notifications
        "reportFailure": True,  # report ERRORED to Greengrass when a new model fails (deployment rolls back)
    },
    "shadow": {
        "enabled": False,
        "modelVersion": "",  # the candidate the deployment names (its com.loupe.shadow pointer must say the same)
        "modelPackageArn": "",
        "sha256": {},  # {"model.onnx": hex, "model_int8.onnx": hex or ""}: registered digests of the candidate
        "everyNthFrame": 5,  # the candidate runs on every Nth production frame (1 = every frame)
        "dir": "",  # explicit candidate folder (local runs); else the pointer file
        "pointerFile": "",  # default <workDir>/../com.loupe.shadow/current.json
        "precision": "fp32",
    },
    "verdict": {"defectClasses": [], "minConfidence": 0.25},
    "feedback": {
        "enabled": True,
        "bucket": "",
        "prefix": "raw/feedback",
        "bandLow": 0.25,
        "bandHigh": 0.6,
        "criterion": "any",  # any: a detection inside the band; top: the frame's most confident detection
        "maxPerMinute": 6,
        "maxPerDay": 500,
    },
    "outbox": {"path": "", "maxMessages": 10000, "maxUploads": 200, "maxBytes": 256 * 1024 * 1024, "retrySeconds": 2.0},
    "health": {"intervalSeconds": 60.0},
    "mqtt": {"host": "127.0.0.1", "port": 1883, "clientId": "", "keepalive": 30},
    "topics": {
        "inference": "loupe/{thing}/inference",
        "lowConfidence": "loupe/{thing}/low-confidence",
        "health": "loupe/{thing}/health",
    },
}


def _num(lo: float | None = None, hi: float | None = None, integer: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    raise ValueError(f"{v!r} is not a number") from None
            else:
                raise ValueError(f"{v!r} is not a number")
        if integer:
            if float(v) != int(v):
                raise ValueError(f"{v!r} is not a whole number")
            v = int(v)
        if lo is not None and v < lo:
            raise ValueError(f"{v} is below the minimum {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"{v} is above the maximum {hi}")
        return v

    return check


def _choice(*options: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or v.lower() not in options:
            raise ValueError(f"{v!r} is not one of {', '.join(options)}")
        return v.lower()

    return check


def _str(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    raise ValueError(f"{v!r} is not true/false")


def _str_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [p.strip() for p in v.split(",") if p.strip()]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{v!r} is not a list of strings")
    return v


def _int_list(v: Any) -> list[int]:
    if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise ValueError(f"{v!r} is not a list of class ids")
    return v


_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_PACKAGE_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:model-package/[A-Za-z0-9/_-]{1,256}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
SHADOW_FILES = ("model.onnx", "model_int8.onnx")


def _model_version(v: Any) -> str:
    v = _str(v)
    if v and not _VERSION.fullmatch(v):
        raise ValueError(f"{v[:80]!r} is not a model version (letters, digits, . _ + -, at most 64)")
    return v


def _package_arn(v: Any) -> str:
    v = _str(v)
    if v and not _PACKAGE_ARN.fullmatch(v):
        raise ValueError(f"{v[:120]!r} is not a SageMaker model package ARN")
    return v


def _digests(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError(f"{v!r} is not an object of file -> sha256")
    unknown = sorted(set(v) - set(SHADOW_FILES))
    if unknown:
        raise ValueError(f"unknown model files {unknown} (expected {', '.join(SHADOW_FILES)})")
    out = {}
    for name, digest in v.items():
        if not isinstance(digest, str) or (digest and not _HEX64.fullmatch(digest)):
            raise ValueError(f"{name}: {str(digest)[:80]!r} is not a SHA-256 in hex")
        out[name] = digest.lower()
    return out


def _topic(v: Any) -> str:
    v = _str(v)
    if "{thing}" not in v or "#" in v or "+" in v:
        raise ValueError(f"{v!r} must contain {{thing}} and no wildcards")
    return v


RULES: dict[str, Callable[[Any], Any]] = {
    "thingName": _str,
    "workDir": _str,
    "logLevel": _choice("debug", "info", "warning", "error"),
    "source.type": _choice("directory", "opencv"),
    "source.path": _str,
    "source.uri": _str,
    "source.pollMs": _num(10, 60_000, integer=True),
    "source.settleMs": _num(0, 60_000, integer=True),
    "source.afterProcessing": _choice("delete", "move", "keep"),
    "source.processedDir": _str,
    "source.maxFileBytes": _num(1024, MAX_FILE_BYTES, integer=True),
    "source.rejectedMaxBytes": _num(0, 1 << 40, integer=True),
    "source.maxPixels": _num(1024, MAX_PIXELS, integer=True),
    "source.fps": _num(0, 240),
    "model.dir": _str,
    "model.pointerFile": _str,
    "model.precision": _choice("fp32", "int8"),
    "model.providers": _str_list,
    "model.intraOpThreads": _num(0, 256, integer=True),
    "model.interOpThreads": _num(1, 256, integer=True),
    "model.confThreshold": _num(0.0, 1.0),
    "model.iouThreshold": _num(0.0, 1.0),
    "model.maxDetections": _num(1, 10_000, integer=True),
    "model.verifyDigest": _bool,
    "model.pollSeconds": _num(0.1, 3600),
    "model.reportFailure": _bool,
    "shadow.enabled": _bool,
    "shadow.modelVersion": _model_version,
    "shadow.modelPackageArn": _package_arn,
    "shadow.sha256": _digests,
    "shadow.everyNthFrame": _num(1, 1_000_000, integer=True),
    "shadow.dir": _str,
    "shadow.pointerFile": _str,
    "shadow.precision": _choice("fp32", "int8"),
    "verdict.defectClasses": _int_list,
    "verdict.minConfidence": _num(0.0, 1.0),
    "feedback.enabled": _bool,
    "feedback.bucket": _str,
    "feedback.prefix": _str,
    "feedback.bandLow": _num(0.0, 1.0),
    "feedback.bandHigh": _num(0.0, 1.0),
    "feedback.criterion": _choice("any", "top"),
    "feedback.maxPerMinute": _num(0, 10_000, integer=True),
    "feedback.maxPerDay": _num(0, 10_000_000, integer=True),
    "outbox.path": _str,
    "outbox.maxMessages": _num(10, 10_000_000, integer=True),
    "outbox.maxUploads": _num(1, 1_000_000, integer=True),
    "outbox.maxBytes": _num(1 << 20, 1 << 40, integer=True),
    "outbox.retrySeconds": _num(0.05, 600),
    "health.intervalSeconds": _num(0.1, 86_400),
    "mqtt.host": _str,
    "mqtt.port": _num(1, 65535, integer=True),
    "mqtt.clientId": _str,
    "mqtt.keepalive": _num(5, 3600, integer=True),
    "topics.inference": _topic,
    "topics.lowConfidence": _topic,
    "topics.health": _topic,
}


@dataclass
class Config:
    values: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def get(self, dotted: str) -> Any:
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    def topic(self, name: str) -> str:
        return self.get(f"topics.{name}").replace("{thing}", self.get("thingName"))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def validate(raw: dict | None) -> Config:
    """Merge ``raw`` over the defaults and validate every known key; unknown keys are reported and ignored."""
    problems: list[str] = []
    raw = raw or {}
    if not isinstance(raw, dict):
        return Config(copy.deepcopy(DEFAULTS), [f"configuration must be a JSON object, got {type(raw).__name__}"])
    merged = deep_merge(DEFAULTS, {k: v for k, v in raw.items() if k != "accessControl"})
    values = copy.deepcopy(DEFAULTS)
    for key, rule in RULES.items():
        section, _, leaf = key.rpartition(".")
        src = merged[section] if section else merged
        dst = values[section] if section else values
        if not isinstance(src, dict):
            problems.append(f"{section}: must be an object; using defaults")
            continue
        try:
            dst[leaf] = rule(src.get(leaf))
        except ValueError as exc:
            default = DEFAULTS[section][leaf] if section else DEFAULTS[leaf]
            problems.append(f"{key}: {exc}; using default {default!r}")
    for section, body in merged.items():
        if section not in DEFAULTS:
            problems.append(f"{section}: unknown key, ignored")
        elif isinstance(body, dict) and isinstance(DEFAULTS[section], dict):
            problems.extend(f"{section}.{k}: unknown key, ignored" for k in body if k not in DEFAULTS[section])
    fb = values["feedback"]
    if fb["bandLow"] >= fb["bandHigh"]:
        problems.append(
            f"feedback.bandLow ({fb['bandLow']}) must be below feedback.bandHigh ({fb['bandHigh']}); using defaults"
        )
        fb["bandLow"], fb["bandHigh"] = DEFAULTS["feedback"]["bandLow"], DEFAULTS["feedback"]["bandHigh"]
    return Config(values, problems)


def load_local(config_file: str | None = None, config_json: str | None = None) -> dict:
    """Raw configuration for runs outside Greengrass: a JSON file, a JSON string, or env ``LOUPE_EDGE_CONFIG``."""
    raw: dict = {}
    env = os.environ.get("LOUPE_EDGE_CONFIG", "").strip()
    for text, origin in ((env, "LOUPE_EDGE_CONFIG"), (config_json, "--config-json")):
        if not text:
            continue
        if not text.lstrip().startswith("{") and Path(text).is_file():
            text = Path(text).read_text()
        raw = deep_merge(raw, _parse(text, origin))
    if config_file:
        raw = deep_merge(raw, _parse(Path(config_file).read_text(), config_file))
    return raw


def _parse(text: str, origin: str) -> dict:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"configuration from {origin} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"configuration from {origin} must be a JSON object")
    return doc
