"""Device-side cost of shadow mode: production's frame rate and frame-time p95 with the candidate off and on every
1st / 5th / 10th frame, in one process.

    python benchmarks/shadow_cost.py --model M.onnx [--candidate C.onnx] [--images DIR] [--frames 200] [--rounds 3]

Each configuration runs the component's own per-frame path on the same frames: the prefetch and inference stages
(``loupe_edge.engine``), decode/NMS and the verdict in the caller, then ``ShadowRunner.observe`` (the candidate on
every Nth frame, on the same prepared tensor, with its agreement counters) - what ``EdgeApp.process`` does after the
result is stored. Outbox and MQTT are left out: they cost the same with and without a candidate.

Rounds are interleaved (off, 1, 5, 10, then the next round in a rotated order), so slow phases of a shared machine
hit every configuration alike; each configuration's ratio is taken against the shadow-off run of the *same round*,
and the median over rounds is printed. Fields per configuration: ``fps`` (results per second), ``frame_p95_ms``
(95th percentile of the time between two results: a frame the candidate runs on waits for it),
``shadow_p95_ms`` (the candidate's own latency, from its counters), ``cpu_ms_per_frame`` (the process' CPU time
per frame, all threads: the cost on a device, robust to neighbours on a shared machine), and ``fps_ratio``,
``frame_p95_ratio``, ``cpu_ratio`` against the shadow-off peer. ``machine`` says what it ran on.

Models: ``--model`` is a production ONNX export (``loupe_training.export``; the training tests leave one under their
tmp folder). Without it, the test suite's synthetic detector (``tests/support/edge_helpers.py``) is built, which
measures the bookkeeping, not a real network. ``--candidate`` defaults to the production model (a retrained
candidate has the same architecture and cost). Images: ``--images`` (searched recursively for JPEG/PNG), else
synthetic grey frames. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "edge_component" / "inference"))

from loupe_edge.engine import InferenceStage, Prefetcher, Preparer, boxes_from_output  # noqa: E402
from loupe_edge.feedback import FeedbackSampler  # noqa: E402
from loupe_edge.model import ModelSettings, load_model  # noqa: E402
from loupe_edge.shadow import ShadowRunner, ShadowSpec  # noqa: E402
from loupe_edge.sources import FileListSource  # noqa: E402

EXTS = {".jpg", ".jpeg", ".png"}


def model_folder(root: Path, onnx: Path | None, version: str) -> Path:
    """A model folder as the model component unpacks it: model.onnx + model_card.json with its digest."""
    folder = root / version
    folder.mkdir(parents=True)
    if onnx is None:
        sys.path.insert(0, str(REPO / "tests"))
        from support.edge_helpers import write_model

        return write_model(folder, version, size=320)
    shutil.copy(onnx, folder / "model.onnx")
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    card = {"version": version, "class_map": {"0": "scratch"}, "sha256": {"model.onnx": digest}}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def frames(images: Path | None, count: int) -> list[Path]:
    if images is not None:
        files = sorted(p for p in images.rglob("*") if p.is_file() and p.suffix.lower() in EXTS)
        if not files:
            raise SystemExit(f"no JPEG/PNG under {images}")
        return [files[i % len(files)] for i in range(count)]
    from PIL import Image

    folder = Path(tempfile.mkdtemp(prefix="loupe-shadow-frames-"))
    out = []
    for i in range(min(count, 32)):
        buf = io.BytesIO()
        Image.new("RGB", (450, 300), (40 + 6 * i, 40 + 6 * i, 40 + 6 * i)).save(buf, format="PNG")
        (folder / f"f{i:03d}.png").write_bytes(buf.getvalue())
        out.append(folder / f"f{i:03d}.png")
    return [out[i % len(out)] for i in range(count)]


def run_once(prod, runner: ShadowRunner | None, paths: list[Path], conf: float) -> dict:
    sampler = FeedbackSampler(0.25, 0.6, 10**6, 10**9)
    prefetch = Prefetcher(FileListSource(paths), Preparer(), lambda: (prod.input_w, prod.input_h))
    stage = InferenceStage(prefetch, lambda: prod)
    if runner is not None:
        runner.window.snapshot(reset=True)
    gaps: list[float] = []
    done_n = 0
    stage.start()
    cpu0 = time.process_time()
    t0 = last = time.perf_counter()
    while done_n < len(paths):
        done = stage.get(1.0)
        if done is None:
            continue
        done_n += 1
        if done.item.error or done.error or done.output is None:
            continue
        dets = boxes_from_output(prod, done.output, done.letterbox, min(conf, 0.25))
        shown = dets[dets[:, 4] > conf] if dets.shape[0] else dets
        ng = bool(shown.shape[0])
        uncertain = sampler.is_uncertain(dets[:, 4])
        if runner is not None:
            runner.observe(
                done.item.rgb,
                done.tensor,
                done.letterbox,
                shown,
                ng,
                uncertain,
                min(conf, 0.25),
                conf,
                lambda b: bool(b.shape[0]),
                sampler.is_uncertain,
            )
        now = time.perf_counter()
        gaps.append((now - last) * 1000)
        last = now
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stage.stop()
    gaps.sort()
    out = {
        "fps": len(paths) / elapsed,
        "frame_p95_ms": gaps[min(len(gaps) - 1, int(0.95 * len(gaps)))] if gaps else None,
        "cpu_ms_per_frame": cpu / len(paths) * 1000,
    }
    if runner is not None:
        snap = runner.window.snapshot(reset=True)
        out["shadow_frames"] = snap["frames"]
        out["shadow_p95_ms"] = snap["latency_ms"]["p95"]
        out["shadow_errors"] = snap["errors"]
    return out


def machine() -> dict:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="production ONNX (default: the tests' synthetic detector)")
    p.add_argument("--candidate", type=Path, help="candidate ONNX (default: the production model)")
    p.add_argument("--images", type=Path, help="folder of JPEG/PNG frames (default: synthetic grey frames)")
    p.add_argument("--frames", type=int, default=200, help="frames per measured run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--every", default="1,5,10", help="everyNthFrame values to measure beside 'off'")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (both models)")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="loupe-shadow-cost-"))
    try:
        settings = ModelSettings(intra_op_threads=args.threads, conf_threshold=args.conf)
        prod = load_model(model_folder(work, args.model, "prod"), settings)
        cand_folder = model_folder(work, args.candidate or args.model, "cand")
        paths = frames(args.images, args.frames)
        configs: list[str] = ["off", *[s.strip() for s in args.every.split(",") if s.strip()]]
        runners: dict[str, ShadowRunner | None] = {"off": None}
        for name in configs[1:]:
            block = {
                "dir": str(cand_folder),
                "pointerFile": "",
                "modelVersion": "cand",
                "modelPackageArn": "",
                "sha256": {},
                "everyNthFrame": int(name),
                "precision": "fp32",
            }
            runner = ShadowRunner(ShadowSpec.from_config(block, work), settings, 3600, 24_000_000)
            if not runner.manager.check():
                raise SystemExit(f"candidate did not load: {runner.manager.last_error}")
            runners[name] = runner
        run_once(prod, runners[configs[-1]], paths[: min(20, len(paths))], args.conf)  # warm both sessions
        rounds: list[dict[str, dict]] = []
        for r in range(args.rounds):
            order = configs[r % len(configs) :] + configs[: r % len(configs)]
            got = {name: run_once(prod, runners[name], paths, args.conf) for name in order}
            for name in configs:
                got[name]["fps_ratio"] = got[name]["fps"] / got["off"]["fps"]
                got[name]["cpu_ratio"] = got[name]["cpu_ms_per_frame"] / got["off"]["cpu_ms_per_frame"]
                if got[name]["frame_p95_ms"] and got["off"]["frame_p95_ms"]:
                    got[name]["frame_p95_ratio"] = got[name]["frame_p95_ms"] / got["off"]["frame_p95_ms"]
            rounds.append(got)
            if not args.json:
                print(f"round {r + 1}: " + ", ".join(f"{n} {got[n]['fps']:.1f} fps" for n in configs), flush=True)
        summary = {}
        for name in configs:
            keys = [k for k in rounds[0][name] if isinstance(rounds[0][name][k], int | float)]
            summary[name if name == "off" else f"every_{name}"] = {
                k: round(statistics.median(rd[name][k] for rd in rounds if rd[name].get(k) is not None), 3)
                for k in keys
            }
        result = {
            "model": str(args.model or "synthetic (tests/support/edge_helpers.py)"),
            "candidate": str(args.candidate or args.model or "synthetic"),
            "input": f"{prod.input_w}x{prod.input_h}",
            "frames": len(paths),
            "rounds": args.rounds,
            "threads": args.threads,
            "median_over_rounds": summary,
            "machine": machine(),
        }
        print(json.dumps(result, indent=None if args.json else 2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
