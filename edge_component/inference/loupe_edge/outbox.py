"""A bounded, disk-backed FIFO between producers (the inference loop) and the network.

One SQLite file (stdlib ``sqlite3``, WAL journal) holds several named queues.  ``put`` appends; when a queue is
over its count bound, or the store over its byte budget, the oldest entries are dropped and counted (the counts
survive restarts).  A sender peeks at the oldest entries, delivers them, and acknowledges them, so delivery is in
order and at-least-once: an entry leaves the queue only after the network accepted it.

Failures never leave the store half-written or wedged: every write is one ``BEGIN IMMEDIATE`` … ``COMMIT``
transaction that is rolled back when any statement fails (SQLite rolls some errors back by itself, others leave
the transaction open: https://www.sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction"),
and the failure surfaces as :class:`OutboxError`.  The in-memory depths and counters change only after a commit,
so the next write works as soon as the cause (a full disk) is gone.  A store that is not a database or fails
SQLite's ``quick_check`` when opened is moved aside (renamed with a UTC timestamp, kept for inspection), a fresh
one is started and :attr:`Outbox.alerts` says so, for the health message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
WAL_LIMIT = 16 * 1024 * 1024  # bytes of write-ahead log kept on disk after a checkpoint
KEEP_MOVED_ASIDE = 3  # corrupt stores kept for inspection; older ones are deleted (a failing disk must not fill up)
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class OutboxError(RuntimeError):
    """The store could not be read or written (disk full, I/O error); nothing was half-done."""


class EntryTooLarge(OutboxError):
    """One entry alone is larger than the whole byte budget: it can never be stored (not a transient failure)."""


class _Corrupt(Exception):
    """The file at the outbox path is not a usable SQLite database."""


@dataclass
class Entry:
    id: int
    queue: str
    created: float
    meta: dict
    body: bytes


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES  # extended codes keep the primary code in the low byte
    text = str(exc)
    return "not a database" in text or "malformed" in text


class Outbox:
    def __init__(
        self,
        path: str | Path,
        bounds: dict[str, int],
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.bounds = dict(bounds)
        self.max_bytes = int(max_bytes)
        self.clock = clock
        self.alerts: list[str] = []  # events to report once (health), see :meth:`take_alerts`
        self.write_failures = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._db = self._open()
        self._depth: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        totals = "SELECT queue, COUNT(*), COALESCE(SUM(length(meta) + length(body)), 0) FROM entries GROUP BY queue"
        for q, n, size in self._db.execute(totals):
            self._depth[q], self._bytes[q] = n, size
        self._counters: dict[str, int] = dict(self._db.execute("SELECT name, value FROM counters"))
        if self.alerts:
            self._counters["store_moved_aside"] = self._counters.get("store_moved_aside", 0) + 1
            with contextlib.suppress(OutboxError), self._write("record the recovery"):  # reported either way
                self._bump("store_moved_aside", 1)
        self._closed = False

    # -- opening ----------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # the first read of the file: "file is not a database" here
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")  # the WAL shrinks back after a big checkpoint
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise _Corrupt("; ".join(problems[:3]))
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,"
                " created REAL NOT NULL, meta TEXT NOT NULL, body BLOB NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS entries_queue ON entries (queue, id)")
            db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        except sqlite3.DatabaseError as exc:
            db.close()
            if isinstance(exc, sqlite3.OperationalError) or not _is_corrupt(exc):
                raise  # not the file's fault (permissions, a full disk): moving it aside would not help
            raise _Corrupt(str(exc)) from exc
        except _Corrupt:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except _Corrupt as exc:
            if self.path == ":memory:":
                raise
            reason = str(exc)
        moved = self._move_aside()
        alert = f"outbox store was unreadable ({reason}): moved aside to {moved.name}, started a fresh one"
        log.error("%s (%s)", alert, self.path)
        self.alerts.append(alert)
        return self._connect()

    def _move_aside(self) -> Path:
        """Rename the store and its WAL/SHM files to ``<name>.corrupt-<UTC stamp>`` (a stale WAL left beside a
        fresh store would be replayed into it), keeping the newest :data:`KEEP_MOVED_ASIDE` such sets."""
        base = Path(self.path)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        target = base.with_name(f"{base.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = base.with_name(f"{base.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{base}{suffix}")
            if src.exists():
                os.replace(src, f"{target}{suffix}")
        kept = sorted(
            (p for p in base.parent.glob(f"{base.name}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))),
            key=lambda p: p.stat().st_mtime_ns,
        )
        for old in kept[:-KEEP_MOVED_ASIDE]:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(f"{old}{suffix}").unlink(missing_ok=True)
        return target

    # -- transactions -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[None]:
        """One write transaction; any failure rolls it back and raises :class:`OutboxError` (caller holds the lock)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error as again:
                    log.error("outbox rollback failed: %s", again)
            self.write_failures += 1
            raise OutboxError(f"outbox could not {what}: {exc}") from exc

    # -- producers --------------------------------------------------------------------------------------
    def put(self, queue: str, meta: dict, body: bytes = b"") -> int:
        """Append an entry; returns how many old entries were dropped to stay within the bound and budget."""
        return self.put_many([(queue, meta, body)])[queue]

    def put_many(self, items: list[tuple[str, dict, bytes]]) -> dict[str, int]:
        """Append entries in one transaction (all or none); returns, per queue written, how many old entries
        were dropped to make room.  Raises :class:`OutboxError` when the store refused the write."""
        rows = [(q, json.dumps(meta, separators=(",", ":")), bytes(body)) for q, meta, body in items]
        for q, meta_text, body in rows:
            size = len(meta_text) + len(body)
            if size > self.max_bytes:
                raise EntryTooLarge(
                    f"a {size}-byte {q} entry is larger than the outbox budget ({self.max_bytes} bytes)"
                )
        with self._cond:
            depth, nbytes, counters = dict(self._depth), dict(self._bytes), dict(self._counters)
            removed = {q: 0 for q, _, _ in rows}
            with self._write("store an entry"):
                for q, meta_text, body in rows:
                    size = len(meta_text) + len(body)
                    over = sum(nbytes.values()) + size - self.max_bytes
                    if over > 0:
                        for victim, n, freed in self._evict_bytes(q, over):
                            depth[victim] -= n
                            nbytes[victim] -= freed
                            removed[victim] = removed.get(victim, 0) + n
                            self._bump_into(counters, f"evicted:{victim}", n)
                            self._bump_into(counters, f"evicted_bytes:{victim}", freed)
                    self._db.execute(
                        "INSERT INTO entries (queue, created, meta, body) VALUES (?, ?, ?, ?)",
                        (q, self.clock(), meta_text, body),
                    )
                    depth[q] = depth.get(q, 0) + 1
                    nbytes[q] = nbytes.get(q, 0) + size
                    bound = self.bounds.get(q)
                    if bound is not None and depth[q] > bound:
                        n, freed = self._drop_oldest(q, depth[q] - bound)
                        depth[q] -= n
                        nbytes[q] -= freed
                        removed[q] += n
                        self._bump_into(counters, f"dropped:{q}", n)
            self._depth, self._bytes, self._counters = depth, nbytes, counters
            self._cond.notify_all()
            return {q: removed.get(q, 0) for q, _, _ in rows}

    def _drop_oldest(self, queue: str, count: int) -> tuple[int, int]:
        n, freed, last = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MAX(id) FROM"
            " (SELECT id, length(meta) + length(body) AS size FROM entries WHERE queue = ? ORDER BY id LIMIT ?)",
            (queue, count),
        ).fetchone()
        if n:
            self._db.execute("DELETE FROM entries WHERE queue = ? AND id <= ?", (queue, last))
        return int(n), int(freed)

    def _evict_bytes(self, queue: str, need: int) -> list[tuple[str, int, int]]:
        """Free at least ``need`` bytes: the oldest entries of ``queue`` first (a producer pays for its own room),
        then the oldest of the other queues.  Returns ``(queue, entries, bytes)`` per queue that lost entries."""
        victims: dict[str, list[int]] = {}
        freed: dict[str, int] = {}
        total = 0
        for sql in (
            "SELECT id, queue, length(meta) + length(body) FROM entries WHERE queue = ? ORDER BY id",
            "SELECT id, queue, length(meta) + length(body) FROM entries WHERE queue != ? ORDER BY id",
        ):
            if total >= need:
                break
            cur = self._db.execute(sql, (queue,))
            for entry_id, q, size in cur:
                victims.setdefault(q, []).append(entry_id)
                freed[q] = freed.get(q, 0) + size
                total += size
                if total >= need:
                    break
            cur.close()
        for ids in victims.values():
            self._db.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in ids])
        return [(q, len(ids), freed[q]) for q, ids in victims.items()]

    # -- senders ----------------------------------------------------------------------------------------
    def peek(self, queue: str, limit: int = 1) -> list[Entry]:
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT id, queue, created, meta, body FROM entries WHERE queue = ? ORDER BY id LIMIT ?",
                    (queue, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"outbox could not read {queue}: {exc}") from exc
        return [Entry(r[0], r[1], r[2], json.loads(r[3]), bytes(r[4])) for r in rows]

    def ack(self, entries: list[Entry]) -> None:
        """Remove delivered entries (entries already dropped by the bound are ignored)."""
        if not entries:
            return
        with self._lock:
            depth, nbytes = dict(self._depth), dict(self._bytes)
            with self._write("remove delivered entries"):
                for q in {e.queue for e in entries}:
                    ids = [e.id for e in entries if e.queue == q]
                    marks = ",".join("?" * len(ids))
                    n, freed = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(length(meta) + length(body)), 0)"  # noqa: S608
                        f" FROM entries WHERE id IN ({marks})",
                        ids,
                    ).fetchone()
                    self._db.execute(f"DELETE FROM entries WHERE id IN ({marks})", ids)  # noqa: S608
                    depth[q] = max(0, depth.get(q, 0) - int(n))
                    nbytes[q] = max(0, nbytes.get(q, 0) - int(freed))
            self._depth, self._bytes = depth, nbytes

    def wait(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has entries (True) or the timeout passes (False)."""
        with self._cond:
            if self._depth.get(queue, 0) > 0:
                return True
            self._cond.wait(timeout)
            return self._depth.get(queue, 0) > 0

    # -- stats (from memory: they never touch a failing disk) -------------------------------------------
    def depth(self, queue: str) -> int:
        with self._lock:
            return self._depth.get(queue, 0)

    def size(self, queue: str | None = None) -> int:
        """Bytes held (entries' meta + body), in ``queue`` or in the whole store."""
        with self._lock:
            return self._bytes.get(queue, 0) if queue is not None else sum(self._bytes.values())

    def dropped(self, queue: str) -> int:
        """Entries dropped by the queue's count bound."""
        return self.counter(f"dropped:{queue}")

    def evicted(self, queue: str) -> tuple[int, int]:
        """Entries and bytes of ``queue`` evicted to keep the store within its byte budget."""
        return self.counter(f"evicted:{queue}"), self.counter(f"evicted_bytes:{queue}")

    def counter(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            with self._write(f"count {name}"):
                self._bump(name, n)
            self._counters[name] = self._counters.get(name, 0) + n

    def take_alerts(self) -> list[str]:
        """The alerts not yet reported (each is returned once)."""
        with self._lock:
            out, self.alerts = self.alerts, []
            return out

    def _bump(self, name: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, n),
        )

    def _bump_into(self, counters: dict[str, int], name: str, n: int) -> None:
        if n:
            self._bump(name, n)
            counters[name] = counters.get(name, 0) + n

    def close(self) -> None:
        with self._cond:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._cond.notify_all()
