"""The plan a user is on and what it leaves them today: billing's tier with usage's count.

It lives here because `usage` reads `billing`, never the other way round."""

from __future__ import annotations

from typing import cast

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from billing.selectors import subscription_current, user_is_pro
from core.timestamps import iso_utc
from usage.api.serializers import SubscriptionStatusSerializer
from usage.selectors import usage_summary


class SubscriptionStatusView(APIView):
    @extend_schema(
        tags=["subscription"],
        summary="My plan and subscription",
        description=(
            "`tier` is `pro` while a subscription is `active` or `trialing`, or while an "
            "operator's grant lasts. `status` mirrors the Stripe subscription (null when there "
            "is none); a change Stripe reports by webhook shows here on the next request."
        ),
        responses={200: SubscriptionStatusSerializer},
    )
    def get(self, request: Request) -> Response:
        user = cast(User, request.user)
        is_pro = user_is_pro(user=user)
        subscription = subscription_current(user=user)
        period_end = subscription.current_period_end if subscription else None
        return Response(
            {
                "tier": "pro" if is_pro else "basic",
                "status": subscription.status if subscription else None,
                "current_period_end": iso_utc(period_end) if period_end else None,
                "cancel_at_period_end": bool(subscription and subscription.cancel_at_period_end),
                "usage": usage_summary(user=user, is_pro=is_pro).as_dict(),
            }
        )
