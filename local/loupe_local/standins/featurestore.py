"""SageMaker Feature Store runtime stand-in: PutRecord / GetRecord / DeleteRecord / BatchGetRecord.

moto has the feature group control plane (CreateFeatureGroup, DescribeFeatureGroup) but no runtime. This
stand-in answers the runtime's REST paths (``/FeatureGroup/<name>`` on the ``sagemaker`` signing name), validates
records against the group's definition (as the service does: known features, the record identifier and event
time present, Integral/Fractional values that parse) and keeps the online store in memory, with an append-only
offline log per group under ``<state_dir>/featurestore/<group>.jsonl``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from loupe_local.standins.base import AwsRequest, Response, StandIn, error


class FeatureStoreRuntime(StandIn):
    name = "featurestore-runtime"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.online: dict[str, dict[str, list[dict[str, str]]]] = {}
        self._definitions: dict[str, dict[str, Any]] = {}
        self.puts = 0

    def handles(self, request: AwsRequest) -> bool:
        return (
            request.service == "sagemaker"
            and not request.target
            and (request.path.startswith("/FeatureGroup/") or request.path == "/BatchGetRecord")
        )

    # ------------------------------------------------------------------ helpers
    def _definition(self, group: str) -> dict[str, Any] | None:
        if group in self._definitions:
            return self._definitions[group]
        sagemaker = self.runtime.client("sagemaker")
        try:
            described = sagemaker.describe_feature_group(FeatureGroupName=group)
        except Exception:
            return None
        definition = {
            "identifier": described["RecordIdentifierFeatureName"],
            "event_time": described["EventTimeFeatureName"],
            "types": {f["FeatureName"]: f["FeatureType"] for f in described["FeatureDefinitions"]},
        }
        self._definitions[group] = definition
        return definition

    def _validate(self, definition: dict[str, Any], record: Any) -> str | None:
        if not isinstance(record, list) or not record:
            return "Record must be a non-empty list of {FeatureName, ValueAsString}"
        names = [item.get("FeatureName") for item in record]
        if len(set(names)) != len(names):
            return "Record names a feature twice"
        for item in record:
            name, value = item.get("FeatureName"), item.get("ValueAsString")
            kind = definition["types"].get(name)
            if kind is None:
                return f"Feature {name} is not defined in the feature group"
            if not isinstance(value, str):
                return f"Feature {name} has no ValueAsString"
            try:
                if kind == "Integral":
                    int(value)
                elif kind == "Fractional":
                    float(value)
            except ValueError:
                return f"Feature {name} of type {kind} cannot take the value {value!r}"
        for required in (definition["identifier"], definition["event_time"]):
            if required not in names:
                return f"Record must contain {required}"
        return None

    # ------------------------------------------------------------------ API
    def handle(self, request: AwsRequest) -> Response:
        if request.path == "/BatchGetRecord":
            return self._batch_get(request.json())
        group = unquote(request.path[len("/FeatureGroup/") :].split("/", 1)[0])
        definition = self._definition(group)
        if definition is None:
            return error("ResourceNotFound", f"Feature group {group} does not exist", 404)
        if request.method == "PUT":
            return self._put(group, definition, request.json())
        identifier = (request.query.get("RecordIdentifierValueAsString") or [""])[0]
        if not identifier:
            return error("ValidationError", "RecordIdentifierValueAsString is required")
        if request.method == "GET":
            names = request.query.get("FeatureName") or []
            record = self.online.get(group, {}).get(identifier)
            if record is None:
                return Response(body={}, headers={"Content-Type": "application/json"})
            if names:
                record = [item for item in record if item["FeatureName"] in names]
            return Response(body={"Record": record}, headers={"Content-Type": "application/json"})
        if request.method == "DELETE":
            with self._lock:
                self.online.get(group, {}).pop(identifier, None)
            return Response(body={}, headers={"Content-Type": "application/json"})
        return error("ValidationError", f"{request.method} {request.path} is not a Feature Store runtime call")

    def _put(self, group: str, definition: dict[str, Any], body: dict[str, Any]) -> Response:
        record: Any = body.get("Record")  # a list of {FeatureName, ValueAsString} once _validate passed it
        problem = self._validate(definition, record)
        if problem:
            return error("ValidationError", problem)
        values = {item["FeatureName"]: item["ValueAsString"] for item in record}
        identifier = values[definition["identifier"]]
        with self._lock:
            current = self.online.setdefault(group, {}).get(identifier)
            newer = current is None or float(values[definition["event_time"]]) >= float(
                {i["FeatureName"]: i["ValueAsString"] for i in current}[definition["event_time"]]
            )
            if newer:  # the online store keeps the record with the latest event time
                self.online[group][identifier] = record
            self.puts += 1
            directory = Path(self.runtime.state_dir) / "featurestore"
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / f"{group}.jsonl", "a") as fh:
                fh.write(json.dumps(values) + "\n")
        return Response(body={}, headers={"Content-Type": "application/json"})

    def _batch_get(self, body: dict[str, Any]) -> Response:
        records: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        unprocessed: list[dict[str, Any]] = []
        for ident in body.get("Identifiers") or []:
            group = ident.get("FeatureGroupName", "")
            names = ident.get("FeatureNames") or []
            for value in ident.get("RecordIdentifiersValueAsString") or []:
                record = self.online.get(group, {}).get(value)
                if record is None:
                    errors.append(
                        {
                            "FeatureGroupName": group,
                            "RecordIdentifierValueAsString": value,
                            "ErrorCode": "ResourceNotFound",
                            "ErrorMessage": "no such record",
                        }
                    )
                    continue
                if names:
                    record = [item for item in record if item["FeatureName"] in names]
                records.append({"FeatureGroupName": group, "RecordIdentifierValueAsString": value, "Record": record})
        return Response(
            body={"Records": records, "Errors": errors, "UnprocessedIdentifiers": unprocessed},
            headers={"Content-Type": "application/json"},
        )

    def status(self) -> dict[str, Any]:
        return {"records": {group: len(recs) for group, recs in self.online.items()}, "puts": self.puts}
