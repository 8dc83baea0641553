"""The disk outbox under failure: a full disk, a write failing inside its transaction, a corrupt store, the byte
budget.  The failures are SQLite's own: ``PRAGMA max_page_count`` makes a write fail with SQLITE_FULL exactly as a
full filesystem does, and an authorizer that denies DELETE makes a statement fail inside an open transaction
(an error SQLite does not roll back by itself)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from support.outbox_faults import deny_deletes, fill_disk, free_disk

from loupe_edge.outbox import EntryTooLarge, Outbox, OutboxError

STAMP = 1_780_000_000.0  # 2026-05-28T20:26:40Z


def test_a_full_disk_refuses_the_write_cleanly_and_the_next_write_works(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"results": 3})
    for i in range(3):
        ob.put("results", {"i": i}, b"x" * 100)
    fill_disk(ob)
    with pytest.raises(OutboxError, match="database or disk is full"):
        ob.put("results", {"i": 3}, b"y" * 50_000)  # also over the bound: the eviction must be undone too
    assert not ob._db.in_transaction
    assert ob.depth("results") == 3 and ob.dropped("results") == 0 and ob.write_failures == 1
    assert [e.meta["i"] for e in ob.peek("results", 10)] == [0, 1, 2]  # nothing half-written, nothing lost
    free_disk(ob)  # space returns
    assert ob.put("results", {"i": 4}, b"z" * 50_000) == 1
    assert [e.meta["i"] for e in ob.peek("results", 10)] == [1, 2, 4]
    ob.close()
    reopened = Outbox(tmp_path / "o.sqlite", {"results": 3})
    assert [e.meta["i"] for e in reopened.peek("results", 10)] == [1, 2, 4]
    assert reopened.dropped("results") == 1
    reopened.close()


def test_a_statement_failing_inside_a_transaction_is_rolled_back_and_later_writes_are_kept(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"q": 100})
    ob.put("q", {"i": 0})
    ob.put("q", {"i": 1})
    deny_deletes(ob, True)
    with pytest.raises(OutboxError, match="not authorized"):
        ob.ack(ob.peek("q", 1))
    assert not ob._db.in_transaction  # SQLite leaves this one open: the outbox rolled it back
    assert ob.depth("q") == 2
    deny_deletes(ob, False)
    ob.put("q", {"i": 2})  # with the transaction left open, this would never be committed
    ob.ack(ob.peek("q", 1))
    ob.close()
    reopened = Outbox(tmp_path / "o.sqlite", {"q": 100})
    assert [e.meta["i"] for e in reopened.peek("q", 10)] == [1, 2]
    reopened.close()


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_fresh_store_started(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is no SQLite file, just garbage left by a crash " * 100)
    ob = Outbox(path, {"q": 10}, clock=lambda: STAMP)
    moved = tmp_path / "o.sqlite.corrupt-20260528T202640Z"
    assert moved.read_bytes().startswith(b"this is no SQLite file")  # kept for inspection
    (alert,) = ob.take_alerts()
    assert "file is not a database" in alert and moved.name in alert
    assert ob.take_alerts() == []  # returned once
    assert ob.counter("store_moved_aside") == 1
    ob.put("q", {"i": 0}, b"fresh")
    assert [e.body for e in ob.peek("q")] == [b"fresh"]
    ob.close()
    again = Outbox(path, {"q": 10})  # a healthy store opens as it is
    assert again.alerts == [] and again.depth("q") == 1 and again.counter("store_moved_aside") == 1
    again.close()


def test_a_store_failing_its_integrity_check_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, {"q": 100})
    for i in range(40):
        ob.put("q", {"i": i}, bytes([i]) * 500)
    ob.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'entries'").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    data[(root - 1) * page : (root - 1) * page + 64] = b"\xee" * 64  # a torn write over the table's root page
    path.write_bytes(bytes(data))
    ob = Outbox(path, {"q": 100}, clock=lambda: STAMP)
    (alert,) = ob.alerts
    assert "malformed" in alert
    assert (tmp_path / "o.sqlite.corrupt-20260528T202640Z").read_bytes() == bytes(data)
    assert ob.depth("q") == 0
    ob.put("q", {"i": 0})
    assert ob.depth("q") == 1
    ob.close()


def test_only_the_newest_moved_aside_stores_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    for n in range(5):
        path.write_bytes(b"garbage %d " % n * 50)
        Outbox(path, {}, clock=lambda n=n: STAMP + 60 * n).close()
    kept = sorted(p.name for p in tmp_path.glob("o.sqlite.corrupt-*") if not p.name.endswith(("-wal", "-shm")))
    assert kept == [
        "o.sqlite.corrupt-20260528T202840Z",
        "o.sqlite.corrupt-20260528T202940Z",
        "o.sqlite.corrupt-20260528T203040Z",
    ]


def test_the_byte_budget_evicts_the_oldest_entries_and_counts_them(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"results": 1000, "uploads": 1000}, max_bytes=10_100)
    for i in range(4):
        ob.put("results", {"i": i}, b"r" * 500)
    for i in range(4):
        assert ob.put("uploads", {"i": i}, b"u" * 2_000) == 0
    assert ob.size() <= 10_100
    # a fifth image does not fit: the oldest image goes, not the results
    assert ob.put("uploads", {"i": 4}, b"u" * 2_000) == 1
    assert [e.meta["i"] for e in ob.peek("uploads", 10)] == [1, 2, 3, 4]
    assert ob.depth("results") == 4 and ob.size() <= 10_100
    evicted, evicted_bytes = ob.evicted("uploads")
    assert evicted == 1 and evicted_bytes == 2_000 + len('{"i":0}')
    assert ob.evicted("results") == (0, 0) and ob.dropped("uploads") == 0
    # an image bigger than every other image together: the rest of the images go first, then the oldest results
    assert ob.put("uploads", {"i": 5}, b"U" * 9_000) == 4
    assert [e.meta["i"] for e in ob.peek("uploads", 10)] == [5]
    assert [e.meta["i"] for e in ob.peek("results", 10)] == [2, 3]
    assert ob.evicted("results") == (2, 2 * (500 + len('{"i":0}')))
    assert ob.size() <= 10_100
    with pytest.raises(EntryTooLarge):
        ob.put("uploads", {"i": 6}, b"X" * 10_100)
    assert ob.depth("uploads") == 1  # refused before anything was evicted
    held = ob.size()
    ob.close()
    reopened = Outbox(tmp_path / "o.sqlite", {"results": 1000, "uploads": 1000}, max_bytes=10_100)
    assert reopened.size() == held
    assert reopened.evicted("uploads") == (5, 5 * (2_000 + len('{"i":0}')))  # counts survive restarts
    reopened.close()
