"""Every patch of moto internals the local runtime needs, in one place, pinned to one moto version.

tests/unit/local/test_moto_patches.py checks each assumption made here, so a moto upgrade that moves any of
them fails loudly instead of silently changing the local loop.

1. Lambda invoke (moto runs code only through Docker) -> the in-process invoker.
2. EventBridge rule targets that are Lambda functions or state machines (moto delivers only to SQS, logs,
   archives and buses) -> the event router.
3. Step Functions execution (LocalStack's ASL interpreter inside moto) is switched on.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import moto

MOTO_VERSION = "5.2.5"

log = logging.getLogger("loupe_local.moto")

_applied = False
_lambda_handler: Callable[[str, Any, bool], tuple[Any, bool]] | None = None
_event_target_handler: Callable[[dict[str, Any], dict[str, Any]], None] | None = None


class MotoVersionError(RuntimeError):
    pass


def check_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise MotoVersionError(
            f"loupe_local.moto_patches is written for moto {MOTO_VERSION}, found {moto.__version__}; "
            "re-check every patch in this module and its tests before changing the pin"
        )


def set_lambda_handler(handler: Callable[[str, Any, bool], tuple[Any, bool]] | None) -> None:
    """handler(function_name, event, asynchronous) -> (payload, errored)."""
    global _lambda_handler
    _lambda_handler = handler


def set_event_target_handler(handler: Callable[[dict[str, Any], dict[str, Any]], None] | None) -> None:
    """handler(target, event) for Lambda and Step Functions targets of matching rules."""
    global _event_target_handler
    _event_target_handler = handler


def apply() -> None:
    global _applied
    if _applied:
        return
    check_version()
    from moto import settings
    from moto.awslambda.models import LambdaFunction
    from moto.events.models import Rule
    from moto.utilities.arns import parse_arn

    # 3. run state machines for real
    settings.get_sf_execution_history_type  # noqa: B018 - must exist in this moto version
    _enable_sfn_execution()

    # 1. Lambda invoke
    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        if _lambda_handler is None:
            raise RuntimeError("no in-process Lambda handler registered")
        event = json.loads(body) if body else {}
        inv_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
        asynchronous = inv_type == "Event"
        payload, errored = _lambda_handler(self.function_name, event, asynchronous)
        if errored:
            response_headers["x-amz-function-error"] = "Unhandled"
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return text.encode("utf-8") if inv_type == "RequestResponse" else text

    LambdaFunction.invoke = invoke

    # 2. EventBridge targets
    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if self.scheduled_expression and not self.event_pattern._pattern:
            return  # a schedule rule has no event pattern and matches no event (moto treats it as match-all)
        ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states")]
        others = [t for t in self.targets if t not in ours]
        if others:  # moto raises NotImplementedError on target types it does not know: hand it only its own
            proxy = copy.copy(self)
            proxy.targets = others
            original_send(proxy, original_event, transform_input)
        if _event_target_handler is None or not self.event_pattern.matches_event(original_event):
            return
        for target in ours:
            threading.Thread(
                target=_event_target_handler,
                args=(dict(target), dict(original_event)),
                name=f"event-{self.name}",
                daemon=True,
            ).start()

    Rule.send_to_targets = send_to_targets
    _applied = True


def _enable_sfn_execution() -> None:
    """moto reads this configuration per request; the runtime sets it for the whole process."""
    from moto.core import config

    config.default_user_config["stepfunctions"] = {"execute_state_machine": True}
