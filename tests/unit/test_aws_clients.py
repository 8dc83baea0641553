"""Handlers' module-scope clients are made on first use, once, and then behave as the boto3 client."""

from __future__ import annotations

import threading

import boto3
import pytest

from loupe import aws_clients
from loupe.ledger import Ledger


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real_client = boto3.client

    def client(service: str, *args, **kwargs):
        made.append(service)
        return real_client(service, *args, region_name="us-east-1", **kwargs)

    monkeypatch.setattr(boto3, "client", client)
    return made


def test_a_lazy_client_is_made_on_first_use_only_once(counted: list[str]) -> None:
    s3 = aws_clients.lazy_client("s3")
    assert counted == []  # an event that never touches S3 never pays for the client
    assert s3.meta.service_model.service_name == "s3"
    assert s3.meta.region_name == "us-east-1"
    s3.meta  # noqa: B018 - a second use reuses the same client
    assert counted == ["s3"]
    assert "made" in repr(s3)


def test_threads_racing_for_the_first_use_share_one_client(counted: list[str]) -> None:
    sns = aws_clients.lazy_client("sns")
    seen: list[int] = []
    workers = [threading.Thread(target=lambda: seen.append(id(sns._get()))) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert counted == ["sns"] and len(set(seen)) == 1


def test_the_ledger_by_name_makes_no_dynamodb_resource_until_used(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    monkeypatch.setattr(boto3, "resource", lambda service, **kw: made.append(service) or _FakeResource())
    ledger = Ledger.from_name("loupe-ledger")
    assert made == []
    assert ledger.table.name == "loupe-ledger"
    assert made == ["dynamodb"]


class _FakeResource:
    def Table(self, name: str):  # noqa: N802 - boto3's name
        return type("T", (), {"name": name})()
