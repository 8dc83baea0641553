"""``.loupe/local.json``: where the running local AWS is, and the physical names of the template's resources."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(".loupe")


def state_dir(root: Path | None = None) -> Path:
    return Path(os.environ.get("LOUPE_STATE_DIR") or (Path(root or Path.cwd()) / DEFAULT_DIR))


def state_file(root: Path | None = None) -> Path:
    return state_dir(root) / "local.json"


def load(root: Path | None = None) -> dict[str, Any]:
    path = state_file(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: start the local AWS with `loupe local up --detach`")
    return json.loads(path.read_text())


def load_at(path: str | Path | None, otherwise: str) -> tuple[dict[str, Any], Path]:
    """The state at a CLI's ``--state`` (local.json or its folder; default: this folder's), with the file's path.
    Absent: ``SystemExit`` naming the file, how to start the local AWS, and ``otherwise`` (the command's other way)."""
    state_path = Path(path) if path else state_file()
    if state_path.is_dir():
        state_path = state_path / "local.json"
    if not state_path.is_file():
        raise SystemExit(f"{state_path} not found: start the local AWS (`loupe local up --detach`), {otherwise}")
    return json.loads(state_path.read_text()), state_path


def write(data: dict[str, Any], root: Path | None = None) -> Path:
    """local.json holds the run's secret credential: owner-only (the folder 0700, the file 0600)."""
    from loupe_local.private_files import write_private

    return write_private(state_file(root), json.dumps(data, indent=2, default=str))


def physical(state: dict[str, Any], logical_id: str) -> str:
    return state["resources"][logical_id]["physical"]


def client_env(state: dict[str, Any]) -> dict[str, str]:
    """Environment variables that point any AWS SDK or the aws CLI at the local AWS, with the run's credential
    (the local AWS refuses requests not signed with it)."""
    from loupe_local.local_auth import RunCredentials

    return {
        "AWS_ENDPOINT_URL": state["endpoint"],
        **RunCredentials.from_state(state).env(),
        "AWS_DEFAULT_REGION": state["region"],
        "AWS_REGION": state["region"],
    }
