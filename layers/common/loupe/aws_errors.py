"""AWS error codes, read one way: botocore's ``ClientError.response["Error"]["Code"]``.

Domain code asks :func:`error_code` (or one of the predicates) instead of digging through ``exc.response`` by
hand. Anything that is not a ``ClientError`` (a connection error, a plain exception) has the code ``""``.
"""

from __future__ import annotations

from typing import Any

# Codes AWS services use for "slow down" (botocore's retry handler treats the same set as throttling).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "BandwidthLimitExceeded",
        "TransactionInProgressException",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
# S3 HeadObject answers a bare status code; GetObject "NoSuchKey"; other services "NotFound"/"ResourceNotFound...".
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "ResourceNotFound", "ResourceNotFoundException"})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError``; ``""`` for anything else."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")


def error_message(exc: BaseException) -> str:
    """The AWS error message of a ``ClientError``; ``str(exc)`` for anything else."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict) and (response.get("Error") or {}).get("Message"):
        return str(response["Error"]["Message"])
    return str(exc)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def is_conditional_check_failed(exc: BaseException) -> bool:
    """DynamoDB's failed ``ConditionExpression`` (also inside a transaction's cancellation reasons)."""
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons: Any = getattr(exc, "response", {}).get("CancellationReasons") or []
        return any((r or {}).get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False
