"""Delivers what moto does not: EventBridge rule targets, schedules and IoT topic rules, as read from the template.

- EventBridge: moto matches events against the template's rules; moto_patches hands each matching Lambda or
  state machine target to ``deliver``, which applies Input / InputPath / InputTransformer. A Lambda target is an
  asynchronous invoke (``invoke_async``): handler errors follow the function's EventInvokeConfig. Only a delivery
  that fails (the invoke or StartExecution call itself) is retried per the target's RetryPolicy and then sent,
  with EventBridge's DLQ message attributes, to its DeadLetterConfig queue.
- Schedules: rules with a ScheduleExpression fire on timers (``rate(...)``; ``cron(...)`` is listed as unsupported).
  ``fire_schedule(rule)`` fires one on demand.
- IoT topic rules (:mod:`loupe_local.host.topic_rules`, the router's base class): the router subscribes to the local
  MQTT broker with each rule's topic filter, evaluates the rule's SQL (``loupe_local.host.iot_sql``) and invokes its
  Lambda actions asynchronously, as IoT Core does; only an invoke that fails goes to the rule's SQS error action.
- Lambda asynchronous invocation (``invoke_async``, also used for ``InvocationType=Event``): retries, maximum event
  age and the on-failure destination from the function's EventInvokeConfig, else its dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loupe_local.host import moto_patches
from loupe_local.host.invoker import FunctionError, Invoker
from loupe_local.host.topic_rules import AsyncInvokeRejected, TopicRules

log = logging.getLogger("loupe_local.host.router")

_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
# Invoke errors EventBridge does not retry (client errors); throttling and service errors are retried.
_NOT_RETRIED = {"ResourceNotFoundException", "InvalidRequestContentException", "AccessDeniedException"}
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def schedule_seconds(expression: str) -> int | None:
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


class Router(TopicRules):
    def __init__(self, invoker: Invoker, client: Callable[[str], Any], region: str, account: str) -> None:
        self.invoker = invoker
        self.client = client
        self.region = region
        self.account = account
        self.delivered: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._timers: list[threading.Thread] = []
        self.schedules: dict[str, dict[str, Any]] = {}
        self._init_topic_rules()
        # Lambda waits about 1 then 2 minutes between the attempts of an asynchronous invocation; locally those
        # become seconds (and event ages are scaled the same way), so a test sees all attempts.
        self.async_retry_delays: tuple[float, ...] = (1.0, 2.0)
        self.async_age_scale = 1 / 60
        self.async_results: list[dict[str, Any]] = []
        self._async_pool = threading.BoundedSemaphore(8)
        # (role ARN, service) -> a client signing as that role's session, or None (then the run's client): a
        # target's RoleArn is the role EventBridge uses to call it (eb-use-identity-based.html)
        self.client_as: Callable[[str, str], Any] | None = None
        # (service principal, action, target ARN, source ARN) -> whether the target's resource policy lets the
        # service deliver (loupe_local.iam.resource_policies.ServiceDelivery.allows); None: IAM is off
        self.resource_check: Callable[[str, str, str, str], bool] | None = None

    def service_may(self, principal: str, action: str, target: str, source_arn: str) -> bool:
        """Whether a service may deliver to ``target`` for ``source_arn`` (its resource policy; True when IAM is
        off, and in ``audit``, which records a would-deny)."""
        check = self.resource_check
        return True if check is None else check(principal, action, target, source_arn)

    def rule_arn(self, rule: str | None) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:rule/{rule or ''}"

    # ------------------------------------------------------------------ EventBridge targets
    def target_input(self, target: dict[str, Any], event: dict[str, Any]) -> Any:
        if target.get("Input"):
            return json.loads(target["Input"])
        if target.get("InputPath"):
            return _json_path(event, target["InputPath"])
        transformer = target.get("InputTransformer")
        if transformer:
            text = moto_patches.render_input_template(
                transformer.get("InputTemplate"), transformer.get("InputPathsMap", {}), event
            )
            return json.loads(text) if isinstance(text, str) else text
        return event

    def _target_client(self, target: dict[str, Any], service: str) -> Any:
        role = target.get("RoleArn")
        client = self.client_as(role, service) if role and self.client_as is not None else None
        return client if client is not None else self.client(service)

    def deliver(self, target: dict[str, Any], event: dict[str, Any], rule: str | None = None) -> None:
        """Deliver one event to one rule target. A Lambda target is an asynchronous invoke
        (with-eventbridge.html): once Lambda accepted it, a handler error is the function's business (its
        EventInvokeConfig retries, on-failure destination or DLQ). The target's RetryPolicy and DeadLetterConfig
        cover only a delivery that fails: the invoke or StartExecution call itself (eb-rule-dlq.html)."""
        payload = self.target_input(target, event)
        arn = target["Arn"]
        retry = target.get("RetryPolicy") or {}
        attempts = 1 + min(int(retry.get("MaximumRetryAttempts", 2)), 3)
        rule = rule or _rule_of_thread()
        code, message, attempt = "", "", 0
        for attempt in range(attempts):
            try:
                if ":states:" in arn:
                    self._target_client(target, "stepfunctions").start_execution(
                        stateMachineArn=arn, input=json.dumps(payload)
                    )
                    self.delivered.append({"target": arn, "detail-type": event.get("detail-type"), "at": time.time()})
                else:
                    # EventBridge invokes a Lambda target as events.amazonaws.com: the function's resource policy
                    # must grant it for this rule (eb-use-resource-based.html, "Lambda permissions"); AWS answers
                    # AccessDeniedException, which EventBridge does not retry, and the event goes to the DLQ
                    # (a function that does not exist is ResourceNotFoundException first: there is no policy to read)
                    source = self.rule_arn(rule)
                    exists = self.invoker.find(arn) is not None
                    if exists and not self.service_may("events.amazonaws.com", "lambda:InvokeFunction", arn, source):
                        raise AsyncInvokeRejected(
                            "AccessDeniedException",
                            f"events.amazonaws.com is not authorized to perform: lambda:InvokeFunction on {arn}"
                            " (no resource-based policy allows it)",
                        )
                    request_id = self.invoke_async(arn, payload)
                    self.delivered.append(
                        {
                            "target": arn,
                            "detail-type": event.get("detail-type"),
                            "requestId": request_id,
                            "at": time.time(),
                        }
                    )
                return
            except AsyncInvokeRejected as exc:
                code, message = exc.code, str(exc)
                if exc.code in _NOT_RETRIED:
                    break  # a 4xx from the target: EventBridge does not retry it
            except Exception as exc:  # a failed delivery must not kill the router
                code, message = type(exc).__name__, f"{type(exc).__name__}: {exc}"
            time.sleep(min(0.2 * 2**attempt, 2.0))
        self._dead_letter(target, event, rule, code, message, attempt)

    def _dead_letter(
        self, target: dict[str, Any], event: dict[str, Any], rule: str | None, code: str, reason: str, retries: int
    ) -> None:
        """EventBridge's DLQ message: the event as body, the failure in message attributes (eb-rule-dlq.html)."""
        record = {"target": target["Arn"], "rule": rule, "event": event, "error": reason, "at": time.time()}
        self.failures.append(record)
        log.warning("delivery to %s failed: %s", target["Arn"], reason[:300])
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq:
            attributes = {
                "ERROR_CODE": code or "InternalException",
                "ERROR_MESSAGE": reason[:256] or "delivery failed",
                "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
                "RETRY_ATTEMPTS": str(retries),
                "TARGET_ARN": target["Arn"],
            }
            if rule:
                attributes["RULE_ARN"] = self.rule_arn(rule)
            # EventBridge sends to the dead-letter queue as events.amazonaws.com: the queue's policy must grant it
            # sqs:SendMessage for this rule (eb-rule-dlq.html, "Granting permissions to the dead-letter queue");
            # otherwise the event is lost (metric InvocationsFailedToBeSentToDlq)
            if not self.service_may("events.amazonaws.com", "sqs:SendMessage", dlq, self.rule_arn(rule)):
                record["dlq_refused"] = dlq
                log.warning("EventBridge may not send to the dead-letter queue %s: the event is lost", dlq)
                return
            self._send(dlq, json.dumps(event, default=str), attributes)

    # ------------------------------------------------------------------ schedules
    def add_schedule(self, rule_name: str, expression: str, targets: list[dict[str, Any]]) -> None:
        seconds = schedule_seconds(expression)
        self.schedules[rule_name] = {"expression": expression, "targets": targets, "seconds": seconds}
        if seconds is None:
            log.info("schedule %s (%s) only fires on demand locally", rule_name, expression)
            return
        thread = threading.Thread(
            target=self._tick, args=(rule_name, seconds), daemon=True, name=f"schedule-{rule_name}"
        )
        thread.start()
        self._timers.append(thread)

    def _tick(self, rule_name: str, seconds: int) -> None:
        while not self._stop.wait(seconds):
            self.fire_schedule(rule_name)

    def fire_schedule(self, rule_name: str) -> None:
        spec = self.schedules[rule_name]
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:{self.account}:rule/{rule_name}"],
            "detail": {},
        }
        for target in spec["targets"]:
            self.deliver(target, event, rule_name)

    # ------------------------------------------------------------------ Lambda asynchronous invocation
    def invoke_async(self, function: str, payload: Any) -> str:
        """Lambda ``Invoke`` with ``InvocationType=Event``: the request is queued (202) and runs in the background
        with the function's EventInvokeConfig (retries, maximum event age, on-failure destination) and, when no
        on-failure destination is set, its dead-letter queue. Raises ``AsyncInvokeRejected`` when the invoke
        itself fails (no such function, a payload that is not JSON) - the only case an IoT rule's error action
        sees. https://docs.aws.amazon.com/lambda/latest/dg/invocation-async.html"""
        fn = self.invoker.find(function)
        if fn is None:
            raise AsyncInvokeRejected("ResourceNotFoundException", f"Function not found: {function}")
        if isinstance(payload, bytes | bytearray):
            raise AsyncInvokeRejected("InvalidRequestContentException", "Could not parse request body into json")
        request_id = str(uuid.uuid4())
        thread = threading.Thread(
            target=self._run_async,
            args=(fn.name, fn.arn, payload, request_id, time.time()),
            daemon=True,
            name=f"async-{fn.logical_id}",
        )
        thread.start()
        return request_id

    def _event_invoke_config(self, name: str) -> dict[str, Any]:
        lam = self.client("lambda")
        try:
            config = lam.get_function_event_invoke_config(FunctionName=name)
        except Exception:  # no EventInvokeConfig: Lambda's defaults
            config = {}
        try:
            function = lam.get_function_configuration(FunctionName=name)
        except Exception:
            function = {}
        dlq = (function.get("DeadLetterConfig") or {}).get("TargetArn")
        return {
            # Lambda sends to the on-failure destination and the dead-letter queue with the function's execution
            # role (Lambda Developer Guide, "Capturing records of Lambda asynchronous invocations": the execution
            # role needs the permission; "Dead-letter queues": sqs:SendMessage / sns:Publish on the role)
            "role": function.get("Role"),
            "retries": int(config.get("MaximumRetryAttempts", 2)),
            "max_age": int(config.get("MaximumEventAgeInSeconds", 6 * 3600)),
            "on_failure": ((config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"),
            "dlq": dlq,
        }

    def _run_async(self, name: str, arn: str, payload: Any, request_id: str, queued_at: float) -> None:
        with self._async_pool:
            config = self._event_invoke_config(name)
            attempts, error, condition = 0, None, "RetriesExhausted"
            while True:
                attempts += 1
                try:
                    self.invoker.invoke(name, payload)
                    self.async_results.append(
                        {"requestId": request_id, "function": name, "attempts": attempts, "outcome": "Success"}
                    )
                    return
                except FunctionError as exc:
                    error = exc.payload
                if attempts > config["retries"]:
                    break
                delay = self.async_retry_delays[min(attempts - 1, len(self.async_retry_delays) - 1)]
                if time.time() + delay - queued_at > config["max_age"] * self.async_age_scale:
                    condition = "EventAgeExceeded"
                    break
                if self._stop.wait(delay):
                    return
            record = {
                "version": "1.0",
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "requestContext": {
                    "requestId": request_id,
                    "functionArn": f"{arn}:$LATEST",
                    "condition": condition,
                    "approximateInvokeCount": attempts,
                },
                "requestPayload": payload,
                "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                "responsePayload": {k: v for k, v in (error or {}).items() if k != "stackTrace"},
            }
            sent_to = self._async_failure(config, record, payload, error or {})
            self.async_results.append(
                {
                    "requestId": request_id,
                    "function": name,
                    "attempts": attempts,
                    "outcome": condition,
                    "sent_to": sent_to,
                }
            )
            self.failures.append({"target": arn, "error": json.dumps(error)[:2000], "at": time.time()})

    def _async_failure(self, config: dict[str, Any], record: dict[str, Any], payload: Any, error: dict) -> str | None:
        """On-failure destination (the invocation record) or, without one, the dead-letter queue (the event)."""
        destination = config["on_failure"]
        try:
            if destination:
                self._send(destination, json.dumps(record, default=str), role=config.get("role"))
                return destination
            if config["dlq"]:
                attributes = {
                    "RequestID": record["requestContext"]["requestId"],
                    "ErrorCode": "200",
                    "ErrorMessage": str(error.get("errorMessage", ""))[:256] or "Unhandled",
                }
                self._send(config["dlq"], json.dumps(payload, default=str), attributes, role=config.get("role"))
                return config["dlq"]
        except Exception:
            log.exception("could not deliver the failed invocation of %s to %s", record["requestContext"], destination)
            return None
        log.warning("async invocation %s failed and has no destination", record["requestContext"])
        return None

    def _send(self, arn: str, body: str, attributes: dict[str, str] | None = None, role: str | None = None) -> None:
        """Send to a destination (``role``: the role whose session sends it, when IAM is checked)."""
        service = arn.split(":")[2]
        as_role = {"RoleArn": role} if role else {}
        if service == "sqs":
            sqs = self._target_client(as_role, "sqs")
            # the queue's URL is the service's own business (Lambda is given the ARN): looked up as the account
            url = self.client("sqs").get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
            extra = {}
            if attributes:
                extra["MessageAttributes"] = {
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                }
            sqs.send_message(QueueUrl=url, MessageBody=body, **extra)
        elif service == "sns":
            self._target_client(as_role, "sns").publish(TopicArn=arn, Message=body)
        elif service == "lambda":
            self.invoke_async(arn, json.loads(body))
        elif service == "events":
            self._target_client(as_role, "events").put_events(
                Entries=[
                    {
                        "Source": "lambda",
                        "DetailType": "Lambda Function Invocation Result - Failure",
                        "Detail": body,
                        "EventBusName": arn,
                    }
                ]
            )
        else:
            raise ValueError(f"unsupported destination {arn}")

    def stop(self) -> None:
        self._stop.set()
        self._stop_mqtt()


def _rule_of_thread() -> str | None:
    """moto_patches delivers each matched target on a thread named ``event-<rule name>``."""
    name = threading.current_thread().name
    return name[len("event-") :] if name.startswith("event-") else None


def _json_path(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in [p for p in path.lstrip("$").split(".") if p]:
        value = value[part]
    return value
