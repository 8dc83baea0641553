"""Local Greengrass core devices: ``python -m loupe_local.devices.fleet --thing NAME ...`` runs one device;
``DeviceFleet`` starts, stops and reports N of them for ``loupe local up --devices N`` / ``loupe local status``.

Each device is its own process with its own folder ``<state_dir>/devices/<thing>/`` (laid out like
``/greengrass/v2``: ``packages/``, ``work/<component>/``, ``logs/<component>.log``, ``device.json`` status),
registers its thing in the fleet's thing group, and pulls deployments from the local Greengrass stand-in.
The contract with the components is in ``local/loupe_local/devices/DEVICES.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from loupe_local.local_auth import RunCredentials

log = logging.getLogger("loupe_local.devices.fleet")

EDGE_DIR = Path(__file__).resolve().parents[3] / "edge_component"


def fleet_thing_group(parameters: dict[str, Any]) -> str:
    """The fleet's thing group: ThingGroupName, whether the stack created it (CreateThingGroup=true) or it existed."""
    return str(parameters.get("ThingGroupName") or "loupe-edge-fleet")


def device_name_prefix(parameters: dict[str, Any]) -> str:
    """What the fleet's thing names start with: CoreDeviceThingNamePrefix, which the devices' IoT policy admits
    (names are ``<prefix>-<n>``, so a prefix's own trailing dash is not doubled)."""
    return str(parameters.get("CoreDeviceThingNamePrefix") or "loupe-device-").rstrip("-") or "loupe-device"


def device_identity(resources: dict[str, Any]) -> tuple[str, str]:
    """(role alias, core-device IoT policy) of the stack: what a device's certificate is attached to and the
    credentials it asks for (template.yaml GreengrassTokenExchangeRoleAlias, EdgeDevicePolicy); "" where the stack
    has none. ``resources``: local.json's (``{"physical": ...}``) or the runtime's (``Provisioned``)."""

    def physical(logical_id: str) -> str:
        res = resources.get(logical_id)
        if res is None or getattr(res, "skipped", False):
            return ""
        return str(res.get("physical") or "") if isinstance(res, dict) else str(res.ref or "")

    return physical("GreengrassTokenExchangeRoleAlias"), physical("EdgeDevicePolicy")


def device_root(state_dir: Path, thing: str) -> Path:
    return Path(state_dir) / "devices" / thing


def default_overlay(root: Path) -> dict[str, Any]:
    """What each local device sets for Loupe's inference component: its own frame folder."""
    return {"com.loupe.inference": {"settings": {"source": {"path": str(root / "frames")}}}}


