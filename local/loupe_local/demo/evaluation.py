"""The demo's evaluation: each model scored on the held-out sets by the pipeline's own evaluation code, the report's
pictures (metrics, v1/v2 side by side, latency, timeline), and report/summary.json and report/index.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loupe_local.demo.context import DemoContext, ModelRecord

Items = list[tuple[Path, list[dict[str, Any]]]]


def score_models(ctx: DemoContext) -> dict[str, Any] | None:
    """mAP50 of every model on the phase-2 and phase-1 held-out sets, in its metrics; returns v2 against v1 on the
    phase-2 set, paired image by image (:func:`compare`), or None with fewer than two models."""
    stats: list[list[dict[str, Any]]] = []
    for model in ctx.models:
        stats.append([])
        model.metrics["test_map50_phase2"] = score(ctx.out, model, ctx.data["test"], "phase2", stats[-1])
        model.metrics["test_map50_phase1"] = score(ctx.out, model, ctx.data["test_phase1"], "phase1")
    return compare(stats[-1], stats[0]) if len(stats) > 1 else None


def compare(v2: list[dict[str, Any]], v1: list[dict[str, Any]]) -> dict[str, Any] | None:
    """v2's mAP50 minus v1's on the same held-out images, with its spread: a bootstrap over the images, each
    resample scoring both models on the same draw (loupe_training.spread.paired_comparison). A held-out set of a
    few dozen photos moves mAP50 by several points from one draw to the next: the interval says whether the gain
    is more than that."""
    from loupe_training.spread import paired_comparison

    if not v2 or not v1:
        return None
    result = paired_comparison(v2, v1)
    return {k: result[k] for k in ("difference", "ci90", "p_challenger_better", "bootstrap", "images")}


def model_rows(models: list[ModelRecord]) -> list[dict[str, Any]]:
    return [
        {
            "version": m.version,
            "model_version": m.model_version,
            "package_arn": m.package_arn,
            "dataset_version": m.dataset_version,
            "parent_dataset_version": m.parent_dataset_version,
            "test_map50_phase2": m.metrics.get("test_map50_phase2"),
            "test_map50_phase1": m.metrics.get("test_map50_phase1"),
            "pipeline_test_map50": m.pipeline_test_map50,
            "approval": m.approval,
            "approval_note": m.approval_note,
            "gate": "refused" if m.gate_refusal else "passed",
            "gate_refusal": m.gate_refusal,
            "training_diagnosis": m.training_diagnosis,
            "warm_start": m.warm_start,
            "field_agreement": m.field_agreement,  # beside production on the devices, at its approval
        }
        for m in models
    ]


def refusal_notes(models: list[ModelRecord]) -> list[str]:
    """One line per model the gate refused and a person (or the demo) approved anyway: the summary's ``notes``."""
    return [
        f"model v{m.version} was {m.approval_note or 'approved'} (training: {m.training_diagnosis or 'no diagnosis'})"
        for m in models
        if m.gate_refusal
    ]


def draw_models(ctx: DemoContext, report_dir: Path) -> dict[str, Any]:
    """The metrics chart and, with two models, held-out samples with v1's and v2's boxes side by side."""
    from loupe_local.demo import report

    pictures: dict[str, Any] = {"samples": []}
    pictures["metrics"] = report.metrics_chart(model_rows(ctx.models), report_dir / "metrics.png").name
    if len(ctx.models) < 2:
        return pictures
    with_defects = [item for item in ctx.data["test"] if item[1]]
    clean = [item for item in ctx.data["test"] if not item[1]]
    sample = (with_defects[:5] + clean[:1]) if not ctx.cfg.quick else ctx.data["test"][:2]
    paths = [p for p, _ in sample]
    # the boxes a device reports: the deployed confidence threshold and the edge's own decoding and NMS
    pictures["conf"], _ = report.deployed_thresholds()
    first, last = ctx.models[0].model_dir, ctx.models[-1].model_dir
    assert first is not None and last is not None, "an evaluated model has its folder"
    boxes_v1 = report.detect(first, paths)
    boxes_v2 = report.detect(last, paths)
    for i, ((path, gt), b1, b2) in enumerate(zip(sample, boxes_v1, boxes_v2, strict=True)):
        png = report.side_by_side(path, gt, b1, b2, report_dir / "samples" / f"sample-{i}.png")
        pictures["samples"].append(
            (f"samples/{png.name}", f"{path.name}: {len(gt)} scratches; v1 {len(b1)} boxes, v2 {len(b2)} boxes")
        )
    return pictures


