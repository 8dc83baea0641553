"""``.loupe/`` holds the run's secret credential: the folder is owner-only (0700), secret-bearing files 0600."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest

from loupe_local import state as state_mod
from loupe_local.host.mqtt_broker import Broker, mosquitto_password_line
from loupe_local.local_auth import RunCredentials, mqtt_password
from loupe_local.private_files import private_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_local_json_is_written_owner_only_even_over_an_older_open_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir = tmp_path / ".loupe"
    state_dir.mkdir(mode=0o755)
    state_dir.chmod(0o755)  # a state dir left by an older version, readable by every local user
    (state_dir / "local.json").write_text("{}")
    (state_dir / "local.json").chmod(0o644)
    monkeypatch.setenv("LOUPE_STATE_DIR", str(state_dir))
    creds = RunCredentials.generate()
    path = state_mod.write({"endpoint": "http://127.0.0.1:1", "region": "us-east-1", "credentials": creds.as_state()})
    assert path == state_dir / "local.json"
    assert mode(state_dir) == 0o700
    assert mode(path) == 0o600
    assert not list(state_dir.glob("*.tmp")) and not list(state_dir.glob(".*.tmp"))
    env = state_mod.client_env(json.loads(path.read_text()))
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (creds.access_key_id, creds.secret_access_key)


def test_a_shared_folder_is_refused_as_state_dir_instead_of_being_closed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(ValueError, match="shared folder"):
        private_dir(shared)
    assert mode(shared) == 0o1777  # left as it was


def test_a_state_without_credentials_says_how_to_get_them() -> None:
    with pytest.raises(KeyError, match="restart the local AWS"):
        state_mod.client_env({"endpoint": "http://127.0.0.1:1", "region": "us-east-1"})


def test_the_brokers_folder_is_owner_only_and_its_password_derived(tmp_path: Path) -> None:
    creds = RunCredentials.generate()
    broker = Broker(implementation="amqtt", state_dir=tmp_path, credentials=creds)
    assert broker.password == mqtt_password(creds) and creds.secret_access_key not in broker.password
    assert mode(tmp_path / "mqtt") == 0o700


def test_mosquittos_password_line_is_a_salted_pbkdf2_hash_not_the_password() -> None:
    """The ``$7$`` line ``mosquitto_passwd`` writes: PBKDF2-HMAC-SHA512, 101 iterations, 12 bytes of salt."""
    line = mosquitto_password_line("loupe-local", "s3cret")
    user, _, hashed = line.strip().partition(":")
    _, kind, iterations, salt, digest = hashed.split("$")
    assert (user, kind, iterations) == ("loupe-local", "7", "101") and "s3cret" not in line
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", base64.b64decode(salt), 101)
    assert base64.b64decode(digest) == expected and len(base64.b64decode(salt)) == 12
    assert mosquitto_password_line("loupe-local", "s3cret") != line  # a fresh salt each time


def test_each_run_gets_its_own_credential() -> None:
    first, second = RunCredentials.generate(), RunCredentials.generate()
    assert first != second
    assert len(first.access_key_id) == 20 and len(first.secret_access_key) == 40
    assert mqtt_password(first) != mqtt_password(second)
