"""``loupe demo`` (``make demo``): the whole closed loop, locally, with progress, ending in a report.

It drives the loop the way its users do — it does not call the loop's code itself:
- images go into the raw bucket with S3 PutObject (like ``aws s3 cp``);
- ingest, the labeling trigger, labeling (the stack's labeling app answered by local bot labelers, or by you with
  ``--label manual``; Ground Truth's stand-in with ``--labeling-service GroundTruth``), dataset versions, the
  training pipeline, registration and the edge deployment all happen by themselves, through template.yaml's
  events, functions and state machines in the local AWS;
- approval is ``UpdateModelPackage --model-approval-status Approved`` (automatic, or ``--approve manual``: it waits
  for you to press Approve in the console app's Models page, or to run the ``aws`` command it prints); a model
  the pipeline's gate refused (registered PendingManualApproval with the reason) is explained (the gate's reason,
  the training's diagnosis) and approved as "approved despite the gate's refusal: <reason>", which the report and
  the final summary repeat: the loop goes on, and only a loop that does not reach its end exits non-zero;
- labeling is done by the local workforce from known labels, or (``--label manual``) by you in the console app the
  stack serves (its ConsoleApi): the demo invites you as ``loupe labelers add`` does (the temporary password in
  ``<state>/mail/<address>.txt``), turns the bot labelers off, names the app's URL and waits while images wait for
  you, then runs the rest of the loop;
- the two local devices run the edge component with the deployed model; the demo places phase-2 frames in their
  camera folders; the frames they are unsure about come back through S3 and the IoT rule, get labeled, and v2 is
  trained (warm-started from v1), approved and deployed — first to half of the fleet (a canary: the other half keeps
  v1) over a window of fresh frames, then to every device by the canary's verdict (held for labels when v2 calls
  more frames NG, and re-decided once the line's frames are labeled; see :mod:`loupe_local.demo.canary`).
The demo only watches (ledger, executions, packages, device status, MQTT messages) and reports.

The demo is an orchestrator (:class:`Demo`) over the stages in :mod:`loupe_local.demo.stages`; what it shares
between them is in :mod:`loupe_local.demo.context`, the scoring and the report in :mod:`loupe_local.demo.evaluation`,
and every read of the loop goes through the read-only :class:`~loupe_local.observer.Observer`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from loupe_local.demo import stages
from loupe_local.demo.context import DemoConfig, DemoContext, DemoError
from loupe_local.iam import MODES
from loupe_local.iam import mode as iam_mode


class Demo(DemoContext):
    """Runs the stages in order and always tears down."""

    def run(self) -> dict[str, Any]:
        try:
            stages.setup(self)
            stages.generate(self)
            stages.phase1(self)
            stages.train_approve_deploy(self)  # v1: trained from scratch on dataset v1
            stages.phase2(self)
            v2 = stages.train_approve_deploy(self)  # v2: warm-started from v1 on dataset v2
            if not (v2.canary and v2.canary["status"] != "PROMOTED"):  # a rolled-back v2 is not on the devices
                stages.show_v2(self, v2)
            return stages.finish(self)
        finally:
            stages.teardown(self)


# ---------------------------------------------------------------------------------------------- CLI
def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="run the whole closed loop locally and write a report")
    p.add_argument("--out", type=Path, default=Path("loupe-demo"), help="output folder (default ./loupe-demo)")
    p.add_argument("--dataset", type=Path, help="a labeled folder (metal-tags layout) instead of the generator")
    p.add_argument("--approve", choices=["auto", "manual"], default="auto")
    p.add_argument(
        "--label",
        choices=["auto", "manual"],
        default="auto",
        help="auto: the local workforce answers known labels; manual: you label in the console app (the demo "
        "invites you, turns the bot labelers off and waits)",
    )
    p.add_argument(
        "--labeling-service",
        choices=["Loupe", "GroundTruth"],
        default="Loupe",
        help="who labels: Loupe (default: the stack's labeling app, its bot labelers or, with --label manual, you) "
        "or GroundTruth (the Ground Truth stand-in as an existing customer, its automatic workforce)",
    )
    p.add_argument(
        "--labeler-email",
        default="you@example.com",
        help="with --label manual: the console user the demo creates for you (labelers, reviewers, approvers)",
    )
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="a reduced loop (few images and epochs), as CI runs it")
    p.add_argument("--phase1", type=int, help="phase-1 images")
    p.add_argument("--phase2", type=int, help="phase-2 frames per device")
    p.add_argument("--epochs", type=int, help="epochs of the first model (from scratch)")
    p.add_argument("--retrain-epochs", type=int, help="epochs of a retrain (warm start)")
    p.add_argument("--imgsz", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--iam",
        choices=MODES,
        help="how the local AWS treats IAM: enforce (default) refuses a call outside a role's grant, as AWS "
        "does; audit records it and lets it through; off checks nothing. Either checking mode ends with the "
        "used-vs-granted report. $LOUPE_LOCAL_IAM wins if set",
    )
    p.set_defaults(func=_cmd)
    return p


def demo_iam(flag: str | None, environ: dict[str, str] | None = None) -> str:
    """The demo's IAM mode: ``$LOUPE_LOCAL_IAM`` when set (it wins, as for every local AWS), else ``--iam``, else
    ``enforce``: the demo runs as AWS would let it, and every run is evidence of what each role used against what it
    is granted."""
    env = os.environ if environ is None else environ
    if env.get("LOUPE_LOCAL_IAM", "").strip():
        return iam_mode(dict(env))
    return iam_mode({"LOUPE_LOCAL_IAM": flag or "enforce"})


def _cmd(args: argparse.Namespace) -> int:
    if args.quick:
        cfg = DemoConfig.quick_config(args.out)
    elif args.dataset:
        cfg = DemoConfig.dataset_config(args.out)
    else:
        cfg = DemoConfig(out=args.out)
    cfg.dataset = args.dataset
    cfg.approve = args.approve
    cfg.label = args.label
    if args.label == "manual" and args.labeling_service == "GroundTruth":
        print(
            "loupe demo: --label manual labels in the console app, which is the labeling app's "
            "(LabelingService=Loupe): use it without --labeling-service GroundTruth"
        )
        return 2
    cfg.labeling_service = args.labeling_service
    cfg.person_email = args.labeler_email
    cfg.devices = args.devices
    try:
        cfg.iam = demo_iam(args.iam)
    except ValueError as exc:
        print(f"loupe demo: {exc}")
        return 2
    for name, attr in (
        ("phase1", "phase1"),
        ("phase2", "phase2_stream"),
        ("epochs", "epochs"),
        ("retrain_epochs", "retrain_epochs"),
        ("imgsz", "imgsz"),
        ("seed", "seed"),
    ):
        if getattr(args, name) is not None:
            setattr(cfg, attr, getattr(args, name))
    from loupe_local.cli import _root

    try:
        summary = Demo(cfg, _root()).run()
    except DemoError as exc:
        print(f"loupe demo: {exc}")
        return 1
    print(json.dumps({k: summary[k] for k in ("wall_seconds", "models", "devices")}, indent=2, default=str))
    for note in summary.get("notes") or []:  # a model the gate refused and the demo approved anyway
        print(f"loupe demo: note: {note}")
    if cfg.iam != "off":  # least privilege, measured: per role, the actions used against those granted
        from loupe_local.iam.report import print_report

        print_report(cfg.out / "state")
    # a refused gate is the loop working (the person approved anyway, and the report says so): only a loop that did
    # not reach its end is a failure
    return 0 if summary["result"] != "incomplete" else 1
