"""Runs parliament (the IAM policy linter) on the policies lint_infra_iam.py wrote, with Loupe's suppressions.

Run by the parliament tool venv's python (.tools/parliament), not .venv. Every finding of severity LOW or above
fails the gate unless ``.parliament-suppressions.yaml`` names it (issue, the policy file as a regex, optionally a
regex over the finding's detail) with a written ``reason``. A suppression that matches no finding fails too, so
the file never keeps an exception the template no longer needs. Policies are analysed one at a time (parliament's
directory mode attributes some findings to the wrong file).

usage: python scripts/lint_infra_parliament.py POLICY_DIR SUPPRESSIONS_YAML
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

with warnings.catch_warnings():  # parliament 1.6 imports pkg_resources, which warns on import
    warnings.simplefilter("ignore")
    from parliament import analyze_policy_string, enhance_finding

SEVERITIES = ["MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]


def load_suppressions(path: Path) -> list[dict[str, Any]]:
    entries = yaml.safe_load(path.read_text()) or []
    for i, entry in enumerate(entries):
        missing = [k for k in ("issue", "policy", "reason") if not str(entry.get(k, "")).strip()]
        if missing:
            raise SystemExit(f"parliament: suppression {i} in {path} lacks {', '.join(missing)}")
    return entries


def findings(policy_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(policy_dir.glob("*.json")):
        policy = analyze_policy_string(path.read_text(), filepath=path.name)
        for finding in policy.findings:
            finding = enhance_finding(finding)
            if SEVERITIES.index(finding.severity) < SEVERITIES.index("LOW"):
                continue
            out.append(
                {
                    "policy": path.name,
                    "issue": finding.issue,
                    "severity": finding.severity,
                    "title": finding.title,
                    "detail": json.dumps(finding.detail, sort_keys=True, default=str),
                    "location": {k: v for k, v in finding.location.items() if k != "filepath"},
                }
            )
    return out


def suppressed_by(finding: dict[str, Any], entry: dict[str, Any]) -> bool:
    return (
        entry["issue"] == finding["issue"]
        and re.fullmatch(entry["policy"], finding["policy"]) is not None
        and re.search(entry.get("detail", ""), finding["detail"] + json.dumps(finding["location"])) is not None
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    entries = load_suppressions(Path(argv[2]))
    used = [False] * len(entries)
    failed = []
    found = findings(Path(argv[1]))
    for finding in found:
        hits = [i for i, entry in enumerate(entries) if suppressed_by(finding, entry)]
        for i in hits:
            used[i] = True
        if not hits:
            failed.append(finding)
    for finding in failed:
        print(
            f"parliament: {finding['severity']} {finding['issue']} ({finding['title']}) in {finding['policy']}: "
            f"{finding['detail']} {finding['location']}",
            file=sys.stderr,
        )
    stale = [entries[i] for i, u in enumerate(used) if not u]
    for entry in stale:
        print(
            f"parliament: suppression matches no finding (remove it): {entry['issue']} {entry['policy']}",
            file=sys.stderr,
        )
    print(
        f"parliament: {len(list(Path(argv[1]).glob('*.json')))} policies, {len(found)} findings, "
        f"{len(found) - len(failed)} suppressed with a reason"
    )
    return 1 if failed or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
