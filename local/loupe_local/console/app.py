"""The local console: a small Flask app over the read-only :class:`~loupe_local.observer.Observer`, the Ground
Truth stand-in's task queue (manual workforce) and the same SageMaker API a person calls in Studio.

Pages: Labeling, Models, Fleet, Loop. Each page is static HTML + plain JS that polls the JSON API under ``/api``;
every action answers ``{"ok": ...}`` or ``{"error": "..."}`` with an HTTP error status, which the page shows. The
pictures the pages draw boxes over are real images read from S3 through the observer: a package's evaluation
samples (``/api/models/<version>/evaluation/samples/<file>``) and the uncertain frames devices uploaded
(``/api/fleet/<thing>/frames/<frame id>/image``).
Served by werkzeug's threaded server on 127.0.0.1 only (:class:`Console`).

What it serves of S3 was written by others (a device, a training job, whoever uploaded): pixels are served only as
JPEG or PNG decided by their magic bytes (never by the key's suffix or the stored ContentType, so an ``x.html`` or
an SVG with a script is refused, not rendered), and every response carries ``X-Content-Type-Options: nosniff`` and
a Content-Security-Policy that allows this origin's own files only (no inline script or style, no framing). Request
bodies are capped (``MAX_BODY_BYTES``: 413 with a JSON error).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from botocore.exceptions import ClientError
from flask import Flask, Response, jsonify, redirect, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from loupe.console_api.models import evidence_metadata
from loupe.finite import as_json_safe
from loupe_local.evaluations import NotAnImage, image_type
from loupe_local.observer import Observer
from loupe_local.standins.groundtruth_queue import AnswerError

log = logging.getLogger("loupe_local.console")

PAGES = {"labeling": "Labeling", "models": "Models", "fleet": "Fleet", "loop": "Loop"}
APPROVAL = {"approve": "Approved", "reject": "Rejected"}
# the largest request the console takes: an answer with a few hundred boxes is ~30 KB
MAX_BODY_BYTES = 256 * 1024
# The pages load console.css and their scripts from /static and fetch /api: nothing inline, nothing from elsewhere.
# (CSP Level 3: default-src covers script/style/img/connect; frame-ancestors, base-uri, form-action do not fall back
# to it, so they are named.)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
    "Referrer-Policy": "no-referrer",
}


class StandardJSON(DefaultJSONProvider):
    """What the pages read is standard JSON: a NaN or Infinity in what devices or jobs wrote (an MQTT result, a
    details.json) is sent as its name, a string, instead of a literal that the browser's JSON.parse refuses (which
    would leave the whole page unrefreshed)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(as_json_safe(obj), **kwargs)


def _error(message: str, status: int = 400) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def _image(data: bytes, where: str) -> tuple[Response, int] | Response:
    """``data`` as the image it is by its content (JPEG or PNG), else a 415 error: never as the type a key names."""
    try:
        mime = image_type(data, where)
    except NotAnImage as exc:
        return _error(str(exc), 415)
    return Response(data, mimetype=mime, headers={"Cache-Control": "private, max-age=3600"})


