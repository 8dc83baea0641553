"""Benchmark: the README's real-photo demo (`make demo DATASET=...`) over several seeds, one after the other.

The demo's ``--seed`` decides which labeled photos outside the test split v1 is trained on and which the cameras see
(and send back when uncertain); the 31 test photos stay the held-out set every model is scored on. For each seed
this runs ``loupe demo --dataset DIR --seed S --out OUT/seed-S`` as a user would, then reads its
``report/summary.json``: whether the demo exited 0, v1's and v2's held-out mAP50, the paired bootstrap of v2 - v1,
whether the gate refused v1 (and the demo approved it despite that), and the result line.

    .venv/bin/python benchmarks/demo_seeds.py [--dataset DIR] [--seeds 1 2 3 4 5] [--out DIR]
    .venv/bin/python benchmarks/demo_seeds.py --tabulate DIR [DIR ...]   # runs already made: seed folders' reports

Prints a table and one JSON object (``runs`` and ``all_passed``: every run exited 0 with v2 >= v1 held out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "metal-tags"


def read_run(folder: Path, seed: int | None = None, rc: int | None = None, wall: float | None = None) -> dict[str, Any]:
    """One demo run's numbers from its ``report/summary.json`` (``summary.json`` directly in ``folder`` too)."""
    path = next((p for p in (folder / "report" / "summary.json", folder / "summary.json") if p.is_file()), None)
    if path is None:
        return {"seed": seed, "folder": str(folder), "rc": rc, "error": "no summary.json: the demo ended early"}
    summary = json.loads(path.read_text())
    models = summary.get("models") or []
    scores = [m.get("test_map50_phase2") for m in models]
    paired = summary.get("improvement_paired") or {}
    v1 = models[0] if models else {}
    return {
        "seed": seed,
        "folder": str(folder),
        "rc": rc,
        "wall_s": wall if wall is not None else summary.get("wall_seconds"),
        "v1_map50": scores[0] if scores else None,
        "v2_map50": scores[1] if len(scores) > 1 else None,
        "gain": summary.get("improvement_map50_phase2"),
        "gain_ci90": paired.get("ci90"),
        "v2_ahead_share": paired.get("p_challenger_better"),
        "held_out_images": paired.get("images"),
        "v1_gate": "refused" if v1.get("gate_refusal") else "passed",
        "v1_approval": v1.get("approval_note") or v1.get("approval"),
        "canary": (summary.get("canary") or {}).get("status"),
        "result": summary.get("result"),
    }


def seed_of(folder: Path) -> int | None:
    """The seed a run folder is named after (``seed-3``, ``seed3``), if any."""
    digits = re.search(r"(\d+)$", folder.name)
    return int(digits.group(1)) if digits else None


def passed(run: dict[str, Any]) -> bool:
    v1, v2 = run.get("v1_map50"), run.get("v2_map50")
    return run.get("rc") in (0, None) and isinstance(v1, float) and isinstance(v2, float) and v2 >= v1


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["seed | exit | v1 mAP50 | v2 mAP50 | v2 - v1 (90 % paired) | v1 gate | canary | wall s"]
    for r in runs:
        ci = r.get("gain_ci90") or ["?", "?"]
        ci_text = f"{ci[0]:+.3f} to {ci[1]:+.3f}" if all(isinstance(c, float) for c in ci) else "?"
        gain = r.get("gain")
        lines.append(
            f"{r.get('seed')} | {r.get('rc')} | {r.get('v1_map50')} | {r.get('v2_map50')} | "
            f"{gain if gain is None else f'{gain:+.3f}'} ({ci_text}) | {r.get('v1_gate')} | {r.get('canary')} | "
            f"{r.get('wall_s')}"
        )
    return "\n".join(lines)


def run_seed(dataset: Path, seed: int, out: Path) -> dict[str, Any]:
    folder = out / f"seed-{seed}"
    log = out / f"seed-{seed}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "MOTO_PORT", "LOUPE_STATE_DIR")}
    started = time.monotonic()
    with open(log, "w") as fh:
        rc = subprocess.call(
            [str(Path(sys.executable).parent / "loupe"), "demo", "--dataset", str(dataset), "--seed", str(seed)]
            + ["--out", str(folder)],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    wall = round(time.monotonic() - started, 1)
    print(f"seed {seed}: exit {rc} after {wall:.0f}s (log {log})", file=sys.stderr, flush=True)
    return read_run(folder, seed, rc, wall)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, default=DATASET)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--out", type=Path, default=REPO / "loupe-demo-seeds")
    p.add_argument("--tabulate", type=Path, nargs="+", help="read these runs' folders instead of running demos")
    args = p.parse_args(argv)
    if args.tabulate:
        runs = [read_run(folder, seed_of(folder)) for folder in args.tabulate]
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        runs = [run_seed(args.dataset.resolve(), seed, args.out.resolve()) for seed in args.seeds]
    print(table(runs))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(json.dumps({"machine": machine, "runs": runs, "all_passed": all(passed(r) for r in runs)}, indent=1))
    return 0 if all(passed(r) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
