"""The ``loupe`` command: the local AWS (``loupe local up|down|status|env``) and the project's tools.

Subcommands that live with their code register themselves through ``register(subparsers)`` (see _PLUGINS);
a plugin that is missing or broken is reported, not fatal for the others.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from loupe_local import state as state_mod

_PLUGINS = [
    "loupe_local.importer",
    "loupe_training.cli",
    "loupe_local.demo.synth",
    "loupe_local.demo.command",
    "loupe_local.devices.fleet",
    "loupe_local.preflight",
    "loupe_local.console.labelers_cli",
    "loupe_local.canary_cli",
]

log = logging.getLogger("loupe_local.cli")


def _root() -> Path:
    """The project folder: the nearest folder up from here holding template.yaml."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "template.yaml").is_file():
            return folder
    from loupe_local.host.runtime import REPO_ROOT

    return REPO_ROOT


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- local up


def cmd_up(args: argparse.Namespace) -> int:
    root = _root()
    if args.detach:
        return _up_detached(args, root)
    from loupe_local.host.runtime import LocalRuntime

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    runtime = LocalRuntime(
        root=root,
        port=args.port,
        parameters=_params(args.param),
        mqtt=not args.no_mqtt,
        alarm_time_scale=args.alarm_time_scale,
        iam=args.iam,
        groundtruth_customer=args.groundtruth_customer,
    )
    fleet = None
    try:
        runtime.start()
        if args.label:
            from loupe_local.standins.groundtruth.workforce import set_workforce_mode

            set_workforce_mode(runtime.state_dir, args.label)
        if args.devices:
            fleet = _start_fleet(runtime, args.devices)
        runtime.write_state(devices=fleet.things if fleet else [], ready=True)
        _print_ready(state_mod.load(root))
        while not stop.wait(1.0):
            if fleet is not None:
                runtime.write_state(devices=fleet.things, ready=True, fleet=fleet.status())
    finally:
        print("loupe: stopping the local AWS ...", flush=True)
        if fleet is not None:
            fleet.stop()
        runtime.stop()
        state_mod.state_file(root).unlink(missing_ok=True)
    return 0


def _start_fleet(runtime: Any, count: int) -> Any:
    from loupe_local.devices.fleet import DeviceFleet

    fleet = DeviceFleet.from_runtime(runtime)
    fleet.publish_components(runtime.physical("ArtifactBucket"))  # com.loupe.inference, as a cloud deploy does
    fleet.things = fleet.start(count)
    fleet.wait_registered(fleet.things)
    return fleet


def _up_detached(args: argparse.Namespace, root: Path) -> int:
    existing = _running_state(root)
    if existing:
        print(f"loupe: the local AWS is already running at {existing['endpoint']} (pid {existing['pid']})")
        return 0
    from loupe_local.private_files import private_dir

    state_dir = private_dir(state_mod.state_dir(root))  # it will hold the run's secret credential: owner-only
    log_path = state_dir / "local.log"
    cmd = [sys.executable, "-m", "loupe_local.cli", "local", "up"]
    if args.port:
        cmd += ["--port", str(args.port)]
    if args.devices:
        cmd += ["--devices", str(args.devices)]
    if args.no_mqtt:
        cmd += ["--no-mqtt"]
    if args.label:
        cmd += ["--label", args.label]
    if args.groundtruth_customer:
        cmd += ["--groundtruth-customer"]
    if args.alarm_time_scale != 1.0:
        cmd += ["--alarm-time-scale", str(args.alarm_time_scale)]
    if args.iam:
        cmd += ["--iam", args.iam]
    for p in args.param or []:
        cmd += ["--param", p]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, cwd=root, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"loupe: the local AWS exited with {proc.returncode}; see {log_path}:", file=sys.stderr)
            print("".join(log_path.read_text().splitlines(True)[-20:]), file=sys.stderr)
            return 1
        current = _running_state(root)
        if current and current.get("pid") == proc.pid and current.get("ready"):
            _print_ready(current)
            return 0
        time.sleep(0.3)
    print(f"loupe: the local AWS did not get ready in {args.timeout}s; see {log_path}", file=sys.stderr)
    os.killpg(proc.pid, signal.SIGTERM)
    return 1


