"""The demo's stages, in order: :func:`setup`, :func:`generate`, :func:`phase1`, :func:`train_approve_deploy` (v1),
:func:`phase2`, :func:`train_approve_deploy` (v2), :func:`show_v2`, :func:`finish`, :func:`teardown`.

Each drives the loop the way its users do (S3 uploads, UpdateModelPackage, frames in the devices' camera folders)
and watches it through the context's read-only observer."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.datasets import capture_metadata
from loupe.safe_paths import extract_tar
from loupe_local.demo import canary as demo_canary
from loupe_local.demo import shadow as demo_shadow
from loupe_local.demo.context import DemoContext, DemoError, FleetWatcher, ModelRecord, load_folder
from loupe_local.observer import Observer


def setup(ctx: DemoContext) -> None:
    from loupe_local.devices.fleet import DeviceFleet
    from loupe_local.host.runtime import LocalRuntime

    stage = ctx.progress.start("start the local AWS, MQTT broker and devices")
    state_dir = ctx.out / "state"
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    os.environ["LOUPE_STATE_DIR"] = str(state_dir)
    if ctx.cfg.dataset:
        # phase 1 of a real folder: its test-split images (never trained on: the split is fixed by content hash,
        # so they are the held-out set too), phase1_share of the others and its unlabeled ones (_from_dataset)
        tags = load_folder(ctx.cfg.dataset)
        rest = [i for i in tags.labeled if i.split != "test"]
        tests = len(tags.labeled) - len(rest)
        if tags.labeled:
            ctx.cfg.phase1 = tests + int(len(rest) * ctx.cfg.phase1_share) + len(tags.unlabeled)
        else:  # a folder of one's own unlabeled images: 60 % in phase 1, the rest for the cameras
            ctx.cfg.phase1 = _own_phase1_count(len(tags.unlabeled))
    params = {
        "LabelingThreshold": str(ctx.cfg.phase1),
        "LabelingMaxPerJob": "1000",
        "MapThreshold": str(ctx.cfg.map_threshold),
        "TrainingEpochs": str(ctx.cfg.epochs),
        "RetrainEpochs": str(ctx.cfg.retrain_epochs),
        "TrainingImageSize": str(ctx.cfg.imgsz),
        "DeploymentTimeoutSeconds": "600",
    }
    if ctx.cfg.canary_percent:  # v2 goes to half the fleet first, promoted or rolled back by the canary's verdict
        params.update(demo_canary.parameters(ctx.cfg.canary_frames, ctx.cfg.canary_min_labeled))
        params["CanaryPercent"] = str(ctx.cfg.canary_percent)
    # Who labels: the template's default, the stack's labeling app, whose automatic workforce is the local bot
    # labelers (loupe_local.console.workforce); an image they have no answer for is declined by LabelingDeclineLimit of
    # them and released as unlabeled (loupe.labeling.workforce.decline_task), so it does not hold the run; with
    # --label manual the bots stop and the person labels in the console app (invite_person). Ground Truth's
    # stand-in, as an existing customer, is the way back (--labeling-service GroundTruth).
    groundtruth = ctx.cfg.labeling_service == "GroundTruth"
    if groundtruth:
        params["LabelingService"] = "GroundTruth"
    ctx.runtime = LocalRuntime(
        root=ctx.root,
        state_dir=state_dir,
        parameters=params,
        alarm_time_scale=ctx.cfg.alarm_time_scale,
        iam=ctx.cfg.iam,
        groundtruth_customer=groundtruth,
    ).start()
    ctx.observer = Observer.from_runtime(ctx.runtime)
    ctx.progress.say(f"console: {ctx.console_url()} (labeling: {ctx.cfg.label}, {_labelers(ctx)})")
    if ctx.cfg.label == "manual":
        invite_person(ctx, state_dir)
    ctx.fleet = DeviceFleet.from_runtime(ctx.runtime)
    ctx.fleet.publish_components(ctx.runtime.physical("ArtifactBucket"))
    # Per-device configuration (as an operator would set on a fleet under observation): health every 5 s, and
    # feedback not throttled to a trickle. Which frames are uncertain is the deployed model's own band: the edge
    # deployment sets the one calibrated on the model's held-out images (its model card's uncertainty_band). Only
    # the quick loop, whose barely trained model finds next to nothing, overrides it on the device (a device's
    # local configuration wins over the deployment's) so that the plumbing still carries feedback.
    feedback: dict[str, Any] = {"maxPerMinute": 240}
    if ctx.cfg.quick:
        feedback.update(bandLow=0.001, bandHigh=0.4, criterion="any")
    overlay = {"com.loupe.inference": {"settings": {"health": {"intervalSeconds": 5}, "feedback": feedback}}}
    overlay_file = state_dir / "device-overlay.json"
    overlay_file.write_text(json.dumps(overlay))
    ctx.things = ctx.fleet.names(ctx.cfg.devices)
    for thing in ctx.things:
        ctx.fleet.start_device(thing, ["--overlay", str(overlay_file)])
    ctx.fleet.wait_registered(ctx.things)
    ctx.watcher = FleetWatcher(
        ctx.runtime.mqtt["host"], ctx.runtime.mqtt["port"], ctx.progress, credentials=ctx.runtime.credentials
    )
    ctx.progress.done(stage, f"{ctx.runtime.endpoint}, devices {', '.join(ctx.things)}")


def generate(ctx: DemoContext) -> None:
    stage = ctx.progress.start("prepare the image stream")
    gen = ctx.out / "data"
    if gen.exists():
        shutil.rmtree(gen)
    workforce = ctx.runtime.state_dir / "workforce"
    workforce.mkdir(parents=True, exist_ok=True)
    ctx.data = _from_dataset(ctx, workforce) if ctx.cfg.dataset else _synthetic(ctx, gen, workforce)
    known = ctx.data.pop("answers")
    if ctx.cfg.canary_percent:  # the canary's window: fresh frames of the line, with their answers for the bots
        frames, answers = demo_canary.fresh_frames(ctx.data["stream"], known, gen / "canary", ctx.cfg.canary_frames)
        demo_canary.write_answers(workforce, answers)
        ctx.data["canary_frames"] = frames
    ctx.progress.done(
        stage,
        f"phase 1: {len(ctx.data['phase1'])} images, phase 2: {sum(len(v) for v in ctx.data['stream'].values())} "
        f"frames for {len(ctx.things)} devices, held-out phase-2 test: {len(ctx.data['test'])}",
    )


def _synthetic(ctx: DemoContext, gen: Path, workforce: Path) -> dict[str, Any]:
    from loupe_local.demo import synth

    cfg = ctx.cfg
    p1 = synth.generate(gen / "phase1", 1, cfg.phase1, seed=cfg.seed)
    stream_count = cfg.phase2_stream * cfg.devices
    p2 = synth.generate(gen / "phase2", 2, stream_count, seed=cfg.seed + 1)
    test = synth.generate(gen / "phase2-test", 2, cfg.phase2_test, seed=cfg.seed + 100, prefix="test-")
    test1 = synth.generate(gen / "phase1-test", 1, max(8, cfg.phase2_test // 2), seed=cfg.seed + 200, prefix="t1-")
    for name in ("phase1", "phase2"):
        shutil.copyfile(gen / name / "answers.jsonl", workforce / f"{name}.jsonl")
    return {
        "answers": {str(gen / "phase2" / a["file"]): a["annotations"] for a in p2},
        "source": "synthetic metal tags (loupe_local.demo.synth)",
        "phase1": [gen / "phase1" / a["file"] for a in p1],
        "stream": {
            thing: [gen / "phase2" / a["file"] for a in p2[i :: cfg.devices]] for i, thing in enumerate(ctx.things)
        },
        "test": [(gen / "phase2-test" / a["file"], a["annotations"]) for a in test],
        "test_phase1": [(gen / "phase1-test" / a["file"], a["annotations"]) for a in test1],
    }


def _own_phase1_count(images: int) -> int:
    """Of a folder of one's own unlabeled images, how many phase 1 uploads (the rest go to the cameras)."""
    return max(1, int(images * 0.6))


