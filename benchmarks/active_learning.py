"""Label efficiency: phase-2 frames picked by v1's uncertainty vs picked at random, at equal label budgets.

v1 (YOLOv8n trained from scratch on synthetic phase 1) looks at a pool of unlabeled phase-2 frames. For each
label budget B, two ways of choosing the B frames to label:

- ``uncertainty``: what the edge devices should send back. Frames whose most confident v1 detection falls in
  the band [--band-lo, --band-hi) (default 0.1-0.4: v1 saw something but is unsure), closest to the middle of
  the band first (``--criterion any`` instead takes frames with *any* detection in the band). If the band holds
  fewer than B frames, the rest is filled with the frames whose highest confidence is lowest (frames where v1
  sees nothing, or next to nothing, come first).
- ``random``: B frames drawn uniformly from the pool, for several seeds (its curve is the mean).

Budgets are nested (the 50 frames include the 25). For each pick, v2 is fine-tuned from v1's weights on the
picked frames plus a fixed replay of phase-1 frames, with the same epochs and recipe (AdamW lr0 0.001, no
warmup), and scored (mAP50) on a held-out phase-2 test set. The label saving is how many fewer labels the
uncertainty sampler needs to reach random's mAP50 at the largest budget (linear interpolation between measured
budgets, budget 0 = v1).

Measured (2026-11-22, with this script's former own training loop: last-epoch weights, no val split; shared
2-core CPU, defaults: v1 = YOLOv8n from scratch, imgsz 256, 40 epochs on 200
phase-1 pictures, 0.85 phase-1 test mAP50; pool 300 phase-2 frames with carryover 0.3; 100 test frames; v2 = 8
epochs on 60 replay + B frames):

    v1 on phase-2 test: 0.335; 109 of 300 pool frames in the band (85 % of them new-style, none clean)
    budget  uncertainty  random (seeds 0, 1, 2 -> mean)
        25        0.552  0.437 0.520 0.421 -> 0.459
        50        0.539  0.512 0.497 0.374 -> 0.461
       100        0.546  0.555 0.559 0.541 -> 0.552
    label saving: uncertainty reaches random's 0.552 (100 labels) at 25 labels -> 75 % fewer

Read with care: one uncertainty run per budget, random varies by up to +-0.07 between seeds, and the
uncertainty curve is flat at ~0.55 from 25 labels (the 8-epoch fine-tune, not the labels, limits it), so
"25 labels ~ 100 random labels" is the finding, not the exact 75 %. A first run with ``--criterion any``, band
0.25-0.6 and Ultralytics' default fine-tuning recipe gave 0.233/0.430/0.594 vs random 0.091/0.387/0.545 (15 %
saving): v1 is not confident even on old-style frames, so "any detection in 0.25-0.6" mostly picked those.

    .venv/bin/python benchmarks/active_learning.py [--quick] [--json] [--v1 path/to/v1.pt]

Slow (about 30 minutes on the idle 2-core CPU, 1-1.5 h when shared); ``--quick`` is a tiny smoke run whose
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from synth_training import dataset, make_splits, map50, max_confidences, train

from loupe_local.demo import synth


def uncertainty_order(
    confs: dict[str, list[float]], lo: float, hi: float, criterion: str = "top"
) -> tuple[list[str], int]:
    """Pool frames, most useful first, and how many of them are in the band.

    ``criterion="top"``: a frame is in the band when its most confident detection is (v1's best guess is
    unsure). ``criterion="any"``: when any of its detections is.
    """
    mid = (lo + hi) / 2
    band, rest = [], []
    for stem, cs in confs.items():
        if criterion == "top":
            in_band = [max(cs)] if cs and lo <= max(cs) < hi else []
        else:
            in_band = [c for c in cs if lo <= c < hi]
        if in_band:
            band.append((min(abs(c - mid) for c in in_band), stem))
        else:
            rest.append((max(cs, default=0.0), stem))
    band.sort()
    rest.sort()
    return [s for _, s in band] + [s for _, s in rest], len(band)


def label_saving(budgets: list[int], sampler: list[float], random: list[float], v1: float) -> dict[str, Any]:
    """Smallest budget at which the sampler's (interpolated) mAP50 reaches random's at the largest budget."""
    target = random[-1]
    if target <= v1:
        return {"target_map50": target, "labels_needed": None, "saving": None, "note": "random did not beat v1"}
    xs = [0, *budgets]
    ys = [v1, *sampler]
    needed = None
    for i in range(1, len(xs)):
        if ys[i] >= target:
            if ys[i - 1] >= target:
                needed = float(xs[i - 1])
            else:
                frac = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
                needed = xs[i - 1] + frac * (xs[i] - xs[i - 1])
            break
    if needed is None:
        return {"target_map50": target, "labels_needed": None, "saving": None}
    return {"target_map50": target, "labels_needed": round(needed, 1), "saving": round(1 - needed / xs[-1], 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", default="/tmp/loupe-active-learning")
    p.add_argument("--budgets", default="25,50,100")
    p.add_argument("--band-lo", type=float, default=0.1)
    p.add_argument("--band-hi", type=float, default=0.4)
    p.add_argument("--criterion", choices=("top", "any"), default="top", help="see uncertainty_order")
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--p1-train", type=int, default=200)
    p.add_argument("--pool", type=int, default=300, help="unlabeled phase-2 frames the devices saw")
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--carryover", type=float, default=0.3)
    p.add_argument("--v1-epochs", type=int, default=40)
    p.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs for every v2")
    p.add_argument("--replay", type=int, default=60, help="phase-1 frames mixed into every v2 training set")
    p.add_argument(
        "--random-seeds", default="0,1,2", help="seeds of the random sampler; its curve is the mean over them"
    )
    p.add_argument("--methods", default="uncertainty,random", help="which samplers to run (comma-separated)")
    p.add_argument("--v1", help="reuse these v1 weights (trained on the same phase-1 data)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (numbers are meaningless)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    a = p.parse_args(argv)
    if a.quick:
        a.budgets, a.p1_train, a.pool, a.test, a.v1_epochs, a.epochs, a.replay = "4,8", 12, 16, 8, 1, 1, 4
        a.imgsz = 128
    budgets = sorted(int(b) for b in a.budgets.split(","))
    methods = {m.strip() for m in a.methods.split(",")}
    if not methods <= {"uncertainty", "random"}:
        p.error(f"unknown method in --methods {a.methods!r}")
    if budgets[-1] > a.pool:
        p.error(f"largest budget {budgets[-1]} exceeds the pool ({a.pool})")
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    val = max(4, a.test // 2)  # held-out frames each training validates on (best checkpoint), never scored
    d = make_splits(
        work / "data",
        {
            "p1-train": (1, a.p1_train, 101, 0.0),
            "p1-val": (1, val, 103, 0.0),
            "p2-pool": (2, a.pool, 201, a.carryover),
            "p2-val": (2, val, 203, a.carryover),
            "p2-test": (2, a.test, 202, a.carryover),
        },
    )
    log = {"config": vars(a)}
    sets = work / "datasets"
    p2_val, p2_test = [(d["p2-val"], None)], [(d["p2-test"], None)]
    if a.v1:
        v1 = Path(a.v1)
    else:
        v1_data = dataset(sets, "v1", [(d["p1-train"], None)], [(d["p1-val"], None)], p2_test)
        v1, secs = train(v1_data, work / "runs" / "v1", epochs=a.v1_epochs, imgsz=a.imgsz)
        log["v1_train_seconds"] = round(secs, 1)
    v1_map = map50(v1, dataset(sets, "v1-p2", [(d["p1-train"], None)], p2_val, p2_test), a.imgsz, work)
    confs = max_confidences(v1, d["p2-pool"] / "images", a.imgsz)
    order_u, in_band = uncertainty_order(confs, a.band_lo, a.band_hi, a.criterion)
    stems = sorted(confs)
    seeds = [int(x) for x in a.random_seeds.split(",")]
    runs: list[tuple[str, str, list[str]]] = []  # (method, run name, order)
    if "uncertainty" in methods:
        runs.append(("uncertainty", "uncertainty", order_u))
    if "random" in methods:
        for sd in seeds:
            runs.append(
                ("random", f"random-s{sd}", [stems[i] for i in np.random.default_rng(sd).permutation(len(stems))])
            )
    style = {Path(x["file"]).stem: x["style"] for x in synth.read_answers(d["p2-pool"])}
    replay = [x["file"] for x in synth.read_answers(d["p1-train"])][: a.replay]
    per_run: dict[str, list[float]] = {name: [] for _, name, _ in runs}
    picks: dict[str, list[dict[str, int]]] = {name: [] for _, name, _ in runs}
    for budget in budgets:
        for _method, name, order in runs:
            chosen = order[:budget]
            mix = dataset(sets, f"{name}-{budget}", [(d["p1-train"], replay), (d["p2-pool"], chosen)], p2_val, p2_test)
            w, secs = train(mix, work / "runs" / f"{name}-{budget}", epochs=a.epochs, imgsz=a.imgsz, weights=v1)
            m = map50(w, mix, a.imgsz, work)
            per_run[name].append(m)
            picks[name].append(
                {
                    "budget": budget,
                    "clean": sum(1 for s in chosen if style[s]["clean"]),
                    "old_style": sum(1 for s in chosen if style[s]["old_style"]),
                    "train_seconds": round(secs),
                }
            )
            print(f"{name:13s} budget {budget:4d}: phase-2 test mAP50 {m:.3f}", file=sys.stderr, flush=True)
    results: dict[str, list[float]] = {"uncertainty": per_run.get("uncertainty", []), "random": []}
    rand = [per_run[name] for method, name, _ in runs if method == "random"]
    if rand:
        results["random"] = [float(np.mean(col)) for col in zip(*rand, strict=True)]
    summary = {
        "v1_p2_map50": round(v1_map, 4),
        "pool": len(stems),
        "in_band": in_band,
        "budgets": budgets,
        "map50": {k: [round(v, 4) for v in vs] for k, vs in results.items()},
        "map50_per_run": {k: [round(v, 4) for v in vs] for k, vs in per_run.items()},
        "picks": picks,
        "label_saving": (
            label_saving(budgets, results["uncertainty"], results["random"], v1_map)
            if methods == {"uncertainty", "random"}
            else None
        ),
        "wall_seconds": round(time.monotonic() - t0),
        **log,
    }
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"v1 on phase-2 test: mAP50 {v1_map:.3f}; pool {len(stems)} frames, {in_band} in the band")
        print(f"{'budget':>8s} {'uncertainty':>12s} {'random':>8s}  (random: mean over seeds {seeds})")
        for i, b in enumerate(budgets):
            u = f"{results['uncertainty'][i]:12.3f}" if results["uncertainty"] else f"{'-':>12s}"
            r = f"{results['random'][i]:8.3f}" if results["random"] else f"{'-':>8s}"
            print(f"{b:8d} {u} {r}")
        s = summary["label_saving"]
        if s is None:
            pass
        elif "note" in s:
            print(f"no label saving computed: {s['note']}")
        elif s["saving"] is None:
            print(f"uncertainty sampling never reached random's {s['target_map50']:.3f} at {budgets[-1]} labels")
        else:
            print(
                f"uncertainty sampling reaches random's {s['target_map50']:.3f} (at {budgets[-1]} labels) with "
                f"{s['labels_needed']} labels: {100 * s['saving']:.0f} % fewer"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
