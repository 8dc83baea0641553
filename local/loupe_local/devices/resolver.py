"""Which components a deployment means on a local core device: versions, recipes, configuration, dependencies.

A deployment names components and versions; the resolver reads their recipes from the control plane's
greengrassv2 API, merges each configuration (defaults, ``configurationUpdate``, the device's local overlay), pulls
in dependencies that are not named (their newest deployable version) and orders them dependencies first. The
``aws.greengrass.*`` entries are the nucleus' own (the device provides them): their version and configuration
become the device's nucleus state.
"""

from __future__ import annotations

from typing import Any

from loupe_local.devices.recipes import Component, DeploymentFailed, effective_config

NO_VERSION = ["DEPLOYMENT_FAILURE", "NO_AVAILABLE_COMPONENT_VERSION"]


class ComponentResolver:
    def __init__(self, gg: Any, region: str, overlay: dict[str, Any]) -> None:
        self.gg = gg  # a greengrassv2 client (the control plane's)
        self.region = region
        self.overlay = overlay

    def resolve(
        self, wanted: dict[str, Any], existing: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Component]:
        """The components of a deployment. ``existing``: the configuration of each component the device has
        now (a new version of one keeps it; see :func:`effective_config`); a component the deployment drops
        loses its configuration with it."""
        from loupe.greengrass import component_arn, get_recipe, latest_deployable

        existing = existing or {}

        target: dict[str, Component] = {}
        queue = [(name, spec.get("componentVersion"), spec.get("configurationUpdate")) for name, spec in wanted.items()]
        while queue:
            name, version, update = queue.pop(0)
            if name in target:
                continue
            if version is None:
                found = latest_deployable(self.gg, name)
                if found is None:
                    raise DeploymentFailed(f"dependency {name} is not published", NO_VERSION)
                version = found[0]
            arn = component_arn(self.gg, name, version)
            if arn is None:
                raise DeploymentFailed(f"{name} {version} does not exist", NO_VERSION)
            recipe = get_recipe(self.gg, arn)
            config = effective_config(recipe, update, self.overlay.get(name), existing.get(name))
            comp = Component(name, version, recipe, config)
            target[name] = comp
            for dep_name in comp.dependencies:
                if dep_name.startswith("aws.greengrass."):
                    continue  # nucleus-provided (token exchange: the device hands out local credentials)
                if dep_name not in target and dep_name not in wanted:
                    queue.append((dep_name, None, None))
        return target

    def nucleus(
        self, wanted: dict[str, Any], running_version: str, existing: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The nucleus state a deployment's ``aws.greengrass.*`` entries ask for (the device provides them).

        ``aws.greengrass.Nucleus``: its version (another one than the device runs is a nucleus update, applied
        here as a version change) and configuration (the nucleus' configuration on the device, then
        ``configurationUpdate``, with the recipe's defaults where a key is absent; a deployment that does not
        name the nucleus leaves its configuration as it is). Other AWS
        components must exist, and their nucleus dependency must accept the nucleus version (a plugin such as
        ``aws.greengrass.DiskSpooler`` names the nucleus versions it runs in)."""
        from loupe.greengrass import get_recipe, nucleus_requirement, public_component_arn, version_satisfies
        from loupe_local.devices.nucleus_mqtt import NUCLEUS

        def recipe_of(name: str, version: str) -> dict[str, Any]:
            try:
                return get_recipe(self.gg, public_component_arn(self.region, name, version))
            except Exception as exc:
                raise DeploymentFailed(f"{name} {version} does not exist: {exc}", NO_VERSION) from exc

        spec = wanted.get(NUCLEUS) or {}
        version = spec.get("componentVersion") or running_version
        config: dict[str, Any] = dict(existing or {})
        if spec:
            config = effective_config(recipe_of(NUCLEUS, version), spec.get("configurationUpdate"), None, existing)
        plugins = {}
        for name, other in wanted.items():
            if name == NUCLEUS:
                continue
            need = nucleus_requirement(recipe_of(name, other.get("componentVersion") or ""))
            if not version_satisfies(version, need):
                raise DeploymentFailed(
                    f"{name} {other.get('componentVersion')} needs {NUCLEUS} {need}; the device runs {version}",
                    ["DEPLOYMENT_FAILURE", "COMPONENT_VERSION_REQUIREMENTS_NOT_MET"],
                )
            plugins[name] = other.get("componentVersion") or ""
        return {"version": version, "config": config, "plugins": plugins}


def components_from(saved: dict[str, Any]) -> dict[str, Component]:
    """The components a device saved in ``current.json``."""
    return {
        name: Component(name, spec["version"], spec["recipe"], spec.get("config") or {}) for name, spec in saved.items()
    }


def dependency_order(comps: dict[str, Component]) -> list[str]:
    """Dependencies first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in seen or name not in comps:
            return
        if name in trail:
            raise DeploymentFailed(f"dependency cycle through {name}")
        for dep in comps[name].dependencies:
            visit(dep, (*trail, name))
        seen.add(name)
        order.append(name)

    for name in sorted(comps):
        visit(name, ())
    return order
