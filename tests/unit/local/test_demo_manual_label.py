"""``loupe demo --label manual``: the demo says where to label (the console app's labeling page) and how many
images wait, and waits for the person past its stage timeout while images are pending; with nothing pending the
timeout applies. A folder of one's own unlabeled images is a dataset of unlabeled images."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.waiting import wait_until

from loupe_local.demo.command import Demo, DemoConfig, DemoError
from loupe_local.demo.context import load_folder

URL = "http://127.0.0.1:5555/"


def demo_with_queue(tmp_path: Path, queue: list[str]) -> tuple[Demo, list[str]]:
    """A demo whose console app is at URL and whose labeling queue (the app's, as the observer counts it) is
    ``queue``."""
    demo = Demo(DemoConfig(out=tmp_path, label="manual"), tmp_path)
    demo.runtime = SimpleNamespace(console_url=lambda: URL)
    demo.observer = SimpleNamespace(pending_labeling_tasks=lambda: len(queue))
    said: list[str] = []
    demo.progress.say = said.append  # type: ignore[method-assign]
    return demo, said


def test_the_demo_names_the_console_and_waits_for_the_person(tmp_path: Path) -> None:
    queue = ["job-1.0"]
    demo, said = demo_with_queue(tmp_path, queue)
    budget = 1.5
    t0 = time.monotonic()

    def person() -> None:
        # reads the demo's message, and takes longer than the stage's timeout to label
        wait_until(lambda: any("wait for you" in line for line in said), timeout=10)
        wait_until(lambda: time.monotonic() > t0 + 2 * budget, timeout=10)
        queue.clear()

    thread = threading.Thread(target=person)
    thread.start()
    answered = demo.wait("dataset v1", lambda: not queue, timeout=budget)
    thread.join()
    assert answered is True and time.monotonic() - t0 > 2 * budget
    assert any(f"1 labeling task(s) wait for you in the console: {URL}web/labeling.html" in line for line in said), said


def test_without_pending_tasks_the_stage_timeout_applies(tmp_path: Path) -> None:
    demo, said = demo_with_queue(tmp_path, [])
    with pytest.raises(DemoError, match="timed out waiting for dataset v1"):
        demo.wait("dataset v1", lambda: False, timeout=0.5)
    assert not any("wait for you" in line for line in said)


def test_a_plain_folder_of_images_is_all_unlabeled(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "shots" / "day2").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "shots" / "a.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "shots" / "day2" / "b.png")
    (tmp_path / "shots" / "notes.txt").write_text("not an image")
    tags = load_folder(tmp_path / "shots")
    assert tags.labeled == []
    assert sorted(p.name for p in tags.unlabeled) == ["a.jpg", "b.png"]
    assert [p.name for p, _ in tags.rejected] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DemoError, match="no JPEG or PNG"):
        load_folder(tmp_path / "empty")


def test_own_unlabeled_images_split_between_phase_1_and_the_cameras(tmp_path: Path) -> None:
    """The cameras must see images phase 1 did not hold: a frame already labeled is the same ledger entry (same
    content hash), so feedback would bring nothing new to label and the loop would stall."""
    from types import SimpleNamespace

    from PIL import Image

    from loupe_local.demo.stages import _from_dataset

    shots = tmp_path / "shots"
    shots.mkdir()
    for n in range(10):
        Image.new("RGB", (8, 8), (n * 20, 0, 0)).save(shots / f"s{n}.png")
    ctx = SimpleNamespace(cfg=SimpleNamespace(dataset=shots, seed=3, phase1_share=0.5), things=["dev-1", "dev-2"])
    (tmp_path / "workforce").mkdir()
    data = _from_dataset(ctx, tmp_path / "workforce")
    streamed = [p for frames in data["stream"].values() for p in frames]
    assert len(data["phase1"]) == 6 and len(streamed) == 4
    assert not set(data["phase1"]) & set(streamed)
    assert all(data["stream"][thing] for thing in ctx.things)
