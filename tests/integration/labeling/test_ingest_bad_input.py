"""The issue's bad-input list, each through the local AWS: a real S3 put (or a real-shape S3 event on the bus)
-> EventBridge -> router -> the ingest handler. Each leaves exactly one ledger entry with a status; nothing is
deleted; rejected objects are copied to quarantine/ with their reason as a tag."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from urllib.parse import quote_plus

import pytest
from PIL import Image
from support import image_samples as samples
from support.waiting import wait_for

pytestmark = pytest.mark.integration


def tags_of(env, key):
    return {t["Key"]: t["Value"] for t in env.s3.get_object_tagging(Bucket=env.raw, Key=key)["TagSet"]}


def assert_rejected(env, key, data, code, words):
    sha = env.put_raw(key, data)
    entry = env.wait_status(sha, "rejected")
    assert entry["reason_code"] == code
    assert words.lower() in entry["reason"].lower()
    assert f"s3://{env.raw}/{key}" in entry["source_keys"]
    # the original is still there, and a quarantined copy carries the reason
    assert env.s3.get_object(Bucket=env.raw, Key=key)["Body"].read() == data
    qkey = entry["quarantine_key"]
    assert qkey.startswith("quarantine/")
    assert env.s3.get_object(Bucket=env.raw, Key=qkey)["Body"].read() == data
    tags = tags_of(env, qkey)
    assert tags["loupe-code"] == code and words.lower() in tags["loupe-reason"].lower()
    return entry


def test_zero_byte_file(env):
    assert_rejected(env, "raw/bad/empty.jpg", b"", "empty", "0 bytes")


def test_truncated_jpeg(env):
    assert_rejected(env, "raw/bad/truncated.jpg", samples.truncated_jpeg(), "corrupt", "truncated")


def test_text_file_named_jpg(env):
    assert_rejected(env, "raw/bad/notes.jpg", samples.text_as_jpg(), "not-an-image", "text")


def test_png_decompression_bomb(env):
    data = samples.png_bomb()
    assert 100_000 < len(data) < 1_000_000  # a few hundred KB on disk
    assert_rejected(env, "raw/bad/bomb.png", data, "bomb", "decompression bomb")


def test_gif_named_png(env):
    assert_rejected(env, "raw/bad/anim.png", samples.gif(), "not-an-image", "GIF")


def test_one_pixel_image(env):
    assert_rejected(env, "raw/bad/dot.png", samples.one_pixel(), "too-small", "1x1")


def _normalized(env, entry):
    bucket, _, key = entry["image_uri"][5:].partition("/")
    assert bucket == env.raw and key.startswith("normalized/")
    return Image.open(io.BytesIO(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_16bit_png_is_accepted_as_an_8bit_rendition(env):
    sha = env.put_raw("raw/odd/deep.png", samples.png_16bit(64, 48))
    entry = env.wait_status(sha, "unlabeled")
    assert entry["mode"].startswith("I") and entry["normalized"] is True
    out = _normalized(env, entry)
    assert out.mode == "L" and out.size == (64, 48)


def test_cmyk_jpeg_is_accepted_as_rgb(env):
    sha = env.put_raw("raw/odd/cmyk.jpg", samples.cmyk_jpeg(72, 56))
    entry = env.wait_status(sha, "unlabeled")
    assert entry["mode"] == "CMYK"
    assert _normalized(env, entry).mode == "RGB"


def test_exif_rotated_jpeg_is_recorded_upright(env):
    sha = env.put_raw("raw/odd/rotated.jpg", samples.exif_rotated_jpeg(120, 60, orientation=6))
    entry = env.wait_status(sha, "unlabeled")
    assert (entry["width"], entry["height"], entry["orientation"]) == (60, 120, 6)
    assert _normalized(env, entry).size == (60, 120)


def test_real_jpeg_with_odd_extension(env):
    sha = env.put_raw("raw/odd/tag.jpg_3", samples.jpeg(96, 64, seed=303))
    entry = env.wait_status(sha, "unlabeled")
    assert entry["format"] == "jpg" and entry["normalized"] is False
    assert entry["image_uri"] == f"s3://{env.raw}/raw/odd/tag.jpg_3"


def test_key_with_spaces_and_non_ascii(env):
    key = "raw/odd/Prüfung Station 3/tag été #1.jpg"
    sha = env.put_raw(key, samples.jpeg(96, 64, seed=304))
    entry = env.wait_status(sha, "unlabeled")
    assert f"s3://{env.raw}/{key}" in entry["source_keys"]


def _s3_event(env, key, version_id=None, etag="0" * 32):
    return {
        "version": "0",
        "bucket": {"name": env.raw},
        "object": {"key": key, "size": 0, "etag": etag, "version-id": version_id, "sequencer": "0062E99A88DC407460"},
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": "123456789012",
        "source-ip-address": "203.0.113.15",
        "reason": "PutObject",
    }


def test_url_encoded_key_in_the_event(env):
    # S3 notifications URL-encode keys ("+" for a space); store the object without triggering, then announce it
    key = "raw/odd/Linie 2/Kratzer größer.jpg"
    data = samples.jpeg(96, 64, seed=305)
    version = env.s3.put_object(Bucket=env.raw, Key=key, Body=data).get("VersionId")
    sha = hashlib.sha256(data).hexdigest()
    env.wait_status(sha, "unlabeled")  # the put itself was ingested (moto sends the key unencoded)
    calls = env.ingest_calls()
    env.rt.emit_event("aws.s3", "Object Created", _s3_event(env, quote_plus(key, safe="/"), version), [])

    wait_for(lambda: env.ingest_calls() > calls, what="the encoded event to be ingested")
    entry = env.ledger.get(sha)
    assert entry["status"] == "unlabeled"
    assert entry["source_keys"] == [f"s3://{env.raw}/{key}"]  # decoded, and the same entry


def test_event_for_an_object_already_deleted(env):
    key = "raw/gone/deleted-before-ingest.jpg"
    detail = _s3_event(
        env, key, version_id="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", etag="d41d8cd98f00b204e9800998ecf8427e"
    )
    env.rt.emit_event("aws.s3", "Object Created", detail, [])
    identity = f"s3://{env.raw}/{key}#{detail['object']['version-id']}"
    sha = hashlib.sha256(identity.encode()).hexdigest()
    entry = env.wait_status(sha, "rejected")
    assert entry["reason_code"] == "missing" and "no longer exists" in entry["reason"]


def test_deleted_object_whose_version_is_kept_is_still_ingested(env):
    # the raw bucket is versioned: a plain delete leaves the version the event names, so nothing is lost
    key = "raw/gone/deleted-but-versioned.jpg"
    data = samples.jpeg(96, 64, seed=306)
    version = env.s3.put_object(Bucket=env.raw, Key=key, Body=data)["VersionId"]
    sha = hashlib.sha256(data).hexdigest()
    env.wait_status(sha, "unlabeled")
    env.s3.delete_object(Bucket=env.raw, Key=key)
    before = env.ledger.get(sha)
    env.rt.emit_event("aws.s3", "Object Created", _s3_event(env, key, version + "x"), [])  # unknown version
    env.rt.emit_event("aws.s3", "Object Created", _s3_event(env, key, version), [])  # the real one
    identity = f"s3://{env.raw}/{key}#{version}x"
    env.wait_status(hashlib.sha256(identity.encode()).hexdigest(), "rejected")
    assert env.ledger.get(sha) == before


def test_same_event_three_times(env):
    key = "raw/dup/thrice.jpg"
    data = samples.jpeg(96, 64, seed=307)
    version = env.s3.put_object(Bucket=env.raw, Key=key, Body=data)["VersionId"]
    sha = hashlib.sha256(data).hexdigest()
    first = env.wait_status(sha, "unlabeled")
    calls = env.ingest_calls()
    detail = _s3_event(env, key, version)
    for _ in range(3):
        env.rt.emit_event("aws.s3", "Object Created", detail, [])
    wait_for(lambda: env.ingest_calls() >= calls + 3, what="three deliveries")
    assert env.ledger.get(sha) == first
    records = [
        item
        for item in env.idempotency.scan()["Items"]
        if item.get("status") == "COMPLETED" and sha in json.dumps(item.get("data", ""))
    ]
    assert len(records) == 1  # one processing for this object version; the repeats were answered from it
    assert json.loads(records[0]["data"])["created"] is True


def test_same_content_under_two_keys_is_one_entry(env):
    data = samples.jpeg(96, 64, seed=308)
    sha = env.put_raw("raw/dup/first.jpg", data)
    env.wait_status(sha, "unlabeled")
    env.put_raw("raw/dup/second copy.jpg", data)

    entry = wait_for(lambda: len((e := env.ledger.get(sha))["source_keys"]) == 2 and e, what="the second key")
    assert entry["status"] == "unlabeled"
    assert sorted(entry["source_keys"]) == sorted(
        [f"s3://{env.raw}/raw/dup/first.jpg", f"s3://{env.raw}/raw/dup/second copy.jpg"]
    )


def test_a_malformed_capture_id_is_quarantined_with_its_rule(env):
    key = f"raw/uploads/capture-{uuid.uuid4().hex[:8]}.jpg"
    data = samples.jpeg(seed=8123)
    sha = env.put_raw(key, data, metadata={"loupe-capture": "../other-capture"})
    entry = env.wait_status(sha, "rejected")
    assert entry["reason_code"] == "bad-capture" and "loupe-capture" in entry["reason"]
    assert env.s3.get_object(Bucket=env.raw, Key=entry["quarantine_key"])["Body"].read() == data
    good = f"raw/uploads/capture-{uuid.uuid4().hex[:8]}.jpg"
    sha = env.put_raw(good, samples.jpeg(seed=8124), metadata={"loupe-capture": "cam2-000917"})
    assert env.wait_status(sha, "unlabeled")["origin"]["capture"] == "cam2-000917"
