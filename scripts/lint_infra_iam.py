"""Writes every IAM policy of template.yaml, as CloudFormation will create it, for parliament (the IAM linter).

The template is SAM-transformed first, so the policies SAM generates (its policy templates, the functions' and
state machines' roles) are linted with the ones written out by hand. Intrinsics are resolved with well-formed
samples of what CloudFormation would put there (lint_infra_asl's: an ARN of the right service for a bucket, a
table, a queue, ...), conditions with the parameters' defaults. One file per policy:
``<role or policy logical id>.<policy name>.json``.

usage: python scripts/lint_infra_iam.py template.yaml OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lint_infra_asl import REGION, STACK, _Samples  # noqa: E402 - the script folder is not a package

from loupe_local.template import Resolver, TemplateError, load_sam_app  # noqa: E402


def policies(template_path: Path) -> dict[str, dict[str, Any]]:
    """``{"<logical id>.<policy name>": policy document}`` for every identity policy of the transformed template."""
    transformed = load_sam_app(template_path).transformed
    resources = transformed.get("Resources", {})
    samples = _Samples(resources)
    resolver = Resolver(transformed, {}, STACK, REGION, samples.ref, samples.get_att)
    found: dict[str, dict[str, Any]] = {}
    for logical_id, res in resources.items():
        if "Condition" in res and not resolver.condition(res["Condition"]):
            continue
        props = res.get("Properties", {})
        rtype = res.get("Type")
        if rtype == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                found[f"{logical_id}.{policy['PolicyName']}"] = resolver.resolve(policy["PolicyDocument"])
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            name = props.get("PolicyName") or props.get("ManagedPolicyName") or "policy"
            found[f"{logical_id}.{name}"] = resolver.resolve(props["PolicyDocument"])
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[2])
    try:
        found = policies(Path(argv[1]))
    except TemplateError as exc:
        print(f"iam: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("iam: template.yaml has no IAM policy", file=sys.stderr)
        return 1
    for name, document in found.items():
        (out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', str(name))}.json").write_text(json.dumps(document, indent=1))
    print(f"iam: {len(found)} policies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
