"""The demo's canary: an approved model first serves half of the fleet (``CanaryPercent`` 50) while the other half
keeps the champion; both cohorts see fresh frames of the line, and the edge deployment state machine promotes the
model to the whole fleet or rolls the cohort back by itself (``loupe.deployment.canary``).

When the new model calls more frames NG than the champion (a better model finds the scratches the old one missed)
the state machine holds the canary until labels say which model is right: the demo then does what the hold's
notification asks — it starts a labeling run of the line's uncertain frames (the daily labeling schedule, fired
early), the bot labelers answer them, and the held canary re-decides on their labeled precision.

The demo samples both cohorts' counters (the deployments table the verdict reads) while the window runs, for the
report's two-cohort chart."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from loupe.deployment.canary import cohort_totals, counts_since
from loupe.deployment.store import DeploymentsStore
from loupe_local.demo.context import DemoContext, DemoError, ModelRecord

FINAL = ("PROMOTED", "ROLLED_BACK")


def parameters(frames_per_device: int, min_labeled: int) -> dict[str, str]:
    """The stack parameters of the demo's canary: half the fleet, a window of half the frames each camera gets
    (the champion's half reports at the same pace, so both cohorts reach it), a window timeout whose check interval
    is a few seconds (``poll_interval``: timeout / 20), and a hold long enough for one labeling run (a full demo's took
    33 s for 25 frames) and re-decided every 15 s."""
    return {
        "CanaryPercent": "50",
        "CanaryWindowFrames": str(max(2, frames_per_device // 2)),
        "CanaryWindowTimeoutSeconds": "160",
        "CanaryHoldTimeoutSeconds": "300",
        "CanaryMinLabeledFrames": str(min_labeled),
    }


def fresh_frames(
    stream: dict[str, list[Path]], answers: dict[str, list[dict[str, Any]]], out: Path, per_device: int
) -> tuple[dict[str, list[Path]], list[dict[str, Any]]]:
    """Frames for the canary's window: each device's first ``per_device`` line frames saved again (new bytes, so a
    new image for the ledger and a new task for the labelers; the same tag, so the same answer). Frames whose EXIF
    turns them (the ledger's labeled precision skips those: device pixels vs upright labels) are left out. Returns
    the frames per device and the workforce answers (``{"sha256", "annotations"}``) of the new files."""
    from PIL import Image

    frames: dict[str, list[Path]] = {}
    lines: list[dict[str, Any]] = []
    for thing, paths in stream.items():
        folder = out / thing
        folder.mkdir(parents=True, exist_ok=True)
        frames[thing] = []
        for source in paths:
            if len(frames[thing]) >= per_device:
                break
            with Image.open(source) as img:
                if img.getexif().get(0x0112, 1) != 1:  # Orientation
                    continue
                target = folder / f"canary-{source.stem}.jpg"
                img.convert("RGB").save(target, "JPEG", quality=90)
            frames[thing].append(target)
            digest = hashlib.sha256(target.read_bytes()).hexdigest()
            lines.append({"sha256": digest, "annotations": answers.get(str(source), [])})
    return frames, lines


def write_answers(workforce: Path, lines: list[dict[str, Any]]) -> None:
    """The canary frames' answers beside the other workforce sources (the bots re-read them at each task)."""
    with open(workforce / "canary.jsonl", "w") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")


def cohort_point(t: float, challenger: dict[str, Any], champion: dict[str, Any]) -> dict[str, Any]:
    """One sample of the chart: per cohort, frames and the uncertain and NG shares so far."""

    def shares(c: dict[str, Any]) -> dict[str, Any]:
        frames = int(c.get("frames") or 0)
        return {
            "frames": frames,
            "uncertain_share": (int(c.get("uncertain") or 0) / frames) if frames else None,
            "ng_rate": (int(c.get("ng") or 0) / frames) if frames else None,
        }

    return {"t": round(t, 1), "canary": shares(challenger), "champion": shares(champion)}


class CanaryWatch:
    """The canary of one package, read as the state machine reads it: the group's CANARY item, the cohorts'
    counters since the start, the run's record when it ends."""

    def __init__(self, ctx: DemoContext, record: ModelRecord, champion: ModelRecord) -> None:
        self.ctx, self.record, self.champion = ctx, record, champion
        self.store = DeploymentsStore(ctx.obs.table("DeploymentsTable"))
        self.group = ctx.obs.physical("FleetThingGroup")
        self.item: dict[str, Any] = {}
        self.baseline: dict[str, dict[str, int]] = {}
        self.samples: list[dict[str, Any]] = []
        self.events: list[tuple[float, str]] = []  # (seconds since the demo started, what happened): the chart's marks

    def refresh(self) -> dict[str, Any] | None:
        """The group's canary item when it is this package's (a PROMOTED or ROLLED_BACK item keeps only the run id
        of the canary it ended), else None."""
        item = self.store.canary(self.group) or {}
        ours = item.get("package_arn") == self.record.package_arn or (
            bool(self.item) and item.get("run_id") == self.item.get("run_id")
        )
        if not ours:
            return None
        self.item = {**self.item, **item}
        return self.item

    @property
    def cohort(self) -> list[str]:
        return list(self.item.get("cohort") or [])

    @property
    def rest(self) -> list[str]:
        return [t for t in self.ctx.things if t not in self.cohort]

    def _now(self) -> tuple[dict[str, int], dict[str, int]]:
        return (
            cohort_totals(self.store.model_counters(self.record.model_version, self.cohort)),
            cohort_totals(self.store.model_counters(self.champion.model_version, self.rest)),
        )

    def sample(self) -> None:
        challenger, champion = self._now()
        if not self.baseline:
            self.baseline = {"canary": challenger, "champion": champion}
        self.samples.append(
            cohort_point(
                self.ctx.progress.now(),
                counts_since(challenger, self.baseline["canary"]),
                counts_since(champion, self.baseline["champion"]),
            )
        )

    def run_record(self) -> dict[str, Any] | None:
        """The canary part of the run's record in the deployments table (verdict, reasons, window, labels), once the
        run has ended (after a promotion: once the whole fleet serves the model)."""
        table = self.store.table
        got = table.query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :run)",
            ExpressionAttributeValues={":pk": f"PACKAGE#{self.record.package_arn}", ":run": "RUN#"},
        )
        for item in got.get("Items", []):
            canary = item.get("canary") or {}
            if canary.get("cohort") and canary.get("verdict"):
                return json.loads(json.dumps(canary, default=_number))
        return None


