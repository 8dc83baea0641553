"""Which model version each device serves, as its health messages say: the proof a deployment is serving.

``functions/edge_health`` records every health message's ``model_version`` (one item per device in the
deployments table, written by :class:`loupe.deployment.store.DeploymentsStore`); the edge deployment workflow
reads it to tell "deployed" (Greengrass says the components are installed) from "serving" (the device answers
with the new model). A message that carries a shadow window (a candidate run beside production) also adds its
agreement counters to the candidate's totals (:func:`record_shadow`): the field evidence a later step writes into
the model package's metadata.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from loupe.deployment.store import DeploymentsStore

log = logging.getLogger(__name__)

_STORE: DeploymentsStore | None = None


def _default_store() -> DeploymentsStore | None:
    """The store of ``DEPLOYMENTS_TABLE``, created on first use and kept for the warm container."""
    global _STORE
    if _STORE is None:
        from loupe import settings

        name = settings.load().deployments_table
        if not name:
            return None
        _STORE = DeploymentsStore.from_name(name)
    return _STORE


def record_health(health: Any, store: DeploymentsStore | None = None) -> bool:
    """The one call ``functions/edge_health`` makes per health message: remember what the device serves."""
    store = store or _default_store()
    if store is None:
        return False
    # the thing the message came from (its topic) when the rule passes it on, else the one the payload names
    thing = str(getattr(health, "source_thing", None) or getattr(health, "thing", ""))
    try:
        return store.record_serving(thing, getattr(health, "model_version", None))
    except (BotoCoreError, ClientError) as exc:  # the metrics still go out; the workflow waits and says so
        log.warning("cannot record what %s serves: %s", thing, exc)
        return False


def record_shadow(health: Any, store: DeploymentsStore | None = None) -> bool:
    """Add the message's shadow window to its candidate's totals (once per window); False when there is none to add
    (no shadow, an unnamed candidate, an empty window, a window already added) or the table cannot be written."""
    report = getattr(health, "shadow", None)
    if report is None or not report.model_version or (report.production_frames == 0 and report.errors == 0):
        return False
    store = store or _default_store()
    if store is None:
        return False
    thing = str(getattr(health, "source_thing", None) or getattr(health, "thing", ""))
    try:
        return store.add_shadow_window(
            report.model_version,
            thing,
            report.window.end,
            report.counters(),
            latency_p95_ms=report.latency_ms.p95,
            package_arn=report.model_package_arn,
        )
    except (BotoCoreError, ClientError) as exc:  # the metrics still carry the window
        log.warning("cannot record the shadow window of %s on %s: %s", report.model_version, thing, exc)
        return False


# A window's latency p95 counts for a canary only over this many frames: below 20, numpy's 95th percentile lies
# between the two slowest frames, so one slow frame (the first after a component restart, another process's burst)
# is the "p95". A quick demo on a busy laptop rolled a good canary back on two 6-frame windows (61 ms against 12 ms).
MIN_FRAMES_FOR_P95 = 20


def record_model_window(health: Any, store: DeploymentsStore | None = None) -> bool:
    """Add the message's window to the counters of the model the device served (``MODEL#<version>``): the evidence a
    canary is judged on, under the model that ran its frames. False when there is nothing to add (no model, frames of
    two models, no frames, no window time, a window added already) or the table cannot be written. The window's
    latency p95 is kept only when it covers ``MIN_FRAMES_FOR_P95`` frames or more."""
    version, frames = getattr(health, "model_version", None), int(getattr(health, "frames", 0) or 0)
    if "frames_model_version" in (getattr(health, "model_fields_set", None) or ()):
        # the device says which model ran the window's frames (the one it serves now may have replaced it since);
        # null: a switch fell inside the window, whose frames are no one model's evidence
        version = getattr(health, "frames_model_version", None)
    window_end = getattr(health, "timestamp", None)
    if not version or frames <= 0 or not window_end:
        return False
    store = store or _default_store()
    if store is None:
        return False
    thing = str(getattr(health, "source_thing", None) or getattr(health, "thing", ""))
    try:
        return store.add_model_window(
            str(version),
            thing,
            str(window_end),
            health.model_counters(),
            errors_seen=int(getattr(health, "errors", 0) or 0),
            latency_p95_ms=getattr(health, "latency_ms_p95", None) if frames >= MIN_FRAMES_FOR_P95 else None,
        )
    except (BotoCoreError, ClientError) as exc:  # the metrics still carry the window
        log.warning("cannot record the window of model %s on %s: %s", version, thing, exc)
        return False
