"""Reads of the billing state. `user_is_pro` is the one answer to "is this user Pro now"."""

from __future__ import annotations

from django.db.models import BooleanField, Exists, ExpressionWrapper
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


def user_tier(*, user: User) -> str:
    return "pro" if user_is_pro(user=user) else "basic"


def subscription_current(*, user: User) -> Subscription | None:
    """The subscription the user's plan depends on: a Pro one if any, else the latest."""
    subscriptions = Subscription.objects.filter(user=user)
    return (
        subscriptions.filter(status__in=Subscription.PRO_STATUSES).order_by("-updated_at").first()
        or subscriptions.order_by("-updated_at").first()
    )
