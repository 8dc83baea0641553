"""The registry as the approver sees it: a shadowed package's field agreement beside the gate's numbers, and the same
numbers written into its metadata by the decision (within CustomerMetadataProperties' limits)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from loupe.console_api import models
from loupe.edge_metrics import field_agreement_metadata

GROUP = "loupe-models"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/loupe-models/{}".format


class Registry:
    def __init__(self, packages: dict[int, dict[str, Any]]) -> None:
        self.packages = packages
        self.updates: list[dict[str, Any]] = []

    def list_model_packages(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "ModelPackageSummaryList": [{"ModelPackageArn": ARN(v), "ModelPackageVersion": v} for v in self.packages]
        }

    def describe_model_package(self, **kwargs: Any) -> dict[str, Any]:
        version = int(kwargs["ModelPackageName"].rsplit("/", 1)[-1])
        return {
            "ModelPackageArn": ARN(version),
            "ModelPackageVersion": version,
            "ModelPackageGroupName": GROUP,
            "ModelPackageStatus": "Completed",
            **self.packages[version],
        }

    def update_model_package(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ModelPackageArn": kwargs["ModelPackageArn"]}


class Evidence:
    """The deployments table's shadow items: package 2 ran as candidate ``cand-2`` on two devices."""

    def __init__(self) -> None:
        self.shadows = {ARN(2): {"model_version": "cand-2", "thing_group": "fleet"}}
        self.counters = {
            "cand-2": {
                "loupe-device-a": {"frames": 30, "production_frames": 150, "verdict_ok_ok": 20, "verdict_ng_ng": 6},
                "loupe-device-b": {"frames": 10, "production_frames": 50, "verdict_ok_ng": 3, "verdict_ng_ok": 1},
            }
        }
        for device in self.counters["cand-2"].values():
            device.update({"boxes_production": 8, "boxes_shadow": 10, "boxes_matched": 6, "errors": 0})

    def package_shadow(self, package_arn: str) -> dict[str, Any] | None:
        return self.shadows.get(package_arn)

    def shadow_totals(self, version: str) -> dict[str, Any]:
        devices = self.counters.get(version, {})
        totals: dict[str, int] = {}
        for own in devices.values():
            for k, v in own.items():
                totals[k] = totals.get(k, 0) + v
        ends = {"loupe-device-a": "2026-12-06T10:00:05Z", "loupe-device-b": "2026-12-06T10:00:09Z"}
        return {
            "version": version,
            "totals": totals,
            "devices": {t: {**own, "last_window_end": ends[t]} for t, own in devices.items()},
        }


def registry() -> Registry:
    return Registry(
        {
            1: {"ModelApprovalStatus": "Approved"},
            2: {
                "ModelApprovalStatus": "PendingManualApproval",
                "CustomerMetadataProperties": {"gate": "passed", "test_map50": "0.81", "package_sha256": "a" * 64},
            },
        }
    )


def test_the_listing_shows_field_agreement_beside_the_gate() -> None:
    listed = {p["version"]: p for p in models.list_packages(registry(), GROUP, store=Evidence())}
    assert listed[1]["field_agreement"] is None  # never ran beside production
    field = listed[2]["field_agreement"]
    assert listed[2]["gate"] == {"test_map50": "0.81"}
    assert field["model_version"] == "cand-2" and field["devices"] == 2 and field["frames"] == 40
    assert field["production_frames"] == 200
    # frame-weighted over the fleet: (20 + 6) agreed of 40, not the mean of 26/30 and 0/10
    assert field["verdict_agreement"] == 26 / 40
    assert field["false_alarms"] == 3 and field["missed_defects"] == 1
    assert field["box_recall"] == 12 / 16 and field["box_precision"] == 12 / 20
    assert field["last_window_end"] == "2026-12-06T10:00:09Z"


def test_without_the_table_the_listing_is_as_before() -> None:
    assert all("field_agreement" not in p for p in models.list_packages(registry(), GROUP))


def test_a_decision_writes_the_field_agreement_of_that_moment_into_the_metadata() -> None:
    sm = registry()
    out = models.decide(sm, GROUP, "2", models.Decision(decision="Approved"), "ann@example.com", store=Evidence())
    (update,) = sm.updates
    assert update["ModelApprovalStatus"] == "Approved"
    meta = update["CustomerMetadataProperties"]
    assert meta["field_shadow_frames"] == "40" and meta["field_shadow_devices"] == "2"
    assert meta["field_verdict_agreement"] == "0.6500" and meta["field_false_alarms"] == "3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta[models.FIELD_EVIDENCE_AT])
    for key, value in meta.items():  # what UpdateModelPackage accepts
        assert models.metadata_text(key, 128) and models.metadata_text(value, 256), (key, value)
    assert out["field_agreement"]["frames"] == 40 and out["recorded_metadata"].items() <= meta.items()
    # sent with the package's own entries: nothing registered is lost whatever the service does with the map
    assert meta["package_sha256"] == "a" * 64 and meta["gate"] == "passed" and len(meta) <= models.METADATA_MAX_ENTRIES


def test_a_package_that_never_ran_beside_production_records_that_it_had_no_field_evidence() -> None:
    sm = registry()
    models.decide(sm, GROUP, "1", models.Decision(decision="Rejected"), "ann@example.com", store=Evidence())
    meta = sm.updates[0]["CustomerMetadataProperties"]
    assert meta["field_shadow_frames"] == "0" and "field_verdict_agreement" not in meta  # no ratio of nothing


def test_the_evidence_never_pushes_the_metadata_past_fifty_entries() -> None:
    summary = Evidence().shadow_totals("cand-2")
    full = {f"k{i}": "v" for i in range(45)}
    meta = models.evidence_metadata(summary, full, now=datetime(2026, 12, 6, tzinfo=UTC))
    assert len(full) + len(meta) == models.METADATA_MAX_ENTRIES
    assert list(meta) == list(field_agreement_metadata(summary))[:5]  # the counts first, ratios dropped last
    # keys the package already has are updated in place and take no new room
    existing = {**{f"k{i}": "v" for i in range(39)}, **dict.fromkeys(field_agreement_metadata(summary), "x")}
    again = models.evidence_metadata(summary, existing)
    assert len(again) == len(field_agreement_metadata(summary)) + 1  # every count, every ratio, and the time
    assert len({**existing, **again}) == models.METADATA_MAX_ENTRIES


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0.9500", True),
        ("2026-12-06T10:00:00Z", True),
        ("field_shadow_frames", True),
        ("Zürich 5", True),
        ("", False),
        ("a\nb", False),
        ("50%", False),
        ("x" * 257, False),
        ('{"a": 1}', False),
    ],
)
def test_metadata_text_follows_sagemakers_pattern(text: str, ok: bool) -> None:
    assert models.metadata_text(text, 256) is ok
