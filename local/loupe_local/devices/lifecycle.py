"""A component's lifecycle on a local core device: Install, Startup, Run, Shutdown, and update notifications.

Install and Startup are one kind of step here, as in the Greengrass recipe reference: a script run to completion
(``Skipif``, ``Timeout``, ``Setenv``); a non-zero exit or a timeout makes the component BROKEN and fails the
deployment. Run is a supervised process (its own session, restarted by the device); Shutdown runs after the
process is stopped. See ``local/loupe_local/devices/DEVICES.md`` for the contract with the components.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loupe_local.devices.recipes import Component, DeploymentFailed, Layout, interpolate, step_of
from loupe_local.devices.tes import COMPONENT as TOKEN_EXCHANGE_SERVICE
from loupe_local.devices.tes import TokenExchangeService
from loupe_local.local_auth import MQTT_USERNAME, RunCredentials, mqtt_password

log = logging.getLogger("loupe_local.device")

# what would give a component credentials other than the token exchange service's (botocore's credential chain)
_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)
BROKEN_STACK = ["DEPLOYMENT_FAILURE", "COMPONENT_UPDATE_ERROR", "COMPONENT_BROKEN"]


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
class ProcessEnvironment:
    """What a component's processes are told about the device (``AWS_*``, ``LOUPE_*``)."""

    thing: str
    endpoint: str
    region: str
    python: str = sys.executable
    mqtt_host: str = ""
    mqtt_port: int = 0
    seed_venvs: bool = True
    nucleus_ipc: Callable[[], str | None] = lambda: None  # the nucleus' IPC address while it spools
    nucleus_token: Callable[[str], str | None] = lambda name: None  # the token (per component) its IPC asks for
    credentials: RunCredentials | None = None  # the local AWS's run credential (MQTT login; AWS calls without TES)
    # the device's token exchange service, once it has one (a device with an IoT identity): then components get AWS
    # credentials only from it, and only when their recipe depends on aws.greengrass.TokenExchangeService
    token_exchange: Callable[[], TokenExchangeService | None] = lambda: None


