"""Labeling: the trigger's claim, and every task of the labeling state machine (manifest, Ground Truth jobs,
labels, verification, dataset version, Feature Store records, release on failure).

Domain code only: every function takes the AWS clients it uses and a :class:`loupe.ledger.Ledger`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from loupe import eventbridge, manifests
from loupe.datasets import Box, LabeledImage, build_manifest, read_version_s3, version_prefix, write_version_s3
from loupe.ledger import CLAIMED, LABELED, UNLABELED, Ledger

LABEL_ATTRIBUTE = "loupe-boxes"
VERIFY_ATTRIBUTE = "loupe-verify"
VERIFICATION_CATEGORIES = [
    manifests.VERIFICATION_CORRECT,
    "Incorrect label - missed object",
    "Incorrect label - bounding box not accurate enough",
]
UI_TEMPLATE = "bounding-box.liquid.html"
VERIFY_UI_TEMPLATE = "bounding-box-verification.liquid.html"

# Ground Truth's built-in bounding-box Lambdas live in these accounts (one per region).
_GT_ACCOUNTS = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}
# The public workforce (Amazon Mechanical Turk) is one workteam of this account, in every region. Loupe sends images
# there only when the deployer opted in (template.yaml: UsePublicWorkforce=true gives WORKTEAM_ARN that ARN).
PUBLIC_CROWD = ":394669845002:workteam/public-crowd/"


def is_public_workforce(workteam_arn: str) -> bool:
    return PUBLIC_CROWD in workteam_arn


class LabelingError(RuntimeError):
    """A labeling step that cannot go on; the state machine catches it and releases the claimed images."""


class NothingToLabel(LabelingError):
    pass


class LabelingJobFailed(LabelingError):
    pass


class ThrottlingException(RuntimeError):
    """An AWS throttling error, named so that the state machine's Retry (backoff + jitter) matches it."""


@dataclass(frozen=True)
class LabelingConfig:
    region: str
    raw_bucket: str
    artifact_bucket: str
    role_arn: str
    class_map: dict[str, str]
    workteam_arn: str | None = None
    price_cents: float = 3.6
    max_per_job: int = 500
    feature_group: str | None = None

    @classmethod
    def from_settings(cls, s: Any) -> LabelingConfig:
        return cls(
            region=s.aws_region,
            raw_bucket=s.raw_bucket,
            artifact_bucket=s.artifact_bucket,
            role_arn=s.sagemaker_execution_role_arn or "",
            class_map=s.class_map,
            workteam_arn=s.workteam_arn,
            price_cents=s.public_workforce_price_cents,
            max_per_job=s.labeling_max_per_job,
            feature_group=s.feature_group_name,
        )


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# --- trigger ----------------------------------------------------------------------------------------------------


def trigger_reason(event: dict[str, Any], drift_alarm_arn: str | None = None) -> tuple[str, list[str]]:
    """(reason, explicitly requested hashes) of a trigger event.

    An alarm state change counts only for Loupe's drift alarm going into ALARM: any other alarm of the account, or
    another state, raises :class:`loupe.eventbridge.Ignored`. An event of no known kind raises ``ValueError``."""
    if isinstance(event.get("sha256"), list):
        return str(event.get("reason") or "manual"), [str(s) for s in event["sha256"]]
    if event.get("reason"):
        return str(event["reason"]), []
    detail_type = event.get("detail-type", "")
    if detail_type == "Image Recorded" and event.get("source") == "loupe.ingest":
        return "threshold", []
    if detail_type == eventbridge.ALARM_STATE_CHANGE:
        if not drift_alarm_arn:
            raise LabelingError("DRIFT_ALARM_ARN is not set: cannot tell Loupe's drift alarm from the account's others")
        eventbridge.alarm_state_change(event, drift_alarm_arn)
        return "drift", []
    if detail_type == "Scheduled Event":
        return "schedule", []
    raise ValueError(f"not a labeling trigger event: source={event.get('source')!r} detail-type={detail_type!r}")


def new_claim_id(hashes: list[str], now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    digest = hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:8]
    return f"{stamp}-{digest}"