def create_app(observer: Observer, groundtruth: Any = None, assistant: Any = None) -> Flask:
    """``groundtruth``: the Ground Truth stand-in (its manual task queue); ``assistant``: model-assisted labeling
    (predictions of the deployed model for a task's image), or None."""
    app = Flask(__name__)
    app.json = StandardJSON(app)
    app.config["JSON_SORT_KEYS"] = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Any:
        return _error(f"request body over {MAX_BODY_BYTES} bytes: the console takes answers up to that size", 413)

    @app.before_request
    def same_origin_only() -> Any:
        # bound to 127.0.0.1, but a browser visiting another site could still send requests here: refuse other
        # Host names (DNS rebinding), and writes that are not same-origin JSON (forms and simple cross-site POSTs)
        host = request.host.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            return _error(f"the console answers on 127.0.0.1 only, not {request.host}", 403)
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin and origin != f"http://{request.host}":
                return _error(f"cross-origin request from {origin} refused", 403)
            if request.mimetype != "application/json":
                return _error("send the answer as JSON (Content-Type: application/json)", 415)
        return None

    @app.get("/")
    def index() -> Any:
        return redirect("/labeling")

    @app.get("/<page>")
    def page(page: str) -> Any:
        if page not in PAGES:
            return _error(f"no page {page}", 404)
        return render_template(f"{page}.html", page=page, pages=PAGES)

    @app.errorhandler(ClientError)
    def aws_error(exc: ClientError) -> Any:
        err = exc.response.get("Error", {})
        return _error(f"{err.get('Code', 'Error')}: {err.get('Message', exc)}", 502)

    # ------------------------------------------------------------------ labeling
    @app.get("/api/tasks")
    def tasks() -> Any:
        if groundtruth is None:
            return jsonify({"mode": "none", "tasks": []})
        from loupe_local.standins.groundtruth_workforce import Workforce

        mode = Workforce(groundtruth.workforce_dir).mode
        return jsonify({"mode": mode, "tasks": groundtruth.pending_tasks()})

    @app.get("/api/tasks/<task_id>/image")
    def task_image(task_id: str) -> Any:
        if groundtruth is None:
            return _error("no Ground Truth stand-in in this local AWS", 404)
        try:
            data, _ = groundtruth.task_image(task_id)
        except AnswerError as exc:
            return _error(str(exc), exc.status)
        return _image(data, f"the image of task {task_id}")

    @app.get("/api/tasks/<task_id>/predictions")
    def task_predictions(task_id: str) -> Any:
        if groundtruth is None or assistant is None:
            return jsonify({"model": None, "boxes": []})
        try:
            data, _ = groundtruth.task_image(task_id)
        except AnswerError as exc:
            return _error(str(exc), exc.status)
        try:
            return jsonify(assistant.predict(data))
        except Exception as exc:  # the person still labels by hand
            log.warning("model-assisted labeling failed for %s: %s", task_id, exc)
            return jsonify({"model": None, "boxes": [], "error": f"no pre-annotation: {exc}"})

    @app.post("/api/tasks/<task_id>")
    def submit(task_id: str) -> Any:
        if groundtruth is None:
            return _error("no Ground Truth stand-in in this local AWS", 404)
        answer = request.get_json(silent=True)
        if answer is None:
            return _error("the answer must be a JSON body")
        try:
            task = groundtruth.submit(task_id, answer)
        except AnswerError as exc:
            return _error(str(exc), exc.status)
        return jsonify({"ok": f"task {task_id} submitted", "task": task})

    # ------------------------------------------------------------------ models
    @app.get("/api/models")
    def models() -> Any:
        packages = observer.packages()
        champion = next((p for p in packages if p["approval"] == "Approved"), None)
        return jsonify(
            {"group": observer.package_group, "champion": champion and champion["arn"], "packages": packages}
        )

    @app.post("/api/models/<int:version>/<action>")
    def approval(version: int, action: str) -> Any:
        if action not in APPROVAL:
            return _error(f"unknown action {action}: approve or reject", 404)
        package = next((p for p in observer.packages(with_cards=False) if int(p["version"] or 0) == version), None)
        if package is None:
            return _error(f"model package version {version} is not in group {observer.package_group}", 404)
        status = APPROVAL[action]
        if package["approval"] == status:
            return _error(f"model package {version} is already {status}", 409)
        body = request.get_json(silent=True) or {}
        kwargs: dict[str, Any] = {"ModelPackageArn": package["arn"], "ModelApprovalStatus": status}
        if body.get("description"):
            kwargs["ApprovalDescription"] = str(body["description"])[:1024]
        # what the person saw: the field agreement at this moment, in the package's metadata (as the console API does)
        evidence = evidence_metadata(observer.shadow_summary(package["arn"]), package["metadata"])
        if evidence:
            kwargs["CustomerMetadataProperties"] = {**package["metadata"], **evidence}
        observer.client("sagemaker").update_model_package(**kwargs)
        return jsonify({"ok": f"model package {version} {status}", "arn": package["arn"]})

    @app.get("/api/models/<int:version>/evaluation/<path:relative>")
    def evaluation_sample(version: int, relative: str) -> Any:
        arn = observer.package_arn(version)
        if arn is None:
            return _error(f"model package version {version} is not in group {observer.package_group}", 404)
        try:
            data, _ = observer.evaluation_sample(arn, relative)
        except NotAnImage as exc:
            return _error(str(exc), 415)
        except ValueError as exc:
            return _error(str(exc), 400)
        except LookupError as exc:
            return _error(str(exc), 404)
        return _image(data, f"sample {relative} of model package {version}")

    # ------------------------------------------------------------------ fleet and loop
    @app.get("/api/fleet")
    def fleet() -> Any:
        return jsonify(
            {"devices": observer.devices(), "deployments": observer.deployments(), "frames": observer.latest_results()}
        )

    @app.get("/api/fleet/<thing>/frames/<frame_id>/image")
    def frame_image(thing: str, frame_id: str) -> Any:
        try:
            data, _ = observer.frame_image(thing, frame_id)
        except NotAnImage as exc:
            return _error(str(exc), 415)
        except LookupError as exc:
            return _error(str(exc), 404)
        return _image(data, f"frame {frame_id} of {thing}")

    @app.get("/api/loop")
    def loop() -> Any:
        return jsonify(
            {
                "ledger": observer.ledger_counts(),
                "datasets": observer.dataset_versions(),
                "executions": [e for e in observer.executions() if e["status"] in ("RUNNING", "Executing")],
                "labeling_jobs": observer.labeling_jobs(),
                "timeline": observer.timeline(),
            }
        )

    return app


class Console:
    """The console served in a thread by werkzeug, bound to 127.0.0.1 only."""

    def __init__(self, app: Flask, port: int = 0) -> None:
        self.app = app
        self.port = port
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_runtime(cls, runtime: Any, port: int = 0) -> Console:
        observer = Observer.from_runtime(runtime)
        if runtime.mqtt:
            observer.start_feed(runtime.mqtt["host"], int(runtime.mqtt["port"]))
        groundtruth = next((s for s in runtime.standins if s.name == "groundtruth"), None)
        from loupe_local.console.assist import Assistant

        console = cls(create_app(observer, groundtruth, Assistant(observer)), port)
        console.observer = observer
        return console

    def start(self) -> str:
        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="loupe-console", daemon=True)
        self._thread.start()
        log.info("console at %s", self.url)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        observer = getattr(self, "observer", None)
        if observer is not None:
            observer.close()
