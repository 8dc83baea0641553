"""Edge inference benchmark: Loupe's component path vs Ultralytics' ONNX predict vs a bare ``session.run``.

    python benchmarks/edge_inference.py --model M.onnx [--int8 M_int8.onnx] --images DIR [--load both] [--json]

Paths, all at the same onnxruntime thread count (``--threads``, default: onnxruntime's own default for every
path) and the same images:

* ``loupe``       the component's path: file read → decode → letterbox → ORT → decode/NMS → boxes in source
                  pixels, with the component's stages exactly as ``EdgeApp`` runs them: the prefetch thread
                  prepares frame n+2 and the caller decodes frame n while frame n+1 is in ``session.run``;
* ``ultralytics`` ``ultralytics.YOLO(M.onnx).predict(path)`` per image (what the reference devices run);
* ``session``     a bare ``session.run`` on a ready, letterboxed tensor: the floor the model itself sets;
* ``loupe_int8``  the Loupe path on the INT8 model.

Each path runs in its own subprocess (so each one's peak RSS is its own), ``--rounds`` times, interleaved; the
best round of each path is kept (the least disturbed by other load on the machine).  Printed fields: fps_loupe,
fps_ultralytics, fps_session, speedup, overhead_vs_session, box_match_rate, speedup_int8, int8_box_agreement,
rss_mb_loupe(_int8), rss_mb_ultralytics; with ``--clock cpu`` also the per-thread CPU time of the Loupe path
(``stage_cpu_ms_per_frame``: caller, prefetch, inference) and the rates its busiest thread allows
(``*_stage_bound``: a device with a core free beside the inference thread); then ``loaded`` (the same fields
measured with the other core busy) and ``machine``.

On a machine shared with other work, use ``--clock cpu``: wall-clock rounds swing with the neighbours' load.

``--load``: ``idle`` measures as the machine is; ``loaded`` starts a fixed synthetic load for each measured
process: one busy-looping process pinned to the last CPU (a device whose other core runs something else), which
ends with the measurement and in any case after ``--load-seconds``; ``both`` (default) runs the idle rounds, then
the loaded ones, and reports both ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCK = time.perf_counter  # --clock cpu: process CPU time (all threads), robust on a machine shared with other load
EXTS = {".jpg", ".jpeg", ".png", ".bmp"}  # extensions Ultralytics accepts by name (the same files for every path)


def list_images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in EXTS)
    return files[:limit] if limit else files


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def thread_cpu_s() -> dict[int, float]:
    """CPU seconds of each thread of this process so far (Linux: /proc/self/task/<tid>/schedstat); {} elsewhere."""
    out = {}
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").is_dir() else []:
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


# -- workers (each in its own process) ---------------------------------------------------------------------
def worker_loupe(model_path: str, files: list[Path], threads: int, conf: float, iou: float, warmup: int) -> dict:
    sys.path.insert(0, str(REPO / "edge_component" / "inference"))
    import onnxruntime as ort

    from loupe_edge.engine import InferenceStage, Prefetcher, Preparer, boxes_from_output, run_model
    from loupe_edge.model import LoadedModel, ModelCard, ModelSettings
    from loupe_edge.sources import FileListSource

    settings = ModelSettings(intra_op_threads=threads, conf_threshold=conf, iou_threshold=iou)
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    model = LoadedModel(session, ModelCard("bench", {}, {}), Path(model_path), "fp32", settings)

    def run(paths: list[Path]) -> tuple[float, list, dict[str, float]]:
        source = FileListSource(paths)
        prefetch = Prefetcher(source, Preparer(), lambda: (model.input_w, model.input_h))
        stage = InferenceStage(prefetch, lambda: model)
        out = []
        before = thread_cpu_s()
        t0 = CLOCK()
        stage.start()
        while len(out) < len(paths):
            done = stage.get(1.0)
            if done is None:
                continue
            if done.item.error or done.error:
                out.append([])
                continue
            out.append(boxes_from_output(model, done.output, done.letterbox, conf).tolist())
        elapsed = CLOCK() - t0
        after = thread_cpu_s()
        stage.stop()
        # CPU time of each stage's thread (onnxruntime's own pool threads, if any, count as inference)
        spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
        caller = threading.get_native_id()
        fetch = prefetch._thread.native_id
        stages = {"caller": spent.get(caller, 0.0), "prefetch": spent.get(fetch, 0.0)}
        stages["inference"] = sum(v for tid, v in spent.items() if tid not in (caller, fetch))
        return elapsed, out, stages

    run(files[:warmup])
    elapsed, boxes, stages = run(files)
    # the same path without the background stages, for the record
    prep = Preparer()
    t0 = CLOCK()
    for p in files:
        item = prep.prepare(FileListSource([p]).next(0), (model.input_w, model.input_h))
        run_model(model, item.tensor, item.letterbox, conf)
    sequential = CLOCK() - t0
    n = len(files)
    busiest = max(stages.values(), default=0.0)
    return {
        "fps": n / elapsed,
        "fps_sequential": n / sequential,
        # the busiest stage's CPU time per frame bounds the rate of a device with a core free beside inference
        "fps_stage_bound": n / busiest if CLOCK is time.process_time and busiest > 0 else None,
        "stage_cpu_ms": {k: round(v / n * 1000, 3) for k, v in stages.items()},
        "boxes": boxes,
        "rss_mb": peak_rss_mb(),
    }


def worker_ultralytics(model_path: str, files: list[Path], threads: int, conf: float, iou: float, warmup: int) -> dict:
    import onnxruntime as ort

    if threads > 0:  # give Ultralytics' session the same thread count as the other paths
        base = ort.InferenceSession

        class SameThreads(base):  # type: ignore[misc, valid-type]
            def __init__(self, path, sess_options=None, *args, **kwargs):
                so = sess_options or ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                super().__init__(path, so, *args, **kwargs)

        ort.InferenceSession = SameThreads
        import torch

        torch.set_num_threads(threads)  # its pre/post-processing runs in torch: same budget
    from ultralytics import YOLO

    model = YOLO(model_path, task="detect")
    for p in files[:warmup]:
        model.predict(str(p), conf=conf, iou=iou, verbose=False)
    boxes = []
    t0 = CLOCK()
    for p in files:
        r = model.predict(str(p), conf=conf, iou=iou, verbose=False)[0]
        boxes.append(r.boxes.data.cpu().numpy().tolist())
    elapsed = CLOCK() - t0
    return {"fps": len(files) / elapsed, "boxes": boxes, "rss_mb": peak_rss_mb()}


def worker_session(model_path: str, files: list[Path], threads: int, conf: float, iou: float, warmup: int) -> dict:
    sys.path.insert(0, str(REPO / "edge_component" / "inference"))
    import numpy as np
    import onnxruntime as ort

    from loupe_edge.imaging import Preprocessor, open_image

    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    h, w = inp.shape[2], inp.shape[3]
    tensor, _ = Preprocessor(w, h)(np.asarray(open_image(files[0].read_bytes(), 10**9)))
    tensor = tensor.copy()
    for _ in range(warmup):
        session.run(None, {inp.name: tensor})
    t0 = CLOCK()
    for _ in files:
        session.run(None, {inp.name: tensor})
    elapsed = CLOCK() - t0
    return {"fps": len(files) / elapsed, "rss_mb": peak_rss_mb()}


WORKERS = {"loupe": worker_loupe, "ultralytics": worker_ultralytics, "session": worker_session}


# -- orchestration -----------------------------------------------------------------------------------------
BUSY_LOOP = """
import os, sys, time
cpu = int(sys.argv[1]); deadline = time.monotonic() + float(sys.argv[2])
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {cpu})
x = 0
while time.monotonic() < deadline:
    for _ in range(100000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
"""


class SyntheticLoad:
    """One busy-looping process pinned to the last CPU, bounded in time (it exits by itself at the deadline)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.cpu = max((os.cpu_count() or 1) - 1, 0)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> SyntheticLoad:
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(self.cpu), str(self.seconds)])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def run_worker(kind: str, model: str, args: argparse.Namespace, loaded: bool = False) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--model",
        model,
        "--images",
        args.images,
        "--limit",
        str(args.limit),
        "--threads",
        str(args.threads),
        "--conf",
        str(args.conf),
        "--iou",
        str(args.iou),
        "--warmup",
        str(args.warmup),
        "--clock",
        args.clock,
    ]
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}
    if loaded:
        with SyntheticLoad(args.load_seconds):
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    else:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def match_rate(ref_boxes: list, other_boxes: list, iou_min: float, conf_tol: float | None) -> float:
    sys.path.insert(0, str(REPO / "edge_component" / "inference"))
    import numpy as np

    from loupe_edge.postprocess import match_boxes

    matched = total = 0
    for ref, other in zip(ref_boxes, other_boxes, strict=True):
        a = np.asarray(ref, dtype=np.float32).reshape(-1, 6)
        b = np.asarray(other, dtype=np.float32).reshape(-1, 6)
        total += max(a.shape[0], b.shape[0])  # a missing box and an extra box both count against
        matched += match_boxes(a, b, iou_min, conf_tol)
    return matched / total if total else 1.0