def run_trigger(
    ledger: Ledger,
    sfn: Any,
    state_machine_arn: str,
    threshold: int,
    max_per_job: int,
    reason: str,
    requested: list[str] | None = None,
) -> dict[str, Any]:
    """Claim unlabeled images and start one labeling execution for them (or explain why not)."""
    if requested:
        candidates = list(dict.fromkeys(requested))[:max_per_job]
        unlabeled = len(candidates)
    else:
        ready = datetime.now(UTC).isoformat(timespec="microseconds")  # images released recently back off
        unlabeled = ledger.count(UNLABELED, stop_at=max(threshold, 1), ready_at=ready)
        if unlabeled == 0 or (reason == "threshold" and unlabeled < threshold):
            return {"started": False, "reason": reason, "unlabeled": unlabeled, "threshold": threshold}
        candidates = [item["sha256"] for item in ledger.by_status(UNLABELED, limit=max_per_job, ready_at=ready)]
    claim_id = new_claim_id(candidates)
    won = ledger.claim(candidates, claim_id)
    if not won:
        return {"started": False, "reason": reason, "unlabeled": unlabeled, "claimed": 0}
    name = f"labeling-{claim_id}"
    payload = {"claim_id": claim_id, "images": won, "reason": reason}
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
    except Exception as exc:
        ledger.release(won, claim_id, f"could not start the labeling run: {exc}")
        raise
    return {
        "started": True,
        "reason": reason,
        "claim_id": claim_id,
        "claimed": len(won),
        "execution_arn": out["executionArn"],
    }


# --- state machine tasks ----------------------------------------------------------------------------------------


def _claimed_items(ledger: Ledger, claim_id: str, hashes: list[str]) -> list[dict[str, Any]]:
    items = ledger.get_many(hashes)
    return [
        items[sha]
        for sha in hashes
        if sha in items and items[sha].get("status") == CLAIMED and items[sha].get("claim_id") == claim_id
    ]


def _put_ui_templates(s3: Any, cfg: LabelingConfig) -> dict[str, str]:
    out = {}
    for name in (UI_TEMPLATE, VERIFY_UI_TEMPLATE):
        body = resources.files("loupe").joinpath("ui", name).read_bytes()
        key = f"labeling/ui/{name}"
        s3.put_object(Bucket=cfg.artifact_bucket, Key=key, Body=body, ContentType="text/html")
        out[name] = s3_uri(cfg.artifact_bucket, key)
    return out


def write_manifest(s3: Any, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any]) -> dict[str, Any]:
    claim_id = run["claim_id"]
    items = _claimed_items(ledger, claim_id, list(run.get("images") or []))[: cfg.max_per_job]
    if not items:
        raise NothingToLabel(f"claim {claim_id}: none of its images is still claimed")
    base = f"labeling/{claim_id}/"
    lines = [manifests.input_line(item["image_uri"], item["sha256"]) for item in items]
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "input.manifest", Body=("\n".join(lines) + "\n").encode())
    s3.put_object(
        Bucket=cfg.artifact_bucket,
        Key=base + "categories.json",
        Body=json.dumps(manifests.category_config(cfg.class_map)).encode(),
    )
    ui = _put_ui_templates(s3, cfg)
    return {
        "manifest_uri": s3_uri(cfg.artifact_bucket, base + "input.manifest"),
        "categories_uri": s3_uri(cfg.artifact_bucket, base + "categories.json"),
        "ui_uri": ui[UI_TEMPLATE],
        "verify_ui_uri": ui[VERIFY_UI_TEMPLATE],
        "output_uri": s3_uri(cfg.artifact_bucket, base + "output/"),
        "count": len(items),
        "images": [item["sha256"] for item in items],
    }


def job_name_for(claim_id: str, task_token: str, kind: str = "") -> str:
    """One job per task token: a Lambda retry with the same token finds its job, a redrive makes a new one."""
    token_hash = hashlib.sha256(task_token.encode()).hexdigest()[:8]
    name = f"loupe-{claim_id}-{kind + '-' if kind else ''}{token_hash}"
    return re.sub(r"[^a-zA-Z0-9-]", "-", name)[:63].rstrip("-")


def _builtin_lambdas(region: str, task: str) -> tuple[str, str]:
    account = _GT_ACCOUNTS.get(region)
    if account is None:
        raise LabelingError(f"Ground Truth built-in task Lambdas are not known for region {region}")
    return (
        f"arn:aws:lambda:{region}:{account}:function:PRE-{task}",
        f"arn:aws:lambda:{region}:{account}:function:ACS-{task}",
    )