def _number(value: Any) -> Any:
    """DynamoDB's Decimal, for JSON: an int when it is whole."""
    if value != value:  # NaN
        return None
    return int(value) if value == int(value) else float(value)


def run(ctx: DemoContext, record: ModelRecord, n: int) -> dict[str, Any] | None:
    """The canary of model v{n}, from its start to its promotion or rollback; None when no canary runs (no
    champion, or CanaryPercent 0). A rollback is the loop's verdict, not a failure: it is reported, and the demo
    goes on with the champion."""
    if not ctx.models or not ctx.cfg.canary_percent:
        return None
    champion = ctx.models[-1]
    watch = CanaryWatch(ctx, record, champion)
    stage = ctx.progress.start(
        f"canary: model v{n} on {ctx.cfg.canary_percent}% of the fleet, v{champion.version} on the rest, "
        "then promote or roll back by itself"
    )
    ctx.wait("the canary to start", watch.refresh, lambda: f"devices {ctx.device_versions()}", timeout=300)
    ctx.wait(
        f"the canary cohort {watch.cohort} serving model v{n}",
        lambda: ctx.devices_on(record, watch.cohort) or _ended(watch),
        lambda: f"devices {ctx.device_versions()}",
        timeout=600,
    )
    ctx.progress.say(f"  cohort {watch.cohort} serves v{n}; {watch.rest} keep v{champion.version}")
    watch.events.append((ctx.progress.now(), "cohort serves the new model"))
    watch.sample()
    frames: dict[str, list[Path]] = ctx.data.get("canary_frames") or {}

    def every_fourth(i: int) -> None:
        if i % 4 == 0:
            watch.sample()

    ctx.place_frames(frames, ctx.cfg.frame_rate, each=every_fourth)
    labeling = ""
    deadline = time.monotonic() + ctx.cfg.timeout_stage
    while True:
        watch.sample()
        item = watch.refresh() or {}
        if item.get("status") in FINAL:
            break
        hold = item.get("hold") or {}
        if hold and not labeling:
            from loupe_local.canary_cli import held_summary

            for line in held_summary(item):
                ctx.progress.say(f"  {line}")
            watch.events.append((ctx.progress.now(), "held for labels"))
            labeling = _label_the_line(ctx)
        if time.monotonic() > deadline:
            raise DemoError(f"the canary of model v{n} did not end within {ctx.cfg.timeout_stage:.0f}s: {item}")
        window = (watch.samples[-1] or {}).get("canary") or {}
        ctx.progress.tick(
            f"canary {item.get('status', '?')}{' (HELD for labels)' if hold else ''}: cohort frames "
            f"{window.get('frames')}; ledger {ctx.obs.ledger_totals()}"
        )
        time.sleep(1.0)
    try:
        recorded = ctx.wait("the canary's verdict in the run's record", watch.run_record, timeout=600)
    except DemoError:
        recorded = {"reasons": [f"no run record within 600 s (canary item: {item})"]}
    watch.events.append((ctx.progress.now(), str(item["status"]).lower().replace("_", " ")))
    result = {
        **recorded,
        "status": item["status"],
        "samples": watch.samples,
        "events": watch.events,
        "labeling": labeling,
    }
    result.setdefault("cohort", watch.cohort)
    result.setdefault("rest", watch.rest)
    record.canary = result
    reasons = "; ".join(result.get("reasons") or []) or "not worse beyond the margins"
    verb = "promoted to the whole fleet" if item["status"] == "PROMOTED" else "ROLLED BACK on its cohort"
    ctx.progress.done(stage, f"model v{n} {verb} by the canary's verdict: {reasons}", ok=item["status"] == "PROMOTED")
    return result


def _ended(watch: CanaryWatch) -> bool:
    return (watch.refresh() or {}).get("status") in FINAL


def _label_the_line(ctx: DemoContext) -> str:
    """What the hold asks for: labels of the line's frames. A labeling run now (the daily labeling schedule fired
    early, as an operator would start one), unless one is running already."""
    if ctx.obs.labeling_running():
        note = "a labeling run was already labeling the line's frames"
    else:
        ctx.fire_labeling_schedule()
        note = "the demo started a labeling run of the line's uncertain frames (the daily labeling schedule, early)"
    ctx.progress.say(f"  held for labels: {note}; the bot labelers answer them and the canary re-decides")
    return note