class LifecycleRunner:
    """Runs the lifecycle steps of the components in ``running`` (name -> its process and state)."""

    def __init__(self, layout: Layout, process_env: ProcessEnvironment) -> None:
        self.layout = layout
        self.pe = process_env
        self.running: dict[str, Running] = {}

    # ------------------------------------------------------------------ scripts and environment
    def render(self, comp: Component, step: str, pool: dict[str, Component]) -> str:
        script, _, _, _ = step_of(comp.lifecycle, step)

        def lookup(name: str) -> Component | None:
            return pool.get(name) or (self.running[name].component if name in self.running else None)

        return interpolate(script, comp, lookup, self.layout, self.pe.thing) if script else ""

    def setenv(self, comp: Component, step: str, pool: dict[str, Component]) -> dict[str, str]:
        """The environment a step's recipe gives it: the lifecycle's ``Setenv``, then the step's, each value with its
        recipe variables interpolated. The nucleus resolves variables in every string of the lifecycle, ``Setenv``
        included (aws-greengrass-nucleus, ``KernelConfigResolver.interpolate``), and an environment variable
        reaches the script as data, not as shell text."""
        _, _, step_env, _ = step_of(comp.lifecycle, step)
        lifecycle_env = comp.lifecycle.get("Setenv") or comp.lifecycle.get("setenv") or {}

        def lookup(name: str) -> Component | None:
            return pool.get(name) or (self.running[name].component if name in self.running else None)

        merged = {str(k): str(v) for k, v in lifecycle_env.items()} | step_env
        return {k: interpolate(v, comp, lookup, self.layout, self.pe.thing) for k, v in merged.items()}

    def env(self, comp: Component, setenv: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("PYTEST", "LOUPE_STATE")):
                env.pop(key)
        env.update(
            {
                "PATH": f"{Path(self.pe.python).parent}:{env.get('PATH', '/usr/bin:/bin')}",
                "AWS_ENDPOINT_URL": self.pe.endpoint,
                "AWS_REGION": self.pe.region,
                "AWS_DEFAULT_REGION": self.pe.region,
                "AWS_IOT_THING_NAME": self.pe.thing,
                "GG_ROOT_CA_PATH": "",
                "LOUPE_TRANSPORT": "mqtt",
                "LOUPE_DEVICE_ROOT": str(self.layout.root),
                "PYTHONUNBUFFERED": "1",
            }
        )
        tes = self.pe.token_exchange()
        if tes is not None:
            # Greengrass: a component has AWS credentials only through the token exchange service, and only when it
            # depends on it (Greengrass developer guide, "Interact with AWS services"): nothing of the device's own
            # environment (the run's key it was started with) reaches the component
            for key in _CREDENTIAL_VARIABLES:
                env.pop(key, None)
            if TOKEN_EXCHANGE_SERVICE in comp.dependencies:
                env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = tes.url
                env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = tes.token_for(comp.name)
        elif self.pe.credentials is not None:
            # a device without an IoT identity (a stack without a role alias): the run's credential, as before
            env.update(self.pe.credentials.env())
        if self.pe.mqtt_host:
            env["LOUPE_MQTT_HOST"] = self.pe.mqtt_host
            env["LOUPE_MQTT_PORT"] = str(self.pe.mqtt_port)
            if self.pe.credentials is not None:
                env["LOUPE_MQTT_USERNAME"] = MQTT_USERNAME
                env["LOUPE_MQTT_PASSWORD"] = mqtt_password(self.pe.credentials)
        ipc = self.pe.nucleus_ipc()
        if ipc is not None:  # the local form of IPC PublishToIoTCore through the nucleus' spooler
            env["LOUPE_TRANSPORT"] = "nucleus"
            env["LOUPE_NUCLEUS_IPC"] = ipc
            # Greengrass hands each component its own token in SVCUID: its IPC connection authenticates with it, and
            # the nucleus authorizes each call against that component's accessControl
            env["SVCUID"] = self.pe.nucleus_token(comp.name) or ""
        env.update(setenv)  # the recipe's Setenv, interpolated (:meth:`setenv`)
        return env

    def _seed_venv(self, comp: Component) -> None:
        """Local devices reuse this interpreter for a component's ``{work:path}/venv`` (no PyPI download)."""
        if not self.pe.seed_venvs:
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
        wrapper.write_text(f'#!/bin/sh\nexec "{self.pe.python}" "$@"\n')
        wrapper.chmod(0o755)
        (venv / ".requirements").write_bytes(reqs[0].read_bytes())

    def _skip(self, skip_if: str, comp: Component, pool: dict[str, Component]) -> bool:
        if not skip_if:
            return False
        kind, _, arg = skip_if.partition(" ")
        if kind == "onpath":
            return shutil.which(arg.strip()) is not None
        if kind == "exists":
            return Path(interpolate(arg.strip(), comp, lambda n: pool.get(n), self.layout, self.pe.thing)).exists()
        return False

    # ------------------------------------------------------------------ steps
    def _run_to_completion(self, r: Running, step: str, pool: dict[str, Component]) -> bool:
        """Run an Install or Startup step; False when the recipe has none (or its ``Skipif`` holds)."""
        comp = r.component
        script, timeout, _, skip_if = step_of(comp.lifecycle, step)
        if not script or self._skip(skip_if, comp, pool):
            return False
        r.log_file.write(f"--- {time.strftime('%H:%M:%S')} {step} {comp.name} {comp.version}\n")
        try:
            code = subprocess.run(
                ["sh", "-c", self.render(comp, step, pool)],
                cwd=self.layout.work(comp.name),
                env=self.env(comp, self.setenv(comp, step, pool)),
                stdout=r.log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            r.state, r.reason = "BROKEN", f"{step} timed out after {timeout:.0f}s"
            raise DeploymentFailed(
                f"{comp.name} {comp.version}: {r.reason}", BROKEN_STACK, ["COMPONENT_ERROR"]
            ) from None
        if code != 0:
            r.state, r.reason = "BROKEN", f"{step} exited with {code}"
            raise DeploymentFailed(
                f"{comp.name} {comp.version}: {r.reason} (see {self.layout.log(comp.name)})",
                BROKEN_STACK,
                ["COMPONENT_ERROR"],
            )
        return True

    def rendered_steps(self, comp: Component, pool: dict[str, Component]) -> dict[str, Any]:
        """Each lifecycle step as the nucleus would run it (script and Setenv, recipe variables interpolated): a
        configuration change that reaches any of them reinstalls and restarts the component."""
        return {
            step: [self.render(comp, step, pool), self.setenv(comp, step, pool)]
            for step in ("Install", "Startup", "Run")
        }

    def start(self, comp: Component, pool: dict[str, Component]) -> None:
        work = self.layout.work(comp.name)
        work.mkdir(parents=True, exist_ok=True)
        self.layout.log(comp.name).parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.layout.log(comp.name), "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        r = Running(comp, log_file=logf)
        self.running[comp.name] = r
        (work / "status.json").unlink(missing_ok=True)
        self._seed_venv(comp)
        self._run_to_completion(r, "Install", pool)
        r.state = "INSTALLED"
        started_up = self._run_to_completion(r, "Startup", pool)
        if started_up:
            r.state = "RUNNING"
        run, _, _, _ = step_of(comp.lifecycle, "Run")
        r.run_script = self.render(comp, "Run", pool)
        r.extra["env"] = self.setenv(comp, "Run", pool)
        r.extra["steps"] = self.rendered_steps(comp, pool)
        r.started = time.time()
        if run:
            self.spawn(r)
        elif not started_up:
            r.state = "FINISHED"
        log.info("%s %s: %s", comp.name, comp.version, r.state)

    def spawn(self, r: Running) -> None:
        work = self.layout.work(r.component.name)
        r.log_file.write(f"--- {time.strftime('%H:%M:%S')} Run {r.component.name} {r.component.version}\n")
        r.process = subprocess.Popen(  # noqa: S603
            ["sh", "-c", r.run_script],
            cwd=work,
            env=self.env(r.component, r.extra.get("env") or {}),
            stdout=r.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sighup,  # noqa: PLW1509 - one signal reset in the child, no lock taken
        )
        r.state = "RUNNING"
        r.started = time.time()

    def notify(self, name: str, changed: list[str], deployment_id: str | None) -> None:
        """The local stand-in for PostComponentUpdateEvent: ``update.json`` in the work folder, then SIGHUP."""
        r = self.running[name]
        doc = {
            "deployment_id": deployment_id,
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

    def stop(self, name: str) -> None:
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
        shutdown, timeout, _, _ = step_of(r.component.lifecycle, "Shutdown")
        if shutdown:
            script = interpolate(shutdown, r.component, lambda n: None, self.layout, self.pe.thing)
            subprocess.run(
                ["sh", "-c", script],
                cwd=self.layout.work(name),
                env=self.env(r.component, self.setenv(r.component, "Shutdown", {})),
                stdout=r.log_file,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if r.log_file:
            r.log_file.close()


def _default_sighup() -> None:
    """In a component's process before exec: SIGHUP back to its default. SIGHUP is how this local nucleus announces
    an update (:meth:`LifecycleRunner.notify`), and a signal ignored when a shell starts can never be trapped by it
    (POSIX, ``trap``): a device started under ``nohup`` would otherwise pass the ignore on and its shell components
    would miss every notification."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
