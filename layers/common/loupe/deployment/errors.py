"""The errors a deployment step refuses with; ``code`` is the error name the state machine catches."""

from __future__ import annotations


class DeploymentError(RuntimeError):
    """A refused deployment step."""

    code = "DeploymentError"


class PackageInvalid(DeploymentError):
    code = "PackageInvalid"


class ArtifactDigestMismatch(DeploymentError):
    code = "ArtifactDigestMismatch"


class ComponentMissing(DeploymentError):
    code = "ComponentMissing"
