"""Device health messages -> per-device and fleet metrics (the drift signal).

A device publishes ``loupe/<thing>/health`` every few seconds with its frame rate, latency percentiles and the
statistics of its recent frames. The share of uncertain frames and the mean top confidence are the drift signal:
when the share rises over the alarm threshold, labeling (and so retraining) starts before the count threshold.

A device running a candidate beside production (shadow mode, ``loupe_edge.shadow``) adds a ``shadow`` object: the
candidate's version and the window's agreement counters. It is parsed strictly (:class:`ShadowReport`: no unknown
keys, counters that add up); :func:`shadow_metric_values` turns it into per-candidate metrics, and
``loupe.fleet_serving.record_shadow`` adds the counters to the candidate's totals in the deployments table.

The thing is the topic's (the rule's ``topic(2) AS source_thing``): a message whose claimed thing or topic disagree
with it is rejected, and so is one from a thing outside the fleet's thing group (``in_fleet``) - no metric is
recorded for it. Rejections are kept like the feedback ones (``loupe.feedback.record_rejection``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loupe import aws_errors
from loupe.aws_clients import IoT
from loupe.finite import finite_reason


class HealthRejected(ValueError):
    pass


MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"  # as the device's shadow.modelVersion
UTC_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"  # sorts as text in time order
PACKAGE_ARN_PATTERN = r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[A-Za-z0-9/_-]{1,256}$"
Count = Field(ge=0, le=10**12)
Ratio = Field(default=None, ge=0, le=1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ShadowVerdicts(_Strict):
    """Production's verdict, then the candidate's, on the frames both ran on (OK = pass, NG = defect)."""

    ok_ok: int = Count
    ok_ng: int = Count
    ng_ok: int = Count
    ng_ng: int = Count


class ShadowBoxes(_Strict):
    production: int = Count
    shadow: int = Count
    matched: int = Count  # one-to-one pairs, same class, IoU >= 0.5

    @model_validator(mode="after")
    def _pairs(self) -> ShadowBoxes:
        if self.matched > min(self.production, self.shadow):
            raise ValueError(f"{self.matched} matched boxes out of {self.production} and {self.shadow}")
        return self


class ShadowUncertain(_Strict):
    production: int = Count
    shadow: int = Count


class ShadowLatency(_Strict):
    p50: float | None = Field(default=None, ge=0, le=3_600_000)
    p95: float | None = Field(default=None, ge=0, le=3_600_000)


class ShadowWindow(_Strict):
    start: str = Field(pattern=UTC_TIME_PATTERN)
    end: str = Field(pattern=UTC_TIME_PATTERN)
    seconds: float = Field(ge=0, le=10**8)

    @model_validator(mode="after")
    def _ordered(self) -> ShadowWindow:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")
        return self


class ShadowReport(_Strict):
    """The ``shadow`` object of a health message: one window of a candidate beside production on one device."""

    model_version: str | None = Field(default=None, pattern=MODEL_VERSION_PATTERN)
    model_package_arn: str | None = Field(default=None, pattern=PACKAGE_ARN_PATTERN)
    every_nth_frame: int = Field(ge=1, le=1_000_000)
    state: Literal["loading", "running", "failed"]
    error: str | None = Field(default=None, max_length=2000)
    window: ShadowWindow
    production_frames: int = Count
    frames: int = Count
    errors: int = Count
    verdict: ShadowVerdicts
    boxes: ShadowBoxes
    uncertain: ShadowUncertain
    latency_ms: ShadowLatency
    # the device's own ratios of this window (for people reading one message); the cloud recomputes from counters
    verdict_agreement: float | None = Ratio
    box_recall: float | None = Ratio
    box_precision: float | None = Ratio
    shadow_uncertain_share: float | None = Ratio
    production_uncertain_share: float | None = Ratio

    @model_validator(mode="after")
    def _adds_up(self) -> ShadowReport:
        if self.frames > self.production_frames:
            raise ValueError(f"candidate ran on {self.frames} of {self.production_frames} frames")
        cells = self.verdict.ok_ok + self.verdict.ok_ng + self.verdict.ng_ok + self.verdict.ng_ng
        if cells != self.frames:
            raise ValueError(f"verdict cells add up to {cells}, not to the {self.frames} frames")
        if max(self.uncertain.production, self.uncertain.shadow) > self.frames:
            raise ValueError(f"more uncertain frames than the {self.frames} frames")
        return self

    def counters(self) -> dict[str, int]:
        """The window's additive counters (what totals per candidate are made of)."""
        return {
            "production_frames": self.production_frames,
            "frames": self.frames,
            "errors": self.errors,
            **{f"verdict_{k}": v for k, v in self.verdict.model_dump().items()},
            **{f"boxes_{k}": v for k, v in self.boxes.model_dump().items()},
            **{f"uncertain_{k}": v for k, v in self.uncertain.model_dump().items()},
        }


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
    # the window's counts per model (the canary's evidence); older devices send only the shares
    uncertain_frames: int | None = Field(default=None, ge=0)
    detection_frames: int | None = Field(default=None, ge=0)
    # the model that ran every frame of the window (null: a switch inside it); older devices do not send it
    frames_model_version: str | None = Field(default=None, max_length=128)
    timestamp: str | None = Field(default=None, max_length=40)
    topic: str = Field(min_length=1, max_length=256)  # set by the rule from the MQTT topic
    source_thing: str = Field(min_length=1, max_length=128)
    shadow: ShadowReport | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Health:
        if self.topic != f"loupe/{self.source_thing}/health":
            raise ValueError(f"health of {self.source_thing} arrived on {self.topic}")
        if self.thing != self.source_thing:
            raise ValueError(f"{self.source_thing} published health claiming to be {self.thing}")
        if max(self.uncertain_frames or 0, self.detection_frames or 0) > self.frames:
            raise ValueError(f"more uncertain or detection frames than the window's {self.frames} frames")
        return self

    def model_counters(self) -> dict[str, int]:
        """This window's counters of the model it served (frames, uncertain, NG = frames with a detection)."""
        uncertain = self.uncertain_frames
        if uncertain is None:  # a device that sends only the share: its 4 decimals give the count back
            uncertain = round((self.uncertain_share or 0.0) * self.frames)
        return {"frames": self.frames, "uncertain": int(uncertain), "ng": int(self.detection_frames or 0)}


