"""Ground Truth contracts the local AWS enforces as AWS does, and the stack keeps:

- CORS on every bucket holding input images: without it "labeling tasks for those input data objects will fail"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html);
- the stack's labeling jobs go to the workteam the deployer named, never silently to the public workforce;
- a workteam ARN that is not one fails CreateLabelingJob with the service's constraint error.
"""

from __future__ import annotations

import hashlib
import json

import botocore.exceptions
import pytest
from support import image_samples as samples
from support.groundtruth import job_request, put_manifest
from support.waiting import wait_for

from loupe import manifests
from loupe.labeling.trigger import new_claim_id

pytestmark = pytest.mark.integration

BOX = [{"class_id": 0, "left": 4, "top": 6, "width": 30, "height": 20}]


def finished_job(sm, name: str) -> dict:
    return wait_for(
        lambda: (
            (d := sm.describe_labeling_job(LabelingJobName=name))["LabelingJobStatus"] in ("Completed", "Failed") and d
        ),
        what=f"labeling job {name} to finish",
    )


def output_lines(env, job: dict) -> dict[str, dict]:
    bucket, key = manifests.split_s3_uri(job["LabelingJobOutput"]["OutputDatasetS3Uri"])
    lines = manifests.read_lines(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    return {obj["source-ref"]: obj for _, obj in lines}


def test_the_raw_bucket_lets_the_workers_browsers_get_images(env):
    """The template's CorsConfiguration reaches the bucket (old stack: NoSuchCORSConfiguration)."""
    rules = env.s3.get_bucket_cors(Bucket=env.raw)["CORSRules"]
    assert any("GET" in r["AllowedMethods"] and "*" in r["AllowedOrigins"] for r in rules), rules
    # CloudFormation's member names (ExposedHeaders, Id) reach S3 as the API's (ExposeHeaders, ID)
    assert any(r.get("ExposeHeaders") == ["Access-Control-Allow-Origin"] and r.get("ID") for r in rules), rules
    assert all(set(r["AllowedMethods"]) == {"GET"} for r in rules), "workers only read images"


def test_objects_in_a_bucket_without_cors_fail_and_the_others_are_labeled(env):
    sm = env.rt.client("sagemaker")
    plain = "loupe-test-no-cors"
    env.s3.create_bucket(Bucket=plain)
    inside = samples.png(64, 48, seed=7100)
    outside = samples.png(64, 48, seed=7101)
    in_sha = env.put_raw("raw/cors/inside.png", inside)
    env.s3.put_object(Bucket=plain, Key="outside.png", Body=outside)
    out_sha = hashlib.sha256(outside).hexdigest()
    env.answers("cors", {in_sha: BOX, out_sha: BOX})  # a worker would label both, if the browser could load them
    in_ref, out_ref = f"s3://{env.raw}/raw/cors/inside.png", f"s3://{plain}/outside.png"
    uri = put_manifest(
        env,
        "standin-tests/cors.manifest",
        [manifests.input_line(in_ref, in_sha), manifests.input_line(out_ref, out_sha)],
    )
    sm.create_labeling_job(**job_request(env, "cors-mixed", uri))
    job = finished_job(sm, "cors-mixed")
    assert job["LabelingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["LabelCounters"]["TotalLabeled"] == 1 and job["LabelCounters"]["FailedNonRetryableError"] == 1
    lines = output_lines(env, job)
    assert manifests.parse_output_line(lines[in_ref], "boxes").sha256 == in_sha
    reason = lines[out_ref]["boxes-metadata"]["failure-reason"]
    assert reason.startswith("ClientError") and plain in reason and "CORS" in reason, reason
    assert "boxes" not in lines[out_ref]


def test_a_job_whose_every_image_lacks_cors_fails(env):
    sm = env.rt.client("sagemaker")
    plain = "loupe-test-no-cors-only"
    env.s3.create_bucket(Bucket=plain)
    data = samples.png(40, 30, seed=7102)
    env.s3.put_object(Bucket=plain, Key="a.png", Body=data)
    sha = hashlib.sha256(data).hexdigest()
    env.answers("cors-only", {sha: BOX})
    uri = put_manifest(env, "standin-tests/cors-only.manifest", [manifests.input_line(f"s3://{plain}/a.png", sha)])
    sm.create_labeling_job(**job_request(env, "cors-none", uri))
    job = finished_job(sm, "cors-none")
    assert job["LabelingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError")
    assert "CORS" in output_lines(env, job)[f"s3://{plain}/a.png"]["boxes-metadata"]["failure-reason"]


def test_a_bucket_cors_rule_for_another_method_or_origin_is_not_enough(env):
    sm = env.rt.client("sagemaker")
    bucket = "loupe-test-wrong-cors"
    env.s3.create_bucket(Bucket=bucket)
    env.s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]},
                {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]},
            ]
        },
    )
    data = samples.png(40, 30, seed=7103)
    env.s3.put_object(Bucket=bucket, Key="a.png", Body=data)
    sha = hashlib.sha256(data).hexdigest()
    env.answers("cors-wrong", {sha: BOX})
    uri = put_manifest(env, "standin-tests/cors-wrong.manifest", [manifests.input_line(f"s3://{bucket}/a.png", sha)])
    sm.create_labeling_job(**job_request(env, "cors-wrong", uri))
    assert finished_job(sm, "cors-wrong")["LabelingJobStatus"] == "Failed"


