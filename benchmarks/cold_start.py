"""A Lambda cold start's share that is Loupe's: the import of each handler module, against a bare baseline.

    python benchmarks/cold_start.py [--runs 5] [--json out.json] [--top 3]

For each function of template.yaml (``functions/*/app.py``) a fresh Python process gets the environment the
template gives the function (Globals and the function's own variables, references resolved to placeholder names,
plus what the local runtime adds: region, dummy credentials, ``POWERTOOLS_TRACE_DISABLED``, ``AWS_LAMBDA_*``),
the common layer and the function's code folder on ``sys.path`` as Lambda puts them, and times ``import app`` --
module scope included: imports, clients, settings.  The baseline, timed the same way in the same run, is what any
Python Lambda with Powertools pays: ``import boto3``, Powertools' ``Logger`` and ``Tracer`` and one client.
Best of ``--runs`` fresh processes each.  Then one ``python -X importtime`` run per handler names what dominates:
the handler's direct imports by cumulative time, and the module body's own time (clients, settings).

Prints a markdown table (handler, import s, baseline s, ratio, dominated by) and, with ``--json``, writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "local"))

BASELINE = "import boto3\nfrom aws_lambda_powertools import Logger, Tracer\nLogger(); Tracer(); boto3.client('s3')\n"
TIMER = """
import sys, time
sys.path[:0] = {paths!r}
t0 = time.perf_counter()
{body}
print(time.perf_counter() - t0)
"""
_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def function_environments() -> dict[str, dict[str, Any]]:
    """handler folder -> {code_dir, layers, env} for each function of template.yaml, as the local runtime sees it."""
    from loupe_local.template import Resolver, load_sam_app

    app = load_sam_app(REPO / "template.yaml")
    stack, region = "loupe", "us-east-1"
    resolver = Resolver(
        app.transformed,
        {},
        stack,
        region,
        ref=lambda name: f"{stack}-{name.lower()}",
        get_att=lambda name, attr: f"arn:aws:local:{region}:123456789012:{stack}-{name.lower()}",
    )
    base = {
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",  # noqa: S105 - dummy credentials; nothing is called
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Loupe",
    }
    out: dict[str, dict[str, Any]] = {}
    for logical_id, code in app.functions.items():
        if code.code_dir.parent != REPO / "functions":  # a custom resource (the training code publisher)
            continue
        props = app.resources[logical_id]["Properties"]
        variables = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
        env = {**base, **{k: str(v) for k, v in variables.items()}}
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": f"{stack}-{logical_id}",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "LAMBDA_TASK_ROOT": str(code.code_dir),
            }
        )
        out[code.code_dir.name] = {"code_dir": code.code_dir, "layers": [str(d) for d in app.layer_dirs], "env": env}
    return out


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")}
    return {**keep, **extra, "PYTHONDONTWRITEBYTECODE": "0"}


def time_import(paths: list[str], body: str, env: dict[str, str], runs: int) -> float:
    """Best of ``runs`` fresh processes: seconds ``body`` takes with ``paths`` in front of sys.path."""
    script = TIMER.format(paths=paths, body=body)
    best = float("inf")
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", script], env=_clean_env(env), capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"import failed:\n{out.stderr[-2000:]}")
        best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


def import_profile(paths: list[str], env: dict[str, str], top: int) -> dict[str, Any]:
    """What ``import app`` spends its time on: direct imports by cumulative µs, and the module body's own."""
    script = f"import sys\nsys.path[:0] = {paths!r}\nimport app\n"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        env=_clean_env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [m.groups() for line in out.stderr.splitlines() if (m := _IMPORTTIME.match(line))]
    # importtime prints a module after its imports; nesting is 2 spaces per level. The handler module is the
    # last row at depth 0 named "app"; its direct imports are the depth-1 rows printed before it, after the
    # previous depth-0 row (those are the interpreter's own start-up imports).
    end = max(i for i, r in enumerate(rows) if r[3] == "app" and len(r[2]) == 1)
    start = max((i for i in range(end) if len(rows[i][2]) == 1), default=-1) + 1
    children = [(name, int(cum)) for _, cum, indent, name in rows[start:end] if len(indent) == 3]
    app_self, app_cum = int(rows[end][0]), int(rows[end][1])
    children.sort(key=lambda c: -c[1])
    return {
        "cumulative_us": app_cum,
        "body_us": app_self,  # the module's own lines: clients, settings, decorators
        "imports": children[:top],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    functions = function_environments()
    any_fn = next(iter(functions.values()))
    baseline = time_import(any_fn["layers"], BASELINE, any_fn["env"], args.runs)
    results = []
    for name, fn in sorted(functions.items()):
        paths = [str(fn["code_dir"]), *fn["layers"]]
        seconds = time_import(paths, "import app", fn["env"], args.runs)
        profile = import_profile(paths, fn["env"], args.top)
        results.append(
            {"handler": name, "import_s": round(seconds, 4), "ratio": round(seconds / baseline, 2), **profile}
        )
        print(f"{name}: {seconds:.3f} s ({seconds / baseline:.2f}x)", file=sys.stderr)

    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    report = {"machine": machine, "runs": args.runs, "baseline_s": round(baseline, 4), "handlers": results}
    print(f"\nHandler import (fresh process, best of {args.runs}) vs `import boto3` + Powertools + one client")
    print(f"({baseline:.3f} s) on {machine}\n")
    print("| handler | import s | × baseline | dominated by (cumulative import ms; body = module scope) |")
    print("|---|---|---|---|")
    for r in results:
        parts = [f"{n} {us / 1000:.0f}" for n, us in r["imports"]] + [f"body {r['body_us'] / 1000:.0f}"]
        print(f"| {r['handler']} | {r['import_s']:.3f} | {r['ratio']:.2f} | {', '.join(parts)} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
