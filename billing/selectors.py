"""Reads of the billing state. `user_is_pro` is the one answer to "is this user Pro now"."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.models import User
from billing.models import BillingAccount, Subscription

# Plain SQL: this runs on every send and every /api/user/me, and the ORM spent more CPU
# compiling the query than PostgreSQL spent answering it. The statuses are our constants,
# written into the text: as a parameter, the list's conversion cost a twentieth of /me's CPU.
if not all(status.value.isidentifier() for status in Subscription.PRO_STATUSES):
    raise ValueError("A subscription status to be written into SQL must be a plain word.")
_PRO_STATUSES = ", ".join(f"'{status.value}'" for status in Subscription.PRO_STATUSES)
_IS_PRO_SQL = f"""(
    EXISTS (SELECT 1 FROM {BillingAccount._meta.db_table}
            WHERE user_id = %(pro_user_id)s AND pro_granted_until > %(pro_now)s)
    OR EXISTS (SELECT 1 FROM {Subscription._meta.db_table}
               WHERE user_id = %(pro_user_id)s AND status IN ({_PRO_STATUSES}))
)"""  # noqa: S608 (table names and statuses are ours, values are parameters)


def user_is_pro_sql(*, user_id: int) -> tuple[str, dict[str, Any]]:
    """`user_is_pro` as an SQL condition and its parameters, for a statement that reads more
    in the same round trip."""
    params = {"pro_user_id": user_id, "pro_now": timezone.now()}
    return _IS_PRO_SQL, params


def user_is_pro(*, user: User) -> bool:
    """Pro while a subscription is active or trialing, or while an operator's grant lasts."""
    condition, params = user_is_pro_sql(user_id=user.pk)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {condition}", params)
        return bool(cursor.fetchone()[0])


def pro_now_condition(user_ref: str = "pk") -> Q:
    """`user_is_pro` as a condition on a queryset whose `user_ref` is the user's id (for a
    list of users that shows each one's tier in its one query)."""
    return Q(
        Exists(
            BillingAccount.objects.filter(
                user_id=OuterRef(user_ref), pro_granted_until__gt=timezone.now()
            )
        )
    ) | Q(
        Exists(
            Subscription.objects.filter(
                user_id=OuterRef(user_ref), status__in=Subscription.PRO_STATUSES
            )
        )
    )


def pro_user_count() -> int:
    """How many users are Pro now (a subscription or an operator's grant, counted once)."""
    granted = BillingAccount.objects.filter(pro_granted_until__gt=timezone.now())
    subscribed = Subscription.objects.filter(status__in=Subscription.PRO_STATUSES)
    users = granted.values("user_id").union(subscribed.values("user_id"))
    return users.count()


def subscription_current(*, user: User) -> Subscription | None:
    """The subscription the user's plan depends on: a Pro one if any, else the latest."""
    subscriptions = Subscription.objects.filter(user=user)
    return (
        subscriptions.filter(status__in=Subscription.PRO_STATUSES).order_by("-updated_at").first()
        or subscriptions.order_by("-updated_at").first()
    )
