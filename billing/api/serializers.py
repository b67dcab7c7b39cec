"""Shapes of the billing answers, for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers

from accounts.api.serializers import UsageSummarySerializer
from billing.models import Subscription


class CheckoutStartedSerializer(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="Send the buyer here (Stripe Checkout).")
    session_id = serializers.CharField(help_text="The Checkout Session id (`cs_...`).")


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


class PortalSessionSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Stripe's Billing Portal for this user, short-lived.")


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField()
