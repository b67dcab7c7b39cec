"""Billing in the admin: the Stripe mirror (read-only), received events, the operator's grant.

Stripe is the source of truth for subscriptions, so their rows change only through
webhooks or a re-sync; the actions here call the billing services."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from billing import events, mirror, services
from billing.errors import BillingUnavailable, PaymentProviderError, WebhookProcessingFailed
from billing.models import BillingAccount, StripeEvent, Subscription

GRANT_DAYS = 30


def _user_link(user: Any) -> str:
    url = reverse("admin:accounts_user_change", args=[user.pk])
    return format_html('<a href="{}">{}</a>', url, user)


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "stripe_customer_id", "pro_granted_until", "updated_at")
    list_filter = ("pro_granted_until",)
    search_fields = ("user__phone", "stripe_customer_id")
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    readonly_fields = ("stripe_customer_id", "created_at", "updated_at")
    actions = ("grant_pro", "revoke_pro_grant")
    fieldsets = (
        (None, {"fields": ("user", "stripe_customer_id")}),
        (
            "Operator grant",
            {
                "fields": ("pro_granted_until",),
                "description": "Pro until this moment, whatever the Stripe subscription says.",
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The user is chosen when the account is added, never moved to someone else.
        return (*self.readonly_fields, "user") if obj is not None else self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: BillingAccount, form: Any, change: bool
    ) -> None:
        """The form only sets the operator's grant: through the services, like the actions."""
        if obj.pro_granted_until is not None:
            account = services.pro_grant(user=obj.user, until=obj.pro_granted_until)
        else:
            account = services.pro_grant_revoke(user=obj.user)
        obj.pk = account.pk
        obj.refresh_from_db()

    @admin.action(description=f"Grant Pro for {GRANT_DAYS} days from now", permissions=["change"])
    def grant_pro(self, request: HttpRequest, queryset: QuerySet[BillingAccount]) -> None:
        until = timezone.now() + dt.timedelta(days=GRANT_DAYS)
        for account in queryset.select_related("user"):
            services.pro_grant(user=account.user, until=until)
        self.message_user(request, f"Pro granted to {queryset.count()} user(s) until {until:%c}.")

    @admin.action(description="Revoke the operator's Pro grant", permissions=["change"])
    def revoke_pro_grant(self, request: HttpRequest, queryset: QuerySet[BillingAccount]) -> None:
        for account in queryset.select_related("user"):
            services.pro_grant_revoke(user=account.user)
        self.message_user(request, f"Pro grant revoked for {queryset.count()} user(s).")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "stripe_subscription_id",
        "user_link",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_customer_id",
        "updated_at",
    )
    list_filter = ("status", "cancel_at_period_end")
    search_fields = ("user__phone", "stripe_subscription_id", "stripe_customer_id")
    list_select_related = ("user",)
    actions = ("sync_from_stripe",)
    readonly_fields = (
        "user_link",
        "stripe_subscription_id",
        "stripe_customer_id",
        "status",
        "price_id",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_state_at",
        "created_at",
        "updated_at",
    )
    exclude = ("user",)

    @admin.display(description="user", ordering="user__phone")
    def user_link(self, obj: Subscription) -> str:
        return _user_link(obj.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Rows are Stripe's: never edited here. The list's actions need the change right.
        return obj is None and super().has_change_permission(request)

    @admin.action(
        description="Re-read from Stripe (the customers' subscriptions)", permissions=["change"]
    )
    def sync_from_stripe(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        customer_ids = queryset.values_list("stripe_customer_id", flat=True)
        try:
            report = mirror.subscriptions_sync(customer_ids=list(customer_ids))
        except BillingUnavailable:
            self.message_user(request, "Stripe is not configured.", messages.ERROR)
            return
        except PaymentProviderError:
            self.message_user(request, "Stripe did not answer; try again.", messages.ERROR)
            return
        self.message_user(
            request,
            f"Read {report.customers} customer(s): {report.created} created, "
            f"{report.updated} updated, {report.unchanged} unchanged, {report.skipped} "
            f"skipped, {report.errors} unknown to Stripe.",
        )


class ProcessedFilter(admin.SimpleListFilter):
    title = "processed"
    parameter_name = "processed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No (failed or in progress)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(processed_at__isnull=True)
        return queryset


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = (
        "stripe_event_id",
        "type",
        "stripe_created_at",
        "received_at",
        "processed_at",
        "attempts",
        "outcome",
        "has_error",
    )
    list_filter = (ProcessedFilter, "type", "livemode")
    search_fields = ("stripe_event_id", "type")
    date_hierarchy = "received_at"
    actions = ("process_again",)
    exclude = ("payload",)
    readonly_fields = (
        "stripe_event_id",
        "type",
        "stripe_created_at",
        "api_version",
        "livemode",
        "received_at",
        "processed_at",
        "attempts",
        "outcome",
        "last_error",
        "payload_pretty",
    )

    @admin.display(boolean=True, description="error")
    def has_error(self, obj: StripeEvent) -> bool:
        return bool(obj.last_error)

    @admin.display(description="payload")
    def payload_pretty(self, obj: StripeEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Events are what Stripe sent: never edited. The list's action needs the change right.
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Process again (events not processed yet)", permissions=["change"])
    def process_again(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        processed = failed = 0
        for event_id in queryset.filter(processed_at__isnull=True).values_list(
            "stripe_event_id", flat=True
        ):
            try:
                events.stripe_event_process(stripe_event_id=event_id)
                processed += 1
            except WebhookProcessingFailed:
                failed += 1
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(request, f"{processed} processed, {failed} failed again.", level)
