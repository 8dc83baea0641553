"""The ledger's transitions and the trigger's claim on a DynamoDB table shaped like the template's (moto)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from support.stack_tables import template_table_properties
from support.waiting import wait_until

from loupe.labeling import groundtruth, release, trigger
from loupe.ledger import Ledger


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    from moto.core import config

    # moto's own Step Functions (no engine): the local runtime switches on moto's ASL engine for the whole process
    # (loupe_local.host.moto_patches), and there StopExecution leaves a waiting run RUNNING, so this test's outcome
    # would depend on which tests ran before it in the session
    monkeypatch.setitem(config.default_user_config, "stepfunctions", {"execute_state_machine": False})
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        dynamodb.create_table(TableName="ledger", **template_table_properties("LedgerTable"))
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        arn = sfn.create_state_machine(
            name="labeling",
            roleArn="arn:aws:iam::123456789012:role/x",
            # a run that waits, so it is RUNNING whether or not moto executes state machines in this process
            definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}),
        )["stateMachineArn"]
        yield Ledger(dynamodb.Table("ledger")), sfn, arn


class Info:
    def __init__(self, sha: str) -> None:
        self.sha256, self.format, self.size, self.width, self.height = sha, "jpg", 10, 64, 48
        self.mode, self.orientation, self.normalized, self.notes = "RGB", 1, None, []


def add(ledger: Ledger, n: int, prefix: str = "a") -> list[str]:
    hashes = [f"{prefix}{i:063x}" for i in range(n)]
    for sha in hashes:
        ledger.record_image(Info(sha), f"s3://raw/raw/{sha}.jpg", f"s3://raw/raw/{sha}.jpg", {"kind": "upload"})
    return hashes


def test_same_content_twice_is_one_entry_with_both_keys(aws):
    ledger, _, _ = aws
    assert ledger.record_image(Info("f" * 64), "s3://raw/raw/a.jpg", "s3://raw/raw/a.jpg", {"kind": "upload"}) == (
        True,
        "unlabeled",
    )
    before = ledger.get("f" * 64)
    assert ledger.record_image(Info("f" * 64), "s3://raw/raw/b.jpg", "s3://raw/raw/b.jpg", {"kind": "upload"}) == (
        False,
        "unlabeled",
    )
    after = ledger.get("f" * 64)
    assert after["source_keys"] == ["s3://raw/raw/a.jpg", "s3://raw/raw/b.jpg"]
    assert {k: v for k, v in after.items() if k != "source_keys"} == {
        k: v for k, v in before.items() if k != "source_keys"
    }


def test_below_threshold_nothing_starts(aws):
    ledger, sfn, arn = aws
    add(ledger, 3)
    out = trigger.run_trigger(ledger, sfn, arn, threshold=5, max_per_job=10, reason="threshold")
    assert out == {"started": False, "reason": "threshold", "unlabeled": 3, "threshold": 5}
    assert ledger.count("unlabeled") == 3


def test_threshold_claims_up_to_the_cap_and_starts_once(aws):
    ledger, sfn, arn = aws
    hashes = add(ledger, 7)
    out = trigger.run_trigger(ledger, sfn, arn, threshold=5, max_per_job=4, reason="threshold")
    assert out["started"] and out["claimed"] == 4
    assert ledger.count("claimed") == 4 and ledger.count("unlabeled") == 3
    executions = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [e["name"] for e in executions] == [f"labeling-{out['claim_id']}"]
    run = json.loads(sfn.describe_execution(executionArn=out["execution_arn"])["input"])
    assert run["claim_id"] == out["claim_id"] and set(run["images"]) <= set(hashes) and len(run["images"]) == 4


def test_schedule_starts_for_any_unlabeled(aws):
    ledger, sfn, arn = aws
    add(ledger, 1)
    assert trigger.run_trigger(ledger, sfn, arn, threshold=50, max_per_job=10, reason="schedule")["started"]
    assert trigger.run_trigger(ledger, sfn, arn, threshold=50, max_per_job=10, reason="schedule")["started"] is False


def test_two_triggers_never_claim_the_same_image(aws):
    # Interleaved, not threaded: DynamoDB's conditional writes are atomic, moto's in-process backend is not
    # under threads, so the race is played out step by step - A forwards, B backwards over the same images.
    ledger, _, _ = aws
    hashes = add(ledger, 30)
    won = {"a": [], "b": []}
    for fwd, back in zip(hashes, reversed(hashes), strict=True):
        won["a"] += ledger.claim([fwd], "claim-a")
        won["b"] += ledger.claim([back], "claim-b")
    assert sorted(won["a"] + won["b"]) == sorted(hashes)  # every image claimed exactly once
    assert len(won["a"]) == len(won["b"]) == 15
    for tag, got in won.items():
        for sha in got:
            assert ledger.get(sha)["claim_id"] == f"claim-{tag}"


def test_release_only_touches_this_claims_images(aws):
    ledger, _, _ = aws
    hashes = add(ledger, 4)
    ledger.claim(hashes[:2], "one")
    ledger.claim(hashes[2:], "two")
    assert ledger.release(hashes, "one", "job failed") == hashes[:2]
    assert [ledger.get(s)["status"] for s in hashes] == ["unlabeled", "unlabeled", "claimed", "claimed"]
    assert ledger.get(hashes[0])["last_failure"] == "job failed"


def test_a_failed_start_gives_the_claims_back(aws):
    ledger, sfn, _ = aws
    add(ledger, 2)
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:nope"
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):
        trigger.run_trigger(ledger, sfn, missing, threshold=1, max_per_job=10, reason="threshold")
    assert ledger.count("unlabeled") == 2 and ledger.count("claimed") == 0


def test_dataset_versions_are_never_handed_out_twice(aws):
    ledger, _, _ = aws
    got = [ledger.reserve_version() for _ in range(6)]
    assert got == [1, 2, 3, 4, 5, 6]
    ledger.complete_version(4)
    ledger.complete_version(2)  # an older build finishing late does not move "latest" back
    assert ledger.latest_version() == 4


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"detail-type": "Image Recorded", "source": "loupe.ingest", "detail": {}}, ("threshold", [])),
        ({"reason": "schedule"}, ("schedule", [])),
        # alarm state changes (Loupe's drift alarm or another): tests/unit/events/test_handler_events.py
        ({"reason": "manual", "sha256": ["a", "b"]}, ("manual", ["a", "b"])),
    ],
)
def test_trigger_reasons(event, expected):
    assert trigger.trigger_reason(trigger.TriggerEvent.model_validate(event)) == expected


def test_job_names_are_valid_and_unique_per_token():
    a = groundtruth.job_name_for("20261122t000711-bc4df22f", "token-1")
    b = groundtruth.job_name_for("20261122t000711-bc4df22f", "token-2")
    assert a != b and len(a) <= 63 and a.startswith("loupe-")
    assert all(c.isalnum() or c == "-" for c in a)
    assert groundtruth.job_name_for("x" * 80, "t", kind="v").__len__() <= 63


def test_sweep_gives_back_claims_of_aborted_or_never_started_runs(aws):
    ledger, sfn, arn = aws
    hashes = add(ledger, 4)
    out = trigger.run_trigger(ledger, sfn, arn, threshold=1, max_per_job=2, reason="threshold")
    running = ledger.count("claimed")
    assert running == 2
    ledger.claim(hashes, "20260101t000000-deadbeef")  # a claim whose run never started
    assert release.sweep_stale_claims(ledger, sfn, arn) == {}  # too fresh to call stranded; the run is RUNNING
    later = datetime.now(UTC) + timedelta(hours=1)
    swept = release.sweep_stale_claims(ledger, sfn, arn, now=later)
    assert list(swept) == ["20260101t000000-deadbeef"] and len(swept["20260101t000000-deadbeef"]) == 2
    sfn.stop_execution(executionArn=out["execution_arn"])  # an operator aborts the run: no Catch runs
    swept = release.sweep_stale_claims(ledger, sfn, arn)
    assert list(swept) == [out["claim_id"]]
    assert ledger.count("claimed") == 0 and ledger.count("unlabeled") == 4
    assert ledger.get(swept[out["claim_id"]][0])["last_failure"] == "labeling run aborted"


def test_released_images_back_off_before_automatic_runs_take_them_again(aws):
    ledger, sfn, arn = aws
    hashes = add(ledger, 3)
    ledger.claim(hashes, "c1")
    ledger.release(hashes[:2], "c1", "labeling job failed")
    ledger.release(hashes[2:], "c1", "labeling job failed", backoff_seconds=0)
    assert ledger.get(hashes[0])["label_failures"] == 1
    out = trigger.run_trigger(ledger, sfn, arn, threshold=1, max_per_job=10, reason="schedule")
    assert out["started"] and out["claimed"] == 1  # only the one without backoff
    assert ledger.get(hashes[2])["status"] == "claimed"
    assert trigger.run_trigger(ledger, sfn, arn, threshold=1, max_per_job=10, reason="threshold")["started"] is False
    manual = trigger.run_trigger(ledger, sfn, arn, threshold=50, max_per_job=10, reason="manual", requested=hashes)
    assert manual["claimed"] == 2  # an explicit request does not wait


class FailedRuns:
    """Step Functions as it describes a run that failed with ``error`` a minute ago (the rest from moto)."""

    def __init__(self, sfn, error: str) -> None:
        self.sfn, self.error = sfn, error

    def describe_execution(self, executionArn: str) -> dict:  # noqa: N803
        got = self.sfn.describe_execution(executionArn=executionArn)
        stopped = datetime.now(UTC) - timedelta(minutes=1)
        return {**got, "status": "FAILED", "error": self.error, "cause": "failed", "stopDate": stopped}


@pytest.fixture
def executing():
    """moto's Step Functions engine running executions (what the local AWS switches on)."""
    from moto.core import config

    saved = config.default_user_config.get("stepfunctions")
    config.default_user_config["stepfunctions"] = {"execute_state_machine": True}
    yield
    if saved is None:
        config.default_user_config.pop("stepfunctions", None)
    else:
        config.default_user_config["stepfunctions"] = saved


