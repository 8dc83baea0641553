"""Shared fixtures: the real dataset in place, and one embedded local AWS per test session.

moto's backends are process-wide, so the whole session shares one local AWS; tests use their own object keys
and identifiers instead of expecting an empty account.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
METAL_TAGS = REPO_ROOT.parent / "shared" / "datasets" / "metal-tags"

# each test's CPU seconds, printed at the end of a run beside --durations (where the suite's time goes), and the
# order files go out to the workers: the longest first, unit tests last (support/file_order.py)
pytest_plugins = ["support.cpu_report", "support.file_order"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def metal_tags_dir() -> Path:
    if not (METAL_TAGS / "labels.csv").is_file():
        pytest.fail(f"the metal-tags dataset is expected at {METAL_TAGS} (../shared beside the repository)")
    return METAL_TAGS


# usage-log line ranges [start, end) written while a test marked ``iam_would_deny`` ran: the denials it provokes on
# purpose (tests of the IAM check itself), which the session's zero-deny gate leaves out
_EXPECTED_DENIALS: list[tuple[int, int]] = []


@pytest.fixture(autouse=True)
def _iam_denials_on_purpose(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("iam_would_deny") is None:
        yield
        return
    from support.iam_gate import usage_lines as _usage_lines

    runtime = request.getfixturevalue("local_aws")
    start = _usage_lines(runtime.state_dir)
    try:
        yield
    finally:
        _EXPECTED_DENIALS.append((start, _usage_lines(runtime.state_dir)))


@pytest.fixture(autouse=True)
def _stop_trainings_a_test_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """Pipeline executions a test started and did not wait for are stopped when the test ends.

    A labeling run ends by starting the template's training workflow (StartTraining), and the local runner runs
    one execution at a time: trainings no test looks at would hold a core and queue ahead of the next test's own
    (a labeling module's tests left one to three each, running behind its later tests). Stopped with the public
    StopPipelineExecution once the test is over. An execution a module fixture started (the training tests share
    one) is older than the test and left to the tests that wait for it."""
    if "local_aws" not in request.fixturenames:
        yield
        return
    runtime = request.getfixturevalue("local_aws")
    from loupe_local.standins.pipelines.service import PipelineExecutions

    [runner] = [s for s in runtime.standins if isinstance(s, PipelineExecutions)]
    before = set(runner.executions)
    yield
    left = [arn for arn, ex in list(runner.executions.items()) if arn not in before and ex.status == "Executing"]
    if left:
        sm = runtime.client("sagemaker")
        for arn in left:
            sm.stop_pipeline_execution(PipelineExecutionArn=arn)


@pytest.fixture(scope="session")
def local_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The embedded local AWS with template.yaml provisioned, real handlers, router and stand-ins.

    It enforces IAM as AWS does (``$LOUPE_LOCAL_IAM`` wins if set): each function, state machine and role target
    acts under its own role, a call outside the role's grant is refused with AWS's AccessDenied, every call is
    recorded, and the session fails at its end on any refused call of a stack role (the template's least privilege,
    held by the whole suite, even where a handler caught the error)."""
    from loupe_local.host.runtime import LocalRuntime

    saved = os.environ.copy()
    # alarm periods shrunk 60x so the drift alarm can fire within a test (15 min -> 15 s)
    # Labeling tests end by starting real trainings through the template's workflows: keep those to one epoch on
    # the smallest input so they do not hold the pipeline runner for minutes.
    # The session's stack labels with Ground Truth, as an existing customer (the local workforce answers its jobs);
    # the default LabelingService=Loupe runs the same state machine definition with the labeling app's options
    # (tests/integration/labeling_app/).
    parameters = {
        "TrainingEpochs": "1",
        "RetrainEpochs": "1",
        "TrainingImageSize": "160",
        "LabelingService": "GroundTruth",
    }
    runtime = LocalRuntime(
        state_dir=tmp_path_factory.mktemp("loupe-state"),
        mqtt=True,
        alarm_time_scale=60,
        parameters=parameters,
        iam=None if os.environ.get("LOUPE_LOCAL_IAM", "").strip() else "enforce",
        groundtruth_customer=True,
    )
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()
        os.environ.clear()
        os.environ.update(saved)
    from support.iam_gate import stack_role_denials

    denials = stack_role_denials(runtime.state_dir, _EXPECTED_DENIALS)
    if denials:
        listed = "\n  ".join(denials[:50]) + (f"\n  ... {len(denials)} in all" if len(denials) > 50 else "")
        pytest.fail(
            f"IAM: {len(denials)} call(s) of the stack's roles outside their grant (template.yaml or the "
            f"resolver must change; iam-usage.jsonl in {runtime.state_dir}):\n  {listed}",
            pytrace=False,
        )
