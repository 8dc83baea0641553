"""The component's health: one message per ``health.intervalSeconds`` (and at once after a model swap or failure)
with the window's frame statistics, the model, the disk outbox, what was dropped and the shadow candidate's
comparison; an outbox alert is repeated until a health message carrying it was accepted."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from loupe_edge.config import Config
from loupe_edge.manager import ModelManager
from loupe_edge.results import RESULTS, UPLOADS, utc_now
from loupe_edge.shadow import ShadowRunner
from loupe_edge.stats import WindowStats
from loupe_edge.transport import Transport, TransportError

log = logging.getLogger(__name__)


class HealthReporter:
    def __init__(
        self,
        thing: str,
        config: Callable[[], Config],
        transport: Transport,
        outbox: Any,
        stats: WindowStats,
        manager: ModelManager,
        source: Any,
        shadow: Callable[[], ShadowRunner | None],
        stop: threading.Event,
    ) -> None:
        self.thing, self._config, self.transport, self.outbox = thing, config, transport, outbox
        self.stats, self.manager, self.source, self._shadow, self._stop = stats, manager, source, shadow, stop
        self.now = threading.Event()  # set: publish at once (a model swap or failure)
        self._alerts: list[str] = []  # reported in health until a health message carrying them was accepted
        self.started = time.monotonic()
        self.take_outbox_alerts()

    def snapshot(self, reset: bool = True) -> dict:
        model = self.manager.current
        snap = self.stats.snapshot(reset=reset)
        counters = snap.pop("counters")
        shadow = self._shadow()
        return {
            "thing": self.thing,
            "timestamp": utc_now(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model_version": model.version if model else None,
            "model_precision": model.precision if model else None,
            "model_error": self.manager.last_error,
            **snap,
            "outbox": {"results": self.outbox.depth(RESULTS), "uploads": self.outbox.depth(UPLOADS)},
            "outbox_store": self.outbox_store(),
            "alerts": self.take_outbox_alerts(),
            "dropped": {
                "outbox_results": self.outbox.dropped(RESULTS),
                "outbox_uploads": self.outbox.dropped(UPLOADS),
                "outbox_evicted_results": self.outbox.evicted(RESULTS)[0],
                "outbox_evicted_uploads": self.outbox.evicted(UPLOADS)[0],
                "rejected_frames": counters.get("rejected_frames", 0),
                "rejected_pruned": getattr(self.source, "pruned", 0),
                "feedback_rate_limited": counters.get("feedback_limited_rate", 0),
                "feedback_daily_cap": counters.get("feedback_limited_daily-cap", 0),
                "health_unsent": counters.get("health_unsent", 0),
            },
            "counters": counters,
            "shadow": shadow.snapshot(reset=reset) if shadow is not None else None,
        }

    def outbox_store(self) -> dict:
        """The disk outbox as a whole: bytes held against the budget, what the budget evicted, failed writes and
        stores moved aside as unreadable (kept out of ``outbox``, whose values the cloud sums as a depth)."""
        return {
            "bytes": self.outbox.size(),
            "max_bytes": self.outbox.max_bytes,
            "evicted_bytes": {q: self.outbox.evicted(q)[1] for q in (RESULTS, UPLOADS)},
            "write_failures": self.outbox.write_failures,
            "moved_aside": self.outbox.counter("store_moved_aside"),
        }

    def take_outbox_alerts(self) -> list[str]:
        for alert in self.outbox.take_alerts():
            self.stats.error(f"outbox: {alert}")
            self._alerts.append(alert)
        return list(self._alerts)

    def publish(self) -> bool:
        health = self.snapshot()
        payload = json.dumps(health, separators=(",", ":")).encode()
        try:
            self.transport.publish_many([(self._config().topic("health"), payload)], timeout=5.0)
        except TransportError:
            self.stats.count("health_unsent")
            return False
        sent = health["alerts"]
        self._alerts = [a for a in self._alerts if a not in sent]  # delivered: reported once
        return True

    def loop(self) -> None:
        while not self._stop.is_set():
            self.now.wait(self._config().get("health.intervalSeconds"))
            self.now.clear()
            if self._stop.is_set():
                break
            try:
                self.publish()
            except Exception as exc:  # the health thread must outlive a bug in one message
                log.exception("health message failed")
                self.stats.error(f"health: {exc!r}")
