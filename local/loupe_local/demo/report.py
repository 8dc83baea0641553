"""The demo's report: ``report/index.html`` (pictures first) and ``report/summary.json``.

Pictures: the loop's timeline, v1 vs v2 metrics on the held-out phase-2 test set, sample frames with the boxes of
v1 and v2 side by side (ground truth in green), per-device deployment status and edge latency.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

GT = (40, 200, 80)
COLORS = {"v1": (230, 60, 50), "v2": (40, 120, 240)}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


RECIPE = Path(__file__).resolve().parents[3] / "edge_component" / "inference" / "recipe.yaml"


def deployed_thresholds(recipe: Path = RECIPE) -> tuple[float, float]:
    """(confThreshold, iouThreshold) the inference component is deployed with (its recipe's default
    configuration; the edge deployment changes neither)."""
    import yaml

    settings = yaml.safe_load(recipe.read_text())["ComponentConfiguration"]["DefaultConfiguration"]["settings"]
    return float(settings["model"]["confThreshold"]), float(settings["model"]["iouThreshold"])


def detect(
    model_dir: Path, image_paths: list[Path], conf: float | None = None, iou: float | None = None
) -> list[np.ndarray]:
    """Boxes (x1 y1 x2 y2 score class, source pixels) of a model folder (model.onnx + model_card.json) per image,
    exactly as a device reports them: the edge component's own inference path (letterbox, decoding, the same
    NMS), at the deployed confidence and IoU thresholds unless given, keeping the boxes a device shows (score over
    the confidence threshold)."""
    from loupe_edge.engine import Preparer, run_model
    from loupe_edge.model import ModelSettings, load_model
    from loupe_edge.sources import RawFrame

    deployed_conf, deployed_iou = deployed_thresholds()
    conf = deployed_conf if conf is None else conf
    settings = ModelSettings(precision="fp32", conf_threshold=conf, iou_threshold=deployed_iou if iou is None else iou)
    model = load_model(Path(model_dir), settings)
    preparer = Preparer()
    out = []
    for path in image_paths:
        raw = RawFrame(frame_id=path.stem, name=path.name, data=path.read_bytes())
        prepared = preparer.prepare(raw, (model.input_w, model.input_h))
        if prepared.error or prepared.tensor is None or prepared.letterbox is None:
            out.append(np.zeros((0, 6), dtype=np.float32))
            continue
        result = run_model(model, prepared.tensor, prepared.letterbox, conf)
        out.append(result.boxes[result.boxes[:, 4] > conf] if len(result.boxes) else result.boxes)
    return out


def _draw(
    image: Image.Image, boxes: np.ndarray, gt: list[dict[str, Any]], color: tuple[int, int, int], label: str
) -> Image.Image:
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    for a in gt:
        draw.rectangle([a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]], outline=GT, width=1)
    for x1, y1, x2, y2, score, _cls in boxes.tolist():
        draw.rectangle([x1, y1, x2, y2], outline=color, width=3)
        draw.text((x1 + 3, max(0, y1 - 12)), f"{score:.2f}", fill=color)
    draw.rectangle([0, 0, 8 * len(label) + 10, 16], fill=(0, 0, 0))
    draw.text((5, 2), label, fill=(255, 255, 255))
    return canvas


def side_by_side(
    image_path: Path,
    gt: list[dict[str, Any]],
    boxes_v1: np.ndarray,
    boxes_v2: np.ndarray,
    out_path: Path,
    names: tuple[str, str] = ("v1", "v2"),
) -> Path:
    image = Image.open(image_path)
    left = _draw(image, boxes_v1, gt, COLORS["v1"], f"{names[0]}: {len(boxes_v1)} boxes")
    right = _draw(image, boxes_v2, gt, COLORS["v2"], f"{names[1]}: {len(boxes_v2)} boxes")
    pair = Image.new("RGB", (left.width + right.width + 6, max(left.height, right.height)), (255, 255, 255))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width + 6, 0))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pair.save(out_path, format="PNG")
    return out_path


def metrics_chart(models: list[dict[str, Any]], out_path: Path) -> Path:
    plt = _plt()
    keys = [("test_map50_phase2", "mAP50 phase-2 held-out"), ("test_map50_phase1", "mAP50 phase-1 test")]
    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=110)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        values = [model.get(k) or 0.0 for k, _ in keys]
        xs = np.arange(len(keys)) + i * width
        bars = ax.bar(xs, values, width, label=f"v{model['version']} (dataset v{model.get('dataset_version')})")
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", fontsize=8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(models) - 1) / 2, [label for _, label in keys])
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("mAP50")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.set_title("Models across versions")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def timeline_chart(stages: list[dict[str, Any]], out_path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(stages) + 1.0), dpi=110)
    for i, stage in enumerate(stages):
        start, end = stage["start"], stage.get("end") or stage["start"]
        ax.barh(i, max(end - start, 0.5), left=start, color="#4a7fd4" if stage.get("ok", True) else "#d44a4a")
        ax.text(end + 2, i, f"{end - start:.0f}s", va="center", fontsize=7)
    ax.set_yticks(range(len(stages)), [s["name"] for s in stages], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the demo started")
    ax.set_title("Timeline of the loop")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def latency_chart(health: dict[str, list[dict[str, Any]]], out_path: Path) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.0), dpi=110)
    drawn = False
    for thing, points in sorted(health.items()):
        pts = [p for p in points if p.get("p95") is not None]
        if not pts:
            continue
        ax.plot([p["t"] for p in pts], [p["p95"] for p in pts], marker=".", label=f"{thing} p95")
        ax.plot([p["t"] for p in pts], [p["p50"] for p in pts], linestyle="--", label=f"{thing} p50")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("seconds since the demo started")
    ax.set_ylabel("ms per frame")
    ax.legend(fontsize=7)
    ax.set_title("Edge latency per device")
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def canary_chart(
    samples: list[dict[str, Any]],
    out_path: Path,
    labels: tuple[str, str],
    events: list[tuple[float, str]] | None = None,
) -> Path | None:
    """The canary's window, both cohorts over the same time: the uncertain-frame share and the NG rate so far
    (the counters the verdict reads), against seconds since the demo started, with what happened marked (the cohort
    serving, a hold, the verdict); None without two samples."""
    pts = [p for p in samples if (p["canary"]["frames"] or p["champion"]["frames"])]
    if len(pts) < 2:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.0), dpi=110, sharex=True)
    for ax, key, title in ((axes[0], "uncertain_share", "uncertain-frame share"), (axes[1], "ng_rate", "NG rate")):
        for cohort, label, style in (("canary", labels[0], "-"), ("champion", labels[1], "--")):
            xs = [p["t"] for p in pts if p[cohort][key] is not None]
            ys = [p[cohort][key] for p in pts if p[cohort][key] is not None]
            if xs:
                ax.plot(xs, ys, linestyle=style, marker=".", label=label)
        for t, what in events or []:
            ax.axvline(t, color="grey", linewidth=0.8, linestyle=":")
            ax.text(t, 0.5, f" {what}", rotation=90, fontsize=6, color="grey", va="center")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{title} so far, per cohort", fontsize=9)
        ax.set_xlabel("seconds since the demo started")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def _canary_section(canary: dict[str, Any] | None, picture: str | None) -> str:
    """The last model's canary: cohorts, the verdict and its reasons, the window per cohort, labeled precision."""
    if not canary:
        return ""
    e = html.escape
    ok = canary.get("status") == "PROMOTED"
    window = canary.get("window") or {}
    rows = ""
    for who, key in (("canary (challenger)", "challenger"), ("rest (champion)", "champion")):
        w = window.get(key) or {}
        lab = (canary.get("labels") or {}).get("canary" if key == "challenger" else "champion") or {}
        rows += (
            f"<tr><td>{who}</td><td>{w.get('frames', '-')}</td><td>{w.get('uncertain', '-')}</td>"
            f"<td>{w.get('ng', '-')}</td><td>{w.get('errors', '-')}</td><td>{_fmt(w.get('latency_p95_ms'), 1)}</td>"
            f"<td>{_fmt(lab.get('precision'))} ({lab.get('frames', 0)} labeled frames)</td></tr>"
        )
    reasons = "".join(f"<li>{e(str(r))}</li>" for r in canary.get("reasons") or [])
    reasons = reasons or "<li>not worse beyond the margins</li>"
    held = " It was held for labels first: " + e(str(canary.get("labeling") or "")) if canary.get("held") else ""
    img = f'<img src="{e(picture)}" alt="the two cohorts over the canary window">' if picture else ""
    return (
        f'<h2>Canary</h2><p class="{"ok" if ok else "bad"}">{e(str(canary.get("status")))}: model '
        f"{e(str(canary.get('challenger_version')))} on {e(', '.join(canary.get('cohort') or []))}, model "
        f"{e(str(canary.get('champion_version')))} on {e(', '.join(canary.get('rest') or []) or '-')}; window ended: "
        f'{e(str(canary.get("ended") or "-"))}.{held}</p><ul>{reasons}</ul><div class="pics">{img}</div>'
        "<table><tr><th>cohort</th><th>frames</th><th>uncertain</th><th>NG</th><th>errors</th><th>p95 ms</th>"
        f"<th>labeled precision</th></tr>{rows}</table>"
    )


