"""What provisioning made of each resource of template.yaml, and what a resource-type creator may use."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Provisioned:
    logical_id: str
    type: str
    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    skipped: str = ""

    def as_json(self) -> dict[str, Any]:
        out = {
            "type": self.type,
            "physical": self.ref,
            **({"arn": self.attrs["Arn"]} if "Arn" in self.attrs else {}),
        }
        if self.skipped:
            out["skipped"] = self.skipped
        return out


class CreatorContext(Protocol):
    """The provisioner, as a resource-type creator sees it: boto3 clients of the local AWS, the stack's naming,
    and the resources created so far."""

    done: dict[str, Provisioned]

    def client(self, service: str) -> Any: ...

    def physical_name(self, logical_id: str, max_len: int = 63, lower: bool = True) -> str: ...

    def arn(self, service: str, resource: str) -> str: ...
