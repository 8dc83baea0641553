"""Which model version each device serves, as its health messages say: the proof a deployment is serving.

``functions/edge_health`` records every health message's ``model_version`` (one item per device in the
deployments table, written by :class:`loupe.deployment.store.DeploymentsStore`); the edge deployment workflow
reads it to tell "deployed" (Greengrass says the components are installed) from "serving" (the device answers
with the new model).
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
