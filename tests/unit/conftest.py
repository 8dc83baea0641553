"""Unit tests never reach the session's local AWS.

The session's ``local_aws`` (started by an integration test earlier in the same run) exports ``AWS_ENDPOINT_URL``
for its in-process handlers; a unit test's ``mock_aws`` client would follow it to the running local AWS instead of
moto's in-process mock, sharing its state — and the local AWS refuses the mock's dummy key.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_local_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
