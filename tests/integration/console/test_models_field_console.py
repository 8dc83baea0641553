"""The Models page's field agreement, in headless Chromium against the session's local AWS: a package that ran beside
production (its shadow items in the deployments table, as the edge health handler adds them) shows its agreement
with production in its row, next to the gate's numbers; one that never ran says so; approving it from the page
writes the agreement of that moment into the package's metadata."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.deploy_packages import register_package

from loupe.deployment.store import DeploymentsStore

pytestmark = pytest.mark.integration


def store(rt: Any) -> DeploymentsStore:
    import boto3

    resource = boto3.resource(
        "dynamodb",
        endpoint_url=rt.endpoint,
        region_name=rt.region,
        aws_access_key_id=rt.credentials.access_key_id,
        aws_secret_access_key=rt.credentials.secret_access_key,
    )
    return DeploymentsStore(resource.Table(rt.physical("DeploymentsTable")))


def window(ok_ok: int, ok_ng: int, ng_ok: int) -> dict[str, int]:
    frames = ok_ok + ok_ng + ng_ok
    return {
        "production_frames": 5 * frames,
        "frames": frames,
        "errors": 0,
        "verdict_ok_ok": ok_ok,
        "verdict_ok_ng": ok_ng,
        "verdict_ng_ok": ng_ok,
        "verdict_ng_ng": 0,
        "boxes_production": ng_ok,
        "boxes_shadow": ok_ng,
        "boxes_matched": 0,
        "uncertain_production": 0,
        "uncertain_shadow": 0,
    }


def test_a_shadowed_package_shows_its_field_agreement_and_approval_records_it(
    local_aws: Any, console: str, page: Any
) -> None:
    from playwright.sync_api import expect

    tag = uuid.uuid4().hex[:6]
    shadowed = register_package(local_aws, model_version=f"cand-{tag}", metadata={"gate": "passed"})
    never = register_package(local_aws, model_version=f"other-{tag}", metadata={"gate": "passed"})
    table = store(local_aws)
    table.mark_shadow("fleet", {"arn": shadowed["arn"], "version": 1}, f"cand-{tag}", "dep-1", "run-1")
    table.add_shadow_window(f"cand-{tag}", "loupe-device-a", "2026-12-06T10:00:01Z", window(36, 3, 1))
    table.add_shadow_window(f"cand-{tag}", "loupe-device-b", "2026-12-06T10:00:02Z", window(40, 0, 0))

    page.goto(f"{console}/models")
    version = shadowed["arn"].rsplit("/", 1)[-1]
    cell = page.locator(f'#packages tr[data-version="{version}"] [data-field="field-agreement"]')
    expect(cell).to_contain_text("95.0 % of 80 frames · 2 devices")  # (36 + 40) of 80, frame-weighted
    expect(cell).to_contain_text("3 false alarms · 1 missed · 0 errors")
    other = page.locator(
        f'#packages tr[data-version="{never["arn"].rsplit("/", 1)[-1]}"] [data-field="field-agreement"]'
    )
    expect(other).to_have_text("not shadowed")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f'#packages tr[data-version="{version}"] [data-action="approve"]').click()
    # the page's answer comes once the approval (and the local registry's bookkeeping around it) is done
    expect(page.locator("#msg")).to_contain_text(f"model package {version} Approved", timeout=30_000)
    desc = local_aws.client("sagemaker").describe_model_package(ModelPackageName=shadowed["arn"])
    assert desc["ModelApprovalStatus"] == "Approved"
    meta = desc["CustomerMetadataProperties"]
    assert meta["field_shadow_frames"] == "80" and meta["field_verdict_agreement"] == "0.9500"
    assert meta["field_false_alarms"] == "3" and meta["field_missed_defects"] == "1"
    assert meta["package_sha256"] == shadowed_digest(shadowed)  # the registered digests stay


def shadowed_digest(package: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(package["archive"]).hexdigest()