# ------------------------------------------------------------------ one device (the subprocess)
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loupe_local.devices.fleet", description="Run one local Greengrass core device."
    )
    p.add_argument("--thing", required=True, help="IoT thing name of this core device")
    p.add_argument("--state-dir", help="the local AWS state folder (default: LOUPE_STATE_DIR or ./.loupe)")
    p.add_argument("--endpoint", help="local AWS endpoint (default: from <state-dir>/local.json)")
    p.add_argument("--region", default=None)
    p.add_argument("--thing-group", help="thing group to join (default: the template's ThingGroupName)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between deployment checks")
    p.add_argument("--settle", type=float, default=2.0, help="seconds a started component must stay up")
    p.add_argument("--ack", type=float, default=10.0, help="seconds to wait for a component's status.json")
    p.add_argument("--overlay", help="JSON file {component: configuration merged last} for this device")
    p.add_argument("--no-seed-venvs", action="store_true", help="let Install build component venvs from PyPI")
    p.add_argument("--parent-pid", type=int, default=0, help="stop when this process is gone")
    p.add_argument(
        "--nucleus-mqtt",
        action="store_true",
        help="components publish through this device's MQTT connection and spooler (LOUPE_TRANSPORT=nucleus)",
    )
    p.add_argument("--nucleus-version", default="2.12.6", help="the nucleus version this device was installed with")
    p.add_argument(
        "--role-alias",
        help="the IoT role alias whose credentials the device gets (default: the stack's, from local.json)",
    )
    p.add_argument("--device-policy", help="the IoT policy for the device's certificate (default: the stack's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from loupe_local import state as state_mod
    from loupe_local.devices.control import LocalControlPlane
    from loupe_local.devices.runtime import Device, DeviceOptions

    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format=f"%(asctime)s %(levelname)s {args.thing} %(message)s"
    )
    state_dir = Path(args.state_dir) if args.state_dir else state_mod.state_dir()
    info: dict[str, Any] = {}
    needs_state = not (args.endpoint and args.thing_group and args.role_alias is not None)
    if needs_state and (state_dir / "local.json").is_file():
        info = json.loads((state_dir / "local.json").read_text())
    stack_alias, stack_policy = device_identity(info.get("resources") or {})
    role_alias = stack_alias if args.role_alias is None else args.role_alias
    device_policy = stack_policy if args.device_policy is None else args.device_policy
    endpoint = args.endpoint or info["endpoint"]
    group = args.thing_group or fleet_thing_group(info.get("parameters") or {})
    mqtt = info.get("mqtt") or {}
    # the run's credential: handed down by the process that started this device, else the state dir's local.json
    credentials = RunCredentials.from_env() or RunCredentials.from_state(
        info or json.loads((state_dir / "local.json").read_text())
    )
    root = device_root(state_dir, args.thing)
    overlay = default_overlay(root)
    if args.overlay:
        from loupe_local.devices.recipes import deep_merge

        overlay = deep_merge(overlay, json.loads(Path(args.overlay).read_text()))
    (root / "frames").mkdir(parents=True, exist_ok=True)
    options = DeviceOptions(
        thing=args.thing,
        root=root,
        endpoint=endpoint,
        region=args.region or info.get("region") or "us-east-1",
        thing_group=group,
        poll_seconds=args.poll,
        settle_seconds=args.settle,
        ack_seconds=args.ack,
        mqtt_host=os.environ.get("LOUPE_MQTT_HOST") or mqtt.get("host", ""),
        mqtt_port=int(os.environ.get("LOUPE_MQTT_PORT") or mqtt.get("port") or 0),
        overlay=overlay,
        seed_venvs=not args.no_seed_venvs,
        parent_pid=args.parent_pid,
        nucleus_mqtt=args.nucleus_mqtt,
        nucleus_version=args.nucleus_version,
        credentials=credentials,
    )
    control = LocalControlPlane(options.endpoint, options.region, credentials, role_alias, device_policy, root)
    device = Device(options, control)
    signal.signal(signal.SIGTERM, lambda *_: device.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: device.stop_event.set())
    log.info("core device %s up (root %s, group %s, endpoint %s)", args.thing, root, group, endpoint)
    device.run()
    return 0


