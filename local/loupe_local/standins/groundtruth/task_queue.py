"""The Ground Truth stand-in's manual workforce: a person answers each object of a job in the local console.

Each object of a job becomes a pending task (:meth:`TaskQueue.pending_tasks`) that the console shows, and the
person's answer (:meth:`TaskQueue.submit`) becomes the same output-manifest line the automatic workforce writes. A
task nobody answers within the job's ``TaskAvailabilityLifetimeInSeconds`` fails with ``failure-reason``, as in
Ground Truth.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from typing import Any

from loupe import manifests
from loupe.datasets import Box
from loupe_local.standins.groundtruth.browser import Browser, CorsRefused
from loupe_local.standins.groundtruth.workforce import NO_WORKER, Line


class AnswerError(ValueError):
    """A person's answer the labeling UI refuses; ``status`` is the HTTP status the console answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_boxes(raw: Any, width: int, height: int, class_map: dict[str, str]) -> list[Box]:
    """A person's boxes, or :class:`AnswerError` naming the first one the task refuses."""
    if not isinstance(raw, list):
        raise AnswerError("the answer needs a list of boxes (an empty list: no defect in this image)")
    boxes = []
    for number, item in enumerate(raw, start=1):
        try:
            box = Box.from_dict(item)
            values = [float(box.left), float(box.top), float(box.width), float(box.height)]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AnswerError(
                f"box {number} is not a box ({exc}); expected class_id, left, top, width, height"
            ) from exc
        left, top, w, h = values
        if str(box.class_id) not in class_map:
            raise AnswerError(f"box {number} has class {box.class_id}, not one of the job's classes {class_map}")
        if round(w) < 1 or round(h) < 1:
            raise AnswerError(f"box {number} is empty ({w:g} x {h:g} px): drag to give it an area, or delete it")
        if left < 0 or top < 0 or left + w > width + 0.5 or top + h > height + 0.5:
            raise AnswerError(
                f"box {number} ({left:g}, {top:g}, {w:g} x {h:g}) goes outside the {width} x {height} image"
            )
        boxes.append(Box(int(box.class_id), round(left), round(top), round(w), round(h)))
    return boxes


def _public(task: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in task.items() if not k.startswith("_")}


