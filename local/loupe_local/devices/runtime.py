"""One local Greengrass core device: pull deployments, install and run components, roll back on failure.

The device is told its control plane (``device_control.py``: the Greengrass stand-in's local protocol, recipes,
artifacts); ``device_resolver.py`` turns a deployment into components, ``device_lifecycle.py`` runs their
lifecycle steps, ``nucleus_mqtt.py`` is the nucleus' MQTT connection and spooler. This module applies
deployments (with rollback), judges the components' health and supervises them between deployments.

See ``local/loupe_local/devices/DEVICES.md`` for the contract with the components (work folders, ``status.json``,
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.devices.control import ControlPlane
from loupe_local.devices.ipc_auth import IpcPolicies, interpolates
from loupe_local.devices.lifecycle import BROKEN_STACK, LifecycleRunner, ProcessEnvironment
from loupe_local.devices.recipes import Component, DeploymentFailed, Layout, RecipeError, fetch_artifacts
from loupe_local.devices.resolver import ComponentResolver, components_from, dependency_order
from loupe_local.devices.tes import TokenExchangeService
from loupe_local.local_auth import RunCredentials

log = logging.getLogger("loupe_local.device")

MAX_RESTARTS = 3


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
    credentials: RunCredentials | None = None  # the local AWS's run credential (None: the environment's)


class Device:
    def __init__(self, options: DeviceOptions, control: ControlPlane) -> None:
        self.o = options
        self.control = control
        self.layout = Layout(options.root)
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.resolver = ComponentResolver(control.gg, options.region, options.overlay)
        self.mqtt: Any = None  # NucleusMqtt when options.nucleus_mqtt
        self.lifecycle = LifecycleRunner(
            self.layout,
            ProcessEnvironment(
                thing=options.thing,
                endpoint=options.endpoint,
                region=options.region,
                python=options.python,
                mqtt_host=options.mqtt_host,
                mqtt_port=options.mqtt_port,
                seed_venvs=options.seed_venvs,
                nucleus_ipc=lambda: self.mqtt.address if self.mqtt is not None else None,
                nucleus_token=lambda name: self.mqtt.token_for(name) if self.mqtt is not None else None,
                credentials=options.credentials or RunCredentials.from_env(),
                token_exchange=lambda: self.tes,
            ),
        )
        self.tes: TokenExchangeService | None = None  # started once the control plane gave the device credentials
        self.running = self.lifecycle.running  # component name -> its process and lifecycle state
        self.current: dict[str, Any] = self._load_current()
        self.deployment: dict[str, Any] = {}
        self.stop_event = threading.Event()
        self.lock = threading.RLock()
        self.nucleus: dict[str, Any] = self.current.get("nucleus") or {
            "version": options.nucleus_version,
            "config": {},
            "plugins": {},
        }

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
        # coreVersion: the nucleus version this device runs (GetCoreDevice reports it)
        body = {"installed": installed, "platform": "linux", "coreVersion": self.nucleus["version"]}
        return self.control.post(self.o.thing, "/sync", body).get("deployment")

    def report(
        self, deployment_id: str, status: str, reason: str = "", failure: DeploymentFailed | None = None
    ) -> None:
        body: dict[str, Any] = {"status": status, "reason": reason}
        if failure is not None:
            body["statusDetails"] = {"errorStack": failure.stack, "errorTypes": failure.types}
        self.control.post(self.o.thing, f"/deployments/{deployment_id}/status", body)
        self.deployment = {"id": deployment_id, "status": status, "reason": reason, "at": time.time()}
        log.info("deployment %s: %s %s", deployment_id, status, reason)

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
        self.control.register(self.o.thing, self.o.thing_group)
        self._start_token_exchange()
        self._start_nucleus_mqtt()
        if self.current.get("components"):
            log.info("restarting the last deployed components")
            try:
                self._apply_set(components_from(self.current["components"]), notify=set(), nucleus=self.nucleus)
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
            self.lifecycle.stop(name)
        if self.mqtt is not None:
            self.mqtt.stop()  # the nucleus goes down: a memory spool's messages with it
        if self.tes is not None:
            self.tes.stop()
        self.write_status()

    # ------------------------------------------------------------------ the token exchange service
    def _start_token_exchange(self) -> None:
        """Serve components the device's credentials (``device_tes``) when its control plane got it some from the
        IoT credentials provider (``LocalControlPlane.token_credentials``; a test's control plane has none)."""
        cache = getattr(self.control, "token_credentials", None)
        if cache is not None and self.tes is None:
            self.tes = TokenExchangeService(cache.current).start()
            log.info("token exchange service on %s", self.tes.url)

    # ------------------------------------------------------------------ the nucleus' MQTT connection and spooler
    def _start_nucleus_mqtt(self) -> None:
        from loupe_local.devices.nucleus_mqtt import NucleusMqtt, open_spool, spooler_settings

        if not (self.o.nucleus_mqtt and self.o.mqtt_host):
            return
        spool = spooler_settings(self.nucleus["config"], self.nucleus["plugins"])
        self.mqtt = NucleusMqtt(
            self.o.thing,
            self.o.mqtt_host,
            self.o.mqtt_port,
            open_spool(spool, self.layout.root / "work"),
            spool["keep_qos0"],
            credentials=self.o.credentials or RunCredentials.from_env(),
        )
        self.mqtt.start()
        log.info("nucleus MQTT: spooler %s (%s), IPC on %s", spool["storage"], spool, self.mqtt.address)

    def _reconfigure_spooler(self) -> None:
        from loupe_local.devices.nucleus_mqtt import open_spool, spooler_settings

        if self.mqtt is None:
            return
        spool = spooler_settings(self.nucleus["config"], self.nucleus["plugins"])
        if spool["storage"] != self.mqtt.spool.storage or spool["max_bytes"] != self.mqtt.spool.max_bytes:
            log.info("nucleus spooler reconfigured: %s", spool)
            self.mqtt.set_spool(open_spool(spool, self.layout.root / "work"), spool["keep_qos0"])
        self.mqtt.keep_qos0 = spool["keep_qos0"]

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
            aws = {n: s for n, s in wanted.items() if n.startswith("aws.greengrass.")}
            nucleus = self.resolver.nucleus(aws, self.nucleus["version"], self.nucleus["config"])
            # a component the device has keeps its configuration, whatever version the deployment brings
            existing = {n: dict(spec.get("config") or {}) for n, spec in previous.items()}
            ours = {n: s for n, s in wanted.items() if not n.startswith("aws.greengrass.")}
            target = self.resolver.resolve(ours, existing)
        except DeploymentFailed as exc:
            self.report(dep_id, "FAILED", str(exc), exc)
            return
        except Exception as exc:
            failure = DeploymentFailed(
                f"cannot resolve the components: {exc}", ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]
            )
            self.report(dep_id, "FAILED", str(failure), failure)
            return
        notify: set[str] | None = set() if notify_policy == "SKIP_NOTIFY_COMPONENTS" else None
        try:
            try:
                self._apply_set(target, notify=notify, nucleus=nucleus)
            except (OSError, subprocess.SubprocessError, ValueError) as exc:
                raise DeploymentFailed(
                    f"the device could not apply the deployment: {type(exc).__name__}: {exc}"
                ) from exc
        except DeploymentFailed as exc:
            reason = str(exc)
            if rollback:
                try:
                    self._apply_set(components_from(previous), notify=None, nucleus=self.nucleus, is_rollback=True)
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

    def _apply_set(
        self,
        target: dict[str, Component],
        notify: set[str] | None,
        nucleus: dict[str, Any],
        is_rollback: bool = False,
    ) -> None:
        """Make the running set equal to ``target``: download, stop what changed, install, start, notify, check."""
        with self.lock:
            self._authorize_ipc(target, nucleus)
            for name in dependency_order(target):
                try:
                    fetch_artifacts(target[name], self.layout, self.control.s3)
                except RecipeError as exc:
                    raise DeploymentFailed(
                        str(exc), ["DEPLOYMENT_FAILURE", "ARTIFACT_DOWNLOAD_ERROR"], ["NETWORK_ERROR"]
                    ) from exc
            changed: list[str] = []
            for name in dependency_order(target):
                comp = target[name]
                old = self.running.get(name)
                new_script = self.lifecycle.render(comp, "Run", target)
                new_env = self.lifecycle.setenv(comp, "Run", target)
                dead = old is not None and old.process is not None and old.process.poll() is not None
                if (
                    old is None
                    or old.component.version != comp.version
                    or old.run_script != new_script
                    or (old.extra.get("env") or {}) != new_env  # configuration given through Setenv changed
                    # configuration interpolated into another step (e.g. Install's Setenv) changed: reinstall
                    or ("steps" in old.extra and old.extra["steps"] != self.lifecycle.rendered_steps(comp, target))
                    or old.state == "BROKEN"
                    or (dead and old.state != "FINISHED")
                ):
                    changed.append(name)
            for name in list(self.running):
                if name not in target or name in changed:
                    self.lifecycle.stop(name)
            started = time.time()
            for name in dependency_order(target):
                if name in changed:
                    self.lifecycle.start(target[name], target)
            # Running components told about changes of their SOFT dependencies (NOTIFY_COMPONENTS)
            to_notify = []
            for name, r in self.running.items():
                if name in changed:
                    continue
                if r.component.soft_dependencies() & set(changed) and (notify is None or name in notify):
                    to_notify.append(name)
            for name in to_notify:
                self.lifecycle.notify(name, changed, self.deployment.get("id"))
            self.write_status()
        self._check_health(changed, to_notify, started, is_rollback)

    def _authorize_ipc(self, target: dict[str, Component], nucleus: dict[str, Any]) -> None:
        """The nucleus' IPC policies become those of ``target``'s configurations (``accessControl``), with
        ``{iot:thingName}`` replaced only when this nucleus interpolates component configuration."""
        if self.mqtt is None:
            return
        interpolate = interpolates(nucleus["version"], nucleus.get("config") or {})
        configs = {name: comp.config for name, comp in target.items()}
        self.mqtt.policies = IpcPolicies.from_configs(self.o.thing, interpolate, configs)

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
        return DeploymentFailed(f"{name} {version} did not reach RUNNING: {reason}", BROKEN_STACK, ["COMPONENT_ERROR"])

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
                    self.lifecycle.spawn(r)


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