def test_a_malformed_workteam_arn_is_refused_with_the_service_constraint_error(env):
    sm = env.rt.client("sagemaker")
    request = job_request(env, "bad-workteam", f"s3://{env.artifacts}/nothing")
    request["HumanTaskConfig"]["WorkteamArn"] = "public"
    with pytest.raises(botocore.exceptions.ClientError) as info:
        sm.create_labeling_job(**request)
    err = info.value.response["Error"]
    assert err["Code"] == "ValidationException"
    assert "humanTaskConfig.workteamArn" in err["Message"] and "regular expression pattern" in err["Message"]
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFound"):
        sm.describe_labeling_job(LabelingJobName="bad-workteam")


def test_the_stacks_labeling_job_goes_to_the_named_private_workteam(env):
    """The local stack deploys with a private workteam (its parameters), and the job it creates names it and
    offers no Mechanical Turk price (old stack: the public-crowd workteam, silently)."""
    workteam = env.rt.parameter_values["WorkteamArn"]
    assert ":workteam/private-crowd/" in workteam
    sha = env.put_raw("raw/cors/workteam.jpg", samples.jpeg(96, 64, seed=7104))
    env.wait_status(sha, "unlabeled")
    claim_id = new_claim_id([sha]) + "w"
    assert env.ledger.claim([sha], claim_id) == [sha]
    run = {"claim_id": claim_id, "images": [sha]}
    try:
        run["manifest"] = env.rt.invoke("LabelingTasksFunction", {"task": "write_manifest", "input": run})
        job = env.rt.invoke("LabelingTasksFunction", {"task": "create_job", "token": "tok-" + claim_id, "input": run})
        described = env.rt.client("sagemaker").describe_labeling_job(LabelingJobName=job["job_name"])
    finally:
        failed = {**run, "failed_state": "LabelingJob", "error": {"Error": "test", "Cause": "cleanup"}}
        env.rt.invoke("LabelingTasksFunction", {"task": "release", "input": failed})
    config = described["HumanTaskConfig"]
    assert config["WorkteamArn"] == workteam
    # the images the stack's manifests name are in the bucket that carries the CORS rule
    bucket, key = manifests.split_s3_uri(run["manifest"]["manifest_uri"])
    refs = [
        obj["source-ref"]
        for _, obj in manifests.read_lines(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    ]
    assert refs and all(ref.startswith(f"s3://{env.raw}/") for ref in refs), refs
    assert "PublicWorkforceTaskPrice" not in config
    assert "public-crowd" not in json.dumps(described, default=str)
