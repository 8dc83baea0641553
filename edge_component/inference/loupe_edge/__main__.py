"""``python -m loupe_edge``: run the inference component under Greengrass (IPC) or locally (MQTT + S3).

Configuration, lowest to highest precedence: built-in defaults, ``LOUPE_EDGE_CONFIG`` (JSON or a path to a JSON
file), ``--config-json``, ``--config FILE``, then (transport ``ipc``) the component configuration read over IPC
under the ``settings`` key.  ``LOUPE_TRANSPORT`` (``ipc`` | ``mqtt`` | ``nucleus``), ``LOUPE_MQTT_HOST`` /
``LOUPE_MQTT_PORT`` (+ ``LOUPE_MQTT_USERNAME`` / ``LOUPE_MQTT_PASSWORD``, the local broker's login), ``SVCUID``
(the local nucleus' IPC token) and ``AWS_ENDPOINT_URL`` are read from the environment; ``AWS_IOT_THING_NAME``
(set by Greengrass) names the thing.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from loupe_edge.app import EdgeApp
from loupe_edge.config import deep_merge, load_local, validate
from loupe_edge.outbox import Outbox
from loupe_edge.results import RESULTS, UPLOADS
from loupe_edge.transport import (
    Control,
    IpcControl,
    IpcTransport,
    LocalControl,
    MqttTransport,
    NucleusIpcTransport,
    S3Uploader,
    Transport,
    ipc_client_from_env,
)

log = logging.getLogger("loupe_edge")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loupe_edge", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="JSON configuration file")
    p.add_argument("--config-json", help="JSON configuration string")
    p.add_argument("--thing", help="IoT thing name (default: AWS_IOT_THING_NAME, then the host name)")
    p.add_argument("--work-dir", help="state folder: outbox, status file, last-good model")
    p.add_argument(
        "--transport",
        choices=["ipc", "mqtt", "nucleus"],
        help="default: LOUPE_TRANSPORT, else ipc under Greengrass (nucleus: a local core device's spooler)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"
    )
    transport_kind = (
        args.transport
        or os.environ.get("LOUPE_TRANSPORT")
        or ("ipc" if os.environ.get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") else "mqtt")
    ).lower()
    try:
        raw = load_local(args.config, args.config_json)
    except (OSError, ValueError) as exc:
        log.error("configuration unreadable, running on defaults: %s", exc)
        raw = {}
    ipc_client = None
    if transport_kind == "ipc":
        ipc_client = ipc_client_from_env()
        control: Control = IpcControl(ipc_client)
        remote = control.configuration()
        if remote:
            raw = deep_merge(raw, remote)
    else:
        control = LocalControl()
    overrides: dict = {}
    thing = args.thing or os.environ.get("AWS_IOT_THING_NAME") or raw.get("thingName") or socket.gethostname()
    overrides["thingName"] = thing
    overrides["workDir"] = args.work_dir or raw.get("workDir") or os.path.join(os.getcwd(), ".loupe-edge")
    if os.environ.get("LOUPE_MQTT_HOST"):
        overrides.setdefault("mqtt", {})["host"] = os.environ["LOUPE_MQTT_HOST"]
    if os.environ.get("LOUPE_MQTT_PORT"):
        overrides.setdefault("mqtt", {})["port"] = os.environ["LOUPE_MQTT_PORT"]
    cfg = validate(deep_merge(raw, overrides))
    logging.getLogger().setLevel(cfg.get("logLevel").upper())

    work = Path(cfg.get("workDir"))
    outbox = Outbox(
        cfg.get("outbox.path") or work / "outbox.sqlite",
        {RESULTS: cfg.get("outbox.maxMessages"), UPLOADS: cfg.get("outbox.maxUploads")},
        max_bytes=cfg.get("outbox.maxBytes"),
    )
    transport: Transport
    if transport_kind == "ipc":
        transport = IpcTransport(ipc_client)
    elif transport_kind == "nucleus":
        transport = NucleusIpcTransport(os.environ.get("LOUPE_NUCLEUS_IPC", ""))
    else:
        m = cfg.get("mqtt")
        # the client ID is the thing name: the device policy's ${iot:Connection.Thing.ThingName} comes from it
        transport = MqttTransport(
            m["host"],
            m["port"],
            m["clientId"] or thing,
            m["keepalive"],
            username=os.environ.get("LOUPE_MQTT_USERNAME") or None,
            password=os.environ.get("LOUPE_MQTT_PASSWORD") or None,
        )
    uploader = S3Uploader()
    app = EdgeApp(cfg, transport, control, outbox, uploader=uploader)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("loupe edge inference starting: thing=%s transport=%s work=%s", thing, transport_kind, work)
    app.start()
    try:
        app.run(stop)
    finally:
        log.info("stopping")
        app.stop()
        transport.close()
        outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
