"""Configuration validation, the disk outbox, and feedback sampling."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from loupe_edge.config import DEFAULTS, load_local, validate
from loupe_edge.feedback import FeedbackSampler
from loupe_edge.outbox import Outbox

# -- configuration ----------------------------------------------------------------------------------------


def test_defaults_are_valid() -> None:
    cfg = validate({})
    assert cfg.problems == []
    assert cfg.values == DEFAULTS


def test_invalid_values_fall_back_to_defaults_with_clear_reasons() -> None:
    cfg = validate(
        {
            "model": {"confThreshold": 1.7, "precision": "fp8", "intraOpThreads": "two", "iouThreshold": "0.5"},
            "source": {"type": "camera", "pollMs": 0},
            "feedback": {"bandLow": 0.7, "bandHigh": 0.6},
            "health": {"intervalSeconds": True},
            "topics": {"inference": "loupe/+/inference"},
            "colour": "blue",
            "accessControl": {"ignored": "greengrass owns this"},
        }
    )
    text = "\n".join(cfg.problems)
    assert cfg.get("model.confThreshold") == 0.25 and "model.confThreshold: 1.7 is above the maximum 1.0" in text
    assert cfg.get("model.precision") == "fp32" and "'fp8' is not one of fp32, int8" in text
    assert cfg.get("model.intraOpThreads") == 0 and "model.intraOpThreads" in text
    assert cfg.get("model.iouThreshold") == 0.5  # numeric strings are accepted (Greengrass config is often text)
    assert cfg.get("source.type") == "directory" and "source.type" in text
    assert cfg.get("source.pollMs") == 100 and "source.pollMs: 0 is below the minimum 10" in text
    assert (cfg.get("feedback.bandLow"), cfg.get("feedback.bandHigh")) == (0.25, 0.6)
    assert "must be below feedback.bandHigh" in text
    assert cfg.get("health.intervalSeconds") == 60.0
    assert cfg.get("topics.inference") == "loupe/{thing}/inference" and "wildcards" in text
    assert "colour: unknown key" in text
    assert "accessControl" not in text


def test_the_outbox_byte_budget_has_a_sane_default_and_a_floor() -> None:
    assert validate({}).get("outbox.maxBytes") == 256 * 1024 * 1024
    assert validate({"outbox": {"maxBytes": "67108864"}}).get("outbox.maxBytes") == 64 * 1024 * 1024
    cfg = validate({"outbox": {"maxBytes": 1000}})
    assert cfg.get("outbox.maxBytes") == 256 * 1024 * 1024
    assert any(p.startswith("outbox.maxBytes: 1000 is below the minimum") for p in cfg.problems)


def test_topics_are_per_thing() -> None:
    cfg = validate({"thingName": "line-3"})
    assert cfg.topic("inference") == "loupe/line-3/inference"
    assert cfg.topic("lowConfidence") == "loupe/line-3/low-confidence"
    assert cfg.topic("health") == "loupe/line-3/health"


def test_local_configuration_sources_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"model": {"precision": "int8"}, "health": {"intervalSeconds": 5}}))
    monkeypatch.setenv("LOUPE_EDGE_CONFIG", json.dumps({"model": {"confThreshold": 0.4, "precision": "fp32"}}))
    raw = load_local(str(f), json.dumps({"health": {"intervalSeconds": 7}}))
    cfg = validate(raw)
    assert cfg.get("model.precision") == "int8"  # file wins over env
    assert cfg.get("model.confThreshold") == 0.4
    assert cfg.get("health.intervalSeconds") == 5
    monkeypatch.setenv("LOUPE_EDGE_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_local(None, None)


# -- outbox -------------------------------------------------------------------------------------------------


def test_outbox_is_fifo_and_survives_restart(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"results": 100})
    for i in range(5):
        ob.put("results", {"i": i}, f"m{i}".encode())
    first = ob.peek("results", 2)
    assert [e.meta["i"] for e in first] == [0, 1]
    ob.ack(first)
    ob.close()
    ob = Outbox(tmp_path / "o.sqlite", {"results": 100})
    assert ob.depth("results") == 3
    assert [e.body for e in ob.peek("results", 10)] == [b"m2", b"m3", b"m4"]
    ob.close()


def test_outbox_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"results": 10, "uploads": 2})
    dropped = sum(ob.put("results", {"i": i}) for i in range(25))
    assert dropped == 15
    assert ob.depth("results") == 10 and ob.dropped("results") == 15
    assert [e.meta["i"] for e in ob.peek("results", 100)] == list(range(15, 25))
    ob.put("uploads", {"k": 1}, b"x" * 1000)
    assert ob.depth("uploads") == 1 and ob.dropped("uploads") == 0  # queues are bounded independently
    ob.close()
    assert Outbox(tmp_path / "o.sqlite", {"results": 10}).dropped("results") == 15


def test_outbox_ack_of_an_entry_dropped_meanwhile_is_harmless(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"q": 2})
    ob.put("q", {"i": 0})
    ob.put("q", {"i": 1})
    inflight = ob.peek("q", 2)
    ob.put("q", {"i": 2})  # drops i=0 while it is "being sent"
    ob.ack(inflight)
    assert [e.meta["i"] for e in ob.peek("q", 5)] == [2]
    assert ob.depth("q") == 1


def test_outbox_wait_wakes_on_put(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", {"q": 5})
    assert ob.wait("q", 0.05) is False
    threading.Timer(0.1, lambda: ob.put("q", {})).start()
    assert ob.wait("q", 5.0) is True


# -- feedback sampling --------------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_uncertain_means_a_detection_inside_the_band() -> None:
    s = FeedbackSampler(0.25, 0.6, 100, 1000)
    assert not s.decide(np.array([], dtype=np.float32)).uncertain  # nothing found: a confident pass
    assert not s.decide(np.array([0.9, 0.61])).uncertain
    d = s.decide(np.array([0.95, 0.3]))
    assert d.uncertain and d.send and d.reason == "confidence-band" and d.max_confidence == pytest.approx(0.95)
    assert s.decide(np.array([0.25])).uncertain  # band is [low, high)
    assert not s.decide(np.array([0.6])).uncertain
    with pytest.raises(ValueError):
        FeedbackSampler(0.6, 0.25, 1, 1)


def test_the_top_criterion_looks_at_the_most_confident_detection_only() -> None:
    s = FeedbackSampler(0.05, 0.3, 100, 1000, criterion="top")
    assert s.decide(np.array([0.2, 0.1])).uncertain  # the best guess is weak: uncertain
    assert not s.decide(np.array([0.9, 0.2])).uncertain  # a confident best guess: a weaker second box is not
    assert not s.decide(np.array([0.01], dtype=np.float32)).uncertain  # under the band: nothing seen
    assert not s.decide(np.array([], dtype=np.float32)).uncertain
    assert FeedbackSampler(0.05, 0.3, 100, 1000).decide(np.array([0.9, 0.2])).uncertain  # "any" (the default)
    with pytest.raises(ValueError, match="criterion"):
        FeedbackSampler(0.05, 0.3, 1, 1, criterion="max")


def test_the_criterion_is_validated() -> None:
    assert validate({"feedback": {"criterion": "top"}}).get("feedback.criterion") == "top"
    cfg = validate({"feedback": {"criterion": "max"}})
    assert cfg.get("feedback.criterion") == "any" and any("feedback.criterion" in p for p in cfg.problems)


def test_rate_limit_and_daily_cap() -> None:
    clock = Clock(1_700_000_000.0)  # 2023-11-14 22:13:20 UTC
    store: dict[str, int] = {}
    s = FeedbackSampler(
        0.25,
        0.6,
        max_per_minute=3,
        max_per_day=5,
        clock=clock,
        day_count=lambda d: store.get(d, 0),
        day_bump=lambda d: store.__setitem__(d, store.get(d, 0) + 1),
    )
    band = np.array([0.4])
    sent = [s.decide(band).send for _ in range(5)]
    assert sent == [True, True, True, False, False]
    assert s.decide(band).limited_by == "rate"
    clock.t += 61
    assert [s.decide(band).send for _ in range(3)] == [True, True, False]  # 5 today: the cap
    clock.t += 61
    d = s.decide(band)
    assert not d.send and d.limited_by == "daily-cap"
    assert store == {"2023-11-14": 5}
    # a restart the same day keeps the count (it is persisted)
    s2 = FeedbackSampler(0.25, 0.6, 3, 5, clock=clock, day_count=lambda d: store.get(d, 0))
    assert s2.decide(band).limited_by == "daily-cap"
    clock.t += 3 * 3600  # next UTC day
    assert s.decide(band).send


def test_a_device_takes_no_frame_larger_than_the_clouds_ingest_accepts():
    """An uncertain frame goes back to the raw bucket; ingest must not quarantine it for its size."""
    from loupe import imaging
    from loupe_edge import config

    assert config.MAX_PIXELS <= imaging.MAX_PIXELS and config.MAX_FILE_BYTES <= imaging.MAX_BYTES
    assert config.DEFAULTS["source"]["maxPixels"] <= imaging.MAX_PIXELS
    with pytest.raises(ValueError, match="above the maximum"):
        config.RULES["source.maxPixels"](imaging.MAX_PIXELS + 1)
    with pytest.raises(ValueError, match="above the maximum"):
        config.RULES["source.maxFileBytes"](imaging.MAX_BYTES + 1)
