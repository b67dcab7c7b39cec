"""GET /api/user/me/export: everything held about the user, as one JSON download. Composed
above the apps that hold its parts (accounts, usage, billing, chatrooms), like the user
payload. No secret is in it: no password hash, no code, no token, no Stripe key."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import Sum
from django.http import HttpResponse
from django.utils import timezone
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.errors import AccountGone
from accounts.models import KnownNetwork, User
from billing.models import BillingAccount, Subscription
from chatrooms.export import chatroom_export_json, render_export_json
from chatrooms.models import Chatroom
from chatrooms.payloads import iso
from gemini_clone.user_payload import user_payload
from usage.models import DailyUsage


def account_export(user: User) -> dict[str, Any]:
    # The row itself: the request's user may be the Redis copy, whose last login can be older.
    row = User.objects.filter(pk=user.pk).first()
    if row is None:
        raise AccountGone()
    user = row
    return {
        "exported_at": iso(timezone.now()),
        "user": {
            **user_payload(user),
            "phone_verified_at": iso(user.phone_verified_at),
            "last_login": iso(user.last_login),
        },
        "known_networks": [
            {"network": network, "last_login_at": iso(last_login_at)}
            for network, last_login_at in KnownNetwork.objects.filter(user=user)
            .order_by("network")
            .values_list("network", "last_login_at")
        ],
        "daily_usage": [
            {"day": day.isoformat(), "prompts": count, "tokens": tokens}
            for day, count, tokens in DailyUsage.objects.filter(user=user)
            .values("day")  # a day's rows (usage.models.PRO_SLOTS) as one
            .annotate(Sum("count"), Sum("tokens"))
            .order_by("day")
            .values_list("day", "count__sum", "tokens__sum")
        ],
        "billing": _billing(user),
        "chatrooms": [
            chatroom_export_json(chatroom)
            for chatroom in Chatroom.objects.filter(user=user).order_by("id")
        ],
    }


def _billing(user: User) -> dict[str, Any]:
    account = BillingAccount.objects.filter(user=user).first()
    return {
        "stripe_customer": bool(account and account.stripe_customer_id),
        "pro_granted_until": iso(account.pro_granted_until) if account else None,
        "subscriptions": [
            {
                "status": subscription.status,
                "current_period_end": iso(subscription.current_period_end),
                "cancel_at_period_end": subscription.cancel_at_period_end,
                "created_at": iso(subscription.created_at),
            }
            for subscription in Subscription.objects.filter(user=user).order_by("created_at")
        ],
    }


class AccountExportView(APIView):
    slow_methods = frozenset({"GET"})  # the whole history, built at once (gemini_clone.asgi)

    @extend_schema(
        tags=["user"],
        operation_id="user_me_export",
        summary="Download everything held about me",
        description=(
            "One JSON attachment: the account (as `/api/user/me`, with when the phone was "
            "verified and the last login), the client networks it logged in from, daily "
            "usage, billing (subscriptions' status and dates; whether a Stripe customer "
            "exists), and every chatroom with all its messages (as the chatroom export). No "
            "password hash, code or token is in it."
        ),
        responses={(200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT)},
    )
    def get(self, request: Request) -> HttpResponse:
        user = cast(User, request.user)
        response = HttpResponse(
            render_export_json(account_export(user)), content_type="application/json"
        )
        filename = f"gemini-clone-account-{user.pk}-{timezone.now().date().isoformat()}.json"
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=filename
        )
        return response
