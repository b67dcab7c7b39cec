"""Shapes of the billing answers, for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers


class CheckoutStartedSerializer(serializers.Serializer):
    checkout_url = serializers.URLField(help_text="Send the buyer here (Stripe Checkout).")
    session_id = serializers.CharField(help_text="The Checkout Session id (`cs_...`).")


class PortalSessionSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Stripe's Billing Portal for this user, short-lived.")


class WebhookReceivedSerializer(serializers.Serializer):
    received = serializers.BooleanField()
