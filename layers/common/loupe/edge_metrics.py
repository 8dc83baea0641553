"""Device health messages -> per-device and fleet metrics (the drift signal).

A device publishes ``loupe/<thing>/health`` every few seconds with its frame rate, latency percentiles and the
statistics of its recent frames. The share of uncertain frames and the mean top confidence are the drift signal:
when the share rises over the alarm threshold, labeling (and so retraining) starts before the count threshold.

The thing is the topic's (the rule's ``topic(2) AS source_thing``): a message whose claimed thing or topic disagree
with it is rejected, and so is one from a thing outside the fleet's thing group (``in_fleet``) - no metric is
recorded for it. Rejections are kept like the feedback ones (``loupe.feedback.record_rejection``).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loupe import aws_errors
from loupe.aws_clients import IoT
from loupe.finite import finite_reason


class HealthRejected(ValueError):
    pass


class Health(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    thing: str = Field(min_length=1, max_length=128)
    model_version: str | None = None
    frames: int = Field(default=0, ge=0)
    fps: float = Field(default=0.0, ge=0)
    latency_ms_p50: float | None = Field(default=None, ge=0)
    latency_ms_p95: float | None = Field(default=None, ge=0)
    uncertain_share: float | None = Field(default=None, ge=0, le=1)
    mean_top_confidence: float | None = Field(default=None, ge=0, le=1)
    outbox_depth: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    topic: str = Field(min_length=1, max_length=256)  # set by the rule from the MQTT topic
    source_thing: str = Field(min_length=1, max_length=128)

    @model_validator(mode="after")
    def _consistent(self) -> Health:
        if self.topic != f"loupe/{self.source_thing}/health":
            raise ValueError(f"health of {self.source_thing} arrived on {self.topic}")
        if self.thing != self.source_thing:
            raise ValueError(f"{self.source_thing} published health claiming to be {self.thing}")
        return self


def in_fleet(iot: IoT, thing: str, group: str) -> bool:
    """Whether ``thing`` is a registered thing in thing group ``group`` (ListThingGroupsForThing)."""
    try:
        pages = iot.get_paginator("list_thing_groups_for_thing").paginate(thingName=thing)
        return any(g.get("groupName") == group for page in pages for g in page.get("thingGroups", []))
    except Exception as exc:
        if aws_errors.error_code(exc) == "ResourceNotFoundException":  # not a registered thing
            return False
        raise


class FleetMembership:
    """``thing in fleet``: membership of the fleet's thing group, looked up at most once per ``ttl_s`` per thing
    (a warm Lambda container keeps the answers)."""

    def __init__(self, iot: IoT, group: str, ttl_s: float = 60.0) -> None:
        self.iot, self.group, self.ttl_s = iot, group, ttl_s
        self._until: dict[str, float] = {}

    def __contains__(self, thing: object) -> bool:
        name = str(thing)
        if self._until.get(name, 0.0) > time.monotonic():
            return True
        if in_fleet(self.iot, name, self.group):
            self._until[name] = time.monotonic() + self.ttl_s
            return True
        return False


def admit(event: Any, fleet: FleetMembership) -> Health:
    """The health message of a fleet device; :class:`HealthRejected` for a bad one or a thing outside the fleet."""
    health = parse_health(event)
    if health.source_thing not in fleet:
        raise HealthRejected(f"{health.source_thing} is not in thing group {fleet.group}")
    return health


_ALIASES = {
    "frames_per_second": "fps",
    "latency_p50_ms": "latency_ms_p50",
    "latency_p95_ms": "latency_ms_p95",
    "uncertain_frame_share": "uncertain_share",
}


def parse_health(event: Any) -> Health:
    if not isinstance(event, dict):
        raise HealthRejected(f"expected a JSON object, got {type(event).__name__}")
    problem = finite_reason(event)  # before the sums below: int() of NaN or Infinity raises
    if problem is not None:
        raise HealthRejected(f"invalid health message: {problem}")
    try:
        flat = _flatten(event)
    except (TypeError, ValueError, OverflowError) as exc:
        raise HealthRejected(f"invalid health message: {exc}") from exc
    try:
        return Health.model_validate(flat)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise HealthRejected(f"invalid health message: {where + ': ' if where else ''}{first['msg']}") from exc


def _flatten(event: dict[str, Any]) -> dict[str, Any]:
    """The device's nested statistics (latency_ms, dropped, outbox, errors) as the flat fields of :class:`Health`."""
    flat = dict(event)
    if isinstance(flat.get("latency_ms"), dict):
        for key, value in flat["latency_ms"].items():
            flat.setdefault(f"latency_ms_{key}", value)
    for old, new in _ALIASES.items():
        if old in flat and new not in flat:
            flat[new] = flat[old]
    if isinstance(flat.get("dropped"), dict):
        flat["dropped"] = sum(int(v) for v in flat["dropped"].values() if isinstance(v, int | float))
    if isinstance(flat.get("outbox"), dict):
        flat["outbox_depth"] = sum(int(v) for v in flat["outbox"].values() if isinstance(v, int | float))
    errors = flat.get("errors")
    if isinstance(errors, dict):
        flat["errors"] = int(errors.get("count", 0))
    elif isinstance(errors, list):
        flat["errors"] = len(errors)
    return flat


def metric_values(health: Health) -> dict[str, tuple[float, str]]:
    """Metric name -> (value, unit) for one health message; absent statistics give no metric."""
    values: dict[str, tuple[float, str]] = {"FramesPerSecond": (health.fps, "Count/Second")}
    if health.latency_ms_p50 is not None:
        values["LatencyP50"] = (health.latency_ms_p50, "Milliseconds")
    if health.latency_ms_p95 is not None:
        values["LatencyP95"] = (health.latency_ms_p95, "Milliseconds")
    if health.uncertain_share is not None:
        values["UncertainFrameShare"] = (health.uncertain_share, "None")
    if health.mean_top_confidence is not None:
        values["MeanTopConfidence"] = (health.mean_top_confidence, "None")
    values["OutboxDepth"] = (float(health.outbox_depth), "Count")
    values["DroppedMessages"] = (float(health.dropped), "Count")
    return values
