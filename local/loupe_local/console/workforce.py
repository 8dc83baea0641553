"""The local stack's automatic workforce for the labeling app (``LabelingService=Loupe``): bot labelers that work the
way a person does, through the console API.

A :class:`BotLabeler` is a user of the stack's Cognito pool it invites itself into (``loupe labelers add``'s
``AdminCreateUser``), signs in with the app client by SRP as the console app does (``USER_SRP_AUTH``,
:func:`loupe_local.console.signin.sign_in`), takes images with ``GET /labeling/tasks/next``, loads each one by its
presigned GET as the browser does, and answers ``POST /labeling/tasks/{assignmentId}`` from the same answer source
the Ground Truth stand-in's automatic workforce uses (``<state_dir>/workforce/*.jsonl`` and ``config.json``,
:class:`loupe_local.standins.groundtruth.workforce.Workforce`; a ``"mode": "manual"`` there leaves the images to
people). An image it has no answer for it declines (``POST .../decline`` with its reason); once
``LabelingDeclineLimit`` bots declined it, the app releases it as unlabeled with their reasons (as the Ground Truth
stand-in fails an object it has no answer for), so the run does not wait for the tasks' lifetime.
:class:`AppWorkforce` runs the bots in a thread for ``loupe local up``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import secrets
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loupe.console_api import labelers
from loupe.datasets import Box
from loupe_local.console.signin import Authenticator, sign_in
from loupe_local.standins.groundtruth.workforce import Workforce

log = logging.getLogger("loupe_local.console.workforce")

# a bot's reason for declining an image (the reason reaches the ledger when the image is released)
NO_ANSWER = "the local workforce has no answer for this image (workforce/*.jsonl)"
VERIFY_IOU = 0.5  # a shown box is the answer source's box when they overlap this much (IoU), as consolidation matches
Answerer = Callable[[str, int, int, random.Random], "list[Box] | None"]


class AppError(RuntimeError):
    """The console API refused a call (status and body in the message)."""


def _password() -> str:
    return f"Aa1!{secrets.token_urlsafe(12)}"


def call(url: str, method: str = "GET", token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """One call to the local HTTP API: status and JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the local API's loopback URL
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - same
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class AppUser:
    """A user of the console's pool, invited into ``group`` and signed in (tokens renewed when the API says 401)."""

    def __init__(self, idp: Any, pool_id: str, client_id: str, group: str, name: str | None = None) -> None:
        self.idp, self.pool_id, self.client_id, self.group = idp, pool_id, client_id, group
        self.email = f"{name or group + '-bot-' + uuid.uuid4().hex[:8]}@loupe.invalid"
        temporary, self.password = _password(), _password()
        # its authenticator app: set up at the first sign-in where the pool requires MFA (UserPoolMfa=ON), asked for
        # a code at every later one
        self.authenticator = Authenticator(device_name=self.email.split("@")[0])
        labelers.add(idp, pool_id, self.email, group, temporary_password=temporary)
        # the first sign-in: Cognito asks the invited user for a password of their own (NEW_PASSWORD_REQUIRED)
        self.token = self._sign_in(temporary, new_password=self.password)

    def _sign_in(self, password: str, new_password: str | None = None) -> str:
        tokens = sign_in(
            self.idp,
            self.pool_id,
            self.client_id,
            self.email,
            password,
            new_password=new_password,
            authenticator=self.authenticator,
        )
        return str(tokens["IdToken"])

    def call(self, url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        status, got = call(url, method, self.token, body)
        if status == 401:  # the ID token expired: sign in again, once
            self.token = self._sign_in(self.password)
            status, got = call(url, method, self.token, body)
        return status, got


class BotLabeler:
    """One bot labeler: :meth:`step` takes the next image and answers it from ``answer``."""

    def __init__(self, user: AppUser, api_url: str, answer: Answerer, seed: int = 0) -> None:
        self.user, self.api = user, api_url.rstrip("/")
        self.answer = answer
        self.rng = random.Random(seed)

    def step(self) -> dict[str, Any] | None:
        """Answer one image; None when there is nothing for this labeler, or only an image it cannot answer."""
        status, body = self.user.call(f"{self.api}/labeling/tasks/next")
        if status != 200:
            raise AppError(f"GET /labeling/tasks/next: {status} {body}")
        task = (body or {}).get("task")
        if not task:
            return None
        with urllib.request.urlopen(task["image_url"], timeout=30) as response:  # noqa: S310 - a presigned local GET
            data = response.read()
        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        boxes = self.answer(hashlib.sha256(data).hexdigest(), width, height, self.rng)
        if boxes is None:  # not this bot's to answer: passed on, so it is not handed back to it
            status, got = self.user.call(
                f"{self.api}/labeling/tasks/{task['assignment_id']}/decline", "POST", {"reason": NO_ANSWER}
            )
            if status != 200:
                raise AppError(f"POST /labeling/tasks/{task['assignment_id']}/decline: {status} {got}")
            return {"task": task, "result": got}
        if task.get("kind") == "verify":
            return self._verify(task, boxes)
        labels = list(task["labels"])
        answer = {
            "boxes": [
                {"label": labels[b.class_id], "left": b.left, "top": b.top, "width": b.width, "height": b.height}
                for b in boxes
            ]
        }
        status, got = self.user.call(f"{self.api}/labeling/tasks/{task['assignment_id']}", "POST", answer)
        if status != 200:
            raise AppError(f"POST /labeling/tasks/{task['assignment_id']}: {status} {got}")
        return {"task": task, "result": got}

    def _verify(self, task: dict[str, Any], truth: list[Box]) -> dict[str, Any]:
        """A verify task: accept the boxes shown when each matches one of the answer source's boxes of the same
        label (IoU >= ``VERIFY_IOU``, one to one), else reject with Ground Truth's reason for what is wrong."""
        from loupe.labeling.consolidation import iou

        labels = list(task.get("labels") or [])
        given = [b for b in task.get("boxes") or [] if b.get("label") in labels]
        shown = [
            Box(
                class_id=labels.index(b["label"]),
                left=float(b["left"]),
                top=float(b["top"]),
                width=float(b["width"]),
                height=float(b["height"]),
            )
            for b in given
        ]
        if len(given) < len(task.get("boxes") or []):  # a label the job does not have: not this image's boxes
            shown.append(Box(class_id=len(labels), left=0, top=0, width=1, height=1))
        unmatched = list(truth)
        for box in shown:
            best = max((t for t in unmatched if t.class_id == box.class_id), key=lambda t: iou(box, t), default=None)
            if best is None or iou(box, best) < VERIFY_IOU:
                break
            unmatched.remove(best)
        else:
            if not unmatched:
                return self._post_verdict(task, {"verdict": "accept"})
        reasons = list(task.get("reasons") or [])
        missed = len(shown) < len(truth)
        reason = next((r for r in reasons if ("missed" in r) == missed), reasons[0] if reasons else "wrong boxes")
        return self._post_verdict(task, {"verdict": "reject", "reason": reason})

    def _post_verdict(self, task: dict[str, Any], verdict: dict[str, str]) -> dict[str, Any]:
        status, got = self.user.call(f"{self.api}/labeling/tasks/{task['assignment_id']}", "POST", verdict)
        if status != 200:
            raise AppError(f"POST /labeling/tasks/{task['assignment_id']}: {status} {got}")
        return {"task": task, "result": got}


def workforce_answerer(directory: Path) -> Answerer:
    """Answers from the automatic workforce's sources (re-read at each call, as files may be added)."""
    workforce = Workforce(directory)

    def answer(sha256: str, width: int, height: int, rng: random.Random) -> list[Box] | None:
        workforce.reload()
        return workforce.label(sha256, width, height, rng)

    return answer


class AppWorkforce:
    """Bot labelers of the local labeling app, answering in a thread while the workforce is in ``auto`` mode."""

    def __init__(self, bots: list[BotLabeler], directory: Path, poll_seconds: float = 0.5) -> None:
        self.bots, self.directory, self.poll = bots, Path(directory), poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_runtime(cls, runtime: Any, api_url: str, count: int = 1) -> AppWorkforce:
        idp = runtime.client("cognito-idp")
        pool, client_id = runtime.physical("ConsoleUserPool"), runtime.physical("ConsoleUserPoolClient")
        directory = Path(runtime.state_dir) / "workforce"
        # enough bots to give each image its LabelersPerImage answers, and to reach LabelingDeclineLimit declines
        # on an image none of them can answer (it is then released as unlabeled and the run goes on)
        params = runtime.parameter_values
        count = max(count, int(params.get("LabelersPerImage") or 1), int(params.get("LabelingDeclineLimit") or 2))
        bots = [
            BotLabeler(
                AppUser(idp, pool, client_id, "labelers", f"labeler-bot-{i}"), api_url, workforce_answerer(directory), i
            )
            for i in range(count)
        ]
        return cls(bots, directory)

    def _mode(self) -> str:
        config = self.directory / "config.json"
        try:
            return str(json.loads(config.read_text()).get("mode", "auto")) if config.is_file() else "auto"
        except ValueError:
            return "auto"

    def start(self) -> AppWorkforce:
        self._thread = threading.Thread(target=self._run, name="app-workforce", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            if self._mode() != "auto":
                continue
            for bot in self.bots:
                try:
                    while bot.step() is not None and not self._stop.is_set():
                        pass
                except Exception:
                    log.exception("bot labeler %s failed a step", bot.user.email)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
