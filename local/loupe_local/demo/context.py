"""What the demo's stages share: its configuration, progress line, MQTT watcher, model records and the
:class:`DemoContext` (the running local AWS, the devices, the read-only observer, and waiting)."""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.local_auth import RunCredentials, mqtt_login
from loupe_local.observer import Observer


# ---------------------------------------------------------------------------------------------- configuration
@dataclass
class DemoConfig:
    out: Path = Path("loupe-demo")
    dataset: Path | None = None
    approve: str = "auto"
    devices: int = 2
    seed: int = 7
    phase1: int = 200
    phase2_stream: int = 120  # frames per device
    phase2_test: int = 80
    # v1 from scratch, then v2 warm-started on the drifted data (benchmarks/synth_training.py and make demo runs,
    # training/README.md): 15 retrain epochs left v2 at 0.62 on held-out phase 2, 40 reached 0.79-0.85 still rising,
    # 50 (after a 40-epoch v1) 0.81; the epochs v2 needs come from v1's, to keep the demo's wall time
    epochs: int = 40
    retrain_epochs: int = 50
    imgsz: int = 224
    map_threshold: float = 0.3
    frame_rate: float = 4.0  # frames per second dropped into each device's camera folder
    alarm_time_scale: float = 30.0
    timeout_stage: float = 3600.0
    quick: bool = False
    label: str = "auto"  # manual: a person labels in the console app (the demo waits for them)
    # who labels: Loupe (the template's default: the labeling app, answered by the local bot labelers or, with
    # label="manual", by the person) or GroundTruth (its local stand-in, as an existing customer)
    labeling_service: str = "Loupe"
    # label="manual": the console user the demo invites for the person (labelers, reviewers, approvers)
    person_email: str = "you@example.com"
    # a labeled folder (--dataset): the share of its photos outside its test split that phase 1 uploads; the
    # cameras see the rest
    phase1_share: float = 0.6
    # the local AWS's IAM mode (loupe_local.iam): enforce refuses a call outside a role's grant and, like audit,
    # records each role's calls for the report's used-vs-granted
    iam: str = "enforce"
    # before approving v2 the demo waits for this many frames compared beside production (shadow mode), at most
    # field_wait_s: at 4 frames/s on 2 devices and the candidate on every 5th frame, about 25 s and 5 s health windows
    field_frames: int = 40
    field_wait_s: float = 90.0
    # an approved model with a champion in production first serves this share of the fleet (the stack's
    # CanaryPercent; 0: straight to the whole fleet), over a window of fresh frames, canary_frames per camera; a held
    # canary needs canary_min_labeled labeled frames of each model (loupe_local.demo.canary)
    canary_percent: int = 50
    canary_frames: int = 24
    canary_min_labeled: int = 3

    @classmethod
    def dataset_config(cls, out: Path) -> DemoConfig:
        """A folder of real photos (``make demo DATASET=...``), measured on ../shared/datasets/metal-tags (README):
        v1 on half of the labeled photos outside the test split, trained long enough to be a model worth
        deploying (50 epochs left it at 0.62 test mAP50, 80 reach 0.75); the cameras show the other half; v2 is
        warm-started from v1 for 50 epochs (15 did not move it: +0.003)."""
        return cls(out=out, phase1_share=0.5, epochs=80, retrain_epochs=50)

    @classmethod
    def quick_config(cls, out: Path) -> DemoConfig:
        """A reduced loop for CI: few images, few epochs, small input — it checks the loop, not the model."""
        return cls(
            out=out,
            phase1=36,
            phase2_stream=24,
            phase2_test=16,
            epochs=3,
            retrain_epochs=2,
            imgsz=160,
            map_threshold=0.0,
            frame_rate=8.0,
            field_frames=16,
            canary_frames=12,
            timeout_stage=600.0,
            quick=True,
        )


class DemoError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------- progress
class Progress:
    """Stages with timestamps, printed as they happen, kept for the report's timeline."""

    # a progress line that has not changed is said again only after this long: enough to show the run is alive,
    # without the same epoch line every few seconds
    REPEAT_AFTER = 60.0

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.stages: list[dict[str, Any]] = []
        self._last_line = -math.inf
        self._last_text = ""

    def now(self) -> float:
        return time.monotonic() - self.t0

    def say(self, text: str) -> None:
        print(f"[{self.now():6.0f}s] {text}", flush=True)

    def start(self, name: str) -> dict[str, Any]:
        stage = {"name": name, "start": self.now(), "end": None, "ok": True, "note": ""}
        self.stages.append(stage)
        self.say(f"▶ {name}")
        return stage

    def done(self, stage: dict[str, Any], note: str = "", ok: bool = True) -> None:
        stage.update(end=self.now(), note=note, ok=ok)
        mark = "✓" if ok else "✗"
        self.say(f"{mark} {stage['name']} ({stage['end'] - stage['start']:.0f}s){' — ' + note if note else ''}")

    def tick(self, text: str, every: float = 5.0) -> None:
        """A progress line of a long stage: at most one every ``every`` seconds, and only when it says something new
        (the same text again after ``REPEAT_AFTER`` seconds, marked as unchanged)."""
        now = time.monotonic()
        since = now - self._last_line
        if since < every:
            return
        if text == self._last_text:
            if since < self.REPEAT_AFTER:
                return
            line = f"  … still {text} (no change in {since:.0f}s)"
        else:
            line = f"  … {text}"
        self._last_line, self._last_text = now, text
        self.say(line)