def _from_dataset(ctx: DemoContext, workforce: Path) -> dict[str, Any]:
    assert ctx.cfg.dataset is not None, "called for --dataset only"
    tags = load_folder(ctx.cfg.dataset)
    rng = random.Random(ctx.cfg.seed)
    labeled = sorted(tags.labeled, key=lambda i: i.sha256)
    test = [i for i in labeled if i.split == "test"]
    rest = [i for i in labeled if i.split != "test"]
    rng.shuffle(rest)
    cut = int(len(rest) * ctx.cfg.phase1_share)
    phase1, stream = rest[:cut], rest[cut:]
    with open(workforce / "dataset.jsonl", "w") as fh:
        for img in labeled:
            fh.write(json.dumps({"sha256": img.sha256, "annotations": [b.__dict__ for b in img.boxes]}) + "\n")

    def ann(img: Any) -> list[dict[str, Any]]:
        return [b.__dict__ for b in img.boxes]

    own = list(tags.unlabeled)
    if labeled:  # a labeled folder: its unlabeled files go through the workforce with phase 1
        first, later = [i.path for i in test + phase1] + own, [i.path for i in stream]
    else:  # a folder of the user's own unlabeled images: the cameras see images phase 1 did not hold
        rng.shuffle(own)
        cut = _own_phase1_count(len(own))
        first, later = own[:cut], own[cut:]

    return {
        "answers": {str(i.path): ann(i) for i in stream},
        "source": f"{'labeled' if labeled else 'unlabeled'} folder {ctx.cfg.dataset}",
        "phase1": first,
        "stream": {thing: later[k :: len(ctx.things)] for k, thing in enumerate(ctx.things)},
        "test": [(i.path, ann(i)) for i in test],
        "test_phase1": [(i.path, ann(i)) for i in test[: len(test) // 2]],
    }


def phase1(ctx: DemoContext) -> None:
    stage = ctx.progress.start("upload phase-1 images to s3://raw/ and let ingest record them")
    s3 = ctx.client("s3")
    bucket = ctx.runtime.physical("RawBucket")
    for n, path in enumerate(ctx.data["phase1"], 1):
        s3.put_object(
            Bucket=bucket, Key=f"raw/uploads/{path.name}", Body=path.read_bytes(), Metadata=capture_metadata(path.name)
        )
        if n % 20 == 0:
            ctx.progress.tick(f"uploaded {n}/{len(ctx.data['phase1'])}", every=2)
    total = len(ctx.data["phase1"])
    ctx.wait(
        "ingest of phase-1 images",
        lambda: sum(ctx.obs.ledger_totals().values()) >= total,
        lambda: f"ledger {ctx.obs.ledger_totals()}",
    )
    ctx.progress.done(stage, f"ledger {ctx.obs.ledger_totals()}")
    stage = ctx.progress.start(f"label phase 1 ({_labelers(ctx)}) into dataset v1")
    ctx.wait(
        "dataset v1",
        lambda: any(d["version"] == 1 for d in ctx.obs.dataset_versions()),
        lambda: (
            f"ledger {ctx.obs.ledger_totals()}, "
            f"labeling runs {[e['status'] for e in ctx.obs.state_machine_executions('LabelingStateMachine')]}"
        ),
    )
    v1 = next(d for d in ctx.obs.dataset_versions() if d["version"] == 1)
    # images no labeler could answer (a folder's unlabeled photos) are released as unlabeled: the ledger shows them
    ctx.progress.done(
        stage,
        f"dataset v1: {v1['counts']['images']} images, {v1['counts']['boxes']} boxes; ledger {ctx.obs.ledger_totals()}",
    )


def _labelers(ctx: DemoContext) -> str:
    """Who labels this demo's images, in words."""
    if ctx.cfg.labeling_service == "GroundTruth":
        return "Ground Truth stand-in, the local workforce"
    if ctx.cfg.label == "manual":
        return f"Loupe labeling app, you ({ctx.cfg.person_email}) in the console"
    return "Loupe labeling app, bot labelers through the console API"


def invite_person(ctx: DemoContext, state_dir: Path) -> Path:
    """``--label manual``: the bot labelers stop answering (the workforce's mode), and the person becomes a console
    user in labelers, reviewers and approvers, as ``loupe labelers add`` invites one: the temporary password goes
    to ``<state>/mail/<address>.txt``, never to the terminal. Returns that file."""
    from loupe_local.console.labelers_cli import invite_locally
    from loupe_local.standins.groundtruth.workforce import set_workforce_mode

    set_workforce_mode(state_dir, "manual")
    mail = invite_locally(
        ctx.client("cognito-idp"),
        ctx.runtime.physical("ConsoleUserPool"),
        state_dir,
        ctx.cfg.person_email,
        ["labelers", "reviewers", "approvers"],
    )
    ctx.progress.say(
        f"  label in the console: {ctx.console_url()}web/labeling.html, signed in as {ctx.cfg.person_email}; "
        f"your temporary password is in {mail} (owner-only; you choose your own at the first sign-in)"
    )
    return mail


def train_approve_deploy(ctx: DemoContext) -> ModelRecord:
    """The next model: trained and registered by the pipeline, approved, deployed and served by every device."""
    n = len(ctx.models) + 1
    record = register(ctx, n)
    demo_shadow.await_field_agreement(ctx, record, n)
    approve(ctx, record, n)
    canary = demo_canary.run(ctx, record, n)
    if canary is not None and canary["status"] != "PROMOTED":
        ctx.models.append(record)  # rolled back: reported, and the fleet stays on the champion
        return record
    deploy(ctx, record, n)
    ctx.models.append(record)
    return record


def register(ctx: DemoContext, n: int) -> ModelRecord:
    """Waits for the pipeline's next package. A model the gate refused is registered too (PendingManualApproval,
    the refusal and the training's diagnosis in its metadata): the demo says why and goes on with it; an execution
    that fails without registering anything (a broken step) stops the demo."""
    obs = ctx.obs
    known = {p["arn"] for p in obs.packages(with_cards=False)}
    stage = ctx.progress.start(f"train, evaluate and gate model v{n} (SageMaker pipeline, local)")
    failed_before = set(obs.pipeline_failures())

    def registered() -> dict[str, Any] | None:
        oldest_first = reversed(obs.packages(with_cards=False))
        package = next((p for p in oldest_first if p["arn"] not in known), None)
        if package is not None:
            return package
        failed = {k: v for k, v in obs.pipeline_failures().items() if k not in failed_before}
        if failed:
            raise DemoError(f"model v{n} was not registered: {next(iter(failed.values()))}")
        return None

    package = ctx.wait(f"model package v{n}", registered, obs.training_status)
    record = _record(ctx, package, n)
    if record.gate_refusal:
        _explain_refusal(ctx, record, failed_before)
        ctx.progress.say(f"  the gate REFUSED model v{n}: {record.gate_refusal}")
        ctx.progress.say(f"  why (training): {record.training_diagnosis or 'no diagnosis recorded'}")
    ctx.progress.done(
        stage,
        f"registered {package['arn'].rsplit('/', 2)[-2:]} as {record.approval}, "
        f"pipeline test mAP50 {record.pipeline_test_map50}" + (", REFUSED by the gate" if record.gate_refusal else ""),
    )
    return record


REFUSAL_WAIT_S = 120.0
TRAINING_MARK = " Training: "  # where the GateRefused message (training/pipeline.py) gives the training's diagnosis


def _explain_refusal(ctx: DemoContext, record: ModelRecord, failed_before: set[str]) -> None:
    """The refused package's metadata holds a compact reason (SageMaker's metadata values are short and plain); the
    execution's FailureReason, the GateRefused step's message right after the registration, has the scores and the
    training's diagnosis in full: use it when it comes."""

    def failure() -> str | None:
        new = [v for k, v in ctx.obs.pipeline_failures().items() if k not in failed_before]
        return new[0] if new else None

    try:
        reason = str(ctx.wait("the gate's refusal message", failure, timeout=REFUSAL_WAIT_S))
    except DemoError:
        return  # the metadata's reason stands
    refusal, _, training = reason.partition(TRAINING_MARK)
    record.gate_refusal = refusal.strip() or record.gate_refusal
    record.training_diagnosis = training.strip() or record.training_diagnosis


APPROVAL_DESCRIPTION_LIMIT = 1024  # UpdateModelPackage's ApprovalDescription


def approve(ctx: DemoContext, record: ModelRecord, n: int) -> None:
    """Approves the model as its users do (UpdateModelPackage). A model the gate refused is approved only as
    "approved despite the gate's refusal: <reason>", in the package's ApprovalDescription and the report."""
    stage = ctx.progress.start(f"approve model v{n}" + (" (the gate refused it)" if record.gate_refusal else ""))
    despite = f"approved despite the gate's refusal: {record.gate_refusal}" if record.gate_refusal else ""
    if ctx.cfg.approve == "manual":
        if despite:
            ctx.progress.say(
                f"  the gate refused model v{n}; approve it only if you accept that: {record.gate_refusal}"
            )
        ctx.progress.say(
            f"  waiting for your approval: Approve in {ctx.console_url()}web/models.html, or in another shell:\n"
            f'    eval "$(LOUPE_STATE_DIR={ctx.runtime.state_dir} loupe local env)"\n'
            f"    aws sagemaker update-model-package --model-package-arn {record.package_arn} "
            "--model-approval-status Approved"
        )
        ctx.wait("manual approval", lambda: ctx.obs.approval(record.package_arn) == "Approved", timeout=24 * 3600)
        note = "approved by you" + (f" ({despite})" if despite else "")
        if record.field_agreement is not None:  # what the console recorded with your approval
            record.field_agreement = ctx.obs.field_evidence(record.package_arn) or record.field_agreement
    else:
        if record.approval != "Approved":
            sm = ctx.client("sagemaker")
            extra: dict[str, Any] = {"ApprovalDescription": despite[:APPROVAL_DESCRIPTION_LIMIT]} if despite else {}
            if record.field_agreement is not None:  # it ran beside production: the approval records the agreement
                record.field_agreement = ctx.obs.field_evidence(record.package_arn) or record.field_agreement
                existing = sm.describe_model_package(ModelPackageName=record.package_arn)
                extra["CustomerMetadataProperties"] = ctx.obs.approval_metadata(
                    record.package_arn, dict(existing.get("CustomerMetadataProperties") or {})
                )
            sm.update_model_package(ModelPackageArn=record.package_arn, ModelApprovalStatus="Approved", **extra)
        note = f"demo: {despite}" if despite else "approved (demo: automatic)"
    record.approval = "Approved"
    record.approval_note = note
    ctx.progress.done(stage, f"{note}; {demo_shadow.field_line(record)}" if record.field_agreement else note)


def deploy(ctx: DemoContext, record: ModelRecord, n: int) -> None:
    """Waits until every device serves the model; a refused or failed edge deployment of it stops the demo."""
    stage = ctx.progress.start(f"deploy model v{n} to {len(ctx.things)} devices (Greengrass, local)")

    def serving() -> bool:
        failure = ctx.obs.deployment_failure(record.package_arn)
        if failure:
            outcome, reason = failure
            raise DemoError(f"model v{n} was not deployed: {outcome}" + (f" ({reason})" if reason else ""))
        return ctx.devices_on(record)

    ctx.wait(f"devices running model v{n}", serving, lambda: f"devices {ctx.device_versions()}")
    ctx.progress.done(stage, f"devices {ctx.device_versions()}")


def _record(ctx: DemoContext, package: dict[str, Any], n: int) -> ModelRecord:
    meta = package.get("metadata") or {}
    dataset_version = _int(meta.get("dataset_version"))
    parent = None
    for d in ctx.obs.dataset_versions():
        if d["version"] == dataset_version:
            parent = d.get("parent")
    record = ModelRecord(
        version=n,
        package_arn=package["arn"],
        dataset_version=dataset_version,
        parent_dataset_version=parent,
        approval=package.get("approval", ""),
        pipeline_test_map50=_float(meta.get("test_map50")),
        warm_start=meta.get("warm_start", "champion" if n > 1 else "from scratch"),
        gate_refusal=(meta.get("gate_refusal") or "no reason recorded") if meta.get("gate") == "refused" else "",
        training_diagnosis=meta.get("training_diagnosis", ""),
    )
    record.model_dir = _download_model(ctx, package["model_data"], n)
    # the devices name a model by its package version (the model component's pointer carries it)
    record.model_version = str(package.get("version") or package["arn"].rsplit("/", 1)[-1])
    return record


def _download_model(ctx: DemoContext, uri: str, n: int) -> Path:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    target = ctx.out / "models" / f"v{n}"
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "model.tar.gz"
    archive.write_bytes(ctx.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    extract_tar(archive, target)
    return target


# what the labeling trigger says started a labeling run (the run's input "reason")
LABELING_REASONS = {
    "drift": "the drift alarm (uncertain-frame share over DriftUncertainShareThreshold)",
    "threshold": "the count threshold (LabelingThreshold unlabeled images in the ledger)",
    "schedule": "the labeling schedule",
    "manual": "a manual request",
}
STREAM_SHARE_OF_ALARM_PERIOD = 0.6


def drift_alarm_period(ctx: DemoContext) -> float:
    """Seconds of one period of the drift alarm as the local CloudWatch evaluates it (the template's period,
    shrunk by the demo's alarm time scale)."""
    name = ctx.runtime.physical("DriftAlarm")
    alarm = next(a for a in ctx.runtime.alarms.alarms if a["name"] == name)
    return max(1.0, int(int(alarm["Period"]) / ctx.runtime.alarm_time_scale))


def stream_rate(frames_per_device: int, max_rate: float, alarm_period: float) -> float:
    """Frames/s per camera: at most ``max_rate``, and slow enough that the stream spans
    ``STREAM_SHARE_OF_ALARM_PERIOD`` of a drift alarm period. The alarm needs the uncertain share in two consecutive
    periods, so a stream of a few seconds never raises it; and one shorter than a period ends before the alarm can
    fire, so every uncertain frame is in the ledger when labeling claims the unlabeled images."""
    if frames_per_device <= 0:
        return max_rate
    return min(max_rate, frames_per_device / (STREAM_SHARE_OF_ALARM_PERIOD * alarm_period))


def labeling_runs(ctx: DemoContext) -> dict[str, str]:
    """Labeling executions: ARN -> status."""
    return {e["executionArn"]: e["status"] for e in ctx.obs.state_machine_executions("LabelingStateMachine")}


def labeling_reason(ctx: DemoContext, execution_arn: str) -> str:
    """What started a labeling run, in words, from the reason the labeling trigger gave it."""
    desc = ctx.client("stepfunctions").describe_execution(executionArn=execution_arn)
    try:
        reason = str(json.loads(desc.get("input") or "{}").get("reason") or "")
    except ValueError:
        reason = ""
    return LABELING_REASONS.get(reason, f"reason {reason!r}" if reason else "an unknown reason")


class RunningLine:
    """After the new tags the line keeps running: the cameras see the phase-2 tags again, at the same pace. Their
    uncertain frames are in the ledger already (one entry per content hash), so nothing new waits for labeling,
    while the devices' health reports keep the uncertain share the drift alarm watches: CloudWatch needs it over
    two alarm periods, longer than the new tags take to pass."""

    def __init__(self, ctx: DemoContext, frames: dict[str, list[Path]], rate: float) -> None:
        self.ctx, self.rate = ctx, rate
        self.frames = {thing: paths for thing, paths in frames.items() if paths}
        self.started = time.monotonic()
        self.placed = 0  # per device

    def step(self) -> None:
        """Places the frames due since the line restarted."""
        due = int((time.monotonic() - self.started) * self.rate)
        while self.placed < due:
            for thing, paths in self.frames.items():
                source = paths[self.placed % len(paths)]
                self.ctx.place_frame(thing, source, f"again-{self.placed}-{source.name}")
            self.placed += 1

    @property
    def seen(self) -> int:
        """Frames placed again, over every camera."""
        return self.placed * len(self.frames)


def await_labeling(
    ctx: DemoContext, runs_before: set[str], wait_s: float, keep_running: Callable[[], None] | None = None
) -> str:
    """Waits for the loop to start labeling by itself (a new labeling run) and says what started it, calling
    ``keep_running`` meanwhile (the line goes on). After ``wait_s`` without one, fires the labeling schedule as a
    last resort, and says so."""
    deadline = time.monotonic() + wait_s
    while True:
        if keep_running is not None:
            keep_running()
        run = next((arn for arn in labeling_runs(ctx) if arn not in runs_before), None)
        if run is not None:
            note = f"labeling started by {labeling_reason(ctx, run)}"
            ctx.progress.say(f"  {note}")
            return note
        if time.monotonic() >= deadline:
            break
        ctx.progress.tick(f"ledger {ctx.obs.ledger_totals()}, drift alarm {ctx.obs.alarm_state('DriftAlarm')}")
        time.sleep(1.0)
    # Not the loop's own signal: in the cloud the daily schedule would start this labeling within a day.
    ctx.progress.say(
        f"  neither the drift alarm nor the count threshold started labeling within {wait_s:.0f}s: "
        "LAST RESORT, the demo fires the daily labeling schedule now"
    )
    ctx.fire_labeling_schedule()
    return "labeling started by the labeling schedule, fired by the demo as a last resort (no drift alarm, no count)"


def phase2(ctx: DemoContext) -> None:
    stage = ctx.progress.start("devices see phase 2 with model v1 (frames placed in the camera folders)")
    watcher = ctx.watcher
    assert watcher is not None, "setup() starts the watcher"
    versions_before = len(ctx.obs.dataset_versions())
    runs_before = set(labeling_runs(ctx))
    before = {t: watcher.frames.get(t, 0) for t in ctx.things}
    uncertain_before = sum(watcher.uncertain.values())
    period = drift_alarm_period(ctx)
    per_device = max((len(v) for v in ctx.data["stream"].values()), default=0)
    rate = stream_rate(per_device, ctx.cfg.frame_rate, period)
    ctx.progress.say(
        f"  cameras: {per_device} frames per device at {rate:.1f}/s ({per_device / rate:.0f}s; the drift alarm "
        f"evaluates {period:.0f}s periods)"
    )
    ctx.place_frames(ctx.data["stream"], rate)
    total = sum(len(v) for v in ctx.data["stream"].values())
    ctx.wait(
        "devices to process the phase-2 frames",
        lambda: sum(watcher.frames.get(t, 0) - before[t] for t in ctx.things) >= total,
        lambda: f"inference messages {dict(watcher.frames)}",
        timeout=300,
    )
    uncertain = sum(watcher.uncertain.values()) - uncertain_before
    ctx.data["phase2"] = {"frames_streamed": total, "uncertain": uncertain}
    ctx.progress.done(
        stage,
        f"{total} frames placed in the camera folders and processed; {uncertain} of them uncertain "
        f"({uncertain / max(total, 1):.0%}), sent back to S3 for labeling",
    )
    stage = ctx.progress.start("uncertain frames -> ledger -> labeling (drift alarm or count) -> dataset v2")
    # the loop's own signals: the drift alarm needs two alarm periods of health reports, the count threshold
    # fires on an ingest; both get their time before the last resort, while the line keeps running
    line = RunningLine(ctx, ctx.data["stream"], rate)
    note = await_labeling(ctx, runs_before, max(120.0, 4 * period), keep_running=line.step)
    ctx.data["phase2"].update(labeling_started_by=note, frames_seen_again=line.seen)
    if line.seen:
        ctx.progress.say(
            f"  meanwhile the line kept running: the cameras saw {line.seen} frames of the same "
            "tags again (already in the ledger: nothing new to label)"
        )
    ctx.wait(
        "dataset v2",
        lambda: len(ctx.obs.dataset_versions()) > versions_before,
        lambda: f"ledger {ctx.obs.ledger_totals()}",
    )
    latest = ctx.obs.dataset_versions()[0]  # newest first
    ctx.progress.done(
        stage,
        f"{note}; dataset v{latest['version']} (parent v{latest.get('parent')}): "
        f"{latest['counts']['images']} images, "
        f"origins {latest['counts'].get('by_origin')}",
    )


def show_v2(ctx: DemoContext, v2: ModelRecord) -> None:
    stage = ctx.progress.start("devices run a few phase-2 frames with model v2")
    watcher = ctx.watcher
    assert watcher is not None, "setup() starts the watcher"
    sample = {t: paths[: max(4, len(paths) // 4)] for t, paths in ctx.data["stream"].items()}
    renamed: dict[str, list[Path]] = {}
    for thing, paths in sample.items():
        folder = ctx.out / "data" / "replay" / thing
        folder.mkdir(parents=True, exist_ok=True)
        renamed[thing] = []
        for p in paths:
            target = folder / f"v2-{p.name}"
            shutil.copyfile(p, target)
            renamed[thing].append(target)
    ctx.place_frames(renamed, ctx.cfg.frame_rate)
    ctx.wait(
        "devices reporting model v2",
        lambda: all(watcher.model_versions.get(t) == v2.model_version for t in ctx.things),
        lambda: f"devices {ctx.device_versions()}",
        timeout=120,
    )
    ctx.progress.done(stage, f"devices {ctx.device_versions()}")


def finish(ctx: DemoContext) -> dict[str, Any]:
    """Scores v1 and v2 on the held-out sets and writes report/summary.json and report/index.html."""
    from loupe_local.demo import evaluation as demo_evaluation
    from loupe_local.demo import report

    stage = ctx.progress.start("evaluate v1 and v2 on the held-out phase-2 set and write the report")
    report_dir = ctx.out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    gain = demo_evaluation.score_models(ctx)
    pictures = demo_evaluation.draw_models(ctx, report_dir)
    wall = ctx.progress.now()
    devices = demo_evaluation.device_rows(ctx)
    pictures["latency"] = demo_evaluation.draw_latency(ctx, report_dir)
    ctx.progress.done(stage)
    summary = demo_evaluation.write_report(ctx, report_dir, wall, devices, pictures, gain)
    ctx.progress.say(
        "v1 → v2 on the phase-2 held-out set: "
        + ", ".join(f"v{m['version']} mAP50 {m['test_map50_phase2']}" for m in summary["models"])
        + (f" {report.gain_spread(gain)}" if gain else "")
    )
    return summary


def teardown(ctx: DemoContext) -> None:
    if ctx.watcher is not None:
        ctx.watcher.stop()
    if ctx.fleet is not None:
        ctx.fleet.stop()
    if ctx.runtime is not None:
        ctx.runtime.stop()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return round(float(value), 4)
    except (TypeError, ValueError):
        return None
