"""Upload -> ingest -> trigger -> labeling state machine (Ground Truth stand-in, task token) -> dataset version ->
Feature Store -> training started; and the failure path (claims released, SNS names the failed state)."""

from __future__ import annotations

import json

import pytest
from support import image_samples as samples
from support.waiting import wait_for

from loupe import manifests
from loupe.datasets import Box, split_for
from loupe.labeling import features

pytestmark = pytest.mark.integration

N = 4


def boxes_for(i: int) -> list[dict[str, int]]:
    return [{"class_id": 0, "left": 10 + i, "top": 8, "width": 30, "height": 12 + i}] + (
        [{"class_id": 0, "left": 70, "top": 40, "width": 20, "height": 16}] if i % 2 else []
    )


@pytest.fixture(scope="module")
def uploaded(env):
    images = {}
    for i in range(N):
        data = samples.jpeg(128, 96, seed=1000 + i)
        key = f"raw/flow/line-1/tag-{i}.jpg"
        images[env.put_raw(key, data)] = (key, data, boxes_for(i))
    env.answers("flow", {sha: boxes for sha, (_, _, boxes) in images.items()})
    for sha in images:
        env.wait_status(sha, "unlabeled")
    return images


@pytest.fixture(scope="module")
def labeled_run(env, uploaded):
    parent = env.ledger.latest_version()
    started = env.trigger(list(uploaded))
    assert started["started"] is True and started["claimed"] == N
    done = env.wait_execution(started["execution_arn"])
    return parent, started, done


def test_n_uploads_give_n_ledger_entries(env, uploaded):
    for sha, (key, data, _) in uploaded.items():
        entry = env.ledger.get(sha)
        assert entry["source_keys"] == [f"s3://{env.raw}/{key}"]
        assert (entry["width"], entry["height"], entry["size"]) == (128, 96, len(data))
        assert entry["origin"] == {"kind": "upload"}


def test_one_labeling_run_labels_every_image(env, uploaded, labeled_run):
    _, started, done = labeled_run
    assert done["status"] == "SUCCEEDED", done.get("cause")
    out = json.loads(done["output"])
    assert sorted(out["collected"]["labeled"]) == sorted(uploaded)
    runs = [e for e in env.labeling_executions() if started["claim_id"] in e["name"]]
    assert len(runs) == 1
    for sha, (_, _, boxes) in uploaded.items():
        entry = env.ledger.get(sha)
        assert entry["status"] == "labeled"
        assert json.loads(entry["annotations"]) == boxes
        assert entry["labeling_job"] == out["labeling"]["job_name"]


def test_ground_truth_output_manifest_is_real_format(env, uploaded, labeled_run):
    out = json.loads(labeled_run[2]["output"])
    bucket, key = manifests.split_s3_uri(out["collected"]["output_uri"])
    assert key.endswith(f"{out['labeling']['job_name']}/manifests/output/output.manifest")
    text = env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == N
    for line in lines:
        meta = line["loupe-boxes-metadata"]
        assert meta["type"] == "groundtruth/object-detection"
        assert meta["class-map"] == {"0": "scratch"}
        assert meta["job-name"] == f"labeling-job/{out['labeling']['job_name']}"
        assert line["loupe-boxes"]["image_size"] == [{"width": 128, "height": 96, "depth": 3}]
        assert len(meta["objects"]) == len(line["loupe-boxes"]["annotations"])


def test_dataset_version_holds_the_n_images_in_yolo(env, uploaded, labeled_run):
    parent, _, done = labeled_run
    dataset = json.loads(done["output"])["dataset"]
    version = dataset["version"]
    assert dataset["parent"] == parent
    assert dataset["uri"] == f"s3://{env.artifacts}/datasets/v{version}/"
    prefix = f"datasets/v{version}/"
    manifest = json.loads(env.s3.get_object(Bucket=env.artifacts, Key=prefix + "dataset.json")["Body"].read())
    assert manifest["format"] == "loupe-dataset/1" and manifest["version"] == version
    entries = {e["sha256"]: e for e in manifest["images"]}
    assert set(uploaded) <= set(entries)
    for sha, (_, data, boxes) in uploaded.items():
        entry = entries[sha]
        assert entry["split"] == split_for(sha)
        image = env.s3.get_object(Bucket=env.artifacts, Key=prefix + entry["file"])["Body"].read()
        assert image == data
        label = env.s3.get_object(Bucket=env.artifacts, Key=prefix + entry["label"])["Body"].read().decode()
        assert label.splitlines() == [Box.from_dict(b).yolo(128, 96) for b in boxes]
    # immutability: the version cannot be written again
    from loupe.datasets import DatasetError, write_version_s3
    from loupe.labeling.dataset import labeled_image

    with pytest.raises(DatasetError, match="immutable"):
        write_version_s3(
            env.s3,
            env.artifacts,
            version,
            parent,
            [labeled_image(env.ledger.get(next(iter(uploaded))))],
            lambda img: {"Bucket": env.raw, "Key": uploaded[img.sha256][0]},
        )


def test_every_label_is_a_feature_store_record(env, uploaded, labeled_run):
    version = json.loads(labeled_run[2]["output"])["dataset"]["version"]
    fs = env.rt.client("sagemaker-featurestore-runtime")
    group = env.rt.physical("LabelsFeatureGroup")
    for sha, (key, _, boxes) in uploaded.items():
        record = fs.get_record(FeatureGroupName=group, RecordIdentifierValueAsString=f"s3://{env.raw}/{key}")
        values = features.record_dict(record["Record"])
        assert values["image_sha256"] == sha
        assert json.loads(values["annotations"]) == boxes
        assert (values["image_width"], values["image_height"]) == ("128", "96")
        assert values["dataset_version"] == str(version)
        assert values["status"] == "APPROVED"


