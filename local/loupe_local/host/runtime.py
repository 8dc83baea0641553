"""The embedded local AWS: moto's server, template.yaml provisioned into it, real handlers, events, stand-ins."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from loupe_local import state as state_mod
from loupe_local.host import custom_resources, moto_patches
from loupe_local.host.alarms import AlarmEvaluator
from loupe_local.host.invoker import FunctionError, Invoker, RegisteredFunction
from loupe_local.host.provisioner import Provisioner
from loupe_local.host.router import Router
from loupe_local.host.runtime_iam import RuntimeIam
from loupe_local.iam.audit import Auditor
from loupe_local.local_auth import (
    CERTIFICATE_ROUTE,
    Gatekeeper,
    Refusal,
    RunCredentials,
    access_denied,
    preflight,
    public_cors_headers,
    signing_name,
)
from loupe_local.private_files import private_dir, write_private
from loupe_local.provisioned import Provisioned
from loupe_local.standins import AwsRequest, StandIn, load_all
from loupe_local.standins.cloudformation import CustomResourceResponses
from loupe_local.standins.groundtruth.service import local_workteam_arn
from loupe_local.template import ACCOUNT_ID, load_sam_app

log = logging.getLogger("loupe_local")

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` when it is free, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                log.info("port %s is in use, taking another", candidate)
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


class _Gateway:
    """WSGI middleware: the gatekeeper (``loupe_local.local_auth``: no browser origins, loopback Host names, the
    run's signed credential), then stand-ins, then moto; stand-ins also observe what moto answered."""

    def __init__(self, app: Any, standins: list[StandIn], gatekeeper: Gatekeeper) -> None:
        self.app = app
        self.standins = standins
        self.gatekeeper = gatekeeper
        # the IAM check of role sessions' requests (LOUPE_LOCAL_IAM audit / enforce); None: not evaluated
        self.auditor: Auditor | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = environ["wsgi.input"].read(int(length))
        elif environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = environ["wsgi.input"].read()
            environ["CONTENT_LENGTH"] = str(len(body))
        else:
            body = b""
        environ["wsgi.input"] = io.BytesIO(body)
        answered = preflight(environ, self.gatekeeper.port)
        if answered is not None:
            start_response(f"{answered[0]} X", answered[1])
            return [b""]
        grant = public_cors_headers(environ)
        if grant:
            # a page's call of a public user pool operation: its answer, refusal or error alike, is readable there
            inner = start_response

            def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
                kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
                return inner(status, kept + grant, exc_info)

        refusal = self.gatekeeper.check(environ, body)
        if refusal is not None:
            log.warning(
                "refused %s %s (Host %r): %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
                environ.get("HTTP_HOST"),
                refusal.code,
            )
            status, headers, data = refusal.encode(environ, body)
            start_response(f"{status} X", list(headers.items()))
            return [data]
        session = environ.get("loupe.iam.session")
        auditor = self.auditor
        if session is not None and auditor is not None:
            # before the stand-ins: their operations are authorized like moto's
            decision = auditor.check(session, environ, body, signing_name(environ))
            if decision.denied is not None and auditor.mode == "enforce":
                status, headers, data = access_denied(environ, body, decision.message).encode(environ, body)
                start_response(f"{status} X", list(headers.items()))
                return [data]
        request = AwsRequest.from_environ(environ, body)
        for standin in self.standins:
            try:
                claimed = standin.handles(request)
            except Exception:
                log.exception("stand-in %s failed to inspect a request", standin.name)
                claimed = False
            if claimed:
                try:
                    status, headers, data = standin.handle(request).encode()
                except Exception as exc:
                    log.exception("stand-in %s failed", standin.name)
                    from loupe_local.standins import error

                    status, headers, data = error("InternalFailure", f"{standin.name}: {exc}", 500).encode()
                start_response(f"{status} X", list(headers.items()))
                return [data]
        if environ.get(CERTIFICATE_ROUTE):
            # the gate let it in unsigned for the IoT credentials provider, which is not there
            status, headers, data = Refusal("NotFound", "no credentials provider at this endpoint", 404).encode(
                environ, body
            )
            start_response(f"{status} X", list(headers.items()))
            return [data]
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split(" ", 1)[0])
            # no CORS grant ever leaves the local AWS (a bucket's CORS rules included): no page may read it
            headers = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        data = b"".join(result)
        for standin in self.standins:
            try:
                standin.after(request, captured.get("status", 0), data)
            except Exception:
                log.exception("stand-in %s failed to observe %s", standin.name, request.target or request.path)
        return [data]


