"""The app's users: people invited into the stack's Cognito user pool and put in one of Loupe's groups.

``add`` is a thin wrapper over ``AdminCreateUser`` (Cognito e-mails the temporary password; the person sets their
own at first sign-in, the NEW_PASSWORD_REQUIRED challenge) and ``AdminAddUserToGroup``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from loupe import aws_errors
from loupe.console_api.identity import GROUPS

# a deliberately plain address check: Cognito sends the invitation; this only refuses what cannot be an address
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")


class CognitoAdmin(Protocol):
    def admin_create_user(self, **kwargs: Any) -> dict[str, Any]: ...

    def admin_add_user_to_group(self, **kwargs: Any) -> dict[str, Any]: ...

    def list_users(self, **kwargs: Any) -> dict[str, Any]: ...

    def admin_list_groups_for_user(self, **kwargs: Any) -> dict[str, Any]: ...


class LabelerError(ValueError):
    """A refused invitation: the message says why."""


def add(
    cognito: CognitoAdmin,
    pool_id: str,
    email: str,
    group: str = "labelers",
    temporary_password: str | None = None,
) -> dict[str, Any]:
    """Invite ``email`` into ``group``. Cognito e-mails the invitation with a temporary password (or, when one is
    given, uses it: the local stack has no mail delivery). Returns the user's name, group and status."""
    if group not in GROUPS:
        raise LabelerError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    if not _EMAIL.match(email):
        raise LabelerError(f"{email!r} is not an e-mail address")
    kwargs: dict[str, Any] = {
        "UserPoolId": pool_id,
        "Username": email,
        "UserAttributes": [{"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"}],
        "DesiredDeliveryMediums": ["EMAIL"],
    }
    if temporary_password is not None:
        kwargs["TemporaryPassword"] = temporary_password
    try:
        user = cognito.admin_create_user(**kwargs)["User"]
    except Exception as exc:
        if aws_errors.error_code(exc) == "UsernameExistsException":
            raise LabelerError(f"{email} is already a user of the pool; nothing was changed") from exc
        raise
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=user["Username"], GroupName=group)
    return {"username": user["Username"], "email": email, "group": group, "status": user.get("UserStatus", "")}


def add_to_group(cognito: CognitoAdmin, pool_id: str, username: str, group: str) -> None:
    if group not in GROUPS:
        raise LabelerError(f"group {group!r} is not one of {', '.join(GROUPS)}")
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)


def list_users(cognito: CognitoAdmin, pool_id: str) -> list[dict[str, Any]]:
    """Every user of the pool with its e-mail, status and groups."""
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"UserPoolId": pool_id, "Limit": 60}
    while True:
        page = cognito.list_users(**kwargs)
        for user in page.get("Users", []):
            attrs = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
            groups = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username=user["Username"])["Groups"]
            out.append(
                {
                    "username": user["Username"],
                    "email": attrs.get("email", ""),
                    "status": user.get("UserStatus", ""),
                    "groups": sorted(g["GroupName"] for g in groups),
                }
            )
        if not page.get("PaginationToken"):
            return out
        kwargs["PaginationToken"] = page["PaginationToken"]
