"""Fixtures of the console web app's browser tests: a local stack of its own with the default labeling parameters
(LabelingService=Loupe: the labeling app, no Ground Truth), its bot labelers held in ``manual`` mode so that only the
people in the browser answer, and headless Chromium (Debian's ``chromium``, driven by Playwright) at the app's URL —
the console HTTP API's own URL, as in the cloud.

The session's ``local_aws`` runs Ground Truth as an existing customer, so this package starts a stack of its own, in
its own process (with its MQTT broker: local core devices can join its fleet, ``support.health_fleet``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from support.chromium import CHROMIUM_ARGS, chromium_path
from support.waiting import wait_for

from loupe_local.standins.groundtruth.workforce import set_workforce_mode

VENDOR = "functions/console_api/web/vendor/amazon-cognito-identity.min.js"


# The stack runs in a process of its own: moto's backends (and the runtime's in-process hooks) are per process, and
# the session's ``local_aws`` (Ground Truth, as a customer) may be running in this one.
_STACK = r"""
import json, sys
from pathlib import Path
from loupe_local.host.runtime import LocalRuntime

runtime = LocalRuntime(state_dir=Path(sys.argv[1]), mqtt=True, parameters=json.loads(sys.argv[2]), iam="enforce")
runtime.start()
try:
    runtime.write_state(ready=True)
    sys.stdin.read()  # until the tests close it
finally:
    runtime.stop()
"""


class StackProcess:
    """The local stack of another process, as the tests use a runtime: its clients (the run's credential), its
    resources' names and ARNs, its state folder, its functions invoked through the local Lambda API."""

    def __init__(self, state_dir: Path, state: dict[str, Any]) -> None:
        self.state_dir = state_dir
        self.endpoint = str(state["endpoint"])
        self.region = str(state["region"])
        self.state = state
        credentials = state["credentials"]
        self._session = boto3.Session(
            aws_access_key_id=credentials["aws_access_key_id"],
            aws_secret_access_key=credentials["aws_secret_access_key"],
            region_name=self.region,
        )
        group = f"{state['stack_name']}-models"
        self.resources = {"ModelPackageGroup": SimpleNamespace(attrs={"ModelPackageGroupName": group})}

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint)

    def table(self, logical_id: str) -> Any:
        return self._session.resource("dynamodb", endpoint_url=self.endpoint).Table(self.physical(logical_id))

    def physical(self, logical_id: str) -> str:
        return str(self.state["resources"][logical_id]["physical"])

    def arn(self, logical_id: str) -> str:
        res = self.state["resources"][logical_id]
        return str(res.get("arn") or res["physical"])

    def invoke(self, logical_id: str, event: Any) -> Any:
        out = self.client("lambda").invoke(FunctionName=self.physical(logical_id), Payload=json.dumps(event).encode())
        return json.loads(out["Payload"].read() or b"null")

    @property
    def console_url(self) -> str:
        return str(self.state["http_apis"]["ConsoleApi"])


@pytest.fixture(scope="package")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    """A local stack with default parameters but the smallest training (a new dataset version may start one), each
    function acting under its own role with every call checked against its grant (IAM enforced, as in the session's
    stack): the package fails on any call of a stack role outside template.yaml's grant."""
    from loupe_local.host.runtime import REPO_ROOT

    if not (REPO_ROOT / VENDOR).is_file():
        pytest.fail(f"{VENDOR} is missing: run `make web-vendor` (make setup does it)")
    state_dir = tmp_path_factory.mktemp("loupe-web-state")
    set_workforce_mode(state_dir, "manual")  # the bot labelers stay idle: the browser's people answer
    parameters = {"TrainingEpochs": "1", "RetrainEpochs": "1", "TrainingImageSize": "160"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "LOUPE_LOCAL_IAM"}
    log = (state_dir / "stack.log").open("wb")
    process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", _STACK, str(state_dir), json.dumps(parameters)],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=env,
    )
    state_file = state_dir / "local.json"

    def ready() -> dict[str, Any] | None:
        if process.poll() is not None:
            raise AssertionError(f"the web stack's process ended ({process.returncode}); see {state_dir}/stack.log")
        return json.loads(state_file.read_text()) if state_file.is_file() else None

    try:
        state = wait_for(lambda: (s := ready()) and s.get("ready") and s, 180, "the web stack to start")
        yield StackProcess(state_dir, state)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    from support.iam_gate import stack_role_denials

    denials = stack_role_denials(state_dir, [])
    if denials:
        pytest.fail(
            "IAM: calls of the stack's roles outside their grant:\n  " + "\n  ".join(denials[:50]), pytrace=False
        )


@pytest.fixture(scope="package")
def app_url(web_stack: StackProcess) -> str:
    return web_stack.console_url


@pytest.fixture(scope="module")  # one Playwright at a time: other packages' modules start their own
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """Fresh pages, each in its own browser context (its own sessionStorage: one person each); a test fails when
    the app's Content-Security-Policy blocked anything a page loaded or ran (Chromium reports each violation on the
    page's console), or when a page threw an uncaught error."""
    contexts: list[Any] = []
    problems: list[str] = []

    def make() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
        return page

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    assert problems == [], f"the pages reported: {problems}"