def test_training_is_started_with_the_dataset_version(env, labeled_run):
    out = json.loads(labeled_run[2]["output"])
    execution = env.sfn.describe_execution(executionArn=out["training"]["execution_arn"])
    assert json.loads(execution["input"])["dataset_version"] == out["dataset"]["version"]
    assert json.loads(execution["input"])["dataset_uri"] == out["dataset"]["uri"]


def test_uploading_them_again_changes_nothing(env, uploaded, labeled_run):
    before = {sha: env.ledger.get(sha) for sha in uploaded}
    runs = len(env.labeling_executions())
    latest = env.ledger.latest_version()
    calls = env.ingest_calls()
    for _, (key, data, _) in uploaded.items():
        env.put_raw(key, data)
    wait_for(lambda: env.ingest_calls() >= calls + N, what="the re-uploads to be ingested")
    assert {sha: env.ledger.get(sha) for sha in uploaded} == before
    assert len(env.labeling_executions()) == runs
    assert env.ledger.latest_version() == latest


def test_a_second_trigger_cannot_claim_labeled_images(env, uploaded, labeled_run):
    again = env.trigger(list(uploaded))
    assert again["started"] is False and again["claimed"] == 0


def test_images_without_answers_fail_and_go_back_to_unlabeled(env):
    """No worker answers -> the job fails -> Catch: claims released, SNS names the failed state."""
    sns, sqs = env.rt.client("sns"), env.rt.client("sqs")
    queue = sqs.create_queue(QueueName="labeling-failures-test")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=env.rt.physical("NotifyTopic"), Protocol="sqs", Endpoint=queue_arn)
    hashes = [env.put_raw(f"raw/flow/unknown-{i}.jpg", samples.jpeg(128, 96, seed=2000 + i)) for i in range(2)]
    for sha in hashes:
        env.wait_status(sha, "unlabeled")
    started = env.trigger(hashes)
    done = env.wait_execution(started["execution_arn"])
    assert done["status"] == "FAILED"
    for sha in hashes:
        entry = env.ledger.get(sha)
        assert entry["status"] == "unlabeled"
        assert "LabelingJob" in entry["last_failure"]
        assert "claim_id" not in entry

    def failure_message():
        for msg in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            body = json.loads(msg["Body"])
            if started["claim_id"] in body.get("Message", ""):
                return body
        return None

    body = wait_for(failure_message, what="the SNS failure notification")
    assert "failed in state LabelingJob" in body["Message"]
    assert body["Subject"] == "Loupe labeling failed"


def test_partly_answered_job_labels_what_it_can(env):
    known = env.put_raw("raw/flow/partial-known.jpg", samples.jpeg(128, 96, seed=3000))
    unknown = env.put_raw("raw/flow/partial-unknown.jpg", samples.jpeg(128, 96, seed=3001))
    env.answers("partial", {known: [{"class_id": 0, "left": 5, "top": 5, "width": 40, "height": 20}]})
    for sha in (known, unknown):
        env.wait_status(sha, "unlabeled")
    started = env.trigger([known, unknown])
    done = env.wait_execution(started["execution_arn"])
    assert done["status"] == "SUCCEEDED", done.get("cause")
    out = json.loads(done["output"])
    assert out["collected"]["labeled"] == [known] and out["collected"]["failed"] == 1
    assert env.ledger.get(known)["status"] == "labeled"
    entry = env.ledger.get(unknown)
    assert entry["status"] == "unlabeled" and "no answer" in entry["last_failure"]


def test_a_failed_run_stops_its_ground_truth_job(env):
    """The release task (what every Catch leads to) stops the run's job that is still in progress."""
    from loupe.labeling.trigger import new_claim_id

    sha = env.put_raw("raw/flow/slow.jpg", samples.jpeg(128, 96, seed=3100))
    env.wait_status(sha, "unlabeled")
    env.answers("slow", {sha: [{"class_id": 0, "left": 5, "top": 5, "width": 40, "height": 20}]})
    config = env.rt.state_dir / "workforce" / "config.json"
    config.write_text(json.dumps({"delay_seconds": 3.0}))  # the workers take their time
    try:
        claim_id = new_claim_id([sha]) + "s"
        assert env.ledger.claim([sha], claim_id) == [sha]
        run = {"claim_id": claim_id, "images": [sha]}
        run["manifest"] = env.rt.invoke("LabelingTasksFunction", {"task": "write_manifest", "input": run})
        job = env.rt.invoke("LabelingTasksFunction", {"task": "create_job", "token": "tok-" + claim_id, "input": run})
        failed = {**run, "failed_state": "LabelingJob", "error": {"Error": "States.Timeout", "Cause": ""}}
        out = env.rt.invoke("LabelingTasksFunction", {"task": "release", "input": failed})
    finally:
        config.unlink()
    assert out["stopped_jobs"] == [job["job_name"]] and out["released"] == 1
    sm = env.rt.client("sagemaker")
    wait_for(
        lambda: sm.describe_labeling_job(LabelingJobName=job["job_name"])["LabelingJobStatus"] == "Stopped",
        what="the job to stop",
    )
    entry = env.ledger.get(sha)
    assert entry["status"] == "unlabeled" and "LabelingJob" in entry["last_failure"]