def canary_group(group: str) -> str:
    """The fleet's canary cohort: a sibling thing group (``loupe.deployment.canary``); its members are the fleet's."""
    return f"{group}-canary"


def in_fleet(iot: IoT, thing: str, group: str) -> bool:
    """Whether ``thing`` is a registered thing in thing group ``group`` or in its canary cohort
    (ListThingGroupsForThing): a canary device leaves the fleet's group for the canary's while it runs."""
    names = {group, canary_group(group)}
    try:
        pages = iot.get_paginator("list_thing_groups_for_thing").paginate(thingName=thing)
        return any(g.get("groupName") in names for page in pages for g in page.get("thingGroups", []))
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


def agreement(totals: dict[str, int]) -> dict[str, float | None]:
    """Ratios of summed counters (a window's, a device's or a candidate's over the fleet): every frame weighs the
    same, whichever device and window it came from."""
    frames = totals.get("frames", 0)
    prod, cand, matched = (
        totals.get("boxes_production", 0),
        totals.get("boxes_shadow", 0),
        totals.get("boxes_matched", 0),
    )
    agreed = totals.get("verdict_ok_ok", 0) + totals.get("verdict_ng_ng", 0)
    return {
        "verdict_agreement": agreed / frames if frames else None,
        "box_recall": matched / prod if prod else None,
        "box_precision": matched / cand if cand else None,
        "shadow_uncertain_share": totals.get("uncertain_shadow", 0) / frames if frames else None,
        "production_uncertain_share": totals.get("uncertain_production", 0) / frames if frames else None,
    }


def field_agreement_metadata(summary: dict[str, Any]) -> dict[str, str]:
    """A candidate's field evidence (``DeploymentsStore.shadow_totals``) as model package metadata
    (CustomerMetadataProperties: string values): frames, devices, errors and the frame-weighted ratios, for the
    registry to show beside the test-split metrics. Ratios without frames are left out, not written as 0."""
    totals = summary.get("totals") or {}
    out = {
        "field_shadow_frames": str(int(totals.get("frames", 0))),
        "field_shadow_devices": str(len(summary.get("devices") or {})),
        "field_shadow_errors": str(int(totals.get("errors", 0))),
        "field_missed_defects": str(int(totals.get("verdict_ng_ok", 0))),
        "field_false_alarms": str(int(totals.get("verdict_ok_ng", 0))),
    }
    for key, value in agreement(totals).items():
        if value is not None:
            out[f"field_{key}"] = f"{value:.4f}"
    return out


def shadow_metric_values(health: Health) -> dict[str, tuple[float, str]]:
    """Metric name -> (value, unit) of the candidate's window (dimension ``candidate_version``); empty when the
    message carries no shadow or an unnamed candidate. Counts are emitted beside the ratios, so a fleet-wide ratio is
    metric math over sums (``SUM(ShadowVerdictsAgreed) / SUM(ShadowFrames)``), not an average of averages."""
    report = health.shadow
    if report is None or not report.model_version:
        return {}
    c = report.counters()
    values: dict[str, tuple[float, str]] = {
        "ShadowFrames": (float(c["frames"]), "Count"),
        "ShadowErrors": (float(c["errors"]), "Count"),
        "ShadowVerdictsAgreed": (float(c["verdict_ok_ok"] + c["verdict_ng_ng"]), "Count"),
        "ShadowMissedDefects": (float(c["verdict_ng_ok"]), "Count"),  # production NG, candidate OK
        "ShadowFalseAlarms": (float(c["verdict_ok_ng"]), "Count"),  # production OK, candidate NG
        "ShadowBoxesMatched": (float(c["boxes_matched"]), "Count"),
        "ShadowBoxesProduction": (float(c["boxes_production"]), "Count"),
        "ShadowBoxesCandidate": (float(c["boxes_shadow"]), "Count"),
    }
    names = {
        "verdict_agreement": "ShadowVerdictAgreement",
        "box_recall": "ShadowBoxRecall",
        "box_precision": "ShadowBoxPrecision",
        "shadow_uncertain_share": "ShadowUncertainShare",
        "production_uncertain_share": "ShadowProductionUncertainShare",
    }
    for key, value in agreement(c).items():
        if value is not None:
            values[names[key]] = (value, "None")
    if report.latency_ms.p95 is not None:
        values["ShadowLatencyP95"] = (report.latency_ms.p95, "Milliseconds")
    return values