def device_rows(ctx: DemoContext) -> list[dict[str, Any]]:
    """Per device: the model it serves, the versions it served, frames, feedback and latency (from MQTT)."""
    assert ctx.watcher is not None
    watcher = ctx.watcher
    devices = []
    for thing in ctx.things:
        lat = sorted(watcher.latency.get(thing, []))
        health = [h for h in watcher.health.get(thing, []) if h.get("p50") is not None]
        devices.append(
            {
                "thing_name": thing,
                "model_version": watcher.model_versions.get(thing),
                "versions_served": sorted(watcher.versions_seen.get(thing, set())),
                "deployments": ctx.obs.device_state(thing)["deployment"].get("status", ""),
                "frames": watcher.frames.get(thing, 0),
                "feedback_frames": watcher.feedback.get(thing, 0),
                "latency_ms_p50": lat[len(lat) // 2] if lat else (health[-1]["p50"] if health else None),
                "latency_ms_p95": lat[int(len(lat) * 0.95)] if lat else (health[-1]["p95"] if health else None),
            }
        )
    return devices


def draw_latency(ctx: DemoContext, report_dir: Path) -> str | None:
    from loupe_local.demo import report

    assert ctx.watcher is not None
    chart = report.latency_chart(dict(ctx.watcher.health), report_dir / "latency.png")
    return chart.name if chart else None


def result(last: ModelRecord, devices: list[dict[str, Any]]) -> str:
    """The loop's end: the last model on every device, or rolled back by its canary (the loop's own verdict, with
    its reason), else incomplete."""
    canary = last.canary or {}
    if canary and canary.get("status") != "PROMOTED":
        return f"v{last.version} rolled back by its canary: " + ("; ".join(canary.get("reasons") or []) or "no reason")
    if devices and all(d["model_version"] == last.model_version for d in devices):
        return f"v{last.version} deployed on every device"
    return "incomplete"


def canary_summary(last: ModelRecord) -> dict[str, Any] | None:
    """The last model's canary for summary.json: cohorts, window counts, verdict, reasons, labels, held or not."""
    canary = last.canary
    if not canary:
        return None
    keep = ("status", "cohort", "rest", "champion_version", "challenger_version", "ended", "verdict", "reasons")
    return {
        **{k: canary.get(k) for k in keep},
        **{k: canary.get(k) for k in ("window", "labels", "held", "tests", "labeling")},
        "samples": len(canary.get("samples") or []),
    }


def dataset_rows(datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dataset versions, oldest first, for the summary."""
    return [
        {
            "version": d["version"],
            "parent": d.get("parent"),
            "images": d["counts"]["images"],
            "boxes": d["counts"]["boxes"],
            "by_origin": d["counts"].get("by_origin", {}),
        }
        for d in sorted(datasets, key=lambda d: int(d["version"]))
    ]


def improvement(models: list[ModelRecord]) -> float | None:
    """v2's phase-2 mAP50 minus v1's."""
    if len(models) < 2:
        return None
    a, b = models[0].metrics.get("test_map50_phase2"), models[-1].metrics.get("test_map50_phase2")
    return round(b - a, 4) if a is not None and b is not None else None


def write_report(
    ctx: DemoContext,
    report_dir: Path,
    wall: float,
    devices: list[dict[str, Any]],
    pictures: dict[str, Any],
    gain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The timeline chart, report/summary.json and report/index.html; returns the summary."""
    from loupe_local.demo import report

    pictures["timeline"] = report.timeline_chart(ctx.progress.stages, report_dir / "timeline.png").name
    last = ctx.models[-1] if ctx.models else None
    if last is not None and last.canary:
        champion = ctx.models[-2].version if len(ctx.models) > 1 else "?"
        chart = report.canary_chart(
            last.canary.get("samples") or [],
            report_dir / "canary.png",
            (f"canary cohort: v{last.version}", f"rest of the fleet: v{champion}"),
            [(float(t), str(what)) for t, what in last.canary.get("events") or []],
        )
        pictures["canary"] = chart.name if chart else None
    summary = {
        "wall_seconds": round(wall, 1),
        "source": ctx.data.get("source"),
        "quick": ctx.cfg.quick,
        "models": model_rows(ctx.models),
        "devices": devices,
        "datasets": dataset_rows(ctx.obs.dataset_versions()),
        "improvement_map50_phase2": improvement(ctx.models),
        "improvement_paired": gain,
        "phase2": ctx.data.get("phase2", {}),
        "stages": ctx.progress.stages,
        "notes": refusal_notes(ctx.models),
        "result": result(ctx.models[-1], devices) if ctx.models else "incomplete",
        "canary": canary_summary(ctx.models[-1]) if ctx.models else None,
    }
    if ctx.cfg.iam != "off":  # least privilege, measured (loupe_local.iam.report)
        from loupe_local.iam.report import summarize

        summary["iam"] = summarize(ctx.runtime.state_dir, ctx.cfg.iam)
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    html = report.write_html(report_dir, summary, pictures)
    ctx.progress.say(f"report: {html}")
    return summary


def score(
    out: Path, model: ModelRecord, items: Items, name: str, image_stats: list[dict[str, Any]] | None = None
) -> float | None:
    """mAP50 of a model on a held-out set, scored by the pipeline's own evaluation code (``image_stats`` receives
    its per-image results)."""
    from loupe_training.evaluate import score as evaluate
    from loupe_training.prepare import load_prepared

    if not items or model.model_dir is None:
        return None
    folder = out / "eval" / name
    if not (folder / "data.yaml").is_file():
        held_out_set(items, folder)
    result = evaluate(
        model.model_dir / "model.onnx",
        load_prepared(folder),
        split="test",
        work_dir=out / "eval" / f"work-{model.version}-{name}",
        image_stats=image_stats,
    )
    return round(float(result["map50"]), 4)


def held_out_set(items: Items, folder: Path) -> None:
    """An evaluation-only dataset: every image in the test split (a held-out set has no train/val)."""
    import yaml
    from PIL import Image

    from loupe.datasets import Box, LabeledImage, build_manifest, label_text, sha256_bytes

    (folder / "images" / "test").mkdir(parents=True, exist_ok=True)
    (folder / "labels" / "test").mkdir(parents=True, exist_ok=True)
    images = []
    for path, gt in items:
        data = path.read_bytes()
        with Image.open(path) as im:
            width, height = im.size
        img = LabeledImage(
            sha256=sha256_bytes(data),
            width=width,
            height=height,
            boxes=[Box.from_dict(a) for a in gt],
            source_ref=str(path),
            split="test",
        )
        images.append(img)
        (folder / "images" / "test" / f"{img.sha256}.jpg").write_bytes(data)
        (folder / "labels" / "test" / f"{img.sha256}.txt").write_text(label_text(img))
    manifest = build_manifest(0, None, images)
    (folder / "dataset.json").write_text(json.dumps(manifest))
    names = {int(k): v for k, v in manifest["class_map"].items()}
    data_yaml = {"path": ".", "train": "images/test", "val": "images/test", "test": "images/test", "names": names}
    (folder / "data.yaml").write_text(yaml.safe_dump(data_yaml, sort_keys=False))
