"""The assumptions loupe_local.moto_patches makes about moto internals. A moto upgrade that moves any of them fails
here, loudly, instead of silently changing how the local loop behaves."""

from __future__ import annotations

import inspect

import moto
import pytest

from loupe_local import moto_patches


def test_moto_is_the_pinned_version() -> None:
    assert moto.__version__ == moto_patches.MOTO_VERSION


def test_check_version_refuses_another_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "0.0.1")
    with pytest.raises(moto_patches.MotoVersionError, match="0.0.1"):
        moto_patches.check_version()


def test_lambda_invoke_has_the_patched_signature() -> None:
    from moto.awslambda.models import LambdaFunction

    params = list(inspect.signature(LambdaFunction.invoke).parameters)
    assert params == ["self", "body", "request_headers", "response_headers"]


def test_rule_send_to_targets_signature_and_unknown_target_behaviour() -> None:
    from moto.events.models import Rule

    params = list(inspect.signature(Rule.send_to_targets).parameters)
    assert params[:3] == ["self", "original_event", "transform_input"]
    source = inspect.getsource(Rule.send_to_targets)
    assert "NotImplementedError" in source, "moto now handles more target types: revisit the target split"
    assert hasattr(Rule, "scheduled_expression") or "scheduled_expression" in inspect.getsource(Rule.__init__)


def test_step_functions_execution_switch_and_engine_port() -> None:
    from moto import settings
    from moto.core import config

    assert config.default_user_config["stepfunctions"].keys() >= {"execute_state_machine"}
    assert "MOTO_PORT" in inspect.getsource(settings.moto_server_port)
    from moto.stepfunctions.parser.asl.utils import boto_client

    assert "moto_server_port" in inspect.getsource(boto_client.boto_client_for)


def test_s3_eventbridge_notifications_walk_the_rules() -> None:
    from moto.s3 import notifications

    assert "send_to_targets" in inspect.getsource(notifications._send_event_bridge_message)


def test_apply_replaces_lambda_invoke_and_enables_execution() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.core import config

    moto_patches.apply()
    assert LambdaFunction.invoke.__module__ == "loupe_local.moto_patches"
    assert config.default_user_config["stepfunctions"]["execute_state_machine"] is True
