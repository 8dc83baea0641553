"""The console against content others wrote: pixels only as the JPEG/PNG their bytes are (an ``x.html`` or an SVG
with a script is refused, whatever its key or stored ContentType), security headers on every response, and a cap
on request bodies. The S3 side is the console's real readers (evaluation samples, a device's uploaded frames)
over moto; the Ground Truth task queue is a small fake holding one task's bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from support import image_samples as samples

from loupe_local.console.app import MAX_BODY_BYTES, create_app
from loupe_local.evaluations import EvaluationReader
from loupe_local.fleet_frames import FramePixels
from loupe_local.standins.groundtruth_queue import AnswerError

BUCKET = "artifacts"
RAW = "raw-bucket"
THING = "line-1"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/g/1"
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
# an HTML page that starts like neither JPEG nor PNG but names itself a PNG in its key and ContentType
HTML_AS_PNG = b"\x89PNX" + HTML


class Observer:
    """What the console's media routes read, over the real S3 readers."""

    package_group = "g"

    def __init__(self, s3: Any) -> None:
        self._reader = EvaluationReader(lambda: s3)
        self._desc = {
            "ModelMetrics": {"ModelQuality": {"Statistics": {"S3Uri": f"s3://{BUCKET}/eval/evaluation.json"}}}
        }
        self.frame_pixels = FramePixels(lambda: s3, RAW)

    def package_arn(self, version: int) -> str | None:
        return ARN if version == 1 else None

    def evaluation_sample(self, arn: str, relative: str) -> tuple[bytes, str]:
        return self._reader.sample(self._desc, relative)

    def frame_image(self, thing: str, frame_id: str) -> tuple[bytes, str]:
        return self.frame_pixels.image(thing, frame_id)

    # what /api/fleet reads: a device's MQTT result as Python's json read it (NaN and Infinity literals)
    def devices(self) -> list[dict[str, Any]]:
        return [{"thing": THING, "health": json.loads('{"fps": NaN, "latency_ms_p95": Infinity}')}]

    def deployments(self) -> list[dict[str, Any]]:
        return []

    def latest_results(self) -> dict[str, Any]:
        return {THING: [json.loads('{"frame_id": "f1", "boxes": [[1, 2, 3, 4, -Infinity, 0]], "score": NaN}')]}


class Queue:
    """The Ground Truth stand-in's queue as the console uses it: the task image is whatever the manifest named."""

    def __init__(self) -> None:
        self.images: dict[str, tuple[bytes, str]] = {}
        self.answers: list[Any] = []

    def task_image(self, task_id: str) -> tuple[bytes, str]:
        if task_id not in self.images:
            raise AnswerError(f"no task {task_id}", 404)
        return self.images[task_id]

    def submit(self, task_id: str, answer: Any) -> dict[str, Any]:
        self.answers.append(answer)
        return {"id": task_id}


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=RAW)
        yield client


@pytest.fixture
def queue() -> Queue:
    return Queue()


@pytest.fixture
def client(s3: Any, queue: Queue) -> Any:
    return create_app(Observer(s3), groundtruth=queue).test_client()


def refused(response: Any) -> None:
    assert response.status_code == 415, response.data[:200]
    assert response.mimetype == "application/json"
    assert "not a JPEG or PNG" in response.get_json()["error"]
    assert b"<script>" not in response.data


@pytest.mark.parametrize(
    ("name", "body", "content_type"),
    [
        ("x.html", HTML, "text/html"),
        ("x.svg", SVG, "image/svg+xml"),
        ("x.png", HTML_AS_PNG, "image/png"),
        ("x.jpg", SVG, "image/jpeg"),
    ],
)
def test_an_evaluation_sample_is_served_only_as_the_image_its_bytes_are(
    client: Any, s3: Any, name: str, body: bytes, content_type: str
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"eval/samples/{name}", Body=body, ContentType=content_type)
    refused(client.get(f"/api/models/1/evaluation/samples/{name}"))


