"""IoT rule on loupe/+/health -> per-device metrics and the fleet's drift metric (Powertools Metrics, EMF)."""

from __future__ import annotations

import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loupe import fleet_serving
from loupe import settings as settings_mod
from loupe.edge_metrics import HealthRejected, in_fleet, metric_values, parse_health
from loupe.feedback import record_rejection

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "thing_group_name")
iot = boto3.client("iot")
s3 = boto3.client("s3")
FLEET_TTL_S = 60.0  # a thing's membership is looked up at most once a minute per warm container
_fleet: dict[str, float] = {}


def _member(thing: str) -> bool:
    if _fleet.get(thing, 0.0) > time.monotonic():
        return True
    if in_fleet(iot, thing, SETTINGS.thing_group_name):
        _fleet[thing] = time.monotonic() + FLEET_TTL_S
        return True
    return False


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Invoked asynchronously by the rule: a bad or foreign message is recorded and counted, not raised (a retry
    # would give the same answer); an AWS error raises, for Lambda's retries and the on-failure destination.
    try:
        health = parse_health(event)
        if not _member(health.source_thing):
            raise HealthRejected(f"{health.source_thing} is not in thing group {SETTINGS.thing_group_name}")
    except HealthRejected as exc:
        key = record_rejection(s3, SETTINGS.raw_bucket, "health", event, str(exc))
        with single_metric(name="RejectedDeviceMessages", unit=MetricUnit.Count, value=1, namespace="Loupe") as m:
            m.add_dimension(name="kind", value="health")
        logger.warning("device message rejected", extra={"reason": str(exc), "record": key})
        return {"rejected": str(exc), "record": key}
    fleet_serving.record_health(health)  # "device X serves model version V", read by the edge deployment workflow
    values = metric_values(health)
    for name, (value, unit) in values.items():
        # per device: dimension "device"
        with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace="Loupe") as metric:
            metric.add_dimension(name="device", value=health.thing)
    # fleet-wide drift signal (the DriftAlarm watches this one, dimension service=loupe)
    if "UncertainFrameShare" in values:
        metrics.add_metric(name="UncertainFrameShare", unit=MetricUnit.NoUnit, value=values["UncertainFrameShare"][0])
    if "MeanTopConfidence" in values:
        metrics.add_metric(name="MeanTopConfidence", unit=MetricUnit.NoUnit, value=values["MeanTopConfidence"][0])
    logger.info("health", extra={"thing": health.thing, "metrics": {k: v[0] for k, v in values.items()}})
    return {"thing": health.thing, "metrics": {k: v[0] for k, v in values.items()}}
