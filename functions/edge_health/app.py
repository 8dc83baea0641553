"""IoT rule on loupe/+/health -> per-device metrics and the fleet's drift metric (Powertools Metrics, EMF)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loupe.edge_metrics import metric_values, parse_health

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    health = parse_health(event)
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