def test_a_frame_a_device_uploaded_is_served_only_as_the_image_its_bytes_are(client: Any, s3: Any) -> None:
    s3.put_object(Bucket=RAW, Key=f"raw/feedback/{THING}/f1.html", Body=HTML, ContentType="text/html")
    s3.put_object(Bucket=RAW, Key=f"raw/feedback/{THING}/f2.svg", Body=SVG, ContentType="image/svg+xml")
    refused(client.get(f"/api/fleet/{THING}/frames/f1/image"))
    refused(client.get(f"/api/fleet/{THING}/frames/f2/image"))


def test_real_images_are_served_as_their_content_says_not_as_their_key_says(client: Any, s3: Any) -> None:
    png, jpeg = samples.png(40, 40), samples.jpeg(40, 40)
    # a PNG stored as .jpg with a text/html ContentType is still a PNG
    s3.put_object(Bucket=BUCKET, Key="eval/samples/a.jpg", Body=png, ContentType="text/html")
    s3.put_object(Bucket=RAW, Key=f"raw/feedback/{THING}/f3.html", Body=jpeg, ContentType="text/html")
    sample = client.get("/api/models/1/evaluation/samples/a.jpg")
    assert sample.status_code == 200 and sample.mimetype == "image/png" and sample.data == png
    frame = client.get(f"/api/fleet/{THING}/frames/f3/image")
    assert frame.status_code == 200 and frame.mimetype == "image/jpeg" and frame.data == jpeg
    assert frame.headers["X-Content-Type-Options"] == "nosniff"


def test_a_labeling_task_image_is_served_only_as_jpeg_or_png(client: Any, queue: Queue) -> None:
    queue.images["t-svg"] = (SVG, "image/svg+xml")
    queue.images["t-html"] = (HTML, "text/html")
    queue.images["t-gif"] = (samples.gif(), "image/gif")
    queue.images["t-png"] = (samples.png(40, 40), "image/png")
    for task in ("t-svg", "t-html", "t-gif"):
        refused(client.get(f"/api/tasks/{task}/image"))
    ok = client.get("/api/tasks/t-png/image")
    assert ok.status_code == 200 and ok.mimetype == "image/png"


@pytest.mark.parametrize(
    "path",
    [
        "/labeling",
        "/models",
        "/fleet",
        "/loop",
        "/",
        "/nowhere",
        "/static/console.js",
        "/static/console.css",
        "/api/tasks/unknown/image",
        "/api/models/9/evaluation/samples/a.jpg",
    ],
)
def test_every_response_carries_the_security_headers(client: Any, path: str) -> None:
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "*" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_have_no_inline_script_or_style_for_the_policy_to_block(client: Any) -> None:
    for page in ("labeling", "models", "fleet", "loop"):
        html = client.get(f"/{page}").get_data(as_text=True)
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " onclick=" not in html.lower() and "javascript:" not in html.lower()
        assert '<script src="/static/' in html


def test_an_oversized_body_is_refused_with_413_and_a_message(client: Any, queue: Queue) -> None:
    queue.images["t1"] = (samples.png(40, 40), "image/png")
    big = json.dumps({"boxes": [], "padding": "x" * MAX_BODY_BYTES})
    response = client.post("/api/tasks/t1", data=big, content_type="application/json")
    assert response.status_code == 413
    assert f"over {MAX_BODY_BYTES} bytes" in response.get_json()["error"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert queue.answers == []  # nothing reached the queue
    small = client.post("/api/tasks/t1", data=json.dumps({"boxes": []}), content_type="application/json")
    assert small.status_code == 200 and queue.answers == [{"boxes": []}]


def test_device_numbers_that_json_cannot_carry_reach_the_page_as_standard_json(client: Any) -> None:
    response = client.get("/api/fleet")
    assert response.status_code == 200

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not standard JSON: the browser's JSON.parse refuses it")

    body = json.loads(response.get_data(as_text=True), parse_constant=refuse)
    assert body["devices"][0]["health"] == {"fps": "NaN", "latency_ms_p95": "Infinity"}
    assert body["frames"][THING][0]["boxes"] == [[1, 2, 3, 4, "-Infinity", 0]]