def _price(cents: float) -> dict[str, Any]:
    tenths = round(float(cents) * 10)
    return {
        "AmountInUsd": {"Dollars": tenths // 1000, "Cents": (tenths // 10) % 100, "TenthFractionsOfACent": tenths % 10}
    }


def _human_task_config(cfg: LabelingConfig, task: str, ui_uri: str, title: str, description: str) -> dict[str, Any]:
    if not cfg.workteam_arn:
        raise LabelingError(
            "no workforce is configured (WORKTEAM_ARN is empty): deploy with WorkteamArn=<private workteam ARN>, "
            "or UsePublicWorkforce=true to send the images to Amazon Mechanical Turk"
        )
    pre, acs = _builtin_lambdas(cfg.region, task)
    public = is_public_workforce(cfg.workteam_arn)
    config: dict[str, Any] = {
        "WorkteamArn": cfg.workteam_arn,
        "UiConfig": {"UiTemplateS3Uri": ui_uri},
        "PreHumanTaskLambdaArn": pre,
        "TaskKeywords": ["Images", "bounding box", "quality inspection"],
        "TaskTitle": title,
        "TaskDescription": description,
        "NumberOfHumanWorkersPerDataObject": 1,
        "TaskTimeLimitInSeconds": 600,
        "TaskAvailabilityLifetimeInSeconds": 43200 if public else 864000,
        "MaxConcurrentTaskCount": 100,
        "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs},
    }
    if public:
        config["PublicWorkforceTaskPrice"] = _price(cfg.price_cents)
    return config


def _create_job(sagemaker: Any, request: dict[str, Any]) -> None:
    try:
        sagemaker.create_labeling_job(**request)
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code != "ResourceInUse":  # the same token again (a Lambda retry): the job is already ours
            raise


def create_labeling_job(
    sagemaker: Any, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str
) -> dict[str, Any]:
    claim_id = run["claim_id"]
    manifest = run["manifest"]
    human = _human_task_config(
        cfg,
        "BoundingBox",
        manifest["ui_uri"],
        "Draw a box around every scratch",
        "Draw one tight box around each scratch on the metal tag. Submit with no boxes if there is none.",
    )
    name = job_name_for(claim_id, task_token)
    # the token is stored before the job exists, so the state-change event can never arrive before it
    ledger.put_job(name, task_token=task_token, claim_id=claim_id, purpose="labeling", images=manifest["images"])
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": LABEL_ATTRIBUTE,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": manifest["manifest_uri"]}},
            "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]},
        },
        "OutputConfig": {"S3OutputPath": manifest["output_uri"]},
        "RoleArn": cfg.role_arn,
        "LabelCategoryConfigS3Uri": manifest["categories_uri"],
        "StoppingConditions": {"MaxPercentageOfInputDatasetLabeled": 100},
        "HumanTaskConfig": human,
        "Tags": [{"Key": "loupe:claim-id", "Value": claim_id}],
    }
    _create_job(sagemaker, request)
    return {"job_name": name}


def _read_s3_text(s3: Any, uri: str) -> str:
    bucket, key = manifests.split_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def _completed_output(sagemaker: Any, job_name: str) -> str:
    job = sagemaker.describe_labeling_job(LabelingJobName=job_name)
    status = job.get("LabelingJobStatus")
    if status != "Completed":
        raise LabelingJobFailed(f"labeling job {job_name} is {status}: {job.get('FailureReason', '')}")
    uri = (job.get("LabelingJobOutput") or {}).get("OutputDatasetS3Uri")
    if not uri:
        raise LabelingJobFailed(f"labeling job {job_name} completed without an output manifest")
    return uri


def collect_labels(s3: Any, sagemaker: Any, ledger: Ledger, run: dict[str, Any], verification: bool) -> dict[str, Any]:
    """Read the job's output manifest: labeled images are recorded (or held for verification), failed objects
    and images missing from the output go back to unlabeled."""
    claim_id = run["claim_id"]
    job_name = run["labeling"]["job_name"]
    output_uri = _completed_output(sagemaker, job_name)
    labels, problems = manifests.parse_output_manifest(_read_s3_text(s3, output_uri), LABEL_ATTRIBUTE)
    expected = list(run["manifest"]["images"])
    items = ledger.get_many(expected)
    by_ref = {item.get("image_uri"): sha for sha, item in items.items()}
    labeled, failed = [], []
    seen = set()
    for label in labels:
        sha = label.sha256 or by_ref.get(label.source_ref)
        if sha not in items:
            problems.append(f"{label.source_ref}: not an image of this run")
            continue
        seen.add(sha)
        if label.failed:
            ledger.release([sha], claim_id, f"labeling job {job_name}: {label.failure_reason}")
            failed.append(sha)
            continue
        item = items[sha]
        if (label.width, label.height) != (int(item.get("width", 0)), int(item.get("height", 0))):
            problems.append(
                f"{label.source_ref}: labeled at {label.width}x{label.height}, image is "
                f"{item.get('width')}x{item.get('height')}"
            )
        if verification:
            ok = ledger.set_pending_labels(sha, claim_id, label.annotations(), job_name)
        else:
            ok = ledger.mark_labeled(sha, claim_id, label.annotations(), job_name)
        if ok:
            labeled.append(sha)
    missing = [sha for sha in expected if sha not in seen]
    if missing:
        ledger.release(missing, claim_id, f"labeling job {job_name}: not in the output manifest")
    if not labeled:
        raise LabelingJobFailed(
            f"labeling job {job_name} labeled none of {len(expected)} images ({len(failed)} failed, "
            f"{len(missing)} missing); they are unlabeled again"
        )
    return {
        "job_name": job_name,
        "output_uri": output_uri,
        "labeled": labeled,
        "failed": len(failed),
        "missing": len(missing),
        "problems": problems[:20],
    }


