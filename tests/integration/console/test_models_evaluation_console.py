"""The Models page's evaluation, in headless Chromium against the session's local AWS: for a package registered
with its evaluation output in S3 (evaluation.json, details.json and samples/ side by side, as the training
pipeline's evaluation step writes them), the page shows the challenger's mAP50 with its 90% interval, the paired
difference with the champion with its interval, the gate's bar, and sample test frames: the real image served from
S3 with the ground-truth, predicted and champion boxes drawn over it. Packages evaluated before those fields existed
say "not measured"; a sample image missing from S3 is reported, not replaced."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from support import image_samples as samples
from support.console import fetch
from support.deploy_packages import register_package

pytestmark = pytest.mark.integration

W, H = 450, 300
TRUTH = [40, 50, 200, 120]
PREDICTED = [44, 52, 196, 124]
CHAMPION = [250, 150, 330, 210]


def evaluation_files(details: dict[str, Any], images: dict[str, bytes]) -> dict[str, bytes]:
    statistics = {"object_detection_metrics": {"map50": {"value": details["fp32"]["map50"]}}}
    return {
        "evaluation.json": json.dumps(statistics).encode(),
        "details.json": json.dumps(details).encode(),
        **{f"samples/{name}": data for name, data in images.items()},
    }


def new_format(champion_arn: str) -> dict[str, Any]:
    spread = {"map50": {"mean": 0.70, "std": 0.05, "ci90": [0.62, 0.79]}, "bootstrap": 1000, "images": 31}
    return {
        "fp32": {"map50": 0.71, "map50_95": 0.33, "images": 31, "spread": spread},
        "int8": {"kept": False, "reason": "no INT8 candidate"},
        "champion": {"present": True, "arn": champion_arn, "map50": 0.65, "map50_95": 0.3},
        "comparison": {
            "difference": 0.06,
            "ci90": [-0.01, 0.13],
            "p_challenger_better": 0.93,
            "champion_bar": 0.70,  # the champion's 0.65 + (difference - its 5th percentile) - margin
            "margin": 0.02,
        },
        "samples": [
            {
                "image": "samples/tag-1.jpg",
                "width": W,
                "height": H,
                "conf_threshold": 0.25,
                "truth": [TRUTH],
                "predictions": [{"box": PREDICTED, "conf": 0.81}],
                "champion_predictions": [{"box": CHAMPION, "conf": 0.42}],
            },
            {  # listed by details.json but not in S3: the page says so
                "image": "samples/gone.jpg",
                "width": W,
                "height": H,
                "conf_threshold": 0.25,
                "truth": [],
                "predictions": [],
            },
        ],
    }


def open_package(page: Any, console: str, version: str) -> None:
    page.goto(f"{console}/models")
    page.locator(f'#packages tr[data-version="{version}"]').click()


def test_the_spread_and_sample_frames_with_boxes_over_their_pixels(local_aws: Any, console: str, page: Any) -> None:
    from playwright.sync_api import expect

    champion = register_package(local_aws, model_version=f"eval-champ-{uuid.uuid4().hex[:6]}")
    image = samples.jpeg(W, H, seed=uuid.uuid4().int % 100_000)
    files = evaluation_files(new_format(champion["arn"]), {"tag-1.jpg": image})
    package = register_package(local_aws, model_version=f"eval-new-{uuid.uuid4().hex[:6]}", evaluation=files)
    version = package["arn"].rsplit("/", 1)[-1]

    open_package(page, console, version)
    spread = page.locator("#spread")
    expect(page.locator("#evaluation-version")).to_have_text(f"version {version}")
    expect(spread.locator('[data-field="challenger-map50"]')).to_have_text("0.7100")
    expect(spread.locator('[data-field="challenger-ci90"]')).to_contain_text("90% interval [0.6200, 0.7900]")
    expect(spread.locator('[data-field="champion"]')).to_contain_text("mAP50 0.6500")
    expect(spread.locator('[data-field="difference"]')).to_have_text("+0.0600")
    expect(spread.locator('[data-field="difference-ci90"]')).to_contain_text("[−0.0100, +0.1300]")
    expect(spread.locator('[data-field="champion-bar"]')).to_have_text("0.7000")
    expect(spread.locator('svg[data-chart="map50"] .mark.bar')).to_have_count(1)
    expect(spread.locator('svg[data-chart="difference"] .ci')).to_have_count(3)
    row = page.locator(f'#packages tr[data-version="{version}"]')
    expect(row).to_contain_text("[−0.010, +0.130]")

    figure = page.locator('#samples figure[data-sample="samples/tag-1.jpg"]')
    img = figure.locator("img")
    expect(img).to_have_count(1)
    page.wait_for_function("img => img.complete && img.naturalWidth === 450", arg=img.element_handle())
    src = img.get_attribute("src")
    status, content_type, body = fetch(f"{console}{src}")
    assert status == 200 and content_type == "image/jpeg" and body == image, (status, content_type, len(body))
    for kind, box in (("truth", TRUTH), ("predicted", PREDICTED), ("champion", CHAMPION)):
        rect = figure.locator(f'rect[data-kind="{kind}"]')
        expect(rect).to_have_count(1)
        drawn = [float(rect.get_attribute(a)) for a in ("x", "y", "width", "height")]
        assert drawn == [box[0], box[1], box[2] - box[0], box[3] - box[1]], (kind, drawn)
    expect(figure.locator("text.label.predicted")).to_have_text("0.81")
    # the boxes lie over the image: the overlay covers the picture exactly
    over, under = figure.locator(".shot svg").bounding_box(), img.bounding_box()
    assert all(abs(over[k] - under[k]) < 1 for k in ("x", "y", "width", "height")), (over, under)

    missing = page.locator('#samples figure[data-sample="samples/gone.jpg"]')
    expect(missing.locator("[data-error]")).to_contain_text("does not exist")

    # only sample images of the evaluation are served
    assert fetch(f"{console}/api/models/{version}/evaluation/details.json")[0] == 400
    assert fetch(f"{console}/api/models/{version}/evaluation/samples/..%2Fdetails.json")[0] in (400, 404)
    assert fetch(f"{console}/api/models/999999/evaluation/samples/tag-1.jpg")[0] == 404


def test_older_evaluations_and_unevaluated_packages_say_not_measured(local_aws: Any, console: str, page: Any) -> None:
    from playwright.sync_api import expect

    old = {"fp32": {"map50": 0.58, "map50_95": 0.21, "images": 12}, "int8": {}, "champion": {"present": False}}
    older = register_package(
        local_aws, model_version=f"eval-old-{uuid.uuid4().hex[:6]}", evaluation=evaluation_files(old, {})
    )
    bare = register_package(local_aws, model_version=f"eval-none-{uuid.uuid4().hex[:6]}")

    open_package(page, console, older["arn"].rsplit("/", 1)[-1])
    spread = page.locator("#spread")
    expect(spread.locator('[data-field="challenger-map50"]')).to_have_text("0.5800")
    expect(spread.locator('[data-field="challenger-ci90"]')).to_contain_text("spread not measured")
    expect(spread.locator('[data-field="champion"]')).to_contain_text("No champion was compared")
    expect(page.locator('#samples [data-field="no-samples"]')).to_contain_text("not measured")
    expect(page.locator("#samples img")).to_have_count(0)

    open_package(page, console, bare["arn"].rsplit("/", 1)[-1])
    expect(spread.locator('[data-field="not-measured"]')).to_contain_text("Not measured")
    expect(page.locator("#samples img")).to_have_count(0)


def test_a_model_the_gate_refused_shows_the_refusal_before_anyone_approves_it(
    local_aws: Any, console: str, page: Any
) -> None:
    """The pipeline registers a model its gate refused as PendingManualApproval with the reason (issue 22): the
    Models page shows that reason in the row a person approves from, and the training's diagnosis as its title."""
    from playwright.sync_api import expect

    reason = "Gate refused the model: test mAP50 0.006 must be >= MinTestMap50 0.5 (dataset 1 )."
    diagnosis = "training stopped early at epoch 29 of 80. Try: raise patience."
    refused = register_package(
        local_aws,
        model_version=f"refused-{uuid.uuid4().hex[:6]}",
        metadata={"gate": "refused", "gate_refusal": reason, "training_diagnosis": diagnosis},
    )
    passed = register_package(local_aws, model_version=f"passed-{uuid.uuid4().hex[:6]}", metadata={"gate": "passed"})
    page.goto(f"{console}/models")
    row = page.locator(f'#packages tr[data-version="{refused["arn"].rsplit("/", 1)[-1]}"]')
    badge = row.locator('[data-field="gate-refused"]')
    expect(badge).to_have_text(f"refused by the gate: {reason}")
    expect(badge).to_have_attribute("title", diagnosis)
    other = page.locator(f'#packages tr[data-version="{passed["arn"].rsplit("/", 1)[-1]}"]')
    expect(other.locator("[data-approval]")).to_have_text("PendingManualApproval")
    expect(other.locator('[data-field="gate-refused"]')).to_have_count(0)
