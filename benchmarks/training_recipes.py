"""Benchmark: training recipes for the metal-tags photos, scored on photos the run never trained on.

Each run trains YOLOv8 with plain Ultralytics under a recipe (a set of train() arguments) and scores the best
checkpoint with Ultralytics' validator on held-out images. Photos are held out by **capture** (crops of one camera
capture are near-duplicates: ``loupe_training.holdout``), and a **lockbox** of whole captures (about 20 %) is kept out
of everything but ``--lockbox``:

* ``--split fixed`` (screening): train on the dataset's own train split, score on its val + test splits together
  (capture-grouped since the dataset splits by capture; never used for training or for picking a checkpoint: the
  recipes validate on a slice of train); lockbox photos left out of both;
* ``--folds K`` (the estimate): every non-lockbox photo is scored once, by the model of the fold that left its
  capture out (K models; mean and spread over the folds and over ``--seed`` values);
* ``--lockbox`` (once per recipe change): train on every non-lockbox photo, score on the lockbox. No recipe choice
  may be made on this number; it says what the estimate is worth on captures no decision has seen.

Recipes name a time budget, not an epoch count, where the point is "what fits in N seconds on this machine":
Ultralytics' ``time`` argument re-plans the epoch count and the learning-rate schedule after every epoch so the
run ends inside the budget. ``plain`` is the peer every recipe is compared with: Ultralytics' defaults with the
same budget.

    .venv/bin/python benchmarks/training_recipes.py --recipe plain --recipe laptop --split fixed
    .venv/bin/python benchmarks/training_recipes.py --recipe e60 --folds 3 --seed 0 --seed 1 --seed 2
    .venv/bin/python benchmarks/training_recipes.py --recipe e60 --lockbox

Prints one JSON line per run and a summary table; the machine's cores and load average go with the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
DATASET = REPO.parent / "shared" / "datasets" / "metal-tags"

# Every recipe starts from yolov8n.yaml (no pretrained weights: nothing is downloaded) at 320 px.
BASE: dict[str, Any] = {"model": "yolov8n.yaml", "imgsz": 320, "seed": 0}
RECIPES: dict[str, dict[str, Any]] = {
    # Ultralytics' defaults, the same time budget: the peer
    "plain": {"time_s": 540},
    # Loupe's default before issue 12 (fixed 60 epochs, deterministic, no AMP, no workers, per-epoch val)
    "loupe-v60": {"epochs": 60, "deterministic": True, "workers": 0, "amp": False, "patience": 15},
    # candidates. Ultralytics sets OMP_NUM_THREADS=1 at import and trains on CPU with workers=0 (data loading in
    # the training process), so plain uses one core of two: "threads" sets torch's intra-op threads.
    "t2": {"time_s": 540, "threads": 2},
    "t2-flip": {"time_s": 540, "threads": 2, "flipud": 0.5},
    # the same with the epoch count two threads fit in 540 s on an idle 2-core machine (~8.5 s an epoch), run
    # with one thread: the score does not depend on the threads or on other load, only the wall time does (two
    # OpenMP threads beside other busy processes wait on each other: 60 s an epoch at load 5)
    "e60": {"epochs": 60},
    "e60-flip": {"epochs": 60, "flipud": 0.5},
    "e60-flip-deg": {"epochs": 60, "flipud": 0.5, "degrees": 10.0},
    "e40-s384-flip": {"epochs": 40, "flipud": 0.5, "imgsz": 384},
}


def log(msg: str) -> None:
    print(f"[recipes] {msg}", file=sys.stderr, flush=True)


def labeled_images(prepared_root: Path) -> list[Path]:
    return sorted(p for split in ("train", "val", "test") for p in (prepared_root / "images" / split).iterdir())


def captures_of(prepared_root: Path) -> dict[str, str]:
    """File stem (the image's SHA-256) -> its capture, from the prepared dataset.json."""
    from loupe_training.holdout import capture_key

    manifest = json.loads((prepared_root / "dataset.json").read_text())
    return {entry["sha256"]: capture_key(entry) for entry in manifest["images"]}


def folds_of(images: list[Path], captures: dict[str, str], k: int) -> list[list[Path]]:
    """K folds of whole captures, balanced by photo count: stable across machines and runs."""
    from loupe_training.holdout import grouped_folds

    return [sorted(f) for f in grouped_folds(images, lambda p: captures.get(p.stem, p.stem), k)]


def write_lists(work: Path, train: list[Path], val: list[Path], test: list[Path]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("val", val), ("test", test)):
        (work / f"{name}.txt").write_text("".join(f"{p.resolve()}\n" for p in items))
    data = work / "data.yaml"
    data.write_text(
        f"path: {work}\ntrain: {work / 'train.txt'}\nval: {work / 'val.txt'}\ntest: {work / 'test.txt'}\n"
        "names:\n  0: scratch\n"
    )
    return data


def train_and_score(recipe: str, data: Path, work: Path, seed: int = 0) -> dict[str, Any]:
    from ultralytics import YOLO

    args = {**BASE, **RECIPES[recipe], "seed": seed}
    model_cfg = args.pop("model")
    budget = args.pop("time_s", None)
    threads = args.pop("threads", None)
    if budget:
        args["time"] = budget / 3600.0
        args.setdefault("epochs", 1000)  # only the time decides
    model = YOLO(model_cfg)
    if threads:
        # select_device() sets torch's threads to min(8, cores - 1) on CPU; undo it once the trainer has a device
        import torch

        def use_threads(_trainer: Any) -> None:
            torch.set_num_threads(threads)

        model.add_callback("on_pretrain_routine_start", use_threads)
    started = time.monotonic()
    model.train(data=str(data), project=str(work), name="run", exist_ok=True, plots=False, verbose=False, **args)
    seconds = time.monotonic() - started
    weights = work / "run" / "weights"
    best = weights / "best.pt" if (weights / "best.pt").is_file() else weights / "last.pt"
    epochs_run = int(getattr(model.trainer, "epoch", -1)) + 1
    metrics = YOLO(str(best)).val(
        data=str(data), split="test", imgsz=args.get("imgsz", 320), batch=16, plots=False, verbose=False, workers=0
    )
    return {
        "recipe": recipe,
        "args": {**BASE, **RECIPES[recipe], "seed": seed},
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 1),
        "map50": round(float(metrics.box.map50), 4),
        "map50_95": round(float(metrics.box.map), 4),
        "held_out_images": len((data.parent / "test.txt").read_text().split()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), required=True)
    parser.add_argument("--split", choices=["fixed"], help="screening: train split → val+test")
    parser.add_argument("--folds", type=int, default=0, help="K-fold estimate over every labeled photo")
    parser.add_argument("--only-fold", type=int, action="append", help="run only these folds (0-based)")
    parser.add_argument("--lockbox", action="store_true", help="train on all but the lockbox, score the lockbox")
    parser.add_argument("--seed", type=int, action="append", help="training seed(s); default 0")
    parser.add_argument("--out", default="/tmp/loupe-bench/recipes")
    args = parser.parse_args()
    if sum(bool(x) for x in (args.split, args.folds, args.lockbox)) != 1 or (args.folds and args.folds < 2):
        parser.error("give one of --split fixed, --folds K (K >= 2) or --lockbox")
    seeds = args.seed or [0]

    from loupe_training.offline import prepare_offline, quiet_settings
    from loupe_training.prepare import prepare

    out = Path(args.out)
    prepare_offline(out / ".yolo-config")
    quiet_settings()
    prepared_root = out / "prepared"
    if not (prepared_root / "dataset.json").is_file():
        (out / "source").mkdir(parents=True, exist_ok=True)
        prepare(DATASET, prepared_root, work_dir=out / "source")
    from loupe_training.holdout import in_lockbox

    captures = captures_of(prepared_root)
    boxed = {stem for stem, capture in captures.items() if in_lockbox(capture)}

    def images(*splits: str) -> list[Path]:
        found = [p for split in splits for p in sorted((prepared_root / "images" / split).iterdir())]
        return [p for p in found if p.stem not in boxed]

    lockbox = sorted(p for p in labeled_images(prepared_root) if p.stem in boxed)
    log(f"lockbox: {len(lockbox)} photos of {len({captures[p.stem] for p in lockbox})} captures (kept out)")
    results = []
    for recipe in args.recipe:
        if args.split:
            tr = images("train")
            plan = [("fixed", tr[::8], tr, images("val", "test"))]  # val = every 8th train image: epoch logs only
        elif args.lockbox:
            tr = images("train", "val", "test")
            plan = [("lockbox", tr[::8], tr, lockbox)]
        else:
            folds = folds_of(images("train", "val", "test"), captures, args.folds)
            plan = []
            for i, held in enumerate(folds):
                if args.only_fold and i not in args.only_fold:
                    continue
                tr = [p for j, f in enumerate(folds) if j != i for p in f]
                plan.append((f"fold{i}", tr[::8], tr, held))
        for seed in seeds:
            for name, val, tr, held in plan:
                work = out / recipe / f"{name}-seed{seed}"
                data = write_lists(work, tr, val, held)
                load0 = os.getloadavg()[0]
                res = train_and_score(recipe, data, work, seed)
                res.update({"holdout": name, "seed": seed, "train_images": len(tr), "cpus": os.cpu_count()})
                res["loadavg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
                print(json.dumps(res), flush=True)
                results.append(res)
    (out / "results.jsonl").open("a").write("".join(json.dumps(r) + "\n" for r in results))
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_recipe.setdefault(r["recipe"], []).append(r)
    for recipe, rs in by_recipe.items():
        maps = [r["map50"] for r in rs]
        spread = statistics.stdev(maps) if len(maps) > 1 else 0.0
        per_seed = {
            seed: statistics.fmean(r["map50"] for r in rs if r["seed"] == seed)
            for seed in sorted({r["seed"] for r in rs})
        }
        seed_spread = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else 0.0
        log(
            f"{recipe:12s} mAP50 {statistics.fmean(maps):.3f} ± {spread:.3f} over {len(maps)} hold-out(s); "
            f"per seed {', '.join(f'{s}: {m:.3f}' for s, m in per_seed.items())} (seed spread {seed_spread:.3f}); "
            f"epochs {[r['epochs_run'] for r in rs]}; train s {[r['train_seconds'] for r in rs]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
