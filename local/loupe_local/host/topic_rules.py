"""IoT topic rules, as IoT Core runs them: the router subscribes to the local MQTT broker with each rule's topic
filter, evaluates the rule's SQL (``loupe_local.host.iot_sql``) and invokes its Lambda actions asynchronously (as
``iot.amazonaws.com``, checked against the function's resource policy); only an invoke that fails goes to the
rule's SQS error action, in the documented error message format (rule-error-handling.html).

A part of :class:`loupe_local.host.router.Router` (its base class), in a module of its own."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from loupe_local.host import iot_sql
from loupe_local.local_auth import RunCredentials, mqtt_login

if TYPE_CHECKING:
    from loupe_local.host.invoker import Invoker

log = logging.getLogger("loupe_local.host.router")


class AsyncInvokeRejected(Exception):
    """Lambda refused an asynchronous Invoke request itself (the error code and message of the Invoke API)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def topic_matches(topic_filter: str, topic: str) -> bool:
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


class TopicRules:
    """The rules and the MQTT client that feeds them."""

    if TYPE_CHECKING:  # what the router (the class this is a base of) has
        invoker: Invoker
        region: str
        account: str
        delivered: list[dict[str, Any]]
        failures: list[dict[str, Any]]

        def invoke_async(self, function: str, payload: Any) -> str: ...
        def service_may(self, principal: str, action: str, target: str, source_arn: str) -> bool: ...
        def _target_client(self, target: dict[str, Any], service: str) -> Any: ...

    def _init_topic_rules(self) -> None:
        self.topic_rules: dict[str, dict[str, Any]] = {}
        self._mqtt: Any = None
        self._suback: dict[int, threading.Event] = {}
        self._suback_lock = threading.Lock()

    def add_topic_rule(self, rule_name: str, payload: dict[str, Any]) -> None:
        """Parse the rule's SQL now (an unsupported statement fails provisioning, by rule name)."""
        try:
            sql = iot_sql.parse(payload["sql"])
        except iot_sql.IotSqlError as exc:
            raise ValueError(f"topic rule {rule_name}: {exc}") from exc
        self.topic_rules[rule_name] = {"filter": sql.topic_filter, "parsed": sql, **payload}
        if self._mqtt is not None:
            self._subscribe(sql.topic_filter)

    def _subscribe(self, topic_filter: str, timeout: float = 10.0) -> None:
        """Subscribe and wait for the broker's SUBACK: a rule is in force once CreateTopicRule has returned, so a
        message published right after it must reach the rule (without the wait it raced the subscription)."""
        with self._suback_lock:  # the mid must be registered before the SUBACK can arrive
            result, mid = self._mqtt.subscribe(topic_filter, qos=1)
            acked = self._suback.setdefault(mid, threading.Event())
        if result != 0 or not acked.wait(timeout):
            log.warning("the rules' subscription to %s was not acknowledged (rc %s)", topic_filter, result)
        with self._suback_lock:
            self._suback.pop(mid, None)

    def _on_subscribe(self, mid: int) -> None:
        with self._suback_lock:  # subscriptions made on (re)connect are not waited for
            if mid in self._suback:
                self._suback[mid].set()

    def connect_mqtt(self, host: str, port: int, credentials: RunCredentials | None = None) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loupe-iot-rules-{uuid.uuid4().hex[:6]}")
        mqtt_login(client, credentials)

        connected, subscribe_on_connect = threading.Event(), threading.Event()

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            if subscribe_on_connect.is_set():  # a reconnect, or a first connect later than the wait below
                for rule in list(self.topic_rules.values()):
                    c.subscribe(rule["filter"], qos=1)
            connected.set()

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            threading.Thread(target=self.on_mqtt_message, args=(msg.topic, msg.payload), daemon=True).start()

        client.on_connect = on_connect
        client.on_message = on_message
        client.on_subscribe = lambda c, userdata, mid, *rest: self._on_subscribe(mid)
        client.connect(host, port)
        client.loop_start()
        if not connected.wait(10):
            log.warning("the IoT rules' MQTT client has not connected to %s:%s yet", host, port)
            subscribe_on_connect.set()
            if connected.is_set():  # it connected in between: its callback subscribed nothing
                for rule in list(self.topic_rules.values()):
                    client.subscribe(rule["filter"], qos=1)
            self._mqtt = client
            return
        subscribe_on_connect.set()
        self._mqtt = client
        for rule in list(self.topic_rules.values()):  # rules provisioned before the broker came up
            self._subscribe(rule["filter"])

    def on_mqtt_message(self, topic: str, payload: bytes) -> None:
        """Evaluate each matching rule's SQL and run its actions. A Lambda action is an asynchronous invoke
        (iot-lambda-rule-action.html): a handler error is the function's business (retries, its on-failure
        destination); the rule's error action fires only when the invoke itself fails."""
        for name, rule in list(self.topic_rules.items()):
            if rule.get("ruleDisabled") or not topic_matches(rule["filter"], topic):
                continue
            matched, message = rule["parsed"].evaluate(topic, payload)
            if not matched:
                continue
            for action in rule.get("actions", []):
                fn = (action.get("lambda") or {}).get("functionArn")
                if not fn:
                    continue
                try:
                    # AWS IoT invokes as iot.amazonaws.com: the function's policy must grant it for this rule
                    # (iot-lambda-rule-action.html: "AWS IoT needs permission to invoke the function"); a refused
                    # invoke is a failed action, which the rule's error action sees
                    rule_arn = f"arn:aws:iot:{self.region}:{self.account}:rule/{name}"
                    exists = self.invoker.find(fn) is not None  # else ResourceNotFoundException, as for EventBridge
                    if exists and not self.service_may("iot.amazonaws.com", "lambda:InvokeFunction", fn, rule_arn):
                        raise AsyncInvokeRejected(
                            "AccessDeniedException",
                            f"iot.amazonaws.com is not authorized to perform: lambda:InvokeFunction on {fn}",
                        )
                    request_id = self.invoke_async(fn, message)
                    self.delivered.append({"target": fn, "topic": topic, "requestId": request_id, "at": time.time()})
                except Exception as exc:
                    self._iot_error(name, rule, topic, payload, fn, exc)

    def _iot_error(self, name: str, rule: dict[str, Any], topic: str, payload: bytes, fn: str, exc: Exception) -> None:
        """The rule's error action, with the documented error message format (rule-error-handling.html)."""
        reason = str(exc) if isinstance(exc, AsyncInvokeRejected) else f"{type(exc).__name__}: {exc}"
        self.failures.append({"rule": name, "topic": topic, "error": reason, "at": time.time()})
        error_sqs = (rule.get("errorAction") or {}).get("sqs") or {}
        queue_url = error_sqs.get("queueUrl")
        if queue_url:
            body = {
                "ruleName": name,
                "topic": topic,
                "cloudwatchTraceId": str(uuid.uuid4()),
                "base64OriginalPayload": base64.b64encode(payload).decode(),
                "failures": [
                    {
                        "failedAction": "LambdaAction",
                        "failedResource": fn,
                        "errorMessage": f"Failed to invoke: {reason}",
                    }
                ],
            }
            # AWS IoT sends with the action's role (rule-error-handling.html: the error action's roleArn)
            target = {"RoleArn": error_sqs["roleArn"]} if error_sqs.get("roleArn") else {}
            self._target_client(target, "sqs").send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))

    def _stop_mqtt(self) -> None:
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()
