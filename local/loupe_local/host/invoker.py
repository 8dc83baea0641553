"""In-process Lambda: the functions of template.yaml, called with their event and a Lambda context.

moto runs Lambda code only in Docker; the local runtime instead imports ``functions/<name>/app.py`` (with the
layer's code on ``sys.path``, as ``/opt/python`` is in Lambda) and calls the handler with the function's
environment from the template. Calls are serialised: handlers read their configuration from ``os.environ``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3

log = logging.getLogger("loupe_local.lambda")


@dataclass
class RegisteredFunction:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: int = 120
    memory: int = 512
    module: ModuleType | None = None
    invocations: int = 0
    errors: int = 0
    last_error: str = ""
    # the function's execution role session (AWS_ACCESS_KEY_ID/SECRET/SESSION_TOKEN), when IAM is checked locally
    role_env: dict[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)


class LambdaContext:
    def __init__(self, fn: RegisteredFunction) -> None:
        self.function_name = fn.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = fn.arn
        self.memory_limit_in_mb = fn.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{fn.name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + fn.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("errorMessage", ""))
        self.payload = payload


class _Capture:
    """What one invocation printed: kept for its EMF metrics, and appended to the function's log file."""

    def __init__(self, log_file: Any) -> None:
        self.log_file = log_file
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> None:
        if self.log_file is not None:
            self.log_file.write(text)
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.lines.extend(done)

    def finish(self) -> list[str]:
        if self.log_file is not None:
            self.log_file.flush()
        return [*self.lines, self._partial]


_CURRENT = threading.local()


class FunctionStdout(io.TextIOBase):
    """Process stdout while the local AWS runs: in a thread that is running a handler, output goes to that
    function's log (``<state_dir>/logs/<function>.log``, the local CloudWatch Logs) and is scanned for metrics;
    anywhere else it goes to the real stdout. Loggers created at import keep this object, so it works for them too."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, text: str) -> int:
        capture = getattr(_CURRENT, "capture", None)
        if capture is None:
            return self.real.write(text)
        capture.write(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.real, "encoding", "utf-8")

    @staticmethod
    @contextlib.contextmanager
    def capturing(capture: _Capture) -> Any:
        """Route this thread's stdout to ``capture`` (every FunctionStdout shares the routing)."""
        if not isinstance(sys.stdout, FunctionStdout):
            sys.stdout = FunctionStdout(sys.stdout)  # someone (a test runner) swapped stdout since
        previous = getattr(_CURRENT, "capture", None)
        _CURRENT.capture = capture
        try:
            yield capture
        finally:
            _CURRENT.capture = previous


def emf_records(lines: list[str]) -> list[dict[str, Any]]:
    """The CloudWatch embedded-metric-format records among a function's output lines."""
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith('{"_aws"') or (line.startswith("{") and '"CloudWatchMetrics"' in line):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record.get("_aws"), dict):
                out.append(record)
    return out


