"""One local Greengrass core device: pull deployments, install and run components, roll back on failure.

See ``local/loupe_local/DEVICES.md`` for the contract with the components (work folders, ``status.json``,
``update.json`` + SIGHUP) and how this differs from a real nucleus.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.device_recipes import (
    Component,
    Layout,
    RecipeError,
    effective_config,
    fetch_artifacts,
    interpolate,
    step_of,
)

log = logging.getLogger("loupe_local.device")

MAX_RESTARTS = 3


class DeploymentFailed(RuntimeError):
    def __init__(self, reason: str, stack: list[str] | None = None, types: list[str] | None = None) -> None:
        super().__init__(reason)
        self.stack = stack or ["DEPLOYMENT_FAILURE"]
        self.types = types or []


@dataclass
class Running:
    component: Component
    state: str = "NEW"  # NEW, INSTALLED, RUNNING, FINISHED, ERRORED, BROKEN, STOPPING
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    reason: str = ""
    run_script: str = ""
    log_file: Any = None
    notified: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeviceOptions:
    thing: str
    root: Path
    endpoint: str
    region: str = "us-east-1"
    thing_group: str = ""
    poll_seconds: float = 1.0
    settle_seconds: float = 2.0
    ack_seconds: float = 10.0
    mqtt_host: str = ""
    mqtt_port: int = 0
    overlay: dict[str, Any] = field(default_factory=dict)
    seed_venvs: bool = True
    python: str = sys.executable
    parent_pid: int = 0
    nucleus_mqtt: bool = False  # components publish through the device's spooler (LOUPE_TRANSPORT=nucleus)
    nucleus_version: str = "2.12.6"  # the nucleus this device was installed with


class Device:
    def __init__(self, options: DeviceOptions) -> None:
        import boto3
        from botocore.config import Config

        self.o = options
        self.layout = Layout(options.root)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=options.region)  # noqa: S106
        self.s3 = session.client("s3", endpoint_url=options.endpoint, config=cfg)
        self.iot = session.client("iot", endpoint_url=options.endpoint, config=cfg)
        self.gg = session.client("greengrassv2", endpoint_url=options.endpoint, config=cfg)
        self.running: dict[str, Running] = {}
        self.current: dict[str, Any] = self._load_current()
        self.deployment: dict[str, Any] = {}
        self.stop_event = threading.Event()
        self.lock = threading.RLock()
        self.nucleus: dict[str, Any] = self.current.get("nucleus") or {
            "version": options.nucleus_version,
            "config": {},
            "plugins": {},
        }
        self.mqtt: Any = None  # NucleusMqtt when options.nucleus_mqtt

    # ------------------------------------------------------------------ persistence and status
    @property
    def _current_file(self) -> Path:
        return self.layout.root / "current.json"

    def _load_current(self) -> dict[str, Any]:
        try:
            return json.loads(self._current_file.read_text())
        except (OSError, ValueError):
            return {"deployment_id": None, "components": {}}

    def _save_current(self) -> None:
        tmp = self._current_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.current, indent=2))
        tmp.replace(self._current_file)

    def write_status(self) -> None:
        with self.lock:
            doc = {
                "thing": self.o.thing,
                "pid": os.getpid(),
                "updated": time.time(),
                "deployment": self.deployment,
                "nucleus": {
                    "version": self.nucleus["version"],
                    "plugins": self.nucleus["plugins"],
                    "spooler": self.mqtt.stats() if self.mqtt is not None else None,
                },
                "components": {
                    name: {
                        "version": r.component.version,
                        "state": r.state,
                        "pid": r.process.pid if r.process and r.process.poll() is None else None,
                        "reason": r.reason,
                        "status_file": _read_json(self.layout.work(name) / "status.json"),
                    }
                    for name, r in self.running.items()
                },
            }
        tmp = self.layout.root / "device.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        tmp.replace(self.layout.root / "device.json")

    # ------------------------------------------------------------------ control plane (local protocol)
    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(  # noqa: S310 - the local endpoint (http://127.0.0.1)
            f"{self.o.endpoint}/greengrass/v2/local/coreDevices/{self.o.thing}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 - the local endpoint (http://127.0.0.1)
            return json.loads(resp.read() or b"{}")

    def sync(self) -> dict[str, Any] | None:
        installed = [
            {
                "componentName": n,
                "componentVersion": r.component.version,
                "lifecycleState": r.state,
                "lifecycleStateDetails": r.reason,
                "isRoot": n in (self.current.get("components") or {}),
                "lastStatusChangeTimestamp": r.started,
            }
            for n, r in self.running.items()
        ]
        return self._post("/sync", {"installed": installed, "platform": "linux"}).get("deployment")

    def report(
        self, deployment_id: str, status: str, reason: str = "", failure: DeploymentFailed | None = None
    ) -> None:
        body: dict[str, Any] = {"status": status, "reason": reason}
        if failure is not None:
            body["statusDetails"] = {"errorStack": failure.stack, "errorTypes": failure.types}
        self._post(f"/deployments/{deployment_id}/status", body)
        self.deployment = {"id": deployment_id, "status": status, "reason": reason, "at": time.time()}
        log.info("deployment %s: %s %s", deployment_id, status, reason)

    def register(self) -> None:
        with contextlib.suppress(self.iot.exceptions.ResourceAlreadyExistsException):
            self.iot.create_thing(thingName=self.o.thing)
        if self.o.thing_group:
            self.iot.add_thing_to_thing_group(thingGroupName=self.o.thing_group, thingName=self.o.thing)

    # ------------------------------------------------------------------ main loop
    def reap_stale(self) -> None:
        """Stop component processes a previous run of this device left behind (it was killed, not stopped)."""
        doc = _read_json(self.layout.root / "device.json") or {}
        if not doc.get("pid") or doc.get("pid") == os.getpid() or _alive(int(doc["pid"])):
            return
        for name, comp in (doc.get("components") or {}).items():
            pid = comp.get("pid")
            if not isinstance(pid, int) or not _alive(pid):
                continue
            try:
                cmdline = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if f"LOUPE_DEVICE_ROOT={self.layout.root}".encode() in cmdline:
                log.warning("stopping %s (pid %s) left behind by a previous run", name, pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)

    def run(self) -> None:
        self.reap_stale()
        self.register()
        self._start_nucleus_mqtt()
        if self.current.get("components"):
            log.info("restarting the last deployed components")
            try:
                self._apply_set(self._components_from(self.current["components"]), notify=set())
            except DeploymentFailed as exc:
                log.error("could not restart the last deployed components: %s", exc)
        handled = {self.current.get("deployment_id")}
        while not self.stop_event.is_set():
            if self.o.parent_pid and not _alive(self.o.parent_pid):
                log.warning("parent process %s is gone; stopping", self.o.parent_pid)
                break
            try:
                self.supervise()
                desired = self.sync()
                if desired and desired["deploymentId"] not in handled:
                    handled.add(desired["deploymentId"])
                    self.apply(desired)
                self.write_status()
            except Exception as exc:  # the device keeps going: the control plane may be restarting
                log.warning("device loop: %s: %s", type(exc).__name__, exc)
            self.stop_event.wait(self.o.poll_seconds)
        self.shutdown()

    def shutdown(self) -> None:
        for name in list(self.running):
            self._stop(name)
        if self.mqtt is not None:
            self.mqtt.stop()  # the nucleus goes down: a memory spool's messages with it
        self.write_status()

    # ------------------------------------------------------------------ the nucleus' MQTT connection and spooler
    def _start_nucleus_mqtt(self) -> None:
        from loupe_local.nucleus_mqtt import NucleusMqtt, open_spool, spooler_settings

        if not (self.o.nucleus_mqtt and self.o.mqtt_host):
            return
        spool = spooler_settings(self.nucleus["config"], self.nucleus["plugins"])
        self.mqtt = NucleusMqtt(
            self.o.thing,
            self.o.mqtt_host,
            self.o.mqtt_port,
            open_spool(spool, self.layout.root / "work"),
            spool["keep_qos0"],
        )
        self.mqtt.start()
        log.info("nucleus MQTT: spooler %s (%s), IPC on %s", spool["storage"], spool, self.mqtt.address)

    def _reconfigure_spooler(self) -> None:
        from loupe_local.nucleus_mqtt import open_spool, spooler_settings

        if self.mqtt is None:
            return
        spool = spooler_settings(self.nucleus["config"], self.nucleus["plugins"])
        if spool["storage"] != self.mqtt.spool.storage or spool["max_bytes"] != self.mqtt.spool.max_bytes:
            log.info("nucleus spooler reconfigured: %s", spool)
            self.mqtt.set_spool(open_spool(spool, self.layout.root / "work"), spool["keep_qos0"])
        self.mqtt.keep_qos0 = spool["keep_qos0"]

    def _nucleus_from(self, wanted: dict[str, Any]) -> dict[str, Any]:
        """The nucleus state a deployment's ``aws.greengrass.*`` entries ask for (the device provides them).

        ``aws.greengrass.Nucleus``: its version (another one than the device runs is a nucleus update, applied
        here as a version change) and configuration (defaults, then ``configurationUpdate``). Other AWS
        components must exist, and their nucleus dependency must accept the nucleus version (a plugin such as
        ``aws.greengrass.DiskSpooler`` names the nucleus versions it runs in)."""
        from loupe.greengrass import get_recipe, nucleus_requirement, public_component_arn, version_satisfies
        from loupe_local.nucleus_mqtt import NUCLEUS

        def recipe_of(name: str, version: str) -> dict[str, Any]:
            try:
                return get_recipe(self.gg, public_component_arn(self.o.region, name, version))
            except Exception as exc:
                raise DeploymentFailed(
                    f"{name} {version} does not exist: {exc}", ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]
                ) from exc

        spec = wanted.get(NUCLEUS) or {}
        version = spec.get("componentVersion") or self.nucleus["version"]
        config: dict[str, Any] = {}
        if spec:
            config = effective_config(recipe_of(NUCLEUS, version), spec.get("configurationUpdate"), None)
        plugins = {}
        for name, other in wanted.items():
            if name == NUCLEUS:
                continue
            need = nucleus_requirement(recipe_of(name, other.get("componentVersion") or ""))
            if not version_satisfies(version, need):
                raise DeploymentFailed(
                    f"{name} {other.get('componentVersion')} needs {NUCLEUS} {need}; the device runs {version}",
                    ["DEPLOYMENT_FAILURE", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
                )
            plugins[name] = other.get("componentVersion") or ""
        return {"version": version, "config": config, "plugins": plugins}

    # ------------------------------------------------------------------ deployments
    def apply(self, deployment: dict[str, Any]) -> None:
        dep_id = deployment["deploymentId"]
        self.report(dep_id, "IN_PROGRESS")
        policies = deployment.get("deploymentPolicies") or {}
        rollback = str(policies.get("failureHandlingPolicy", "ROLLBACK")).upper() == "ROLLBACK"
        notify_policy = (policies.get("componentUpdatePolicy") or {}).get("action", "NOTIFY_COMPONENTS")
        previous = dict(self.current.get("components") or {})
        wanted = deployment.get("components") or {}
        try:
            nucleus = self._nucleus_from({n: s for n, s in wanted.items() if n.startswith("aws.greengrass.")})
            target = self._resolve({n: s for n, s in wanted.items() if not n.startswith("aws.greengrass.")})
        except DeploymentFailed as exc:
            self.report(dep_id, "FAILED", str(exc), exc)
            return
        except Exception as exc:
            failure = DeploymentFailed(
                f"cannot resolve the components: {exc}", ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]
            )
            self.report(dep_id, "FAILED", str(failure), failure)
            return
        notify = set() if notify_policy == "SKIP_NOTIFY_COMPONENTS" else None
        try:
            try:
                self._apply_set(target, notify=notify)
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                raise DeploymentFailed(
                    f"the device could not apply the deployment: {type(exc).__name__}: {exc}"
                ) from exc
        except DeploymentFailed as exc:
            reason = str(exc)
            if rollback:
                try:
                    self._apply_set(self._components_from(previous), notify=None, is_rollback=True)
                    reason += "; rolled back to the previous components"
                except (DeploymentFailed, OSError, subprocess.SubprocessError, ValueError) as again:
                    reason += f"; rollback failed too: {again}"
                exc.stack = [*exc.stack, "ROLLBACK_COMPLETE" if "rolled back" in reason else "ROLLBACK_FAILED"]
            self.report(dep_id, "FAILED", reason, exc)
            return
        self.current = {
            "deployment_id": dep_id,
            "components": {
                c.name: {"version": c.version, "recipe": c.recipe, "config": c.config} for c in target.values()
            },
            "nucleus": nucleus,
        }
        if nucleus["version"] != self.nucleus["version"]:
            log.info("nucleus update %s -> %s", self.nucleus["version"], nucleus["version"])
        self.nucleus = nucleus
        self._save_current()
        self._reconfigure_spooler()
        self.report(dep_id, "SUCCEEDED", "")

    def _resolve(self, wanted: dict[str, Any]) -> dict[str, Component]:
        from loupe.greengrass import component_arn, get_recipe, latest_deployable

        target: dict[str, Component] = {}
        queue = [(name, spec.get("componentVersion"), spec.get("configurationUpdate")) for name, spec in wanted.items()]
        while queue:
            name, version, update = queue.pop(0)
            if name in target:
                continue
            if version is None:
                found = latest_deployable(self.gg, name)
                if found is None:
                    raise DeploymentFailed(
                        f"dependency {name} is not published", ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]
                    )
                version = found[0]
            arn = component_arn(self.gg, name, version)
            if arn is None:
                raise DeploymentFailed(
                    f"{name} {version} does not exist", ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]
                )
            recipe = get_recipe(self.gg, arn)
            config = effective_config(recipe, update, self.o.overlay.get(name))
            comp = Component(name, version, recipe, config)
            target[name] = comp
            for dep_name in comp.dependencies:
                if dep_name.startswith("aws.greengrass."):
                    continue  # nucleus-provided (token exchange: the device hands out local credentials)
                if dep_name not in target and dep_name not in wanted:
                    queue.append((dep_name, None, None))
        return target

    def _components_from(self, saved: dict[str, Any]) -> dict[str, Component]:
        return {
            name: Component(name, spec["version"], spec["recipe"], spec.get("config") or {})
            for name, spec in saved.items()
        }

    def _order(self, comps: dict[str, Component]) -> list[str]:
        """Dependencies first."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str, trail: tuple[str, ...]) -> None:
            if name in seen or name not in comps:
                return
            if name in trail:
                raise DeploymentFailed(f"dependency cycle through {name}")
            for dep in comps[name].dependencies:
                visit(dep, (*trail, name))
            seen.add(name)
            order.append(name)

        for name in sorted(comps):
            visit(name, ())
        return order

    def _apply_set(self, target: dict[str, Component], notify: set[str] | None, is_rollback: bool = False) -> None:
        """Make the running set equal to ``target``: download, stop what changed, install, start, notify, check."""
        with self.lock:
            for name in self._order(target):
                try:
                    fetch_artifacts(target[name], self.layout, self.s3)
                except RecipeError as exc:
                    raise DeploymentFailed(
                        str(exc), ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR"], ["NETWORK_ERROR"]
                    ) from exc
            changed: list[str] = []
            for name in self._order(target):
                comp = target[name]
                old = self.running.get(name)
                new_script = self._render(comp, "Run", target)
                dead = old is not None and old.process is not None and old.process.poll() is not None
                if (
                    old is None
                    or old.component.version != comp.version
                    or old.run_script != new_script
                    or old.state == "BROKEN"
                    or (dead and old.state != "FINISHED")
                ):
                    changed.append(name)
            for name in list(self.running):
                if name not in target or name in changed:
                    self._stop(name)
            started = time.time()
            for name in self._order(target):
                if name in changed:
                    self._start(target[name], target)
            # Running components told about changes of their SOFT dependencies (NOTIFY_COMPONENTS)
            to_notify = []
            for name, r in self.running.items():
                if name in changed:
                    continue
                if r.component.soft_dependencies() & set(changed) and (notify is None or name in notify):
                    to_notify.append(name)
            for name in to_notify:
                self._notify(name, changed)
            self.write_status()
        self._check_health(changed, to_notify, started, is_rollback)

    def _render(self, comp: Component, step: str, pool: dict[str, Component]) -> str:
        script, _, _, _ = step_of(comp.lifecycle, step)

        def lookup(name: str) -> Component | None:
            return pool.get(name) or (self.running[name].component if name in self.running else None)

        return interpolate(script, comp, lookup, self.layout, self.o.thing) if script else ""

    def _env(self, comp: Component, setenv: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("PYTEST", "LOUPE_STATE")):
                env.pop(key)
        env.update(
            {
                "PATH": f"{Path(self.o.python).parent}:{env.get('PATH', '/usr/bin:/bin')}",
                "AWS_ENDPOINT_URL": self.o.endpoint,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": self.o.region,
                "AWS_DEFAULT_REGION": self.o.region,
                "AWS_IOT_THING_NAME": self.o.thing,
                "GG_ROOT_CA_PATH": "",
                "LOUPE_TRANSPORT": "mqtt",
                "LOUPE_DEVICE_ROOT": str(self.layout.root),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.o.mqtt_host:
            env["LOUPE_MQTT_HOST"] = self.o.mqtt_host
            env["LOUPE_MQTT_PORT"] = str(self.o.mqtt_port)
        if self.mqtt is not None:  # the local form of IPC PublishToIoTCore through the nucleus' spooler
            env["LOUPE_TRANSPORT"] = "nucleus"
            env["LOUPE_NUCLEUS_IPC"] = self.mqtt.address
        lifecycle_env = comp.lifecycle.get("Setenv") or comp.lifecycle.get("setenv") or {}
        env.update({str(k): str(v) for k, v in lifecycle_env.items()})
        env.update(setenv)
        return env

    def _seed_venv(self, comp: Component) -> None:
        """Local devices reuse this interpreter for a component's ``{work:path}/venv`` (no PyPI download)."""
        if not self.o.seed_venvs:
            return
        install, _, _, _ = step_of(comp.lifecycle, "Install")
        if "{work:path}/venv" not in install:
            return
        reqs = sorted(self.layout.unarchived(comp.name, comp.version).glob("*/requirements.txt"))
        if not reqs:
            return
        venv = self.layout.work(comp.name) / "venv"
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        wrapper = venv / "bin" / "python"
        wrapper.write_text(f'#!/bin/sh\nexec "{self.o.python}" "$@"\n')
        wrapper.chmod(0o755)
        (venv / ".requirements").write_bytes(reqs[0].read_bytes())

    def _start(self, comp: Component, pool: dict[str, Component]) -> None:
        work = self.layout.work(comp.name)
        work.mkdir(parents=True, exist_ok=True)
        self.layout.log(comp.name).parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.layout.log(comp.name), "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        r = Running(comp, log_file=logf)
        self.running[comp.name] = r
        (work / "status.json").unlink(missing_ok=True)
        self._seed_venv(comp)
        install, timeout, setenv, skip_if = step_of(comp.lifecycle, "Install")
        if install and not self._skip(skip_if, comp, pool):
            script = self._render(comp, "Install", pool)
            logf.write(f"--- {time.strftime('%H:%M:%S')} Install {comp.name} {comp.version}\n")
            try:
                code = subprocess.run(
                    ["sh", "-c", script],
                    cwd=work,
                    env=self._env(comp, setenv),
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                r.state, r.reason = "BROKEN", f"Install timed out after {timeout:.0f}s"
                raise DeploymentFailed(
                    f"{comp.name} {comp.version}: {r.reason}",
                    ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                    ["COMPONENT_ERROR"],
                ) from None
            if code != 0:
                r.state, r.reason = "BROKEN", f"Install exited with {code}"
                raise DeploymentFailed(
                    f"{comp.name} {comp.version}: {r.reason} (see {self.layout.log(comp.name)})",
                    ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                    ["COMPONENT_ERROR"],
                )
        r.state = "INSTALLED"
        startup, timeout, setenv, _ = step_of(comp.lifecycle, "Startup")
        if startup:
            script = self._render(comp, "Startup", pool)
            code = subprocess.run(
                ["sh", "-c", script],
                cwd=work,
                env=self._env(comp, setenv),
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
            if code != 0:
                r.state, r.reason = "BROKEN", f"Startup exited with {code}"
                raise DeploymentFailed(
                    f"{comp.name} {comp.version}: {r.reason}",
                    ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
                )
            r.state = "RUNNING"
        run, _, setenv, _ = step_of(comp.lifecycle, "Run")
        r.run_script = self._render(comp, "Run", pool)
        r.extra["env"] = setenv
        r.started = time.time()
        if run:
            self._spawn(r)
        elif not startup:
            r.state = "FINISHED"
        log.info("%s %s: %s", comp.name, comp.version, r.state)

    def _spawn(self, r: Running) -> None:
        work = self.layout.work(r.component.name)
        r.log_file.write(f"--- {time.strftime('%H:%M:%S')} Run {r.component.name} {r.component.version}\n")
        r.process = subprocess.Popen(  # noqa: S603
            ["sh", "-c", r.run_script],
            cwd=work,
            env=self._env(r.component, r.extra.get("env") or {}),
            stdout=r.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        r.state = "RUNNING"
        r.started = time.time()

    def _skip(self, skip_if: str, comp: Component, pool: dict[str, Component]) -> bool:
        if not skip_if:
            return False
        kind, _, arg = skip_if.partition(" ")
        if kind == "onpath":
            import shutil

            return shutil.which(arg.strip()) is not None
        if kind == "exists":
            return Path(interpolate(arg.strip(), comp, lambda n: pool.get(n), self.layout, self.o.thing)).exists()
        return False

    def _notify(self, name: str, changed: list[str]) -> None:
        """The local stand-in for PostComponentUpdateEvent: ``update.json`` in the work folder, then SIGHUP."""
        r = self.running[name]
        doc = {
            "deployment_id": self.deployment.get("id"),
            "changed": {c: self.running[c].component.version for c in changed if c in self.running},
            "at": time.time(),
        }
        work = self.layout.work(name)
        tmp = work / "update.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(work / "update.json")
        r.notified = time.time()
        if r.process and r.process.poll() is None:
            os.kill(r.process.pid, signal.SIGHUP)
        log.info("notified %s of %s", name, doc["changed"])

    def _stop(self, name: str) -> None:
        r = self.running.pop(name, None)
        if r is None:
            return
        proc = r.process
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        shutdown, timeout, setenv, _ = step_of(r.component.lifecycle, "Shutdown")
        if shutdown:
            script = interpolate(shutdown, r.component, lambda n: None, self.layout, self.o.thing)
            subprocess.run(
                ["sh", "-c", script],
                cwd=self.layout.work(name),
                env=self._env(r.component, setenv),
                stdout=r.log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if r.log_file:
            r.log_file.close()

    # ------------------------------------------------------------------ health
    def _status_doc(self, name: str) -> tuple[dict[str, Any] | None, float]:
        path = self.layout.work(name) / "status.json"
        try:
            return json.loads(path.read_text()), path.stat().st_mtime
        except (OSError, ValueError):
            return None, 0.0

    def _check_health(self, started: list[str], notified: list[str], since: float, is_rollback: bool) -> None:
        """Started components must keep running ``settle`` seconds and not report ERRORED; started and notified
        components that write ``status.json`` are waited for (up to ``ack`` seconds) and judged by it."""
        watch = [n for n in started if self.running.get(n) and self.running[n].process is not None]
        pending_ack = {n for n in watch + notified if n in self.running}
        settle_until = since + self.o.settle_seconds
        ack_until = since + self.o.ack_seconds
        while True:
            now = time.time()
            for name in list(pending_ack):
                r = self.running[name]
                if r.process is not None and r.process.poll() is not None:
                    code = r.process.returncode
                    r.state, r.reason = ("FINISHED", "") if code == 0 else ("ERRORED", f"exited with {code}")
                    if code != 0:
                        raise self._broken(name, r.reason)
                    pending_ack.discard(name)
                    continue
                doc, mtime = self._status_doc(name)
                if doc is not None and mtime > since:
                    state = str(doc.get("state", "")).upper()
                    if state in ("ERRORED", "BROKEN"):
                        r.reason = f"reported ERRORED: {doc.get('error') or 'no reason given'}"
                        raise self._broken(name, r.reason)
                    if state in ("RUNNING", "FINISHED") and now >= settle_until:
                        pending_ack.discard(name)
            if not pending_ack and now >= settle_until:
                return
            if now >= ack_until and now >= settle_until:
                return  # alive and silent: RUNNING as far as the nucleus can tell
            time.sleep(0.2)

    def _broken(self, name: str, reason: str) -> DeploymentFailed:
        version = self.running[name].component.version if name in self.running else "?"
        return DeploymentFailed(
            f"{name} {version} did not reach RUNNING: {reason}",
            ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"],
            ["COMPONENT_ERROR"],
        )

    # ------------------------------------------------------------------ supervision between deployments
    def supervise(self) -> None:
        with self.lock:
            for name, r in self.running.items():
                if r.process is None or r.process.poll() is None or r.state in ("FINISHED", "BROKEN"):
                    continue
                code = r.process.returncode
                if code == 0:
                    r.state = "FINISHED"
                    continue
                r.restarts += 1
                if r.restarts >= MAX_RESTARTS:
                    r.state, r.reason = "BROKEN", f"exited with {code} {r.restarts} times"
                    log.error("%s is BROKEN: %s", name, r.reason)
                else:
                    r.state, r.reason = "ERRORED", f"exited with {code}; restarting"
                    log.warning("%s exited with %s; restart %d", name, code, r.restarts)
                    self._spawn(r)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