def machine() -> dict:
    """What the numbers were measured on."""
    import onnxruntime

    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cpus": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def measure(plan: list[tuple[str, str]], args: argparse.Namespace, loaded: bool) -> dict:
    best: dict[str, dict] = {}
    label = "loaded" if loaded else "idle"
    for r in range(args.rounds):
        for name, model in plan:
            res = run_worker(name.removesuffix("_int8"), model, args, loaded)
            if name not in best or res["fps"] > best[name]["fps"]:
                best[name] = res
            if not args.json:
                print(
                    f"{label} round {r + 1} {name}: {res['fps']:.2f} fps, rss {res['rss_mb']:.0f} MB", file=sys.stderr
                )
    lo, ul, se = best["loupe"], best["ultralytics"], best["session"]
    int8 = best.get("loupe_int8")
    bound = lo.get("fps_stage_bound")
    return {
        "fps_loupe": round(lo["fps"], 2),
        "fps_ultralytics": round(ul["fps"], 2),
        "fps_session": round(se["fps"], 2),
        "fps_loupe_without_stages": round(lo["fps_sequential"], 2),
        "speedup": round(lo["fps"] / ul["fps"], 3),
        "overhead_vs_session": round(se["fps"] / lo["fps"], 3),
        "box_match_rate": round(match_rate(ul["boxes"], lo["boxes"], 0.9, 0.01), 4),
        "speedup_int8": round(int8["fps"] / ul["fps"], 3) if int8 else None,
        "int8_box_agreement": round(match_rate(lo["boxes"], int8["boxes"], 0.5, None), 4) if int8 else None,
        "rss_mb_loupe": round(lo["rss_mb"], 1),
        "rss_mb_loupe_int8": round(int8["rss_mb"], 1) if int8 else None,
        "rss_mb_ultralytics": round(ul["rss_mb"], 1),
        # --clock cpu only: the rate the busiest stage allows (a device with a core free beside the inference
        # thread), in frames per CPU second of that stage's thread, against the other paths' CPU clock
        "fps_loupe_stage_bound": round(bound, 2) if bound else None,
        "speedup_stage_bound": round(bound / ul["fps"], 3) if bound else None,
        "overhead_vs_session_stage_bound": round(se["fps"] / bound, 3) if bound else None,
        "speedup_int8_stage_bound": round(int8["fps_stage_bound"] / ul["fps"], 3)
        if int8 and int8.get("fps_stage_bound")
        else None,
        "stage_cpu_ms_per_frame": lo.get("stage_cpu_ms"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="FP32 ONNX model (static input shape)")
    p.add_argument("--int8", help="INT8 (QDQ) ONNX model")
    p.add_argument("--images", required=True, help="folder of images (searched recursively)")
    p.add_argument("--limit", type=int, default=0, help="use at most this many images (0 = all)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads for every path (0 = default)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per path; the best is kept")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: frames per second of wall time (a dedicated device); cpu: per process CPU second, all threads "
        "counted (comparable on a machine busy with other work; the overlap of the stages then earns nothing)",
    )
    p.add_argument(
        "--load",
        choices=["idle", "loaded", "both"],
        default="both",
        help="measure as the machine is, with the last CPU kept busy by a synthetic load, or both (default)",
    )
    p.add_argument(
        "--load-seconds", type=float, default=300.0, help="upper bound of each synthetic load process's life"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    files = list_images(Path(args.images), args.limit)
    if not files:
        p.error(f"no images ({', '.join(sorted(EXTS))}) under {args.images}")
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.model, files, args.threads, args.conf, args.iou, args.warmup)))
        return 0

    plan = [("loupe", args.model), ("ultralytics", args.model), ("session", args.model)]
    if args.int8:
        plan.append(("loupe_int8", args.int8))
    about = machine()
    idle = measure(plan, args, loaded=False) if args.load in ("idle", "both") else None
    loaded = measure(plan, args, loaded=True) if args.load in ("loaded", "both") else None
    result = {
        **(idle or {}),
        "loaded": loaded,
        "images": len(files),
        "threads": args.threads or "onnxruntime default",
        "clock": args.clock,
        "machine": about,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