class TaskQueue:
    """The tasks people answer; answered and expired tasks stay (as "done") so a late submit is explained."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._answered = threading.Condition(self._lock)

    def ask_people(
        self,
        job: dict[str, Any],
        browser: Browser,
        lines: list[tuple[int, dict[str, Any]]],
        categories: dict[str, Any],
        stopped: Callable[[], bool],
    ) -> list[Line]:
        """Every object of the job as a pending task; once each is answered (or has expired), its output line.
        When the job is stopped (``stopped()``) while people work, the tasks not answered yet are withdrawn and
        fail, and the answered ones keep their labels: StopLabelingJob puts "any results obtained before the job is
        stopped" in the output (SageMaker API reference, StopLabelingJob)."""
        from PIL import Image

        name = job["LabelingJobName"]
        attribute = job["LabelAttributeName"]
        audit = categories.get("auditLabelAttributeName")
        lifetime = float(job["HumanTaskConfig"].get("TaskAvailabilityLifetimeInSeconds") or 864000)
        class_map = manifests.class_map_from_config(categories) if categories.get("labels") else {"0": "scratch"}
        verdicts = [item["label"] for item in categories.get("labels", [])]
        results: list[Line | None] = [None] * len(lines)
        ids: list[str] = []
        for index, (_, obj) in enumerate(lines):
            ref = obj["source-ref"]
            base = obj if audit else {k: v for k, v in obj.items() if k != "source-ref"}
            try:
                data = browser.load(ref)
                with Image.open(io.BytesIO(data)) as img:
                    width, height, depth = img.size[0], img.size[1], len(img.getbands())
                    mime = Image.MIME.get(img.format or "", "application/octet-stream")
                shown = manifests.parse_output_line(obj, audit) if audit else None
            except CorsRefused as exc:
                results[index] = (manifests.failed_line(ref, attribute, str(exc), name, base), False)
                continue
            except Exception as exc:
                reason = f"ClientError: cannot read {ref}: {exc}"
                results[index] = (manifests.failed_line(ref, attribute, reason, name, base), False)
                continue
            now = time.time()
            task = {
                "id": f"{name}.{index}",
                "job": name,
                "kind": "verify" if audit else "label",
                "source_ref": ref,
                "sha256": obj.get(manifests.SHA_ATTRIBUTE) or hashlib.sha256(data).hexdigest(),
                "width": width,
                "height": height,
                "class_map": class_map,
                "created": now,
                "expires": now + lifetime,
                "state": "pending",
                "_image": data,
                "_mime": mime,
                "_index": index,
                "_base": base,
                "_depth": depth,
            }
            if shown is not None:
                task["boxes"] = shown.annotations()
                task["verdicts"] = verdicts
            with self._lock:
                self.tasks[task["id"]] = task
            ids.append(task["id"])
        with self._answered:
            self._answered.notify_all()
            while True:
                pending = [self.tasks[i] for i in ids if self.tasks[i]["state"] == "pending"]
                if not pending:
                    break
                if stopped():
                    for task in pending:
                        task["state"] = "withdrawn"
                    break
                for task in pending:
                    if time.time() >= task["expires"]:
                        task["state"] = "expired"
                self._answered.wait(0.5)
        for task_id in ids:
            task = self.tasks[task_id]
            ref, base, index = task["source_ref"], task["_base"], task["_index"]
            if task["state"] == "expired":
                reason = f"{NO_WORKER.split(' (')[0]} within TaskAvailabilityLifetimeInSeconds ({lifetime:g})"
                results[index] = (manifests.failed_line(ref, attribute, reason, name, base), False)
            elif task["state"] == "withdrawn":
                reason = f"{NO_WORKER.split(' (')[0]} before the labeling job was stopped"
                results[index] = (manifests.failed_line(ref, attribute, reason, name, base), False)
            elif task["kind"] == "verify":
                line = manifests.verification_line(ref, attribute, verdicts, task["_answer"], name, base=base)
                results[index] = (line, True)
            else:
                line = manifests.output_line(
                    ref, attribute, task["_answer"], task["width"], task["height"], task["_depth"], class_map, name,
                    extra=base,
                )  # fmt: skip
                results[index] = (line, True)
            task.pop("_image", None)
        return [r for r in results if r is not None]

    def pending_tasks(self) -> list[dict[str, Any]]:
        """The tasks waiting for a person, oldest first (what the worker portal lists)."""
        with self._lock:
            return [_public(t) for t in sorted(self.tasks.values(), key=lambda t: t["created"])
                    if t["state"] == "pending"]  # fmt: skip

    def task_image(self, task_id: str) -> tuple[bytes, str]:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None or "_image" not in task:
                raise AnswerError(f"task {task_id} is not in the queue (answered, stopped or unknown)", 404)
            return task["_image"], task["_mime"]

    def submit(self, task_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A person's answer: boxes for a labeling task, a verdict for a verification task. :class:`AnswerError`
        (and the task unchanged) when the answer or the task's state does not allow it."""
        with self._answered:
            task = self.tasks.get(task_id)
            if task is None:
                raise AnswerError(f"no task {task_id}: it is not (or no longer) in the queue; reload the tasks", 404)
            if task["state"] == "answered":
                raise AnswerError(f"task {task_id} was already submitted; the first answer is kept", 409)
            if task["state"] != "pending":
                why = {"expired": "its time to be taken ran out", "withdrawn": "its labeling job was stopped"}
                raise AnswerError(f"task {task_id} is stale: {why.get(task['state'], task['state'])}", 409)
            if not isinstance(answer, dict):
                raise AnswerError("the answer must be a JSON object")
            if task["kind"] == "verify":
                verdict = answer.get("verdict")
                if verdict not in task["verdicts"]:
                    raise AnswerError(f"the verdict must be one of {task['verdicts']}, not {verdict!r}")
                task["_answer"] = verdict
            else:
                task["_answer"] = check_boxes(answer.get("boxes"), task["width"], task["height"], task["class_map"])
            task["state"] = "answered"
            task["answered"] = time.time()
            self._answered.notify_all()
            return _public(task)
