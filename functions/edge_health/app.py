"""IoT rule on loupe/+/health -> per-device metrics and the fleet's drift metric (Powertools Metrics, EMF)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loupe import fleet_serving
from loupe import settings as settings_mod
from loupe.aws_clients import lazy_client
from loupe.edge_metrics import FleetMembership, HealthRejected, admit, metric_values, shadow_metric_values
from loupe.feedback import RulePayload, record_rejection

logger = Logger()
tracer = Tracer()
metrics = Metrics()

SETTINGS = settings_mod.load()
SETTINGS.require("raw_bucket", "thing_group_name")
iot = lazy_client("iot")
s3 = lazy_client("s3")
fleet = FleetMembership(iot, str(SETTINGS.thing_group_name), ttl_s=60.0)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RulePayload)
def lambda_handler(event: RulePayload, context: LambdaContext) -> dict[str, Any]:
    # Invoked asynchronously by the rule: a bad or foreign message is recorded and counted, not raised (a retry
    # would give the same answer); an AWS error raises, for Lambda's retries and the on-failure destination.
    try:
        health = admit(event.root, fleet)
    except HealthRejected as exc:
        key = record_rejection(s3, str(SETTINGS.raw_bucket), "health", event.root, str(exc))
        with single_metric(name="RejectedDeviceMessages", unit=MetricUnit.Count, value=1, namespace="Loupe") as m:
            m.add_dimension(name="kind", value="health")
        logger.warning("device message rejected", extra={"reason": str(exc), "record": key})
        return {"rejected": str(exc), "record": key}
    fleet_serving.record_health(health)  # "device X serves model version V", read by the edge deployment workflow
    fleet_serving.record_model_window(health)  # the counters of the model it served: a canary's evidence
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
    # a candidate run beside production (shadow mode): its window, per candidate version, in metrics and the table
    shadow = shadow_metric_values(health)
    candidate = health.shadow.model_version if health.shadow else None
    for name, (value, unit) in shadow.items():
        with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace="Loupe") as metric:
            metric.add_dimension(name="candidate_version", value=str(candidate))
    recorded = fleet_serving.record_shadow(health) if shadow else False
    logger.info("health", extra={"thing": health.thing, "metrics": {k: v[0] for k, v in values.items()}})
    out: dict[str, Any] = {"thing": health.thing, "metrics": {k: v[0] for k, v in values.items()}}
    if shadow:
        out["shadow"] = {"metrics": {k: v[0] for k, v in shadow.items()}, "recorded": recorded}
    return out
