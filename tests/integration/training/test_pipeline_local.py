"""The training pipeline end to end in the local AWS: real entry points as subprocesses, moto's model registry.

One tiny generated dataset version (PIL pictures, 1 epoch at 64 px) keeps this to a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.archives import tar_gz
from support.lambdas import let_eventbridge_deliver
from support.waiting import wait_for

from loupe_local.standins.pipelines.service import PipelineExecutions, ensure_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Its own model package group: the session's local AWS is shared, and other tests approve packages in the stack's
# group — a champion there would make these runs challengers.
GROUP = "test-training-models"
WARM_GROUP = "test-warm-start-models"  # the shared execution's group: its approved package is these runs' champion
DEMO_GROUP = "test-demo-refused-models"  # the refused execution's: the demo's test makes a champion of it
TINY = {"Epochs": "1", "ImageSize": "64", "WarmStart": "none", "ModelPackageGroupName": GROUP}


@pytest.fixture(scope="module")
def runner(local_aws):
    sm = local_aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    # the stack's pipeline registers with SageMakerExecutionRole, whose grant names the stack's group only: these
    # runs register into (and warm-start from) groups of the tests' own, so the role gets a grant for them here
    groups = [GROUP, DEMO_GROUP, WARM_GROUP]
    arn = f"arn:aws:sagemaker:{local_aws.region}:123456789012"
    local_aws.grant(
        "SageMakerExecutionRole",
        "test-own-model-package-groups",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage"],
                    "Resource": [f"{arn}:model-package-group/{g}" for g in groups]
                    + [f"{arn}:model-package/{g}/*" for g in groups],
                }
            ],
        },
    )
    # executions earlier modules started through the template's workflows were stopped when those modules ended
    # (tests/conftest.py), so none queues ahead of ours
    found = [s for s in local_aws.standins if isinstance(s, PipelineExecutions)]
    if found:  # listed in STANDINS: the local AWS already runs it
        yield found[0]
        return
    standin = PipelineExecutions()  # not (yet) listed in STANDINS: attach it to the running local AWS
    standin.attach(local_aws)
    local_aws.standins.append(standin)
    yield standin
    standin.stop()
    local_aws.standins.remove(standin)


@pytest.fixture(scope="module")
def dataset_uri(local_aws, tmp_path_factory) -> str:
    from loupe_training.tiny import make_tiny_version

    folder = tmp_path_factory.mktemp("tiny-v1")
    make_tiny_version(folder, count=40, size=96, seed=1)
    bucket = local_aws.physical("ArtifactBucket")
    s3 = local_aws.client("s3")
    prefix = "datasets/test-training-v1/"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, prefix + path.relative_to(folder).as_posix())
    return f"s3://{bucket}/{prefix}"


@pytest.fixture(scope="module")
def events(local_aws):
    """Every aws.sagemaker event the local AWS puts on the bus, through a real rule -> SQS target."""
    sqs, ev = local_aws.client("sqs"), local_aws.client("events")
    url = sqs.create_queue(QueueName="test-training-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule_arn = ev.put_rule(Name="test-training-events", EventPattern=json.dumps({"source": ["aws.sagemaker"]}))
    ev.put_targets(Rule="test-training-events", Targets=[{"Id": "q", "Arn": arn}])
    let_eventbridge_deliver(local_aws, rule_arn["RuleArn"], queue=arn)  # the queue policy AWS requires
    seen: list[dict] = []

    def drain() -> list[dict]:
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return seen
            for m in msgs:
                seen.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    return drain


def _run(local_aws, name: str, params: dict[str, str], timeout: float = 900) -> dict:
    sm = local_aws.client("sagemaker")
    arn = sm.start_pipeline_execution(
        PipelineName=name, PipelineParameters=[{"Name": k, "Value": v} for k, v in params.items()]
    )["PipelineExecutionArn"]
    return _finished(local_aws, arn, timeout)


def _finished(local_aws, arn: str, timeout: float = 900) -> dict:
    """Execution ``arn`` once it has ended: its description and its steps by name."""
    sm = local_aws.client("sagemaker")

    def finished() -> dict | None:
        desc = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        return desc if desc["PipelineExecutionStatus"] not in ("Executing", "Stopping") else None

    desc = wait_for(finished, timeout, f"pipeline execution {arn}", interval=2)
    steps = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    return {"arn": arn, "desc": desc, "steps": {s["StepName"]: s for s in steps}}


def _packages(local_aws, group: str = GROUP) -> list[dict]:
    sm = local_aws.client("sagemaker")
    out = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    return [sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in out]


@pytest.fixture(scope="module")
def registered(local_aws, runner, dataset_uri, events) -> dict:
    """One passing execution in ``WARM_GROUP``, shared: the registration test reads what it registered (as it was
    right after the run), and the warm-start test approves that package to make it the champion (one training less
    for the suite)."""
    sm = local_aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=WARM_GROUP)
    name = ensure_pipeline(local_aws)
    params = {**TINY, "ModelPackageGroupName": WARM_GROUP, "DatasetS3Uri": dataset_uri, "MinTestMap50": "0.0"}
    run = _run(local_aws, name, params)
    packages = _packages(local_aws, WARM_GROUP)
    return {"name": name, "params": params, "run": run, "packages": packages}


def test_execution_registers_a_pending_package_with_metrics_and_digests(
    local_aws, runner, dataset_uri, events, registered
):
    run = registered["run"]
    assert run["desc"]["PipelineExecutionStatus"] == "Succeeded", run["desc"].get("FailureReason")
    assert set(run["steps"]) == {"Prepare", "Train", "Evaluate", "Gate", "Register-RegisterModel"}
    assert run["steps"]["Gate"]["Metadata"]["Condition"]["Outcome"] == "True"

    new = registered["packages"]  # the group is the fixture's own: it held nothing before this execution
    assert len(new) == 1
    pkg = new[0]
    assert pkg["ModelApprovalStatus"] == "PendingManualApproval"
    meta = pkg["CustomerMetadataProperties"]
    assert meta["dataset_version"] == "1"
    assert len(meta["dataset_digest"]) == 64 and len(meta["model_sha256"]) == 64
    assert meta["dataset_uri"] == dataset_uri

    # the registered artifacts are what the metadata says they are
    s3 = local_aws.client("s3")
    url = pkg["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = url[5:].partition("/")
    import hashlib
    import io
    import tarfile

    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(data).hexdigest() == meta["package_sha256"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = set(tar.getnames())
        onnx_bytes = tar.extractfile("model.onnx").read()
        card_bytes = tar.extractfile("model_card.json").read()
        card = json.loads(card_bytes)
    assert {"model.onnx", "model_card.json"} <= names
    # the chain a warm start from this package verifies before unpickling (loupe_training.jobs.champion_weights):
    # metadata -> the card's sha256 -> the card's digest of best.pt in the training artifact
    assert hashlib.sha256(card_bytes).hexdigest() == meta["model_card_sha256"]
    assert card["weights"]["uri"] == meta["weights_uri"]
    wb, _, wk = meta["weights_uri"][5:].partition("/")
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=wb, Key=wk)["Body"].read())) as tar:
        best = tar.extractfile("best.pt").read()
    assert hashlib.sha256(best).hexdigest() == card["weights"]["sha256"]
    assert hashlib.sha256(onnx_bytes).hexdigest() == meta["model_sha256"]
    assert card["dataset"]["digest"] == meta["dataset_digest"]
    assert ("model_int8.onnx" in names) == card["int8"]["kept"]
    # the frames the model's devices will send back: its band, from its val + test images (loupe.uncertainty)
    band = card["uncertainty_band"]
    counts = card["dataset"]["counts"]
    assert 0.0 <= band["bandLow"] < band["bandHigh"] <= 1.0
    # calibrated on enough held-out images: the top-confidence criterion; too few: the recipe's default band
    assert band["criterion"] == ("top" if band["method"] == "calibrated" else "any")
    assert band["splits"] == ["val", "test"] and band["frames"] == counts["val"] + counts["test"]

    stats_uri = pkg["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    b, _, k = stats_uri[5:].partition("/")
    stats = json.loads(s3.get_object(Bucket=b, Key=k)["Body"].read())
    assert set(stats["object_detection_metrics"]) >= {"map50", "map50_95", "precision", "recall"}
    assert float(meta["test_map50"]) == pytest.approx(stats["object_detection_metrics"]["map50"]["value"], abs=1e-4)

    # progress and logs were visible while it ran
    status = runner.status()["executions"][run["arn"]]
    assert status["training"]["epoch"] >= 1
    assert "epoch 1/1" in (Path(status["logs"]) / "Train.log").read_text()

    seen = events()
    statuses = [
        e["detail"]["currentPipelineExecutionStatus"]
        for e in seen
        if e["detail-type"] == "SageMaker Model Building Pipeline Execution Status Change"
        and e["detail"]["pipelineExecutionArn"] == run["arn"]
    ]
    assert statuses == ["Executing", "Succeeded"]
    registered = [
        e
        for e in seen
        if e["detail-type"] == "SageMaker Model Package State Change"
        and e["detail"]["ModelPackageArn"] == pkg["ModelPackageArn"]
    ]
    assert registered and registered[0]["detail"]["ModelApprovalStatus"] == "PendingManualApproval"


def test_weak_model_is_refused_by_the_gate_with_its_reason(local_aws, refused, events):
    """The execution fails with the gate's reason and the training's diagnosis; the refused candidate is registered
    for a person to look at (PendingManualApproval, the refusal in its metadata), never approved (issue 22)."""
    run = refused["run"]
    assert run["desc"]["PipelineExecutionStatus"] == "Failed"
    reason = run["desc"]["FailureReason"]
    assert "Gate refused the model" in reason and "0.99" in reason
    # the tiny set (40 pictures) is below the diagnosis' data threshold: the reason says so, and what to try
    assert "Training: " in reason and "data too small" in reason and "Try: " in reason
    assert run["steps"]["Gate"]["Metadata"]["Condition"]["Outcome"] == "False"
    assert run["steps"]["GateRefused"]["StepStatus"] == "Failed"
    assert "Register-RegisterModel" not in run["steps"]
    refused_arn = run["steps"]["RegisterRefused-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"]
    assert [p["ModelPackageArn"] for p in refused["packages"]] == [refused_arn]  # the group held none before
    pkg = refused["packages"][0]  # as registered, before the demo's test approves it
    assert pkg["ModelApprovalStatus"] == "PendingManualApproval"
    meta = pkg["CustomerMetadataProperties"]
    assert meta["gate"] == "refused" and meta["gate_refusal"].startswith("refused: test mAP50 ")
    assert "MinTestMap50 0.99" in meta["gate_refusal"] and "data too small" in meta["training_diagnosis"]
    assert_sagemaker_takes(meta)
    failed = [
        e
        for e in events()
        if e["detail-type"] == "SageMaker Model Building Pipeline Execution Status Change"
        and e["detail"]["pipelineExecutionArn"] == run["arn"]
        and e["detail"]["currentPipelineExecutionStatus"] == "Failed"
    ]
    assert failed


def assert_sagemaker_takes(metadata: dict[str, str]) -> None:
    """Every value passes CreateModelPackage's CustomerMetadataValue constraint (botocore's model of SageMaker's
    API: 1-256 characters of letters, spaces, digits and _.:/=+-@), which moto does not check."""
    import unicodedata

    import botocore.session

    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("CustomerMetadataValue")
    # the character class below is this pattern's ([\p{L}\p{Z}\p{N}_.:\/=+\-@]*), which Python's re cannot compile
    assert shape.metadata["pattern"] == r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}"
    for key, value in metadata.items():
        assert shape.metadata["min"] <= len(value) <= shape.metadata["max"], (key, value)
        bad = [c for c in value if unicodedata.category(c)[0] not in "LZN" and c not in "_.:/=+-@"]
        assert not bad, (key, value, bad)


# --------------------------------------------------------------------- the demo when the gate refuses v1 (issue 22)


@pytest.fixture(scope="module")
def refused(local_aws, runner, dataset_uri, events, tmp_path_factory) -> dict:
    """One execution the gate refuses (MinTestMap50 0.99) in ``DEMO_GROUP``, watched by the demo's register stage
    as the demo watches its pipeline; shared by the pipeline's refusal test and the demo's (one training less for
    the suite). Returns the finished execution, the group's packages as registered, the demo, what it said and its
    record of the model."""
    from loupe_local.demo import stages as demo_stages
    from loupe_local.demo.command import Demo, DemoConfig
    from loupe_local.observer import Observer

    class GroupObserver(Observer):
        package_group = DEMO_GROUP  # type: ignore[assignment]

    sm = local_aws.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName=DEMO_GROUP)
    out = tmp_path_factory.mktemp("refused-demo")
    demo = Demo(DemoConfig(out=out, timeout_stage=600.0), out)
    demo.runtime = local_aws
    demo.observer = GroupObserver.from_runtime(local_aws)
    said: list[str] = []
    demo.progress.say = said.append  # type: ignore[method-assign]
    name = ensure_pipeline(local_aws)
    params = {**TINY, "ModelPackageGroupName": DEMO_GROUP, "DatasetS3Uri": dataset_uri, "MinTestMap50": "0.99"}
    arn = sm.start_pipeline_execution(
        PipelineName=name, PipelineParameters=[{"Name": k, "Value": v} for k, v in params.items()]
    )["PipelineExecutionArn"]
    record = demo_stages.register(demo, 1)  # waits on the pipeline as the demo does
    packages = _packages(local_aws, DEMO_GROUP)
    return {"run": _finished(local_aws, arn, 300), "packages": packages, "demo": demo, "said": said, "record": record}


def test_the_demo_explains_a_refused_v1_approves_it_explicitly_and_goes_on(local_aws, refused):
    """The demo's register and approve stages, watching the real local pipeline refuse v1 (MinTestMap50 0.99): no
    DemoError; it prints the gate's reason and the training's diagnosis, approves the package as "approved despite
    the gate's refusal: <reason>" (its ApprovalDescription), and the report page and summary notes say so."""
    from loupe_local.demo import evaluation as demo_evaluation
    from loupe_local.demo import report
    from loupe_local.demo import stages as demo_stages

    sm = local_aws.client("sagemaker")
    demo, said, record = refused["demo"], refused["said"], refused["record"]
    assert record.gate_refusal.startswith("Gate refused the model: test mAP50") and "0.99" in record.gate_refusal
    assert "data too small" in record.training_diagnosis and "Try: " in record.training_diagnosis
    assert f"  the gate REFUSED model v1: {record.gate_refusal}" in said
    assert f"  why (training): {record.training_diagnosis}" in said
    demo_stages.approve(demo, record, 1)

    pkg = sm.describe_model_package(ModelPackageName=record.package_arn)
    assert pkg["ModelApprovalStatus"] == "Approved"
    assert pkg["ApprovalDescription"] == f"approved despite the gate's refusal: {record.gate_refusal}"[:1024]
    # a refused package never runs beside production: the approval stage says nothing of a field agreement
    assert demo.progress.stages[-1]["note"] == f"demo: {pkg['ApprovalDescription']}"
    # the execution itself failed with the gate's reason: the refusal is the pipeline's, not the demo's
    desc = refused["run"]["desc"]
    assert desc["PipelineExecutionStatus"] == "Failed" and record.gate_refusal in desc["FailureReason"]
    assert record.training_diagnosis in desc["FailureReason"]
    assert_sagemaker_takes(pkg["CustomerMetadataProperties"])

    demo.models.append(record)
    rows = demo_evaluation.model_rows(demo.models)
    assert rows[0]["gate"] == "refused" and rows[0]["approval_note"].startswith("demo: approved despite")
    [note] = demo_evaluation.refusal_notes(demo.models)
    assert note.startswith("model v1 was demo: approved despite the gate's refusal: Gate refused the model")
    page = report.write_html(demo.cfg.out, {"models": rows, "notes": [note]}, {}).read_text()
    assert 'data-gate="refused"' in page and 'data-refusal="0"' in page and "The gate refused a model" in page


