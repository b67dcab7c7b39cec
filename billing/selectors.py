"""Reads of the billing state. `user_is_pro` is the one answer to "is this user Pro now"."""

from __future__ import annotations

from django.db.models import BooleanField, Exists, ExpressionWrapper, Q
from django.utils import timezone

from accounts.models import User
from billing.models import BillingAccount, Subscription


def user_is_pro(*, user: User) -> bool:
    """Pro while a subscription is active or trialing, or while an operator's grant lasts."""
    now = timezone.now()
    granted = BillingAccount.objects.filter(user=user, pro_granted_until__gt=now)
    subscribed = Subscription.objects.filter(user=user, status__in=Subscription.PRO_STATUSES)
    # One round trip on the send path: SELECT (EXISTS ...) OR (EXISTS ...).
    is_pro = ExpressionWrapper(Exists(granted) | Exists(subscribed), output_field=BooleanField())
    answer = User.objects.filter(pk=user.pk).values_list(is_pro, flat=True)
    return bool(answer.first())


def users_pro_filter(prefix: str = "") -> Q:
    """The same rule as a Q on users, for admin list filters and bulk queries."""
    now = timezone.now()
    return Q(**{f"{prefix}billing_account__pro_granted_until__gt": now}) | Q(
        **{f"{prefix}subscriptions__status__in": Subscription.PRO_STATUSES}
    )


def user_tier(*, user: User) -> str:
    return "pro" if user_is_pro(user=user) else "basic"