# ---------------------------------------------------------------------------------------------- MQTT watcher
class FleetWatcher:
    """Subscribes to the devices' topics on the local broker: inference results, health, feedback."""

    def __init__(self, host: str, port: int, progress: Progress, credentials: RunCredentials | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.progress = progress
        self.lock = threading.Lock()
        self.frames: dict[str, int] = defaultdict(int)
        self.model_versions: dict[str, str] = {}
        self.versions_seen: dict[str, set[str]] = defaultdict(set)
        self.feedback: dict[str, int] = defaultdict(int)
        self.uncertain: dict[str, int] = defaultdict(int)  # frames the device judged uncertain (its results say)
        self.health: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loupe-demo-{uuid.uuid4().hex[:6]}")
        # the run's credential, given explicitly: with IAM on, a handler running in this process holds its role's
        # session in os.environ while it runs (as Lambda gives it), so the environment is not the run's credential
        mqtt_login(self.client, credentials)
        self.client.on_connect = lambda c, *a, **k: c.subscribe("loupe/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            payload = json.loads(msg.payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        parts = msg.topic.split("/")
        if len(parts) != 3 or not isinstance(payload, dict):
            return
        thing, kind = parts[1], parts[2]
        with self.lock:
            if kind == "inference":
                self.frames[thing] += 1
                self.uncertain[thing] += bool(payload.get("uncertain"))
                version = str(payload.get("model_version") or "")
                if version:
                    self.model_versions[thing] = version
                    self.versions_seen[thing].add(version)
                total = (payload.get("latency_ms") or {}).get("total")
                if isinstance(total, int | float):
                    self.latency[thing].append(float(total))
            elif kind == "low-confidence":
                self.feedback[thing] += 1
            elif kind == "health":
                lat = payload.get("latency_ms") or {}
                self.health[thing].append(
                    {
                        "t": self.progress.now(),
                        "fps": payload.get("fps"),
                        "p50": lat.get("p50"),
                        "p95": lat.get("p95"),
                        "uncertain_share": payload.get("uncertain_share"),
                        "model_version": payload.get("model_version"),
                        # a shadow candidate beside production: its version and loading / running / failed
                        "shadow_version": (payload.get("shadow") or {}).get("model_version"),
                        "shadow_state": (payload.get("shadow") or {}).get("state"),
                    }
                )

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class ModelRecord:
    version: int
    package_arn: str
    dataset_version: int | None
    parent_dataset_version: int | None
    model_version: str = ""
    approval: str = ""
    pipeline_test_map50: float | None = None
    warm_start: str = ""
    model_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    # the pipeline's gate refused it (its package metadata's gate_refusal) and why its training may be weak
    gate_refusal: str = ""
    training_diagnosis: str = ""
    approval_note: str = ""  # how it was approved: by the demo, by you, despite the gate's refusal
    # its agreement with production on the devices at approval (console_api.models.field_agreement), and in words
    field_agreement: dict[str, Any] | None = None
    field_note: str = ""
    canary: dict[str, Any] | None = None  # its canary: verdict, reasons, window, the chart's samples (demo_canary)


class DemoContext:
    """The demo's state between stages. Everything it reads of the loop goes through :attr:`observer`."""

    def __init__(self, cfg: DemoConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = root
        self.out = cfg.out.resolve()
        self.progress = Progress()
        self.runtime: Any = None
        self.observer: Observer | None = None
        self.fleet: Any = None
        self.watcher: FleetWatcher | None = None
        self.models: list[ModelRecord] = []
        self.things: list[str] = []
        self.data: dict[str, Any] = {}

    @property
    def obs(self) -> Observer:
        assert self.observer is not None, "setup() first"
        return self.observer

    def client(self, service: str) -> Any:
        return self.runtime.client(service)

    def wait(self, what: str, predicate: Any, status: Any = None, timeout: float | None = None) -> Any:
        """The first truthy ``predicate()``. While labeling tasks wait for a person (``--label manual``), the
        demo says where and how many, and waits for them without a deadline."""
        budget = timeout or self.cfg.timeout_stage
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            pending = self.pending_tasks()
            if pending:
                deadline = max(deadline, time.monotonic() + budget)
                self.progress.tick(
                    f"{pending} labeling task(s) wait for you in the console: {self.console_url()}web/labeling.html",
                    every=15,
                )
            elif status is not None:
                self.progress.tick(status())
            time.sleep(1.0)
        # once more at the deadline: a condition that came true during the last sleep (the person's last answer
        # settling the tasks the previous check still counted) is met, not a timeout
        value = predicate()
        if value:
            return value
        raise DemoError(f"timed out waiting for {what}" + (f" ({status()})" if status else ""))

    def pending_tasks(self) -> int:
        """Images waiting for a person (``--label manual``): the labeling app's label and review queues."""
        if self.cfg.label != "manual" or self.observer is None:
            return 0
        return self.observer.pending_labeling_tasks()

    def console_url(self) -> str:
        """The console app's URL (the stack's ConsoleApi, served locally by the HTTP API stand-in)."""
        url = self.runtime.console_url() if self.runtime is not None else None
        return url or "(no console)"

    def device_versions(self) -> dict[str, str]:
        assert self.watcher is not None
        with self.watcher.lock:
            seen = dict(self.watcher.model_versions)
        out = {}
        for thing in self.things:
            components = self.obs.device_state(thing)["components"]
            served = ((components.get("com.loupe.inference") or {}).get("status_file") or {}).get("model_version")
            model = (components.get("com.loupe.model") or {}).get("version")
            out[thing] = f"model {served or seen.get(thing) or 'none'}" + (f" (component {model})" if model else "")
        return out

    def devices_on(self, record: ModelRecord, things: list[str] | None = None) -> bool:
        """Every device (of ``things``, default the demo's) reports through its inference component's status.json
        that it serves this model version."""
        wanted = self.things if things is None else things
        serving = 0
        for thing in wanted:
            inference = self.obs.device_state(thing)["components"].get("com.loupe.inference") or {}
            report = inference.get("status_file") or {}
            if inference.get("state") == "RUNNING" and str(report.get("model_version")) == record.model_version:
                serving += 1
        return bool(wanted) and serving == len(wanted)

    def fire_labeling_schedule(self) -> None:
        """The stack's daily labeling schedule (``LabelingTrigger``), fired now: a labeling run of what is unlabeled."""
        router = self.runtime.router
        router.fire_schedule(next(r for r in router.schedules if "LabelingTrigger" in r))

    def place_frame(self, thing: str, source: Path, name: str | None = None) -> None:
        """One picture in a device's camera folder (written aside, then renamed in: the device sees it whole)."""
        from loupe_local.devices.fleet import device_root

        folder = device_root(self.runtime.state_dir, thing) / "frames"
        folder.mkdir(parents=True, exist_ok=True)
        name = name or source.name
        tmp = folder / f".{name}.part"
        shutil.copyfile(source, tmp)
        tmp.rename(folder / name)

    def place_frames(
        self, frames: dict[str, list[Path]], rate: float, each: Callable[[int], object] | None = None
    ) -> None:
        """Cameras: each device gets its frames in its watched folder at ``rate`` frames/s (``each(i)`` after the
        i-th frame of every camera)."""
        watcher = self.watcher
        assert watcher is not None, "the demo's setup starts the watcher"
        longest = max((len(v) for v in frames.values()), default=0)
        for i in range(longest):
            for thing, paths in frames.items():
                if i < len(paths):
                    self.place_frame(thing, paths[i])
            if each is not None:
                each(i)
            if i % 10 == 0:
                self.progress.tick(
                    f"{i + 1}/{longest} frames per device placed in the camera folder; "
                    f"inference messages {dict(watcher.frames)}; "
                    f"uncertain frames sent back {dict(watcher.feedback)}",
                    every=4,
                )
            time.sleep(1.0 / rate)


def load_folder(folder: Path) -> Any:
    """A metal-tags folder (labels.csv + images/), or any folder of images (all unlabeled: label them with
    ``--label manual``); formats are sniffed from content."""
    from loupe.datasets import DEFAULT_CLASS_MAP, MetalTags, load_metal_tags
    from loupe.imaging import sniff_format

    folder = Path(folder)
    if (folder / "images").is_dir():
        return load_metal_tags(folder)
    if not folder.is_dir():
        raise DemoError(f"--dataset {folder} is not a folder")
    unlabeled: list[Path] = []
    rejected: list[Any] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        with open(path, "rb") as fh:
            head = fh.read(64)
        (unlabeled if sniff_format(head) else rejected).append(path)
    if not unlabeled:
        raise DemoError(f"--dataset {folder} holds no JPEG or PNG image")
    return MetalTags(
        labeled=[],
        unlabeled=unlabeled,
        rejected=[(p, "not a JPEG or PNG by content") for p in rejected],
        class_map=dict(DEFAULT_CLASS_MAP),
    )