def test_bad_dataset_fails_the_prepare_step_with_a_clear_message(local_aws, runner):
    name = ensure_pipeline(local_aws)
    bucket = local_aws.physical("ArtifactBucket")
    s3 = local_aws.client("s3")
    manifest = {"format": "loupe-dataset/1", "version": 9, "images": []}
    s3.put_object(Bucket=bucket, Key="datasets/test-training-empty/dataset.json", Body=json.dumps(manifest))
    run = _run(local_aws, name, {**TINY, "DatasetS3Uri": f"s3://{bucket}/datasets/test-training-empty/"})
    assert run["desc"]["PipelineExecutionStatus"] == "Failed"
    assert "no images" in run["desc"]["FailureReason"]
    assert run["steps"]["Prepare"]["StepStatus"] == "Failed"
    assert "Train" not in run["steps"]


# ----------------------------------------------------------------- warm start from the champion (issue 21, Medium 9)


def test_a_warm_start_loads_only_the_champion_weights_its_model_card_vouches_for(local_aws, runner, registered):
    sm, s3 = local_aws.client("sagemaker"), local_aws.client("s3")
    name, params, first = registered["name"], registered["params"], registered["run"]
    assert first["desc"]["PipelineExecutionStatus"] == "Succeeded", first["desc"].get("FailureReason")
    [summary] = sm.list_model_packages(ModelPackageGroupName=WARM_GROUP)["ModelPackageSummaryList"]
    sm.update_model_package(ModelPackageArn=summary["ModelPackageArn"], ModelApprovalStatus="Approved")

    warm = _run(local_aws, name, {**params, "WarmStart": "champion"})
    assert "Train" in warm["steps"], warm["desc"].get("FailureReason")
    logs = Path(runner.status()["executions"][warm["arn"]]["logs"])
    assert "verified against the model card" in (logs / "Prepare.log").read_text()
    assert "warm start from" in (logs / "Train.log").read_text()

    # the champion's weights replaced in the bucket after registration: refused before anything unpickles them
    weights_uri = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])["CustomerMetadataProperties"][
        "weights_uri"
    ]
    bucket, _, key = weights_uri[5:].partition("/")
    s3.put_object(Bucket=bucket, Key=key, Body=tar_gz({"best.pt": b"a pickle that runs code when loaded"}))
    tampered = _run(local_aws, name, {**params, "WarmStart": "champion"})
    assert tampered["desc"]["PipelineExecutionStatus"] == "Failed"
    assert "refusing to load them" in tampered["desc"]["FailureReason"]
    assert tampered["steps"]["Prepare"]["StepStatus"] == "Failed" and "Train" not in tampered["steps"]


