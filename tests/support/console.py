"""The local console's API as a page calls it, and the labeling steps the console tests start from."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from loupe.ledger import Ledger
from support import image_samples as samples
from support.waiting import wait_until

WIDTH, HEIGHT = 160, 120


def call(
    method: str,
    url: str,
    body: Any = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    origin: str | None = None,
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of a console API call, as the page (or another site's script) makes it."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type, **({"Origin": origin} if origin else {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the local console
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fetch(url: str) -> tuple[int, str, bytes]:
    """(HTTP status, content type, body) of a GET, as the browser loads an image."""
    try:
        with urllib.request.urlopen(url, timeout=15) as resp:  # noqa: S310 - the local console
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def drop_frame(state_dir: Path, thing: str, name: str, data: bytes) -> None:
    """A camera frame for a local device: written beside its frame folder, then moved in whole."""
    from loupe_local.devices import device_root

    frames = device_root(state_dir, thing) / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    tmp = frames.parent / f".{name}.tmp"
    tmp.write_bytes(data)
    tmp.replace(frames / name)


def upload_and_request_labels(rt: Any, ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """An image of our own, uploaded to the raw bucket, ingested, then sent to labeling; (sha256, trigger output)."""
    data = samples.jpeg(WIDTH, HEIGHT, seed=uuid.uuid4().int % 100_000)
    key = f"raw/console/{uuid.uuid4().hex[:8]}.jpg"
    rt.client("s3").put_object(Bucket=rt.physical("RawBucket"), Key=key, Body=data)

    sha = hashlib.sha256(data).hexdigest()
    assert wait_until(lambda: (e := ledger.get(sha)) and e["status"] == "unlabeled", 30), f"{key} was not ingested"
    started = rt.invoke("LabelingTriggerFunction", {"reason": "manual", "sha256": [sha]})
    assert started["started"] is True, started
    return sha, started


def pending_task(console_url: str, sha: str) -> dict[str, Any] | None:
    _, body = call("GET", f"{console_url}/api/tasks")
    return next((t for t in body["tasks"] if t["sha256"] == sha), None)


def finished(rt: Any, arn: str) -> dict[str, Any]:
    sfn = rt.client("stepfunctions")
    out = wait_until(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d, 90)
    assert out, f"labeling execution {arn} did not finish"
    return out
