"""Faults of the edge outbox's SQLite store, made on purpose: a full disk and a statement that fails inside its
transaction (an error SQLite does not roll back by itself)."""

from __future__ import annotations

import sqlite3

from loupe_edge.outbox import Outbox, OutboxError


def fill_disk(ob: Outbox, *, top_up: bool = False) -> None:
    """Hold the store's file at its size (``PRAGMA max_page_count``): the next write that needs a page fails with
    SQLITE_FULL, exactly as on a full filesystem. ``top_up`` first fills the free room of the last pages with small
    entries, so that even a small result no longer fits."""
    with ob._lock:
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count = {pages}")
    if top_up:
        try:
            while True:
                ob.put("filler", {}, b"f" * 16)
        except OutboxError:
            pass


def free_disk(ob: Outbox) -> None:
    with ob._lock:
        ob._db.execute("PRAGMA max_page_count = 1073741823")


def deny_deletes(ob: Outbox, deny: bool) -> None:
    """Make DELETE fail inside its transaction (SQLITE_DENY from an authorizer)."""

    def authorizer(action: int, *_: object) -> int:
        return sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_DELETE else sqlite3.SQLITE_OK

    with ob._lock:
        ob._db.set_authorizer(authorizer if deny else None)