# ---------------------------------------------------------------------- managed spot training (issue 10, contract 4)
# The stack's largest TrainingMaxRuntimeSeconds (template.yaml MaxValue, SageMaker's 28-day limit): the request
# must still be valid with spot on, so the job must run.
STACK_MAX_RUNTIME = str(28 * 24 * 3600)
_EPOCH_LINE = re.compile(r"\bepoch (\d+)/(\d+) box_loss=")
_SAVED_LINE = re.compile(r"checkpoint saved: epoch (\d+)/")


def _checkpoint_epoch(folder: Path) -> int:
    try:
        return int(json.loads((folder / "checkpoint.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_spot_reclaim_resumes_training_after_the_last_checkpointed_epoch(local_aws, runner, dataset_uri):
    """Kill the Train step's job after epoch 1's checkpoint: the restarted job continues from epoch 2, not 1."""
    name = ensure_pipeline(local_aws)
    runner.jobs.interrupt_training(when=lambda folder: _checkpoint_epoch(folder) >= 1)
    params = {**TINY, "Epochs": "3", "DatasetS3Uri": dataset_uri, "MinTestMap50": "0.0"}
    try:
        run = _run(local_aws, name, {**params, "TrainingMaxRunSeconds": STACK_MAX_RUNTIME})
        assert not runner.jobs.interrupt_pending, "the reclaim never fired"
    finally:
        runner.jobs.cancel_interrupt()  # never leave a reclaim armed for other tests' trainings
    assert run["desc"]["PipelineExecutionStatus"] == "Succeeded", run["desc"].get("FailureReason")
    assert run["steps"]["Train"]["AttemptCount"] == 1  # a spot restart is the job's own, not a pipeline retry

    text = (Path(runner.status()["executions"][run["arn"]]["logs"]) / "Train.log").read_text()
    before, reclaim, after = text.partition("spot capacity reclaimed")
    assert reclaim, "no spot interruption in the Train log"
    saved_before = [int(n) for n in _SAVED_LINE.findall(before)]
    assert saved_before and saved_before[-1] < 3
    assert "resuming from checkpoint" in after
    resumed = [int(n) for n, _total in _EPOCH_LINE.findall(after)]
    assert resumed[0] == saved_before[-1] + 1 >= 2, f"resumed at epoch {resumed[0]} after {saved_before}"
    assert resumed[-1] == 3

    # the checkpoint prefix is this execution's own and holds the finished run
    execution_id = run["arn"].rsplit("/", 1)[-1]
    bucket = local_aws.physical("ArtifactBucket")
    s3 = local_aws.client("s3")
    prefix = f"pipeline/checkpoints/{execution_id}/"
    keys = {o["Key"][len(prefix) :] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
    assert {"run/weights/last.pt", "checkpoint.json"} <= keys
    marker = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "checkpoint.json")["Body"].read())
    assert marker["epoch"] == 3


def test_spot_request_with_max_wait_below_max_runtime_fails_with_sagemakers_message(local_aws, runner, dataset_uri):
    """The definition's old shape (MaxWait a parameter, 7200 s) with a longer MaxRuntime: CreateTrainingJob refuses."""
    from loupe_local.standins.pipelines.service import template_definition

    definition = json.loads(template_definition(local_aws))
    definition["Parameters"].append({"Name": "TrainingMaxWaitSeconds", "Type": "Integer", "DefaultValue": 7200})
    for step in definition["Steps"]:
        if step["Name"] == "Train":
            step["Arguments"]["StoppingCondition"]["MaxWaitTimeInSeconds"] = {
                "Get": "Parameters.TrainingMaxWaitSeconds"
            }
    sm = local_aws.client("sagemaker")
    name = "test-training-spot-max-wait"
    sm.create_pipeline(
        PipelineName=name, PipelineDefinition=json.dumps(definition), RoleArn=local_aws.arn("SageMakerExecutionRole")
    )
    run = _run(local_aws, name, {**TINY, "DatasetS3Uri": dataset_uri, "TrainingMaxRunSeconds": "10800"})
    assert run["desc"]["PipelineExecutionStatus"] == "Failed"
    assert run["steps"]["Prepare"]["StepStatus"] == "Succeeded"
    train = run["steps"]["Train"]
    assert train["StepStatus"] == "Failed"
    assert train["FailureReason"].startswith(
        "ClientError: Failed to invoke sagemaker:CreateTrainingJob. Error Details: Invalid MaxWaitTimeInSeconds."
    )
    assert "MaxRuntimeInSeconds" in train["FailureReason"]
    assert "Evaluate" not in run["steps"]
    assert not (Path(runner.status()["executions"][run["arn"]]["logs"]) / "Train.log").exists()  # no job ran