# ------------------------------------------------------------------ the fleet (used by the CLI and tests)
class DeviceFleet:
    """N device subprocesses against one running local AWS."""

    def __init__(
        self,
        state_dir: Path,
        endpoint: str,
        thing_group: str,
        region: str = "us-east-1",
        mqtt: dict[str, Any] | None = None,
        poll_seconds: float = 1.0,
        settle_seconds: float = 2.0,
        ack_seconds: float = 10.0,
        python: str = sys.executable,
        prefix: str = "loupe-device",
        nucleus_mqtt: bool = False,
        credentials: RunCredentials | None = None,
        role_alias: str | None = None,
        device_policy: str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        # the role alias and core-device policy each device gets a certificate and its credentials for; None: the
        # stack's, which the device reads from <state_dir>/local.json; "": none (the device uses the run's key)
        self.role_alias = role_alias
        self.device_policy = device_policy
        # the local AWS's run credential, handed to each device (None: this process' environment holds it)
        self.credentials = credentials or RunCredentials.from_env()
        self.endpoint = endpoint
        self.thing_group = thing_group
        self.region = region
        self.mqtt = mqtt or {}
        self.poll_seconds = poll_seconds
        self.settle_seconds = settle_seconds
        self.ack_seconds = ack_seconds
        self.python = python
        self.prefix = prefix
        self.nucleus_mqtt = nucleus_mqtt
        self.processes: dict[str, subprocess.Popen] = {}
        self.things: list[str] = []  # the devices a caller started and keeps track of (``loupe local up``)

    @classmethod
    def from_runtime(cls, runtime: Any, **kwargs: Any) -> DeviceFleet:
        return cls(
            runtime.state_dir,
            runtime.endpoint,
            fleet_thing_group(runtime.parameter_values),
            runtime.region,
            runtime.mqtt,
            **{
                "credentials": runtime.credentials,
                "prefix": device_name_prefix(runtime.parameter_values),
                **dict(zip(("role_alias", "device_policy"), device_identity(runtime.resources), strict=True)),
                **kwargs,
            },
        )

    @classmethod
    def from_state(cls, state: dict[str, Any], state_dir: Path, **kwargs: Any) -> DeviceFleet:
        return cls(
            state_dir,
            state["endpoint"],
            fleet_thing_group(state.get("parameters") or {}),
            state.get("region", "us-east-1"),
            state.get("mqtt") or {},
            **{
                "credentials": RunCredentials.from_state(state),
                "prefix": device_name_prefix(state.get("parameters") or {}),
                **dict(
                    zip(("role_alias", "device_policy"), device_identity(state.get("resources") or {}), strict=True)
                ),
                **kwargs,
            },
        )

    def names(self, count: int) -> list[str]:
        return [f"{self.prefix}-{i + 1}" for i in range(count)]

    def publish_components(self, artifact_bucket: str, edge_dir: Path = EDGE_DIR) -> dict[str, Any]:
        """Publish ``com.loupe.inference`` from ``edge_component/`` (what a cloud deploy does once)."""
        import boto3

        from loupe.greengrass import publish_inference

        creds = self.credentials
        session = boto3.Session(
            aws_access_key_id=creds.access_key_id if creds else None,
            aws_secret_access_key=creds.secret_access_key if creds else None,
            region_name=self.region,
        )
        return publish_inference(
            session.client("greengrassv2", endpoint_url=self.endpoint),
            session.client("s3", endpoint_url=self.endpoint),
            artifact_bucket,
            edge_dir,
        )

    def start(self, count: int | None = None, names: list[str] | None = None) -> list[str]:
        names = names or self.names(count or 0)
        for name in names:
            self.start_device(name)
        return names

    def start_device(self, thing: str, extra_args: list[str] | None = None) -> subprocess.Popen:
        if thing in self.processes and self.processes[thing].poll() is None:
            return self.processes[thing]
        root = device_root(self.state_dir, thing)
        root.mkdir(parents=True, exist_ok=True)
        out = open(root / "device.log", "a", buffering=1)  # noqa: SIM115 - owned by the child process
        cmd = [
            self.python,
            "-m",
            "loupe_local.devices.fleet",
            "--thing",
            thing,
            "--state-dir",
            str(self.state_dir),
            "--endpoint",
            self.endpoint,
            "--region",
            self.region,
            "--thing-group",
            self.thing_group,
            "--poll",
            str(self.poll_seconds),
            "--settle",
            str(self.settle_seconds),
            "--ack",
            str(self.ack_seconds),
            "--parent-pid",
            str(os.getpid()),
            *(["--nucleus-mqtt"] if self.nucleus_mqtt else []),
            *(["--role-alias", self.role_alias] if self.role_alias is not None else []),
            *(["--device-policy", self.device_policy] if self.device_policy is not None else []),
            *(extra_args or []),
        ]
        env = dict(os.environ)
        if self.credentials is not None:
            env.update(self.credentials.env())
            # the run's key has no session token: one in this process' environment is a handler's (the invoker puts
            # a function's role session there while it runs) and must not travel with the run's key
            env.pop("AWS_SESSION_TOKEN", None)
        if self.mqtt.get("host"):
            env["LOUPE_MQTT_HOST"] = str(self.mqtt["host"])
            env["LOUPE_MQTT_PORT"] = str(self.mqtt["port"])
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # noqa: S603
        out.close()
        self.processes[thing] = proc
        return proc

    def wait_registered(self, things: list[str], timeout: float = 30.0) -> None:
        """Until every device has joined the thing group and reported once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((device_root(self.state_dir, t) / "device.json").is_file() for t in things):
                return
            for t in things:
                proc = self.processes.get(t)
                if proc is not None and proc.poll() is not None:
                    last = tail(device_root(self.state_dir, t) / "device.log")
                    raise RuntimeError(f"device {t} exited with {proc.returncode}: {last}")
            time.sleep(0.2)
        raise TimeoutError(f"devices {things} did not come up within {timeout}s")

    def stop_device(self, thing: str, timeout: float = 20.0) -> None:
        proc = self.processes.pop(thing, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def stop(self) -> None:
        for thing in list(self.processes):
            self.stop_device(thing)

    def status(self, things: list[str] | None = None, log_lines: int = 5) -> dict[str, Any]:
        """``{"devices": {thing: ...}}``: per device the process, its last deployment (id, status, reason), its
        components (version, lifecycle state, pid, the component's own status.json) and log tails."""
        devices_dir = self.state_dir / "devices"
        if things is not None:
            names = things
        else:
            names = sorted(p.name for p in devices_dir.iterdir() if p.is_dir()) if devices_dir.is_dir() else []
        out: dict[str, Any] = {}
        for thing in names:
            root = device_root(self.state_dir, thing)
            doc = _read(root / "device.json") or {}
            proc = self.processes.get(thing)
            out[thing] = {
                "process": "running" if (proc and proc.poll() is None) or _pid_alive(doc.get("pid")) else "stopped",
                "deployment": doc.get("deployment") or {},
                "components": doc.get("components") or {},
                "updated": doc.get("updated"),
                "log": tail(root / "device.log", log_lines),
                "component_logs": {p.stem: tail(p, log_lines) for p in sorted((root / "logs").glob("*.log"))},
            }
        return {"devices": out}


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        with open(path, errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]
    except OSError:
        return []


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# ------------------------------------------------------------------ CLI plugin: ``loupe edge ...``
def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``loupe edge publish`` and ``loupe edge devices`` to the ``loupe`` CLI."""
    edge = subparsers.add_parser("edge", help="Greengrass components and local core devices")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    pub = sub.add_parser(
        "publish",
        help="publish com.loupe.inference from edge_component/ (once per content)",
        description="Zips edge_component/inference (with the com.loupe.model recipe template), uploads it under "
        "edge/artifacts/com.loupe.inference/<version>/ and creates the component version. Against the running "
        "local AWS by default; with --bucket against the AWS account of the current credentials.",
    )
    pub.add_argument("--bucket", help="artifact bucket (the stack's ArtifactBucketName output) in a real account")
    pub.add_argument("--region", help="AWS region (with --bucket)")
    pub.add_argument("--edge-dir", default=str(EDGE_DIR), help="the edge_component folder")
    pub.set_defaults(func=_cmd_publish)
    dev = sub.add_parser("devices", help="status of the local core devices (deployment, components, log tails)")
    dev.add_argument("--lines", type=int, default=5, help="log lines per component")
    dev.set_defaults(func=_cmd_devices)
    return edge


def _cmd_publish(args: argparse.Namespace) -> int:
    import boto3

    from loupe.greengrass import GreengrassError, publish_inference
    from loupe_local import state as state_mod

    if args.bucket:
        session = boto3.Session(region_name=args.region)
        gg, s3, bucket = session.client("greengrassv2"), session.client("s3"), args.bucket
    else:
        try:
            current = state_mod.load()
        except FileNotFoundError as exc:
            print(f"loupe: {exc} (or pass --bucket for a real account)", file=sys.stderr)
            return 1
        env = state_mod.client_env(current)
        session = boto3.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_REGION"],
        )
        gg = session.client("greengrassv2", endpoint_url=current["endpoint"])
        s3 = session.client("s3", endpoint_url=current["endpoint"])
        bucket = state_mod.physical(current, "ArtifactBucket")
    try:
        out = publish_inference(gg, s3, bucket, Path(args.edge_dir))
    except (GreengrassError, OSError) as exc:
        print(f"loupe: cannot publish com.loupe.inference: {exc}", file=sys.stderr)
        return 1
    state = "already published" if out.get("reused") else "published"
    print(f"loupe: {out['name']} {out['version']} {state} ({out['arn']})")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from loupe_local import state as state_mod

    state_dir = state_mod.state_dir()
    try:
        current = state_mod.load()
    except FileNotFoundError as exc:
        print(f"loupe: {exc}", file=sys.stderr)
        return 1
    fleet = DeviceFleet.from_state(current, state_dir)
    print(json.dumps(fleet.status(log_lines=args.lines), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