def _running_state(root: Path) -> dict[str, Any] | None:
    try:
        current = state_mod.load(root)
    except FileNotFoundError:
        return None
    try:
        os.kill(int(current["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return None
    return current


def _print_ready(current: dict[str, Any]) -> None:
    res = current["resources"]
    names = {lid: r["physical"] for lid, r in res.items() if r["type"] in ("AWS::S3::Bucket",)}
    print(f"loupe: local AWS ready at {current['endpoint']} (pid {current['pid']})")
    for lid, name in sorted(names.items()):
        print(f"  {lid:<18} s3://{name}")
    if current.get("mqtt"):
        print(f"  MQTT broker        {current['mqtt'].get('host')}:{current['mqtt'].get('port')}")
    if current.get("devices"):
        print(f"  devices            {', '.join(current['devices'])}")
    if current.get("console"):
        # the stack's own console app (ConsoleApi serves it, as API Gateway does in the cloud)
        print(f"  console            {current['console']}  (sign in as a user of `loupe labelers add EMAIL`)")
    for lid, url in (current.get("http_apis") or {}).items():
        what = "the console app and its API" if lid == "ConsoleApi" else "HTTP API"
        print(f"  {lid:<18} {url}/  ({what}; invite people with `loupe labelers add EMAIL --group G`)")
    print('  use it:  eval "$(loupe local env)"  then e.g.  aws s3 ls')
    sys.stdout.flush()


def cmd_down(args: argparse.Namespace) -> int:
    root = _root()
    current = _running_state(root)
    if not current:
        print("loupe: no local AWS is running")
        return 0
    pid = int(current["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        print(f"loupe: pid {pid} did not stop in {args.timeout}s; killing its process group", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
    state_mod.state_file(root).unlink(missing_ok=True)
    print(f"loupe: local AWS (pid {pid}) stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    root = _root()
    current = _running_state(root)
    if not current:
        print("loupe: no local AWS is running")
        return 1
    if args.json:
        print(json.dumps(current, indent=2))
        return 0
    _print_ready(current)
    from botocore.exceptions import BotoCoreError, ClientError

    from loupe_local.observer import Observer

    observer = Observer.from_state(current, state_mod.state_dir(root))
    try:
        _print_loop(observer)
    except (BotoCoreError, ClientError) as exc:
        print(f"  (cannot read the loop: {exc})")
    return 0


def _print_loop(observer: Any) -> None:
    """The loop as the read-only observer sees it: ledger, datasets, running work, models, devices, deployments."""
    print(f"  ledger             {observer.ledger_totals() or 'empty'}")
    datasets = ", ".join(f"v{d['version']} ({d['counts']['images']} images)" for d in observer.dataset_versions())
    print(f"  datasets           {datasets or 'none'}")
    running = [f"{e['kind']} {e['name']}" for e in observer.executions() if e["status"] in ("RUNNING", "Executing")]
    print(f"  running            {', '.join(running) or 'nothing'}")
    for package in observer.packages(with_cards=False)[:3]:
        print(f"  model package {package['version']}: {package['approval']}")
    for device in observer.devices():
        deployment = device["deployment"].get("status") or "none"
        serving = device["serving"] or "none"
        print(f"  device {device['thing']}: {device['status']}, serving model {serving}, deployment {deployment}")
    for run in observer.deployments(limit=3):
        reason = f" ({run['reason']})" if run.get("reason") else ""
        print(f"  deployment of model {run['model_version']}: {run['outcome']}{reason}")


def cmd_env(args: argparse.Namespace) -> int:
    current = _running_state(_root())
    if not current:
        print("loupe: no local AWS is running", file=sys.stderr)
        return 1
    for key, value in state_mod.client_env(current).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _iam_report(args: argparse.Namespace) -> int:
    from loupe_local.iam.report import cmd_iam_report

    return cmd_iam_report(args)


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loupe", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="the embedded local AWS").add_subparsers(dest="local_command", required=True)
    up = local.add_parser("up", help="start the local AWS with template.yaml provisioned")
    up.add_argument("--detach", action="store_true", help="run in the background; stop with `loupe local down`")
    up.add_argument("--port", type=int, default=None, help="preferred port (another is taken if it is in use)")
    up.add_argument("--devices", type=int, default=0, help="start N local Greengrass core devices")
    up.add_argument("--param", action="append", help="template parameter override KEY=VALUE")
    up.add_argument("--no-mqtt", action="store_true", help="do not start a local MQTT broker")
    up.add_argument(
        "--label",
        choices=("auto", "manual"),
        help="the local workforce (the labeling app's bot labelers, or Ground Truth's): auto (answers known labels) "
        "or manual (none: a person labels in the console app)",
    )
    up.add_argument(
        "--groundtruth-customer",
        action="store_true",
        help="the local account acts as an existing Ground Truth customer (LabelingService=GroundTruth); without it "
        "CreateLabelingJob is refused with AccessDeniedException, as Ground Truth is closed to new customers",
    )
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness with --detach")
    up.add_argument(
        "--alarm-time-scale", type=float, default=1.0, help="shrink alarm periods locally (60: 15 min -> 15 s)"
    )
    up.add_argument(
        "--iam",
        choices=("off", "audit", "enforce"),
        default=None,
        help="check each principal's calls against its role: audit (record), enforce (refuse); "
        "off (nothing checked); default: $LOUPE_LOCAL_IAM, else enforce",
    )
    up.set_defaults(func=cmd_up)
    down = local.add_parser("down", help="stop the local AWS")
    down.add_argument("--timeout", type=float, default=30.0)
    down.set_defaults(func=cmd_down)
    status = local.add_parser("status", help="endpoint, resources, devices")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    env = local.add_parser("env", help="print `export AWS_ENDPOINT_URL=...` lines for the aws CLI and SDKs")
    env.set_defaults(func=cmd_env)
    iam_report = local.add_parser(
        "iam-report", help="per role: actions used, granted but never used, and calls outside the grant"
    )
    iam_report.add_argument("--state", help="the local AWS's state folder (default: .loupe or $LOUPE_STATE_DIR)")
    iam_report.add_argument("--strict", action="store_true", help="exit 1 when any call would be denied")
    iam_report.set_defaults(func=_iam_report)
    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("werkzeug", "botocore", "urllib3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
