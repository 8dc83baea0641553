"""The demo's look at a candidate beside production before its approval (shadow mode): the gate-passing package
runs on the devices as ``com.loupe.shadow`` from its registration; the demo keeps the line running until the
fleet has compared enough frames (or a bounded wait ends), then shows the field agreement next to the gate's
numbers, and the approval records it in the package's metadata."""

from __future__ import annotations

import time
from typing import Any

from loupe.deployment.document import DEFAULT_EVERY_NTH_FRAME
from loupe_local.demo.context import DemoContext, ModelRecord

BACKLOG = 8  # frames per camera placed and not yet processed by the slowest device, at most (1-2 s of frames)


def field_decision(
    field: dict[str, Any] | None, min_frames: int, min_devices: int, elapsed: float, timeout: float
) -> str:
    """``ready`` once the candidate's counters hold at least ``min_frames`` compared frames from at least
    ``min_devices`` devices (a device has counters only while it serves the candidate), ``timeout`` once
    ``elapsed`` reaches ``timeout`` without that, else ``wait``."""
    frames = int((field or {}).get("frames") or 0)
    devices = int((field or {}).get("devices") or 0)
    if frames >= min_frames and devices >= min_devices:
        return "ready"
    return "timeout" if elapsed >= timeout else "wait"


def _ratio(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "n/a"


def field_line(record: ModelRecord) -> str:
    """The gate's numbers and the field agreement, on one line."""
    gate = f"gate: pipeline test mAP50 {record.pipeline_test_map50}" + (
        " (refused)" if record.gate_refusal else " (passed)"
    )
    field = record.field_agreement
    if not field or not field.get("frames"):
        return f"{gate}; field: no frames compared beside production"
    return (
        f"{gate}; field: {field['frames']} frames compared on {field['devices']} device(s), verdict agreement "
        f"{_ratio(field.get('verdict_agreement'))}, box recall {_ratio(field.get('box_recall'))}, box precision "
        f"{_ratio(field.get('box_precision'))}, {field.get('false_alarms', 0)} false alarms, "
        f"{field.get('missed_defects', 0)} missed defects, {field.get('errors', 0)} errors"
    )


def await_field_agreement(ctx: DemoContext, record: ModelRecord, n: int) -> None:
    """With a model in production and a gate-passing candidate: keeps the cameras running (the phase-2 frames
    again) until the candidate has compared ``cfg.field_frames`` frames on a device, or ``cfg.field_wait_s`` has
    passed (said so, and the demo goes on), and keeps the agreement in ``record.field_agreement``. A first model
    (nothing in production to compare with) or one the gate refused (never shadowed) waits for nothing."""
    if not ctx.models or record.gate_refusal:
        return
    cfg = ctx.cfg
    stage = ctx.progress.start(f"model v{n} beside production on the devices (shadow), before its approval")
    frames = {thing: paths for thing, paths in (ctx.data.get("stream") or {}).items() if paths}
    started, placed = time.monotonic(), 0
    processed_before = _processed(ctx)
    running_since: float | None = None
    # enough frames for the comparisons asked for (the candidate sees every Nth), twice over: the counters arrive
    # through health windows and the cloud a while after the frames, and frames placed meanwhile would be wasted
    # work (in the quick loop every frame is uncertain and goes back to S3)
    enough = 2 * -(-cfg.field_frames * DEFAULT_EVERY_NTH_FRAME // max(1, len(frames)))
    while True:
        # the cameras: the phase-2 frames again at the demo's frame rate once the candidate runs on the devices
        # (a frame before that is not compared), under names of their own (a device keeping processed files by name
        # would skip a name it has seen), never more than ``BACKLOG`` ahead of the slowest device: a queue left
        # behind would delay the next deployment
        if running_since is None and _candidate_running(ctx, record.model_version, cfg.field_wait_s / 3, started):
            running_since = time.monotonic()
        while (
            running_since is not None
            and placed < min(enough, int((time.monotonic() - running_since) * cfg.frame_rate))
            and placed - (_processed(ctx) - processed_before) < BACKLOG
        ):
            for thing, paths in frames.items():
                source = paths[placed % len(paths)]
                ctx.place_frame(thing, source, f"field-v{n}-{placed}-{source.name}")
            placed += 1
        record.field_agreement = ctx.obs.field_evidence(record.package_arn)
        decision = field_decision(
            record.field_agreement, cfg.field_frames, 1, time.monotonic() - started, cfg.field_wait_s
        )
        if decision != "wait":
            break
        compared = (record.field_agreement or {}).get("frames", 0)
        ctx.progress.tick(f"{compared}/{cfg.field_frames} frames compared beside production so far")
        time.sleep(0.5)
    waited = time.monotonic() - started
    note = field_line(record)
    if decision == "timeout":
        note = f"not enough field evidence within {cfg.field_wait_s:.0f}s (approving on what there is); {note}"
    record.field_note = note
    ctx.progress.done(stage, f"{note} (waited {waited:.0f}s, {placed} frames placed per camera)")


def _processed(ctx: DemoContext) -> int:
    """Inference results of the slowest device so far (the demo's MQTT watcher); 0 without a watcher."""
    if ctx.watcher is None or not ctx.things:
        return 0
    with ctx.watcher.lock:
        return min(ctx.watcher.frames.get(thing, 0) for thing in ctx.things)


def _candidate_running(ctx: DemoContext, version: str, patience: float, started: float) -> bool:
    """Every device's last health says candidate ``version`` runs beside production; also True once ``patience``
    seconds have passed since ``started`` (a device that never says so still gets frames, and the wait's own
    deadline decides), or without a watcher."""
    if ctx.watcher is None or time.monotonic() - started >= patience:
        return True
    with ctx.watcher.lock:
        last = {thing: (ctx.watcher.health.get(thing) or [{}])[-1] for thing in ctx.things}
    return all(h.get("shadow_version") == version and h.get("shadow_state") == "running" for h in last.values())
