"""Hot swap: follow the model component, verify a new model in the background, swap it in between frames.

The inference loop reads :attr:`ModelManager.current` once per frame; replacing that reference is atomic, so a
swap never stalls or drops a frame.  A model that fails (missing file, digest mismatch, unloadable, bad smoke
output) is never swapped in: the old model keeps serving and the failure is reported through ``on_failure``.
After each successful load the model folder is copied to ``<workDir>/models/last-good`` so that a restart with a
broken model still has something to serve.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loupe_edge.model import (
    CARD_FILE,
    MODEL_FILES,
    LoadedModel,
    ModelError,
    ModelSettings,
    load_model,
    read_pointer,
    resolve_model_dir,
)

log = logging.getLogger(__name__)

VERSION_FILE = "loupe_version.txt"  # the deployment's version of the last-good copy


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from: an explicit folder, or the pointer file the model component writes."""

    folder: Path | None = None
    pointer: Path | None = None

    def resolve(self) -> tuple[Path, str | None, dict[str, str]]:
        if self.folder is not None:
            return self.folder, None, {}
        if self.pointer is None:
            raise ModelError("no model configured (set model.dir or model.pointerFile)")
        return read_pointer(self.pointer)

    def fingerprint(self) -> tuple:
        """Cheap identity of what the source currently names (stat calls only)."""
        folder, version, digests = self.resolve()
        parts: list = [str(folder), version, tuple(sorted(digests.items()))]
        try:
            real = resolve_model_dir(folder)
        except ModelError:
            real = folder
        for name in (CARD_FILE, *MODEL_FILES.values()):
            try:
                st = (real / name).stat()
                parts.append((name, st.st_size, st.st_mtime_ns))
            except OSError:
                parts.append((name, None))
        return tuple(parts)


class ModelManager:
    def __init__(
        self,
        source: ModelSource,
        settings: ModelSettings,
        state_dir: Path | None = None,
        on_swap: Callable[[LoadedModel | None, LoadedModel], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        loader: Callable[..., LoadedModel] = load_model,
    ) -> None:
        self.source = source
        self.settings = settings
        self.state_dir = state_dir
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.loader = loader
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.swaps = 0
        self._fingerprint: tuple | None = None
        self._failed: tuple | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def last_good_dir(self) -> Path | None:
        return self.state_dir / "models" / "last-good" if self.state_dir else None

    def check(self, force: bool = False) -> bool:
        """Load and swap in the model the source names if it changed. Returns True when a swap happened."""
        with self._lock:
            try:
                fp = self.source.fingerprint()
            except ModelError as exc:
                return self._fail(str(exc), None)
            if not force and fp == self._fingerprint:
                return False
            if not force and fp == self._failed:
                return False  # already reported; wait for the source to change
            folder, version, digests = self.source.resolve()
            label = f"model {version}" if version else f"model in {folder}"
            try:
                model = self.loader(folder, self.settings, expected_version=version, expected_digests=digests)
            except ModelError as exc:
                return self._fail(f"{label}: {exc}", fp)
            except Exception as exc:  # anything else a broken model can raise
                return self._fail(f"{label}: unexpected error while loading: {exc!r}", fp)
            old = self.current
            self.current = model  # the swap: one reference assignment, read once per frame by the loop
            self._fingerprint = fp
            self._failed = None
            self.last_error = None
            self.swaps += 1
            log.info("serving model %s%s", model.version, f" (was {old.version})" if old is not None else "")
            self._save_last_good(model)
            if self.on_swap:
                self.on_swap(old, model)
            return True

    def _fail(self, reason: str, fp: tuple | None) -> bool:
        self._failed = fp
        self.last_error = reason
        if self.current is not None:
            log.error("new model rejected, still serving %s: %s", self.current.version, reason)
        else:
            log.error("no model can be served: %s", reason)
            self._load_last_good()
        if self.on_failure:
            self.on_failure(reason)
        return False

    def _save_last_good(self, model: LoadedModel) -> None:
        target = self.last_good_dir
        if target is None:
            return
        src = model.path.parent
        if src.resolve() == target.resolve():
            return
        tmp = target.with_name("last-good.tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for name in (CARD_FILE, *MODEL_FILES.values()):
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
            (tmp / VERSION_FILE).write_text(model.version)
            old = target.with_name("last-good.old")
            shutil.rmtree(old, ignore_errors=True)
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            log.warning("could not keep a last-good copy of model %s: %s", model.version, exc)

    def _load_last_good(self) -> None:
        target = self.last_good_dir
        if target is None or not (target / CARD_FILE).is_file():
            return
        version_file = target / VERSION_FILE
        version = version_file.read_text().strip() if version_file.is_file() else None
        try:
            self.current = self.loader(target, self.settings, expected_version=version)
            log.warning("serving last known good model %s until a valid model arrives", self.current.version)
        except ModelError as exc:
            log.error("last known good model is unusable too: %s", exc)

    # -- background watcher ---------------------------------------------------------------------------
    def notify(self, why: str = "") -> None:
        if why:
            log.info("model re-check requested: %s", why)
        self._wake.set()

    def start(self, poll_seconds: float) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self._wake.wait(poll_seconds)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.check()
                except Exception:
                    log.exception("model watcher failed; will retry")

        self._thread = threading.Thread(target=run, name="loupe-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)