def write_html(report_dir: Path, summary: dict[str, Any], pictures: dict[str, Any]) -> Path:
    e = html.escape
    rows_models = "".join(
        f"<tr><td>v{e(str(m['version']))}</td><td>v{e(str(m.get('dataset_version')))}</td>"
        f"<td>{e(str(m.get('parent_dataset_version')))}</td><td>{_fmt(m.get('test_map50_phase2'))}</td>"
        f"<td>{_fmt(m.get('test_map50_phase1'))}</td><td>{_fmt(m.get('pipeline_test_map50'))}</td>"
        f"<td>{e(str(m.get('approval', '')))}{_refused_mark(m)}</td><td>{e(str(m.get('warm_start', '')))}</td>"
        f"<td>{e(field_cell(m.get('field_agreement')))}</td></tr>"
        for m in summary.get("models", [])
    )
    notes = "".join(f'<li data-refusal="{e(str(i))}">{e(n)}</li>' for i, n in enumerate(summary.get("notes") or []))
    refusals = f'<h2 class="bad">The gate refused a model</h2><ul>{notes}</ul>' if notes else ""
    rows_datasets = "".join(
        f"<tr><td>v{e(str(d['version']))}</td><td>{e(str(d.get('parent')))}</td><td>{d.get('images')}</td>"
        f"<td>{d.get('boxes')}</td><td>{e(json.dumps(d.get('by_origin', {})))}</td></tr>"
        for d in summary.get("datasets", [])
    )
    rows_devices = "".join(
        f"<tr><td>{e(d['thing_name'])}</td><td>{e(str(d.get('model_version')))}</td>"
        f"<td>{e(str(d.get('deployments', '')))}</td><td>{d.get('frames', 0)}</td>"
        f"<td>{_fmt(d.get('latency_ms_p50'), 1)}</td><td>{_fmt(d.get('latency_ms_p95'), 1)}</td>"
        f"<td>{d.get('feedback_frames', 0)}</td></tr>"
        for d in summary.get("devices", [])
    )
    rows_stages = "".join(
        f"<tr><td>{e(s['name'])}</td><td>{s['start']:.0f}s</td>"
        f"<td>{(s.get('end') or s['start']) - s['start']:.0f}s</td>"
        f"<td>{e(s.get('note', ''))}</td></tr>"
        for s in summary.get("stages", [])
    )
    samples = "".join(
        f'<figure><img src="{e(p)}" alt="v1 and v2 boxes"><figcaption>{e(c)}</figcaption></figure>'
        for p, c in pictures.get("samples", [])
    )

    def img(key: str, alt: str) -> str:
        return f'<img src="{e(pictures[key])}" alt="{e(alt)}">' if pictures.get(key) else ""

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Loupe demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0 }} .sub {{ color: #666; margin-top: .2rem }}
table {{ border-collapse: collapse; margin: .5rem 0 1.5rem }} td, th {{ border: 1px solid #ddd; padding: .3rem .6rem }}
th {{ background: #f4f4f4 }} figure {{ margin: 0 0 1rem }} figure img {{ max-width: 100%; border: 1px solid #ccc }}
.pics img {{ max-width: 49%; vertical-align: top }} .ok {{ color: #1a7f37 }} .bad {{ color: #c0392b }}
</style></head><body>
<h1>Loupe — the closed loop, run locally</h1>
<p class="sub">{e(summary.get("source", ""))} · wall time {summary.get("wall_seconds", 0):.0f}s ·
v2 − v1 on the phase-2 held-out set: <b>{_fmt(summary.get("improvement_map50_phase2"))}</b> mAP50
{e(gain_spread(summary.get("improvement_paired")))} ·
{e(summary.get("result", ""))}</p>{_phase2_line(summary.get("phase2") or {})}{refusals}
<h2>Timeline</h2>{img("timeline", "timeline of the loop")}
<table><tr><th>stage</th><th>start</th><th>took</th><th>note</th></tr>{rows_stages}</table>
<h2>Models</h2><div class="pics">{img("metrics", "metrics per model version")}{img("latency", "edge latency")}</div>
<table><tr><th>model</th><th>dataset</th><th>parent dataset</th><th>mAP50 phase-2 held-out</th>
<th>mAP50 phase-1 test</th><th>pipeline test mAP50</th><th>approval</th><th>warm start</th>
<th>field agreement with production at approval (shadow)</th></tr>{rows_models}</table>
<h2>Dataset versions</h2>
<table><tr><th>version</th><th>parent</th><th>images</th><th>boxes</th><th>origin</th></tr>{rows_datasets}</table>
<h2>Devices</h2>
<table><tr><th>thing</th><th>model at the end</th><th>deployments</th><th>frames</th><th>p50 ms</th><th>p95 ms</th>
<th>uncertain frames sent back</th></tr>{rows_devices}</table>
<h2>Held-out phase-2 frames: v1 (red) and v2 (blue) boxes as the devices report them (confidence over
{_fmt(pictures.get("conf"), 2)}, the edge's NMS), ground truth in green</h2>{samples}
{_canary_section(summary.get("canary"), pictures.get("canary"))}
{_iam_section(summary.get("iam"))}
</body></html>
"""
    path = report_dir / "index.html"
    path.write_text(page)
    return path


def _iam_section(iam: dict[str, Any] | None) -> str:
    """Least privilege, measured (``loupe_local.iam.report.summarize``): per role the actions it used against
    those it is granted, and the calls its grant would refuse."""
    if not iam:
        return ""
    e = html.escape
    denied = int(iam.get("would_deny", 0))
    rows = ""
    for role in iam.get("roles", []):
        used = ", ".join(f"{e(a)} ({n})" for a, n in role.get("used", {}).items()) or "(no call in this run)"
        refused = "; ".join(
            f"{e(a)} ({d.get('calls', 0)}): {e(' / '.join(d.get('reasons', [])))}"
            for a, d in role.get("denied", {}).items()
        )
        unused = "<br>".join(e(line) for line in role.get("unused", []))
        rows += (
            f'<tr data-role="{e(role.get("role", ""))}"><td>{e(role.get("role", ""))}</td><td>{used}</td>'
            f'<td class="bad">{refused}</td><td>{unused}</td></tr>'
        )
    verdict = f'<span class="{"bad" if denied else "ok"}">{denied} call(s) outside a role\'s grant</span>'
    return (
        f'<h2 id="iam">IAM: what each role used against what it is granted (mode {e(str(iam.get("mode", "")))})</h2>'
        f"<p>{verdict}</p><table><tr><th>role</th><th>actions used (calls)</th><th>would be denied</th>"
        f"<th>granted, never used</th></tr>{rows}</table>"
    )


def field_cell(field: dict[str, Any] | None) -> str:
    """A model's agreement with production on the devices at its approval, in a few words."""
    if not field or not field.get("frames"):
        return "not run beside production"

    def pct(key: str) -> str:
        value = field.get(key)
        return f"{value:.1%}" if isinstance(value, int | float) else "n/a"

    return (
        f"{field['frames']} frames on {field.get('devices', 0)} device(s): verdicts agree {pct('verdict_agreement')}, "
        f"box recall {pct('box_recall')}, box precision {pct('box_precision')}, "
        f"{field.get('false_alarms', 0)} false alarms, {field.get('missed_defects', 0)} missed defects"
    )


def _refused_mark(model: dict[str, Any]) -> str:
    if model.get("gate") != "refused":
        return ""
    reason = html.escape(str(model.get("gate_refusal", "")))
    return f' <span class="bad" data-gate="refused">(despite the gate: {reason})</span>'


def _phase2_line(phase2: dict[str, Any]) -> str:
    if not phase2.get("frames_streamed"):
        return ""
    sent, total = phase2.get("uncertain", 0), phase2["frames_streamed"]
    started = phase2.get("labeling_started_by", "")
    again = phase2.get("frames_seen_again") or 0
    return (
        f'<p class="sub">phase 2: {sent} of the {total} new frames the cameras saw were uncertain and sent back for '
        "labeling"
        + (f"; {html.escape(started)}" if started else "")
        + (f" (meanwhile the cameras saw the same tags again: {again} frames)" if again else "")
        + "</p>"
    )


def gain_spread(paired: dict[str, Any] | None) -> str:
    """The paired bootstrap of v2 − v1 in words: its 90 % interval and how often v2 came out ahead."""
    if not paired:
        return ""
    low, high = paired["ci90"]
    return (
        f"(90 % interval {low:+.3f} to {high:+.3f}; v2 ahead in {paired['p_challenger_better']:.0%} of "
        f"{paired['bootstrap']} resamples of the {paired['images']} images)"
    )


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"
