"""Screenshots of the local console for the README (docs/images/console-*.png), from a local AWS with some data.

    .venv/bin/python scripts/console_screenshots.py [--out docs/images]

Starts its own local AWS (tiny trainings) with the console and two local devices, uploads synthetic images
(``loupe_local.demo.synth``), labels them through the console's API with the generator's answers (the manual workforce),
registers two small fixture packages (the second one predicts a box, so the Labeling page shows a pre-annotation;
its confidence is inside the devices' feedback band, so they upload the frames and the Fleet page shows their
pixels), approves them, registers a challenger with an evaluation output in the evaluation step's format
(illustrative numbers and boxes over generated images: fixture packages are never evaluated), feeds frames to the
devices, then photographs each page with Playwright + Debian's chromium.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' helper package, support.*


def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def post(url: str, body: Any) -> Any:
    req = urllib.request.Request(  # noqa: S310 - the local console
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
        return json.loads(resp.read())


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - the local console
        return json.loads(resp.read())


def illustrative_evaluation(images: Path, answers: list[dict[str, Any]], champion_arn: str) -> dict[str, bytes]:
    """evaluation.json, details.json and samples/ as the evaluation step writes them, with illustrative numbers:
    three generated images as samples with their true boxes, 'predictions' near them, the champion's on two."""
    files: dict[str, bytes] = {}
    samples = []
    for i, a in enumerate(answers[:3]):
        name = Path(a["file"]).name
        files[f"samples/{name}"] = (images / a["file"]).read_bytes()
        truth = [[b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]] for b in a["annotations"]]
        predicted = [
            {"box": [x1 + 3, y1 - 2, x2 + 2, y2 + 3], "conf": round(0.86 - 0.07 * j, 2)}
            for j, (x1, y1, x2, y2) in enumerate(truth)
        ]
        champion = (
            [] if i == 2 else [{"box": [x1 - 4, y1 + 3, x2 - 6, y2 + 1], "conf": 0.58} for x1, y1, x2, y2 in truth[:1]]
        )
        samples.append(
            {
                "image": f"samples/{name}",
                "width": a["width"],
                "height": a["height"],
                "conf_threshold": 0.25,
                "truth": truth,
                "predictions": predicted,
                "champion_predictions": champion,
            }
        )
    spread = {"map50": {"mean": 0.806, "std": 0.052, "ci90": [0.718, 0.889]}, "bootstrap": 1000, "images": 31}
    difference, low, margin = 0.0384, -0.0152, 0.02
    details = {
        "fp32": {"map50": 0.8125, "map50_95": 0.41, "images": 31, "spread": spread},
        "int8": {"kept": False, "reason": "no INT8 candidate"},
        "champion": {"present": True, "arn": champion_arn, "map50": 0.7741, "map50_95": 0.37},
        "comparison": {
            "difference": difference,
            "ci90": [low, 0.0921],
            "p_challenger_better": 0.89,
            "champion_bar": round(0.7741 + (difference - low) - margin, 5),
            "margin": margin,
        },
        "samples": samples,
    }
    statistics = {"object_detection_metrics": {"map50": {"value": 0.8125, "standard_deviation": 0.052}}}
    return {"evaluation.json": json.dumps(statistics).encode(), "details.json": json.dumps(details).encode(), **files}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    from support.deploy_packages import register_package
    from support.fixture_models import box_detector

    from loupe_local.demo import synth
    from loupe_local.devices.fleet import DeviceFleet, device_root
    from loupe_local.host.runtime import LocalRuntime
    from loupe_local.standins.groundtruth.workforce import set_workforce_mode

    work = Path(tempfile.mkdtemp(prefix="loupe-shots-"))
    params = {"TrainingEpochs": "1", "RetrainEpochs": "1", "TrainingImageSize": "160", "LabelingThreshold": "1000"}
    rt = LocalRuntime(state_dir=work / "state", parameters=params).start()
    fleet = None
    try:
        set_workforce_mode(rt.state_dir, "manual")
        console = rt.start_console().rstrip("/")
        print(f"console at {console}", flush=True)
        fleet = DeviceFleet.from_runtime(rt, poll_seconds=0.5, settle_seconds=1.5, ack_seconds=8.0, prefix="line")
        fleet.publish_components(rt.physical("ArtifactBucket"))
        overlay = work / "overlay.json"
        # health every 2 s; the uncertain frames of the box detector below all go back (no per-minute limit to hit)
        settings = {"health": {"intervalSeconds": 2}, "feedback": {"maxPerMinute": 1000}}
        overlay.write_text(json.dumps({"com.loupe.inference": {"settings": settings}}))
        things = fleet.names(2)
        for thing in things:
            fleet.start_device(thing, ["--overlay", str(overlay)])
        fleet.wait_registered(things)

        # packages: v1 approved first (no pre-annotation), v2 predicts a box
        first = register_package(rt, model_version="tag-detector-1", dataset_version="1")
        rt.client("sagemaker").update_model_package(ModelPackageArn=first["arn"], ModelApprovalStatus="Approved")
        second = register_package(
            rt, onnx_bytes=box_detector(score=0.45), model_version="tag-detector-2", dataset_version="1"
        )
        until(lambda: all(get(f"{console}/api/fleet")["devices"]), 60, "devices")

        # images: uploaded, ingested, sent to labeling; the person answers (here: the generator's answers)
        answers = synth.generate(work / "images", 1, 8, seed=11)
        s3 = rt.client("s3")
        shas = []
        for a in answers:
            data = (work / "images" / a["file"]).read_bytes()
            s3.put_object(Bucket=rt.physical("RawBucket"), Key=f"raw/line-1/{a['file']}", Body=data)
            shas.append(hashlib.sha256(data).hexdigest())

        def ingested() -> bool:
            return get(f"{console}/api/loop")["ledger"]["by_status"].get("unlabeled", 0) >= len(shas)

        until(ingested, 60, "ingest")
        rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": shas[:6]})
        tasks = until(lambda: (t := get(f"{console}/api/tasks")["tasks"]) and len(t) >= 6 and t, 60, "tasks")
        by_sha = {hashlib.sha256((work / "images" / a["file"]).read_bytes()).hexdigest(): a for a in answers}
        for task in tasks:
            post(f"{console}/api/tasks/{task['id']}", {"boxes": by_sha[task["sha256"]]["annotations"]})
        until(lambda: get(f"{console}/api/loop")["datasets"], 120, "dataset v1")
        # the deployed model now predicts boxes; two more images wait for the person
        rt.client("sagemaker").update_model_package(ModelPackageArn=second["arn"], ModelApprovalStatus="Approved")
        rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": shas[6:]})
        until(lambda: get(f"{console}/api/tasks")["tasks"], 60, "second labeling tasks")
        # a challenger waits for approval; illustrative scores (fixture packages are never evaluated)
        evaluation = illustrative_evaluation(work / "images", answers, second["arn"])
        third = register_package(rt, model_version="tag-detector-3", dataset_version="1", evaluation=evaluation)
        sm = rt.client("sagemaker")
        sm.update_model_package(ModelPackageArn=second["arn"], CustomerMetadataProperties={"test_map50": "0.7741"})
        sm.update_model_package(
            ModelPackageArn=third["arn"],
            CustomerMetadataProperties={"test_map50": "0.8125", "champion_map50": "0.7741"},
        )

        def serving_second() -> bool:
            return all(d["serving"] == "tag-detector-2" for d in get(f"{console}/api/fleet")["devices"])

        until(serving_second, 180, "devices on tag-detector-2")
        until(lambda: len(get(f"{console}/api/fleet")["deployments"]) >= 2, 180, "the second rollout's record")
        done = threading.Event()

        def camera() -> None:  # a frame every second on each device
            n = 0
            while not done.wait(1.0):
                for i, thing in enumerate(things):
                    frames = device_root(fleet.state_dir, thing) / "frames"
                    src = work / "images" / answers[(n + i) % len(answers)]["file"]
                    shutil.copyfile(src, frames.parent / f".f{n}-{i}.jpg")
                    (frames.parent / f".f{n}-{i}.jpg").replace(frames / f"frame-{n}.jpg")
                n += 1

        threading.Thread(target=camera, daemon=True).start()

        def uploaded_frames() -> int:  # results whose image the devices uploaded (uncertain frames)
            frames = get(f"{console}/api/fleet")["frames"]
            return sum(1 for results in frames.values() for f in results if f["pixels"].get("key"))

        until(lambda: uploaded_frames() >= 6, 90, "uploaded frames")

        def measured() -> bool:
            return all((d["health"] or {}).get("fps") for d in get(f"{console}/api/fleet")["devices"])

        until(measured, 60, "health with frames")

        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 820})
            page.goto(f"{console}/labeling")
            page.wait_for_selector("#canvas rect.box")
            page.wait_for_timeout(500)
            page.screenshot(path=str(args.out / "console-labeling.png"))
            images_loaded = "() => [...document.querySelectorAll('.shot img')].every((i) => i.complete)"
            for name in ("models", "fleet", "loop"):
                page.goto(f"{console}/{name}")
                page.wait_for_selector("tbody tr")
                if name == "models":
                    page.locator("#packages tbody tr").first.click()
                    page.wait_for_selector("#samples .shot img")
                if name == "fleet":
                    page.wait_for_selector("#frames .shot img")
                page.wait_for_timeout(2500)
                page.wait_for_function(images_loaded)
                page.screenshot(path=str(args.out / f"console-{name}.png"), full_page=name != "loop")
            browser.close()
        done.set()
        print(f"screenshots in {args.out}")
    finally:
        if fleet is not None:
            fleet.stop()
        rt.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
