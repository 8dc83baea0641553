"""A bounded, disk-backed FIFO between producers (the inference loop) and the network.

One SQLite file (stdlib ``sqlite3``, WAL journal) holds several named queues.  ``put`` appends; when a queue is
over its bound the oldest entries are dropped and counted (the count survives restarts).  A sender peeks at the
oldest entries, delivers them, and acknowledges them, so delivery is in order and at-least-once: an entry leaves
the queue only after the network accepted it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Entry:
    id: int
    queue: str
    created: float
    meta: dict
    body: bytes


class Outbox:
    def __init__(self, path: str | Path, bounds: dict[str, int]) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.bounds = dict(bounds)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,"
            " created REAL NOT NULL, meta TEXT NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS entries_queue ON entries (queue, id)")
        self._db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._depth: dict[str, int] = {
            q: n for q, n in self._db.execute("SELECT queue, COUNT(*) FROM entries GROUP BY queue")
        }
        self._closed = False

    # -- producers --------------------------------------------------------------------------------------
    def put(self, queue: str, meta: dict, body: bytes = b"") -> int:
        """Append an entry; returns how many old entries were dropped to stay within the bound."""
        bound = self.bounds.get(queue)
        with self._cond:
            self._db.execute(
                "INSERT INTO entries (queue, created, meta, body) VALUES (?, ?, ?, ?)",
                (queue, time.time(), json.dumps(meta, separators=(",", ":")), body),
            )
            depth = self._depth.get(queue, 0) + 1
            dropped = 0
            if bound is not None and depth > bound:
                dropped = depth - bound
                self._db.execute("BEGIN")
                self._db.execute(
                    "DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE queue = ? ORDER BY id LIMIT ?)",
                    (queue, dropped),
                )
                self._bump(f"dropped:{queue}", dropped)
                self._db.execute("COMMIT")
                depth = bound
            self._depth[queue] = depth
            self._cond.notify_all()
            return dropped

    # -- senders ----------------------------------------------------------------------------------------
    def peek(self, queue: str, limit: int = 1) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, queue, created, meta, body FROM entries WHERE queue = ? ORDER BY id LIMIT ?",
                (queue, limit),
            ).fetchall()
        return [Entry(r[0], r[1], r[2], json.loads(r[3]), bytes(r[4])) for r in rows]

    def ack(self, entries: list[Entry]) -> None:
        """Remove delivered entries (entries already dropped by the bound are ignored)."""
        if not entries:
            return
        with self._lock:
            self._db.execute("BEGIN")
            for q in {e.queue for e in entries}:
                ids = [e.id for e in entries if e.queue == q]
                marks = ",".join("?" * len(ids))
                cur = self._db.execute(f"DELETE FROM entries WHERE id IN ({marks})", ids)  # noqa: S608
                self._depth[q] = max(0, self._depth.get(q, 0) - max(cur.rowcount, 0))
            self._db.execute("COMMIT")

    def wait(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has entries (True) or the timeout passes (False)."""
        with self._cond:
            if self._depth.get(queue, 0) > 0:
                return True
            self._cond.wait(timeout)
            return self._depth.get(queue, 0) > 0

    # -- stats ------------------------------------------------------------------------------------------
    def depth(self, queue: str) -> int:
        with self._lock:
            return self._depth.get(queue, 0)

    def dropped(self, queue: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (f"dropped:{queue}",)).fetchone()
        return int(row[0]) if row else 0

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._bump(name, n)

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def close(self) -> None:
        with self._cond:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._cond.notify_all()
