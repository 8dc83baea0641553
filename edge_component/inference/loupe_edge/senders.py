"""The outbox's senders: one loop per queue (results → MQTT; uploads → S3, then their announcement → MQTT) that a
delivery failure pauses and never ends; an entry leaves the outbox only once delivered."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from loupe_edge import formats
from loupe_edge.outbox import OutboxError
from loupe_edge.results import RESULTS, UPLOADS
from loupe_edge.stats import WindowStats
from loupe_edge.transport import Transport, TransportError, Uploader

log = logging.getLogger(__name__)


class Senders:
    def __init__(
        self,
        outbox: Any,
        transport: Transport,
        uploader: Uploader | None,
        stats: WindowStats,
        stop: threading.Event,
        retry_seconds: Callable[[], float],
    ) -> None:
        self.outbox, self.transport, self.uploader, self.stats = outbox, transport, uploader, stats
        self._stop, self._retry_seconds = stop, retry_seconds

    def results(self) -> None:
        self.loop(RESULTS, self.results_once)

    def uploads(self) -> None:
        self.loop(UPLOADS, self.uploads_once)

    def loop(self, what: str, once: Callable[[], bool]) -> None:
        """Run one sender's loop until stop; an outbox failure (or a bug) pauses it, never ends it."""
        failing = False
        while not self._stop.is_set():
            try:
                delivered = once()
            except (TransportError, OutboxError) as exc:
                failing = self._backoff(what, exc, failing)
                continue
            except Exception as exc:
                log.exception("%s sender failed; retrying", what)
                self.stats.error(f"{what} sender: {exc!r}")
                failing = self._backoff(what, exc, failing)
                continue
            if failing and delivered:
                log.info("%s delivery resumed (%d queued)", what, self.outbox.depth(what))
                failing = False

    def _backoff(self, what: str, exc: Exception, failing: bool) -> bool:
        if not failing:
            log.warning("%s delivery paused, will retry: %s", what, exc)
            self.stats.count(f"{what}_delivery_failures")
        self._stop.wait(self._retry_seconds())
        return True

    def results_once(self) -> bool:
        if not self.outbox.wait(RESULTS, 0.5):
            return False
        entries = self.outbox.peek(RESULTS, 50)
        if not entries:
            return False
        n = self.transport.publish_many([(e.meta["topic"], e.body) for e in entries], timeout=10.0)
        self.outbox.ack(entries[:n])
        return True

    def uploads_once(self) -> bool:
        if not self.outbox.wait(UPLOADS, 0.5):
            return False
        entries = self.outbox.peek(UPLOADS, 1)
        if not entries:
            return False
        e = entries[0]
        m = e.meta
        if formats.sniff(e.body) is None or m.get("content_type") not in formats.CONTENT_TYPES.values():
            # queued by an older version of the component: ingest would quarantine it, so it is not uploaded
            log.error("not uploading %s: %s", m.get("key"), formats.describe(e.body))
            self.stats.count("uploads_refused_format")
            self.stats.error(f"upload {m.get('key')}: {formats.refusal(e.body)}")
            self.outbox.ack([e])
            return False
        if self.uploader is None:
            raise TransportError("no S3 uploader configured")
        self.uploader.put(m["bucket"], m["key"], e.body, m["content_type"], m["metadata"])
        announce = json.dumps(m["announce"], separators=(",", ":")).encode()
        self.transport.publish_many([(m["topic"], announce)], timeout=10.0)
        self.outbox.ack([e])
        self.stats.count("feedback_sent")
        return True
