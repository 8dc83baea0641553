"""The labeling app's one DynamoDB table (``LabelingTasksTable``): jobs, their images, assignments and answers.

Keys (``pk``, ``sk``)::

    JOB#<job name>   JOB                    the job: task token, LabelersPerImage, expiry, labels, counters, status
    JOB#<job name>   ITEM#<index>           one image: size, pre-filled boxes, its labelers' slots, status, result
    JOB#<job name>   ANSWER#<index>#<user>  one labeler's answer (kept for good, whatever happens to the job)
    ASSIGN#<id>      ASSIGN                 one lease of an image to a labeler (or a reviewer)

Images that wait for a labeler or a reviewer carry ``queue`` (``label`` / ``review``) and ``queue_order``: the
sparse ``queue-index`` lists them oldest job first. Every change of an image is conditioned on its ``version``
(optimistic locking), so two labelers asking at once never both take its last slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key

from loupe import aws_errors
from loupe.aws_clients import DynamoDBTable
from loupe.ledger import plain, query_items

QUEUE_INDEX = "queue-index"
LABEL_QUEUE = "label"
REVIEW_QUEUE = "review"


class Conflict(Exception):
    """A conditional write lost a race (another labeler, or a second submit): re-read and decide again."""


def job_key(job_name: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_name}", "sk": "JOB"}


def item_key(job_name: str, index: int) -> dict[str, str]:
    return {"pk": f"JOB#{job_name}", "sk": f"ITEM#{index:05d}"}


def answer_key(job_name: str, index: int, user: str) -> dict[str, str]:
    return {"pk": f"JOB#{job_name}", "sk": f"ANSWER#{index:05d}#{user}"}


def assignment_key(assignment_id: str) -> dict[str, str]:
    return {"pk": f"ASSIGN#{assignment_id}", "sk": "ASSIGN"}


class TaskStore:
    def __init__(self, table: DynamoDBTable) -> None:
        self.table = table

    # ------------------------------------------------------------------ reads
    def get(self, key: dict[str, str]) -> dict[str, Any] | None:
        item = self.table.get_item(Key=key, ConsistentRead=True).get("Item")
        return plain(item) if item else None

    def job(self, job_name: str) -> dict[str, Any] | None:
        return self.get(job_key(job_name))

    def item(self, job_name: str, index: int) -> dict[str, Any] | None:
        return self.get(item_key(job_name, index))

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        return query_items(self.table, **kwargs)

    def items(self, job_name: str) -> list[dict[str, Any]]:
        cond = Key("pk").eq(f"JOB#{job_name}") & Key("sk").begins_with("ITEM#")
        return list(self._query(KeyConditionExpression=cond, ConsistentRead=True))

    def answers(self, job_name: str, index: int) -> list[dict[str, Any]]:
        cond = Key("pk").eq(f"JOB#{job_name}") & Key("sk").begins_with(f"ANSWER#{index:05d}#")
        return list(self._query(KeyConditionExpression=cond, ConsistentRead=True))

    def queued(self, queue: str) -> Iterator[dict[str, Any]]:
        """The images waiting in ``queue``, oldest job first (an index read: eventually consistent; every claim
        re-checks the image's version)."""
        return self._query(IndexName=QUEUE_INDEX, KeyConditionExpression=Key("queue").eq(queue))

    # ------------------------------------------------------------------ writes
    def put_new(self, item: dict[str, Any]) -> bool:
        """Put ``item`` unless its key exists; False when it does."""
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
        except Exception as exc:
            if aws_errors.is_conditional_check_failed(exc):
                return False
            raise
        return True

    def update(self, key: dict[str, str], **kwargs: Any) -> dict[str, Any]:
        """``UpdateItem`` returning the new item; :class:`Conflict` when its condition fails."""
        try:
            out = self.table.update_item(Key=key, ReturnValues="ALL_NEW", **kwargs)
        except Exception as exc:
            if aws_errors.is_conditional_check_failed(exc):
                raise Conflict(str(exc)) from exc
            raise
        return plain(out.get("Attributes") or {})

    def transact(self, *writes: dict[str, Any]) -> None:
        """One ``TransactWriteItems`` of ``{"Put"|"Update": {...}}`` entries with plain Python values (a resource's
        client serializes them); :class:`Conflict` when any condition fails (then nothing was written)."""
        client = self.table.meta.client
        out = [{kind: {"TableName": self.table.name, **spec}} for write in writes for kind, spec in write.items()]
        try:
            client.transact_write_items(TransactItems=out)
        except Exception as exc:
            if aws_errors.is_conditional_check_failed(exc):
                raise Conflict(str(exc)) from exc
            raise
