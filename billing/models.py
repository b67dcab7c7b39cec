from __future__ import annotations

from django.conf import settings
from django.db import models


class BillingAccount(models.Model):
    """A user's link to Stripe, and Pro granted by an operator."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_account"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    pro_granted_until = models.DateTimeField(
        null=True, blank=True, help_text="An operator's grant of Pro, whatever Stripe says."
    )
    checkout_session_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="The last Checkout Session started; expired when the user starts another.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Billing account of {self.user}"


class Subscription(models.Model):
    """Mirror of a Stripe subscription, kept in sync by webhooks."""

    class Status(models.TextChoices):
        INCOMPLETE = "incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired"
        TRIALING = "trialing"
        ACTIVE = "active"
        PAST_DUE = "past_due"
        CANCELED = "canceled"
        UNPAID = "unpaid"
        PAUSED = "paused"

    PRO_STATUSES = (Status.ACTIVE, Status.TRIALING)
    # Stripe never brings a subscription back from these.
    FINAL_STATUSES = (Status.CANCELED, Status.INCOMPLETE_EXPIRED)
    # A subscription waiting for its customer to pay: a second one would bill twice.
    PAYMENT_DUE_STATUSES = (Status.PAST_DUE, Status.UNPAID, Status.PAUSED)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    stripe_subscription_id = models.CharField(max_length=255, unique=True)
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32, choices=Status.choices)
    price_id = models.CharField(max_length=255, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    stripe_state_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Stripe's time of the state mirrored here: the event's `created`, or when "
        "it was read from the API. An older event never overwrites a newer state.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["user", "status"], name="billing_sub_user_status")]
        ordering = ("-updated_at",)

    def __str__(self) -> str:
        return f"{self.stripe_subscription_id} ({self.status})"


class StripeEvent(models.Model):
    """Every webhook event received, once per Stripe event id, with how it was handled."""

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    stripe_created_at = models.DateTimeField(help_text="The event's `created`, Stripe's clock.")
    api_version = models.CharField(max_length=64, blank=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField(help_text="The event as Stripe sent it.")
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty until a handler ran to the end without error."
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Times a handler ran on it.")
    outcome = models.CharField(max_length=255, blank=True, help_text="What handling it did.")
    last_error = models.TextField(blank=True, help_text="Why the last attempt failed.")

    class Meta:
        ordering = ("-received_at",)
        indexes = [
            models.Index(fields=["type", "-received_at"], name="billing_event_type_received"),
            models.Index(
                fields=["received_at"],
                name="billing_event_unprocessed",
                condition=models.Q(processed_at__isnull=True),
            ),
        ]
        verbose_name = "Stripe event"

    def __str__(self) -> str:
        return f"{self.stripe_event_id} ({self.type})"


class RetiredCustomer(models.Model):
    """The Stripe customer of an account that was deleted: its id alone, nothing personal.

    A Checkout the user paid while (or after) the account was deleted still makes a
    subscription at Stripe; the webhook cancels any live subscription of a customer named
    here, so nobody is billed for an account that is gone."""

    stripe_customer_id = models.CharField(max_length=255, unique=True)
    retired_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.stripe_customer_id
