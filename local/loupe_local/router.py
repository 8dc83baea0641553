"""Delivers what moto does not: EventBridge rule targets, schedules and IoT topic rules, as read from the template.

- EventBridge: moto matches events against the template's rules; moto_patches hands each matching Lambda or
  state machine target to ``deliver``, which applies Input / InputPath / InputTransformer, retries per the
  target's RetryPolicy and sends what still fails to its DeadLetterConfig queue.
- Schedules: rules with a ScheduleExpression fire on timers (``rate(...)``; ``cron(...)`` is listed as unsupported).
  ``fire_schedule(rule)`` fires one on demand.
- IoT topic rules: the router subscribes to the local MQTT broker with each rule's topic filter
  (``SELECT * FROM '<filter>'``) and runs its Lambda actions; failures go to the rule's SQS error action.
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

from loupe_local.invoker import FunctionError, Invoker

log = logging.getLogger("loupe_local.router")

_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_IOT_SQL = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+'([^']+)'\s*(?:WHERE\s+(.+))?$", re.IGNORECASE)


def schedule_seconds(expression: str) -> int | None:
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def topic_matches(topic_filter: str, topic: str) -> bool:
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


class Router:
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
        self.topic_rules: dict[str, dict[str, Any]] = {}
        self._mqtt: Any = None

    # ------------------------------------------------------------------ EventBridge targets
    def target_input(self, target: dict[str, Any], event: dict[str, Any]) -> Any:
        if target.get("Input"):
            return json.loads(target["Input"])
        if target.get("InputPath"):
            return _json_path(event, target["InputPath"])
        transformer = target.get("InputTransformer")
        if transformer:
            from moto.events.utils import EventTemplateParser

            text = EventTemplateParser.parse(
                input_template=transformer.get("InputTemplate"),
                input_paths_map=transformer.get("InputPathsMap", {}),
                event=event,
            )
            return json.loads(text) if isinstance(text, str) else text
        return event

    def deliver(self, target: dict[str, Any], event: dict[str, Any]) -> None:
        payload = self.target_input(target, event)
        arn = target["Arn"]
        retry = target.get("RetryPolicy") or {}
        attempts = 1 + min(int(retry.get("MaximumRetryAttempts", 2)), 3)
        last_error = ""
        for attempt in range(attempts):
            try:
                if ":states:" in arn:
                    self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(payload))
                else:
                    self.invoker.invoke(arn, payload)
                self.delivered.append({"target": arn, "detail-type": event.get("detail-type"), "at": time.time()})
                return
            except FunctionError as exc:
                last_error = json.dumps(exc.payload)[:2000]
            except Exception as exc:  # a failed delivery must not kill the router
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(min(0.2 * 2**attempt, 2.0))
        self._dead_letter(target, event, last_error)

    def _dead_letter(self, target: dict[str, Any], event: dict[str, Any], reason: str) -> None:
        record = {"target": target["Arn"], "event": event, "error": reason, "at": time.time()}
        self.failures.append(record)
        log.warning("delivery to %s failed: %s", target["Arn"], reason[:300])
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq:
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=dlq.rsplit(":", 1)[-1])["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))

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
            self.deliver(target, event)

    # ------------------------------------------------------------------ IoT topic rules
    def add_topic_rule(self, rule_name: str, payload: dict[str, Any]) -> None:
        match = _IOT_SQL.match(payload["sql"])
        if not match:
            raise ValueError(f"topic rule {rule_name}: only SELECT * FROM '<filter>' is supported locally")  # noqa: S608
        if match.group(2):
            raise ValueError(f"topic rule {rule_name}: WHERE clauses are not supported locally")
        self.topic_rules[rule_name] = {"filter": match.group(1), **payload}

    def connect_mqtt(self, host: str, port: int) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"loupe-iot-rules-{uuid.uuid4().hex[:6]}")

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None) -> None:
            for rule in self.topic_rules.values():
                c.subscribe(rule["filter"], qos=1)

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            threading.Thread(target=self.on_mqtt_message, args=(msg.topic, msg.payload), daemon=True).start()

        client.on_connect = on_connect
        client.on_message = on_message
        client.connect(host, port)
        client.loop_start()
        self._mqtt = client

    def on_mqtt_message(self, topic: str, payload: bytes) -> None:
        for name, rule in self.topic_rules.items():
            if rule.get("ruleDisabled") or not topic_matches(rule["filter"], topic):
                continue
            try:
                message = json.loads(payload)
            except json.JSONDecodeError:
                message = {"payload": payload.decode("utf-8", "replace")}
            if isinstance(message, dict):
                message.setdefault("topic", topic)  # like SELECT *, topic() AS topic, for handlers that want it
            for action in rule.get("actions", []):
                fn = (action.get("lambda") or {}).get("functionArn")
                if not fn:
                    continue
                try:
                    self.invoker.invoke(fn, message)
                    self.delivered.append({"target": fn, "topic": topic, "at": time.time()})
                except Exception as exc:
                    self._iot_error(name, rule, topic, message, exc)

    def _iot_error(self, name: str, rule: dict[str, Any], topic: str, message: Any, exc: Exception) -> None:
        reason = json.dumps(exc.payload) if isinstance(exc, FunctionError) else f"{type(exc).__name__}: {exc}"
        self.failures.append({"rule": name, "topic": topic, "error": reason, "at": time.time()})
        queue_url = ((rule.get("errorAction") or {}).get("sqs") or {}).get("queueUrl")
        if queue_url:
            self.client("sqs").send_message(
                QueueUrl=queue_url,
                MessageBody=json.dumps({"ruleName": name, "topic": topic, "payload": message, "error": reason}),
            )

    def stop(self) -> None:
        self._stop.set()
        if self._mqtt is not None:
            self._mqtt.loop_stop()
            self._mqtt.disconnect()


def _json_path(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in [p for p in path.lstrip("$").split(".") if p]:
        value = value[part]
    return value
