"""The one envelope of the state machines' task functions, and its dispatch.

Every Task state that calls a Loupe task function sends ``{"task": <name>, "input": <the run's state>,
"token": <task token, only for .waitForTaskToken states>}``. The function maps the name to one domain call and
returns that call's result (the ASL merges it with ResultSelector/ResultPath). An unknown task, a missing input or
a waiting task without a token fail loudly: they are wiring mistakes, never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TaskEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    task: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    token: str | None = None

    def require_token(self) -> str:
        if not self.token:
            raise TaskError(f"task {self.task!r} waits for a task token (.waitForTaskToken) but got none")
        return self.token


class TaskError(ValueError):
    """The envelope names no known task, or lacks what the task needs."""


Task = Callable[[TaskEnvelope], dict[str, Any]]


def dispatch(envelope: TaskEnvelope, tasks: Mapping[str, Task]) -> dict[str, Any]:
    """Run the envelope's task; :class:`TaskError` names the known ones when it is not among them."""
    run = tasks.get(envelope.task)
    if run is None:
        raise TaskError(f"unknown task {envelope.task!r}; expected one of {sorted(tasks)}")
    return run(envelope)