class Invoker:
    """Registry of the template's functions and the one way they are called locally.

    As in Lambda, what a handler prints in the embedded metric format becomes CloudWatch metrics: ``emf_sink``
    receives each EMF record (the runtime forwards them to the local CloudWatch).
    """

    def __init__(
        self,
        base_env: dict[str, str],
        layer_dirs: list[Path],
        emf_sink: Callable[[dict[str, Any]], None] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._logs: dict[str, Any] = {}
        self.base_env = dict(base_env)
        self.layer_dirs = [str(p) for p in layer_dirs]
        self.functions: dict[str, RegisteredFunction] = {}
        self._env_lock = threading.RLock()
        self._function_keys: set[str] = set()
        self.emf_sink = emf_sink

    def register(self, fn: RegisteredFunction) -> None:
        self.functions[fn.name] = fn
        self._function_keys |= set(fn.environment) - set(self.base_env)

    def find(self, name_or_arn: str) -> RegisteredFunction | None:
        name = name_or_arn.split(":function:", 1)[-1].split(":", 1)[0]
        if name in self.functions:
            return self.functions[name]
        for fn in self.functions.values():
            if fn.logical_id == name:
                return fn
        return None

    def _log_file(self, fn: RegisteredFunction) -> Any:
        if self.log_dir is None:
            return None
        if fn.logical_id not in self._logs:
            self._logs[fn.logical_id] = open(self.log_dir / f"{fn.logical_id}.log", "a")  # noqa: SIM115 - kept open
        return self._logs[fn.logical_id]

    def close(self) -> None:
        for handle in self._logs.values():
            handle.close()
        self._logs.clear()

    def _environment(self, fn: RegisteredFunction) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(fn.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": fn.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "LAMBDA_TASK_ROOT": str(fn.code_dir),
            }
        )
        return env

    def _load(self, fn: RegisteredFunction) -> ModuleType:
        if fn.module is not None:
            return fn.module
        module_name, _, _ = fn.handler.rpartition(".")
        path = fn.code_dir / (module_name.replace(".", "/") + ".py")
        if not path.is_file():
            raise FileNotFoundError(f"{fn.logical_id}: handler module {path} does not exist")
        for layer in self.layer_dirs:
            if layer not in sys.path:
                sys.path.insert(0, layer)
        spec = importlib.util.spec_from_file_location(f"loupe_fn_{fn.logical_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn.module = module
        return module

    def invoke(self, name_or_arn: str, event: Any) -> Any:
        """Run the handler; returns its result, raises FunctionError with Lambda's error payload."""
        fn = self.find(name_or_arn)
        if fn is None:
            raise FunctionError(
                {"errorType": "ResourceNotFoundException", "errorMessage": f"no function {name_or_arn}"}
            )
        with self._env_lock:
            env = self._environment(fn)
            # Never remove a key (other threads read os.environ concurrently): a variable of another function
            # that this one does not declare is blanked, which loupe.settings reads as "not set" — as in Lambda.
            for key in self._function_keys - env.keys():
                os.environ[key] = ""
            os.environ.update(env)
            if fn.role_env:
                # as Lambda does: the execution role's session in the environment; boto3's default session caches
                # the credential it first read, so the handler's clients made now must not find another's
                os.environ.update(fn.role_env)
                boto3.DEFAULT_SESSION = None
            fn.invocations += 1
            started = time.monotonic()
            capture = _Capture(self._log_file(fn))
            try:
                with FunctionStdout.capturing(capture):
                    module = self._load(fn)
                    handler = getattr(module, fn.handler.rpartition(".")[2])
                    result = handler(json.loads(json.dumps(event)), LambdaContext(fn))
                return json.loads(json.dumps(result, default=str)) if result is not None else None
            except Exception as exc:
                fn.errors += 1
                fn.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s failed: %s", fn.logical_id, fn.last_error)
                raise FunctionError(
                    {
                        "errorType": type(exc).__name__,
                        "errorMessage": str(exc),
                        "stackTrace": traceback.format_exception(exc)[-6:],
                    }
                ) from exc
            finally:
                if fn.role_env:
                    # back to the run's key for everyone else in the process (the runtime, the tests); a variable
                    # the run's key has not (AWS_SESSION_TOKEN) is blanked, never removed: another thread iterating
                    # os.environ (botocore reads the proxy variables that way) fails with KeyError on a key removed
                    # under it - seen in a clean-clone `make demo`. botocore reads an empty token as none.
                    for key in fn.role_env:
                        os.environ[key] = self.base_env.get(key, "")
                    boto3.DEFAULT_SESSION = None
                log.debug("%s took %.3fs", fn.logical_id, time.monotonic() - started)
                if self.emf_sink is not None:
                    for record in emf_records(capture.finish()):
                        try:
                            self.emf_sink(record)
                        except Exception:
                            log.exception("could not forward metrics of %s", fn.logical_id)