def test_a_run_over_the_state_size_quota_gives_its_claims_back_at_once(aws, executing):
    """A state over 256 KiB fails the run with States.DataLimitExceeded, which its Catch does not see (moto's engine
    as Step Functions), and a redrive fails the same way: its claims go back now, not after the day a redrivable
    failure is given."""
    ledger, sfn, _ = aws
    big = {
        "StartAt": "Big",
        "States": {
            "Big": {
                "Type": "Pass",
                "Result": "x" * (256 * 1024 + 1),
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    arn = sfn.create_state_machine(
        name="labeling-big", roleArn="arn:aws:iam::123456789012:role/x", definition=json.dumps(big)
    )["stateMachineArn"]
    add(ledger, 3)
    out = trigger.run_trigger(ledger, sfn, arn, threshold=1, max_per_job=3, reason="threshold")
    failed = wait_until(lambda: sfn.describe_execution(executionArn=out["execution_arn"])["status"] != "RUNNING")
    assert failed and sfn.describe_execution(executionArn=out["execution_arn"])["error"] == "States.DataLimitExceeded"
    assert release.sweep_stale_claims(ledger, FailedRuns(sfn, "States.Runtime"), arn) == {}  # may be redriven
    swept = release.sweep_stale_claims(ledger, sfn, arn)
    assert list(swept) == [out["claim_id"]] and ledger.count("claimed") == 0 and ledger.count("unlabeled") == 3
    assert "States.DataLimitExceeded" in ledger.get(swept[out["claim_id"]][0])["last_failure"]