def create_verification_job(
    s3: Any, sagemaker: Any, ledger: Ledger, cfg: LabelingConfig, run: dict[str, Any], task_token: str
) -> dict[str, Any]:
    """A bounding-box verification job over the labeled objects of the labeling job's output."""
    claim_id = run["claim_id"]
    human = _human_task_config(
        cfg,
        "VerificationBoundingBox",
        run["manifest"]["verify_ui_uri"],
        "Check the scratch boxes",
        "Say whether every scratch is boxed, tightly.",
    )
    keep = set(run["collected"]["labeled"])
    lines = []
    for _, obj in manifests.read_lines(_read_s3_text(s3, run["collected"]["output_uri"])):
        if obj.get(manifests.SHA_ATTRIBUTE) in keep and LABEL_ATTRIBUTE in obj:
            lines.append(json.dumps(obj, separators=(",", ":")))
    if not lines:
        raise NothingToLabel(f"claim {claim_id}: nothing to verify")
    base = f"labeling/{claim_id}/verification/"
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "input.manifest", Body=("\n".join(lines) + "\n").encode())
    categories = {
        "document-version": "2018-11-28",
        "labels": [{"label": c} for c in VERIFICATION_CATEGORIES],
        "auditLabelAttributeName": LABEL_ATTRIBUTE,
    }
    s3.put_object(Bucket=cfg.artifact_bucket, Key=base + "categories.json", Body=json.dumps(categories).encode())
    name = job_name_for(claim_id, task_token, kind="v")
    ledger.put_job(name, task_token=task_token, claim_id=claim_id, purpose="verification")
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": VERIFY_ATTRIBUTE,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": s3_uri(cfg.artifact_bucket, base + "input.manifest")}},
            "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]},
        },
        "OutputConfig": {"S3OutputPath": s3_uri(cfg.artifact_bucket, base + "output/")},
        "RoleArn": cfg.role_arn,
        "LabelCategoryConfigS3Uri": s3_uri(cfg.artifact_bucket, base + "categories.json"),
        "HumanTaskConfig": human,
        "Tags": [{"Key": "loupe:claim-id", "Value": claim_id}],
    }
    _create_job(sagemaker, request)
    return {"job_name": name}


def apply_verification(s3: Any, sagemaker: Any, ledger: Ledger, run: dict[str, Any]) -> dict[str, Any]:
    """Accepted labels become labeled; rejected ones (and unverified ones) go back to unlabeled."""
    claim_id = run["claim_id"]
    job_name = run["verification"]["job_name"]
    output_uri = _completed_output(sagemaker, job_name)
    verdicts = {}
    for _, obj in manifests.read_lines(_read_s3_text(s3, output_uri)):
        verdict = manifests.parse_verification_line(obj, VERIFY_ATTRIBUTE)
        if verdict.sha256:
            verdicts[verdict.sha256] = verdict
    labeled, rejected = [], []
    items = ledger.get_many(run["collected"]["labeled"])
    for sha, item in items.items():
        verdict = verdicts.get(sha)
        pending = json.loads(item.get("pending_annotations") or "null")
        if verdict is not None and verdict.accepted and pending is not None:
            if ledger.mark_labeled(sha, claim_id, pending, item.get("labeling_job", ""), verification=verdict.category):
                labeled.append(sha)
        else:
            why = verdict.failure_reason or verdict.category if verdict else "not verified"
            ledger.release([sha], claim_id, f"verification job {job_name}: {why}")
            rejected.append(sha)
    if not labeled:
        raise LabelingJobFailed(
            f"verification job {job_name} accepted no label; {len(rejected)} images unlabeled again"
        )
    return {
        "job_name": run["collected"]["job_name"],
        "verification_job": job_name,
        "output_uri": run["collected"]["output_uri"],
        "labeled": labeled,
        "rejected": len(rejected),
    }


