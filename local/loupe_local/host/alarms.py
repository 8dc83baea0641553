"""CloudWatch, locally: metrics from the functions' EMF output, and the template's alarms evaluated.

In Lambda, embedded-metric-format lines in a function's logs become CloudWatch metrics, and CloudWatch evaluates
alarms and emits "CloudWatch Alarm State Change" events. moto stores metrics and alarms but does neither, so the
local runtime forwards EMF records with ``PutMetricData`` and evaluates each alarm of the template on a timer.
``time_scale`` shrinks alarm periods (60 turns a 15-minute period into 15 s) so a local run can see an alarm fire;
it is 1 (real periods) unless the runtime is told otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("loupe_local.cloudwatch")

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def emf_to_metric_data(record: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(namespace, MetricData) pairs for one EMF record."""
    meta = record["_aws"]
    timestamp = datetime.fromtimestamp(meta.get("Timestamp", 0) / 1000, tz=UTC)
    out = []
    for directive in meta.get("CloudWatchMetrics", []):
        dimension_sets = directive.get("Dimensions") or [[]]
        data = []
        for metric in directive.get("Metrics", []):
            values = record.get(metric["Name"])
            values = values if isinstance(values, list) else [values]
            for dims in dimension_sets:
                dimensions = [{"Name": d, "Value": str(record[d])} for d in dims if d in record]
                for value in values:
                    if isinstance(value, int | float):
                        data.append(
                            {
                                "MetricName": metric["Name"],
                                "Dimensions": dimensions,
                                "Value": float(value),
                                "Unit": metric.get("Unit", "None"),
                                "Timestamp": timestamp,
                            }
                        )
        if data:
            out.append((directive["Namespace"], data))
    return out


class AlarmEvaluator:
    def __init__(
        self,
        cloudwatch: Any,
        alarms: list[dict[str, Any]],
        on_change: Callable[[dict[str, Any], str, str, str], None],
        time_scale: float = 1.0,
        interval: float = 5.0,
    ) -> None:
        self.cloudwatch = cloudwatch
        self.alarms = alarms  # {"name", "arn", properties...}
        self.on_change = on_change
        self.time_scale = max(1.0, time_scale)
        self.interval = interval
        self.states: dict[str, str] = {a["name"]: "INSUFFICIENT_DATA" for a in alarms}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def put_emf(self, record: dict[str, Any]) -> None:
        for namespace, data in emf_to_metric_data(record):
            for start in range(0, len(data), 20):
                self.cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 20])

    def evaluate(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for alarm in self.alarms:
            try:
                state, reason = self._state(alarm, now)
            except Exception as exc:  # a bad alarm must not stop the others
                log.warning("alarm %s: %s", alarm["name"], exc)
                continue
            previous = self.states.get(alarm["name"], "INSUFFICIENT_DATA")
            if state != previous:
                self.states[alarm["name"]] = state
                self.cloudwatch.set_alarm_state(AlarmName=alarm["name"], StateValue=state, StateReason=reason)
                level = logging.INFO if state == "ALARM" else logging.DEBUG
                log.log(level, "alarm %s: %s -> %s (%s)", alarm["name"], previous, state, reason)
                self.on_change(alarm, previous, state, reason)

    def _state(self, alarm: dict[str, Any], now: datetime) -> tuple[str, str]:
        period = max(1, int(int(alarm["Period"]) / self.time_scale))
        periods = int(alarm.get("EvaluationPeriods", 1))
        stat = alarm.get("Statistic", "Average")
        out = self.cloudwatch.get_metric_statistics(
            Namespace=alarm["Namespace"],
            MetricName=alarm["MetricName"],
            Dimensions=alarm.get("Dimensions", []),
            StartTime=now - timedelta(seconds=period * periods),
            EndTime=now,
            Period=period,
            Statistics=[stat],
        )
        points = sorted(out["Datapoints"], key=lambda p: p["Timestamp"])[-periods:]
        threshold = float(alarm["Threshold"])
        breaching = [p[stat] for p in points if _COMPARE[alarm["ComparisonOperator"]](p[stat], threshold)]
        if not points:
            treat = alarm.get("TreatMissingData", "missing")
            return ("OK" if treat == "notBreaching" else "INSUFFICIENT_DATA"), "no datapoints"
        # like CloudWatch with DatapointsToAlarm = EvaluationPeriods: every one of the last N periods breaches
        if len(points) >= periods and len(breaching) >= periods:
            return "ALARM", f"{stat} {breaching[-1]:.4g} {alarm['ComparisonOperator']} {threshold:g}"
        return "OK", f"{stat} {points[-1][stat]:.4g} within threshold {threshold:g}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alarm-evaluator", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.evaluate()

    def stop(self) -> None:
        self._stop.set()
