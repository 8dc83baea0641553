"""Model swap under a continuous stream: frames dropped (target 0) and how long a swap takes.

    python benchmarks/edge_swap.py --model M.onnx [--model2 M2.onnx] --images DIR [--fps 10] [--seconds 30]
                                   [--swap-every 6] [--json]

Runs the real component (``EdgeApp``: watched folder, prefetch, outbox, senders, model watcher) in this process
with an in-memory transport.  A writer thread drops frames into the watched folder at ``--fps`` the way a camera
does (temp name, then rename); every ``--swap-every`` seconds the model pointer is rewritten to the other model
folder (as the model component's Install step does) and the component is notified (as the Greengrass
post-update event does).  Reports frames sent, frames with a result, frames dropped, per-swap load time (digest +
session + smoke test, in the background), swap latency (pointer rewritten → first frame served by the new model)
and the longest gap between two results during a swap next to the median gap.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "edge_component" / "inference"))

from loupe_edge import model as model_mod  # noqa: E402
from loupe_edge.app import EdgeApp  # noqa: E402
from loupe_edge.config import validate  # noqa: E402
from loupe_edge.outbox import Outbox  # noqa: E402
from loupe_edge.results import RESULTS, UPLOADS  # noqa: E402
from loupe_edge.transport import LocalControl  # noqa: E402


class MemoryTransport:
    name = "memory"

    def __init__(self) -> None:
        self.results: list[tuple[float, dict]] = []
        self.lock = threading.Lock()

    def publish_many(self, messages, timeout):
        now = time.monotonic()
        with self.lock:
            for topic, payload in messages:
                if topic.endswith("/inference"):
                    self.results.append((now, json.loads(payload)))
        return len(messages)

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        return None


def model_folder(root: Path, onnx: Path, version: str) -> Path:
    folder = root / f"model-{version}"
    folder.mkdir(parents=True)
    shutil.copy(onnx, folder / "model.onnx")
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    card = {"version": version, "class_map": {"0": "scratch"}, "sha256": {"model.onnx": digest}}
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def write_pointer(pointer: Path, folder: Path, version: str) -> None:
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps({"dir": str(folder), "version": version}))
    tmp.replace(pointer)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--model2", help="second model (default: the first one again, under another version)")
    p.add_argument("--images", required=True)
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--swap-every", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    images = sorted(x for x in Path(args.images).rglob("*") if x.suffix.lower() in {".jpg", ".jpeg", ".png"})
    root = Path(tempfile.mkdtemp(prefix="loupe-swap-"))
    try:
        folders = [
            (model_folder(root, Path(args.model), "A"), "A"),
            (model_folder(root, Path(args.model2 or args.model), "B"), "B"),
        ]
        work = root / "work" / "com.loupe.inference"
        pointer = root / "work" / "com.loupe.model" / "current.json"
        pointer.parent.mkdir(parents=True)
        write_pointer(pointer, *folders[0])
        frames = root / "frames"
        cfg = validate(
            {
                "thingName": "bench",
                "workDir": str(work),
                "source": {"path": str(frames), "settleMs": 0, "pollMs": 10},
                "model": {"intraOpThreads": args.threads, "pollSeconds": 3600},
                "feedback": {"enabled": False},
                "health": {"intervalSeconds": 3600},
            }
        )
        load_ms: list[float] = []
        real_loader = model_mod.load_model

        def timed_loader(*a, **k):
            t0 = time.perf_counter()
            try:
                return real_loader(*a, **k)
            finally:
                load_ms.append((time.perf_counter() - t0) * 1000)

        transport = MemoryTransport()
        outbox = Outbox(work / "outbox.sqlite", {RESULTS: 100_000, UPLOADS: 10})
        app = EdgeApp(cfg, transport, LocalControl(), outbox)
        app.manager.loader = timed_loader
        app.start()
        load_ms.clear()  # the initial load is not a swap
        stop = threading.Event()
        runner = threading.Thread(target=app.run, args=(stop,), daemon=True)
        runner.start()

        sent: list[str] = []
        swaps: list[tuple[float, str]] = []
        t_start = time.monotonic()
        next_swap = t_start + args.swap_every
        current = 0
        i = 0
        while time.monotonic() - t_start < args.seconds:
            src = images[i % len(images)]
            name = f"{i:06d}{src.suffix}"
            tmp = frames / f".{name}.tmp"
            shutil.copy(src, tmp)
            tmp.rename(frames / name)
            sent.append(name)
            i += 1
            if time.monotonic() >= next_swap:
                current = 1 - current
                write_pointer(pointer, *folders[current])
                swaps.append((time.monotonic(), folders[current][1]))
                app.on_update("benchmark swap")
                next_swap += args.swap_every
            time.sleep(max(0.0, t_start + i / args.fps - time.monotonic()))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with transport.lock:
                done = {m["source"] for _, m in transport.results}
            if done >= set(sent):
                break
            time.sleep(0.1)
        stop.set()
        runner.join(timeout=10)
        app.stop()
        outbox.close()

        with transport.lock:
            results = sorted(transport.results, key=lambda x: x[0])
        got = {m["source"] for _, m in results}
        latencies = []
        gaps_during = []
        times = [t for t, _ in results]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        for t_swap, version in swaps:
            served = [t for t, m in results if t >= t_swap and m["model_version"] == version]
            if served:
                latencies.append((served[0] - t_swap) * 1000)
                window = [b - a for a, b in zip(times, times[1:], strict=False) if t_swap <= b <= served[0] + 0.5]
                gaps_during.extend(window)
        out = {
            "frames_sent": len(sent),
            "frames_with_result": len(got & set(sent)),
            "frames_dropped": len(set(sent) - got),
            "swaps": len(swaps),
            "swap_load_ms_mean": round(statistics.mean(load_ms), 1) if load_ms else None,
            "swap_load_ms_max": round(max(load_ms), 1) if load_ms else None,
            "swap_latency_ms_mean": round(statistics.mean(latencies), 1) if latencies else None,
            "swap_latency_ms_max": round(max(latencies), 1) if latencies else None,
            "result_gap_ms_median": round(statistics.median(gaps) * 1000, 1) if gaps else None,
            "result_gap_ms_max_during_swap": round(max(gaps_during) * 1000, 1) if gaps_during else None,
        }
        print(json.dumps(out))
        return 0 if out["frames_dropped"] == 0 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
