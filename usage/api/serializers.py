"""Shapes of the plan answers, for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers

from accounts.api.serializers import UsageSummarySerializer
from billing.models import Subscription


class SubscriptionStatusSerializer(serializers.Serializer):
    tier = serializers.ChoiceField(choices=["basic", "pro"])
    status = serializers.ChoiceField(
        choices=Subscription.Status.choices,
        allow_null=True,
        help_text="The Stripe subscription's status; null when the user never subscribed.",
    )
    current_period_end = serializers.DateTimeField(
        allow_null=True, help_text="End of the paid period (renewal, or the end when canceling)."
    )
    cancel_at_period_end = serializers.BooleanField(
        help_text="True when the subscription ends at `current_period_end` instead of renewing."
    )
    usage = UsageSummarySerializer()