def labeled_image(item: dict[str, Any]) -> LabeledImage:
    boxes = [Box.from_dict(a) for a in json.loads(item.get("annotations") or "[]")]
    return LabeledImage(
        sha256=item["sha256"],
        width=int(item["width"]),
        height=int(item["height"]),
        boxes=boxes,
        source_ref=item["image_uri"],
        ext=item.get("format", "jpg"),
        origin=item.get("origin") or {"kind": "upload"},
    )


def build_dataset(s3: Any, ledger: Ledger, cfg: LabelingConfig, new: list[str] | None = None) -> dict[str, Any]:
    """Dataset v(N+1): every labeled image of the ledger (v(N)'s images plus the new labels), written immutably.

    The ledger is the record of labels, so concurrent runs never lose each other's labels; an image's split is
    a function of its hash, so it keeps it in every version.
    """
    parent = ledger.latest_version()
    images = [labeled_image(item) for item in ledger.by_status(LABELED) if item.get("image_uri")]
    if not images:
        raise NothingToLabel("no labeled image in the ledger")
    parent_manifest: dict[str, Any] | None = None
    if parent:
        try:
            parent_manifest = read_version_s3(s3, cfg.artifact_bucket, parent)
        except Exception:  # a missing or damaged parent only costs the server-side copy shortcut
            parent_manifest = None
    if parent_manifest is not None:
        candidate = build_manifest(parent + 1, parent, images, cfg.class_map)
        if candidate["digest"] == parent_manifest["digest"] and candidate["class_map"] == parent_manifest["class_map"]:
            # nothing new (e.g. the same set imported again): the latest version already is this dataset
            return {
                "version": parent,
                "parent": parent_manifest.get("parent"),
                "uri": s3_uri(cfg.artifact_bucket, version_prefix(parent)),
                "counts": parent_manifest["counts"],
                "digest": parent_manifest["digest"],
                "unchanged": True,
            }
    parent_hashes = {e["sha256"] for e in parent_manifest["images"]} if parent_manifest else set()
    version = ledger.reserve_version()

    def copy_source(img: LabeledImage) -> dict[str, str]:
        if img.sha256 in parent_hashes:
            return {"Bucket": cfg.artifact_bucket, "Key": f"{version_prefix(parent)}images/{img.sha256}.{img.ext}"}
        bucket, key = manifests.split_s3_uri(img.source_ref)
        return {"Bucket": bucket, "Key": key}

    manifest = write_version_s3(s3, cfg.artifact_bucket, version, parent, images, copy_source, cfg.class_map)
    ledger.complete_version(version)
    added = [e["sha256"] for e in manifest["images"] if e["sha256"] not in parent_hashes]
    ledger.add_dataset_version(new if new is not None else added, version)
    uri = s3_uri(cfg.artifact_bucket, version_prefix(version))
    # the newest complete version, for scheduled retraining (statemachines/training.asl.json reads it)
    s3.put_object(
        Bucket=cfg.artifact_bucket,
        Key="datasets/latest.json",
        Body=json.dumps({"version": version, "uri": uri, "digest": manifest["digest"]}).encode(),
        ContentType="application/json",
    )
    return {
        "version": version,
        "parent": parent,
        "uri": uri,
        "counts": manifest["counts"],
        "digest": manifest["digest"],
    }


def put_features(
    featurestore: Any, ledger: Ledger, feature_group: str, hashes: list[str], dataset_version: int
) -> dict[str, Any]:
    """One Feature Store record per newly labeled image."""
    written = 0
    now = time.time()
    for sha, item in ledger.get_many(hashes).items():
        if item.get("status") != LABELED:
            continue
        record = manifests.feature_record(
            source_ref=item["image_uri"],
            sha256=sha,
            width=item["width"],
            height=item["height"],
            depth=1 if item.get("mode") == "L" else 3,
            annotations=json.loads(item.get("annotations") or "[]"),
            event_time=now,
            labeling_job=f"labeling-job/{item.get('labeling_job', '')}",
            status="APPROVED" if not item.get("verification") else str(item["verification"]),
            dataset_version=dataset_version,
        )
        featurestore.put_record(FeatureGroupName=feature_group, Record=record)
        written += 1
    return {"records": written}