class LocalRuntime(RuntimeIam):
    def __init__(
        self,
        root: Path = REPO_ROOT,
        state_dir: Path | None = None,
        port: int | None = None,
        parameters: dict[str, str] | None = None,
        stack_name: str = "loupe",
        region: str = "us-east-1",
        mqtt: bool = True,
        standins: list[StandIn] | None = None,
        alarm_time_scale: float = 1.0,
        credentials: RunCredentials | None = None,
        iam: str | None = None,
        groundtruth_customer: bool = False,
        custom_resource_wait: float = 300.0,
    ) -> None:
        self.root = Path(root)
        self._init_iam(iam)
        self._gateway: _Gateway | None = None
        self.state_dir = Path(state_dir) if state_dir else state_mod.state_dir(self.root)
        self.preferred_port = port
        self.parameters = dict(parameters or {})
        if self.parameters.get("LabelingService") == "GroundTruth" and "WorkteamArn" not in self.parameters:
            # a Ground Truth stack names its workforce like a real deploy must (template.yaml Rules): the local
            # private workteam that the Ground Truth stand-in's workforce stands for
            self.parameters["WorkteamArn"] = local_workteam_arn(region)
        # Ground Truth is closed to new customers: the local account is not one unless told (the stand-in answers
        # CreateLabelingJob with AccessDeniedException otherwise; `loupe local up --groundtruth-customer`)
        self.groundtruth_customer = groundtruth_customer
        # the local account has no fleet group of its own: the local stack creates it (CreateThingGroup=true)
        # unless the caller names an existing one with CreateThingGroup=false
        self.parameters.setdefault("CreateThingGroup", "true")
        self.stack_name = stack_name
        self.region = region
        self.want_mqtt = mqtt
        self.standins = standins if standins is not None else load_all()
        self.endpoint = ""
        self.port = 0
        self.resources: dict[str, Provisioned] = {}
        self.mqtt: dict[str, Any] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self.invoker: Invoker | None = None
        self.router: Router | None = None
        self._session: boto3.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}  # (service, endpoint) -> client
        self._clients_lock = threading.Lock()
        self._session_lock = threading.Lock()
        self._provisioner: Provisioner | None = None
        self._event_pool = threading.BoundedSemaphore(8)
        self.alarm_time_scale = alarm_time_scale
        self.alarms: AlarmEvaluator | None = None
        self.app_workforce: Any = None  # the labeling app's bot labelers (LabelingService=Loupe)
        # how long provisioning waits for a custom resource's answer (CloudFormation: its ServiceTimeout, up to 1 h)
        self.custom_resource_wait = custom_resource_wait
        self._stopped = False
        # the one credential this run's local AWS accepts (a fresh one per run; written to the owner-only state dir)
        self.credentials = credentials or RunCredentials.generate()

    # ------------------------------------------------------------------ API for stand-ins, tests, the CLI
    def client(self, service: str) -> Any:
        """A client of the local AWS with the run's key: one per service for the run. boto3's clients are
        thread-safe ("Multithreading or multiprocessing with clients" in boto3's guide; a Session is not, which
        the lock covers), and making one costs ~10 ms of CPU, which the stand-ins, the router and the demo's
        observer used to pay on every call. Shared: a caller that changes its client (registers an event hook,
        stubs it) takes :meth:`own_client` instead."""
        with self._clients_lock:
            client = self._clients.get((service, self.endpoint))
            if client is None:
                client = self._clients[(service, self.endpoint)] = self.own_client(service)
        return client

    def own_client(self, service: str) -> Any:
        """A client of the local AWS with the run's key, made for the caller alone."""
        assert self._session is not None, "start() first"
        with self._session_lock:  # a boto3 Session is not thread-safe
            return self._session.client(
                service,
                endpoint_url=self.endpoint,
                config=Config(retries={"max_attempts": 2, "mode": "standard"}),
            )

    def resource(self, service: str) -> Any:
        """A boto3 resource (``dynamodb``, ``s3``) with the run's key, as :meth:`client`: never the process
        environment's credential, which is a function role's session while a handler runs in-process."""
        assert self._session is not None, "start() first"
        with self._session_lock:  # the Session that own_client's lock guards: a resource makes its client there too
            return self._session.resource(service, endpoint_url=self.endpoint)

    def physical(self, logical_id: str) -> str:
        return self.resources[logical_id].ref

    def arn(self, logical_id: str) -> str:
        res = self.resources[logical_id]
        return res.attrs.get("Arn") or res.ref

    def emit_event(
        self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None
    ) -> None:
        """Put an event on the default bus, as an AWS service would; moto matches it, the router delivers it."""
        out = self.client("events").put_events(
            Entries=[
                {
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, default=str),
                    "Resources": resources or [],
                }
            ]
        )
        if out.get("FailedEntryCount"):
            raise RuntimeError(f"put_events failed: {out}")

    def invoke(self, logical_id: str, event: Any) -> Any:
        assert self.invoker is not None
        return self.invoker.invoke(self.physical(logical_id), event)

    @property
    def parameter_values(self) -> dict[str, Any]:
        return self._provisioner.resolver.parameters if self._provisioner else {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalRuntime:
        self._stopped = False
        moto_patches.apply()
        self.port = free_port(self.preferred_port)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {
            "MOTO_PORT": str(self.port),  # the ASL engine's service calls go to this server
            "AWS_ENDPOINT_URL": self.endpoint,
            **self.credentials.env(),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
            "POWERTOOLS_METRICS_NAMESPACE": "Loupe",
        }
        os.environ.update(env)
        # boto3's default session caches the credentials it first found: the next one reads this run's
        boto3.DEFAULT_SESSION = None
        moto_patches.set_engine_credentials(self.credentials.access_key_id, self.credentials.secret_access_key)
        private_dir(self.state_dir)
        self._clients.clear()
        self._session = boto3.Session(
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            region_name=self.region,
        )
        self._start_server()
        t0 = time.monotonic()
        # the transform sees the deploy's parameter values, as `sam deploy` does (an HttpApi's CORS origin is one)
        app = load_sam_app(self.root / "template.yaml", self.parameters)
        self._provisioner = Provisioner(app, _EndpointSession(self), self.stack_name, self.region, self.parameters)
        self.resources = self._provisioner.provision()
        alarms = [
            {"name": res.ref, "arn": res.attrs["Arn"], **res.properties}
            for res in self.resources.values()
            if res.type == "AWS::CloudWatch::Alarm"
        ]
        self.alarms = AlarmEvaluator(self.client("cloudwatch"), alarms, self._alarm_changed, self.alarm_time_scale)
        self.invoker = Invoker(env, app.layer_dirs, emf_sink=self.alarms.put_emf, log_dir=self.state_dir / "logs")
        for logical_id, code in app.functions.items():
            res = self.resources[logical_id]
            if res.skipped:  # a function whose Condition is false does not exist (LabelingCallbackFunction)
                continue
            props = res.properties
            self.invoker.register(
                RegisteredFunction(
                    logical_id=logical_id,
                    name=res.ref,
                    arn=res.attrs["Arn"],
                    code_dir=code.code_dir,
                    handler=code.handler,
                    environment={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
                    timeout=int(props.get("Timeout", 3)),
                    memory=int(props.get("MemorySize", 128)),
                )
            )
        moto_patches.set_lambda_handler(self._lambda_call)
        self.router = Router(self.invoker, self.client, self.region, ACCOUNT_ID)
        moto_patches.set_event_target_handler(self.router.deliver)
        self._app = app
        self.set_iam(self.iam_mode)
        for res in self.resources.values():
            if res.type == "AWS::Events::Rule" and res.properties.get("ScheduleExpression"):
                targets = self.client("events").list_targets_by_rule(Rule=res.ref)["Targets"]
                self.router.add_schedule(res.ref, res.properties["ScheduleExpression"], targets)
            if res.type == "AWS::IoT::TopicRule":
                rule = self.client("iot").get_topic_rule(ruleName=res.ref)["rule"]
                self.router.add_topic_rule(res.ref, {**rule, "errorAction": rule.get("errorAction")})
        if self.want_mqtt:
            self._start_mqtt()
        self.alarms.start()
        for standin in self.standins:
            standin.attach(self)
        self._create_custom_resources()
        self._start_app_workforce()
        log.info(
            "local AWS ready at %s (%d resources in %.1fs)",
            self.endpoint,
            len(self.resources),
            time.monotonic() - t0,
        )
        self.write_state()
        return self

    def _create_custom_resources(self) -> None:
        """The template's custom resources, created last as CloudFormation would once their provider function
        exists (loupe_local.host.custom_resources): each ServiceToken function is invoked asynchronously (under its own
        role session when IAM is checked) and its answer awaited at a presigned response URL. A resource that
        fails stops the local AWS and raises, as a failed stack create rolls back."""
        assert self._provisioner is not None and self.router is not None and self._session is not None
        if not self._provisioner.pending_custom:
            return
        responses = next((s for s in self.standins if isinstance(s, CustomResourceResponses)), None)
        if responses is None:  # a runtime given its own stand-ins still answers CloudFormation's requests
            responses = CustomResourceResponses()
            responses.attach(self)
            self.standins.append(responses)
        hooks = custom_resources.runtime_hooks(self._session, self.endpoint, self.router.invoke_async, responses)
        stack_id = self._provisioner.stack_id

        def create(logical_id: str, resource_type: str, properties: dict[str, Any]) -> Provisioned:
            return custom_resources.create(
                logical_id,
                resource_type,
                properties,
                stack_id=stack_id,
                hooks=hooks,
                max_wait=self.custom_resource_wait,
            )

        try:
            self._provisioner.provision_custom(create)
        except Exception:
            self.stop()
            raise

    def _start_app_workforce(self) -> None:
        """With the labeling app (LabelingService=Loupe, the default), the automatic workforce is bot labelers that
        answer through the console API (loupe_local.console.workforce); with Ground Truth it is the stand-in's."""
        if str(self.parameter_values.get("LabelingService", "Loupe")) != "Loupe":
            return
        from loupe_local.console.workforce import AppWorkforce
        from loupe_local.standins.httpapi.service import HttpApis

        apis = next((s for s in self.standins if isinstance(s, HttpApis)), None)
        if apis is None or "ConsoleApi" not in apis.urls:
            log.warning("no local console API: the labeling app has no automatic workforce")
            return
        self.app_workforce = AppWorkforce.for_runtime(self, apis.urls["ConsoleApi"]).start()

    def _start_server(self) -> None:
        from werkzeug.serving import make_server

        app = _Gateway(moto_patches.server_app(), self.standins, Gatekeeper(self.credentials, self.port, self.sessions))
        self._gateway = app
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    def _start_mqtt(self) -> None:
        try:
            from loupe_local.host.mqtt_broker import Broker
        except ImportError:
            log.warning("no local MQTT broker module; IoT topic rules are not evaluated")
            return
        self._broker = Broker(
            state_dir=self.state_dir, credentials=self.credentials, device_policy=self._device_policy()
        )
        host, port = self._broker.start()
        self.mqtt = {"host": host, "port": port, "kind": getattr(self._broker, "kind", "")}
        assert self.router is not None
        self.router.connect_mqtt(host, port, self.credentials)

    def _device_policy(self) -> Any:
        """The stack's core-device IoT policy (EdgeDevicePolicy), for the broker to hold devices to."""
        from loupe_local.host.mqtt_policy import CoreDevicePolicy

        res = self.resources.get("EdgeDevicePolicy")
        if res is None or res.skipped or "PolicyDocument" not in res.properties:
            return None
        return CoreDevicePolicy(res.properties["PolicyDocument"], f"arn:aws:iot:{self.region}:{ACCOUNT_ID}:")

    def _alarm_changed(self, alarm: dict[str, Any], previous: str, state: str, reason: str) -> None:
        detail = {
            "alarmName": alarm["name"],
            "state": {
                "value": state,
                "reason": reason,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "previousState": {"value": previous},
            "configuration": {"description": alarm.get("AlarmDescription", "")},
        }
        self.emit_event("aws.cloudwatch", "CloudWatch Alarm State Change", detail, [alarm["arn"]])
        if state == "ALARM":
            for topic in alarm.get("AlarmActions", []):
                # CloudWatch publishes as cloudwatch.amazonaws.com: the topic's access policy must let it
                # (AlarmThatSendsEmail.html, "Setting up an Amazon SNS topic"; the default topic policy grants the
                # owner account's principals, AWS:SourceOwner)
                if ":sns:" in str(topic) and (
                    self.router is None
                    or self.router.service_may("cloudwatch.amazonaws.com", "sns:Publish", str(topic), alarm["arn"])
                ):
                    self.client("sns").publish(
                        TopicArn=topic, Subject=f"ALARM: {alarm['name']}"[:100], Message=f"{alarm['name']}: {reason}"
                    )

    def _lambda_call(self, function_name: str, event: Any, asynchronous: bool) -> tuple[Any, bool]:
        assert self.invoker is not None
        if asynchronous:
            threading.Thread(target=self._async_invoke, args=(function_name, event), daemon=True).start()
            return "", False
        try:
            return self.invoker.invoke(function_name, event), False
        except FunctionError as exc:
            return exc.payload, True

    def _async_invoke(self, function_name: str, event: Any) -> None:
        # InvocationType=Event: the router applies the function's EventInvokeConfig (retries, on-failure destination)
        assert self.router is not None
        try:
            self.router.invoke_async(function_name, event)
        except Exception as exc:
            log.warning("async invoke of %s was refused: %s", function_name, exc)

    def status(self) -> dict[str, Any]:
        functions = {}
        if self.invoker:
            functions = {
                fn.logical_id: {
                    "invocations": fn.invocations,
                    "errors": fn.errors,
                    "last_error": fn.last_error,
                }
                for fn in self.invoker.functions.values()
            }
        return {
            "functions": functions,
            "router": {
                "delivered": len(self.router.delivered) if self.router else 0,
                "failures": self.router.failures[-10:] if self.router else [],
            },
            "standins": {s.name: s.status() for s in self.standins},
        }

    def write_state(self, **extra: Any) -> Path:
        data = {
            "endpoint": self.endpoint,
            "region": self.region,
            "stack_name": self.stack_name,
            "pid": os.getpid(),
            "started": time.time(),
            "root": str(self.root),
            "resources": {lid: res.as_json() for lid, res in self.resources.items()},
            "parameters": self.parameter_values,
            "mqtt": self.mqtt,
            "credentials": self.credentials.as_state(),
            "iam": self.iam_mode,
            **({"console": self.console_url()} if self.console_url() else {}),
            **{key: value for standin in self.standins for key, value in standin.state().items()},
            **extra,
        }
        return (
            state_mod.write(data, self.root)
            if self.state_dir == state_mod.state_dir(self.root)
            else _write_at(self.state_dir, data)
        )

    def console_url(self) -> str | None:
        """The console app's URL: the stack's ConsoleApi (its local HTTP API stand-in) at ``/``, which serves the
        same pages and routes as the deployed stack's API Gateway; None before the stand-in serves it."""
        from loupe_local.standins.httpapi.service import HttpApis

        apis = next((s for s in self.standins if isinstance(s, HttpApis)), None)
        url = apis.urls.get("ConsoleApi") if apis is not None else None
        return f"{url.rstrip('/')}/" if url else None

    def stop(self) -> None:
        if self._stopped:  # once: a failed start stops itself, and its caller's cleanup may stop it again
            return
        self._stopped = True
        if self.app_workforce is not None:
            self.app_workforce.stop()
            self.app_workforce = None
        for standin in reversed(self.standins):
            try:
                standin.stop()
            except Exception:
                log.exception("stopping stand-in %s", standin.name)
        if self.alarms:
            self.alarms.stop()
        if self.router:
            self.router.stop()
        if self._broker:
            self._broker.stop()
        moto_patches.set_lambda_handler(None)
        moto_patches.set_event_target_handler(None)
        moto_patches.set_engine_credentials(None)
        moto_patches.set_engine_role_credentials(None)
        if self.invoker:
            self.invoker.close()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class _EndpointSession:
    """What the provisioner needs of a boto3 session: clients bound to the local endpoint."""

    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime

    def client(self, service: str) -> Any:
        return self.runtime.client(service)


def _write_at(directory: Path, data: dict[str, Any]) -> Path:
    return write_private(directory / "local.json", json.dumps(data, indent=2, default=str))