def release_run(ledger: Ledger, run: dict[str, Any], sagemaker: Any = None) -> dict[str, Any]:
    """The failure path: Ground Truth jobs of the run still in progress are stopped (nobody will read their
    labels, and the images are about to be offered to a new run), and whatever the run still holds goes back to
    unlabeled, with the failed state as the reason."""
    state = run.get("failed_state", "unknown state")
    error = run.get("error") or {}
    reason = f"labeling run failed in {state}: {error.get('Error', '')} {str(error.get('Cause', ''))[:300]}".strip()
    stopped = []
    if sagemaker is not None:
        for name in ledger.claim_jobs(run["claim_id"]):
            try:
                status = sagemaker.describe_labeling_job(LabelingJobName=name)["LabelingJobStatus"]
                if status == "InProgress":
                    sagemaker.stop_labeling_job(LabelingJobName=name)
                    stopped.append(name)
            except Exception as exc:
                code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
                if code != "ResourceNotFound":  # never created: nothing to stop
                    raise
    images = list(run.get("images") or [])
    released = ledger.release(images, run["claim_id"], reason)
    return {"released": len(released), "reason": reason, "stopped_jobs": stopped}


def start_training(sfn: Any, state_machine_arn: str, run: dict[str, Any], started_by: str = "") -> dict[str, Any]:
    """Hand the dataset version to the training workflow, once per version: the execution is named after the
    version, so a retried or redriven task (or a run whose labels a concurrent run already published in the
    same version) finds the execution that was already started."""
    dataset = run["dataset"]
    name = f"dataset-v{int(dataset['version'])}"
    payload = {"dataset_version": int(dataset["version"]), "dataset_uri": dataset["uri"], "reason": "labeling"}
    if started_by:
        payload["started_by"] = started_by
    try:
        out = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))
        return {"execution_arn": out["executionArn"], "name": name}
    except Exception as exc:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
        if code != "ExecutionAlreadyExists":
            raise
        arn = state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return {"execution_arn": arn, "name": name, "already_started": True}


# --- stale claims -----------------------------------------------------------------------------------------------

STALE_NO_EXECUTION_SECONDS = 15 * 60
FAILED_REDRIVE_GRACE_SECONDS = 24 * 3600


def execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def _age_seconds(iso: str | None, now: datetime) -> float:
    if not iso:
        return float("inf")
    return (now - datetime.fromisoformat(iso)).total_seconds()


def sweep_stale_claims(
    ledger: Ledger, sfn: Any, state_machine_arn: str, now: datetime | None = None
) -> dict[str, list[str]]:
    """Give back claims whose labeling run can no longer label them.

    A run that fails through its Catch releases its own images. These are the other ways a claim can be
    stranded: the execution was aborted (StopExecution runs no Catch) or timed out; it failed in a way Catch
    cannot see (States.Runtime) and was not redriven within a day; or it was never started (the trigger died
    between claiming and starting). Returns the released hashes by claim id.
    """
    now = now or datetime.now(UTC)
    claims: dict[str, list[dict[str, Any]]] = {}
    for item in ledger.by_status(CLAIMED):
        claims.setdefault(str(item.get("claim_id", "")), []).append(item)
    released: dict[str, list[str]] = {}
    for claim_id, items in claims.items():
        hashes = [item["sha256"] for item in items]
        newest_claim = min(_age_seconds(item.get("claimed_at"), now) for item in items)
        try:
            execution = sfn.describe_execution(executionArn=execution_arn(state_machine_arn, f"labeling-{claim_id}"))
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code != "ExecutionDoesNotExist":
                raise
            execution = None
        if execution is None:
            if newest_claim < STALE_NO_EXECUTION_SECONDS:
                continue
            reason = "the labeling run for this claim never started"
        elif execution["status"] in ("ABORTED", "TIMED_OUT"):
            reason = f"labeling run {execution['status'].lower()}"
        elif execution["status"] == "FAILED":
            stopped = execution.get("stopDate")
            age = (now - stopped).total_seconds() if isinstance(stopped, datetime) else float("inf")
            if age < FAILED_REDRIVE_GRACE_SECONDS:
                continue  # may still be redriven
            reason = "labeling run failed and was not redriven"
        else:
            continue  # RUNNING (or a finished run whose last writes are landing)
        got = ledger.release(hashes, claim_id, reason)
        if got:
            released[claim_id] = got
    return released
