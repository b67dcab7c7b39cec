from django.contrib import admin

from billing.models import BillingAccount, Subscription


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ("user", "stripe_customer_id", "pro_granted_until", "updated_at")
    search_fields = ("user__phone", "stripe_customer_id")
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    readonly_fields = ("stripe_customer_id", "created_at", "updated_at")
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


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "stripe_subscription_id",
        "user",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "updated_at",
    )
    list_filter = ("status", "cancel_at_period_end")
    search_fields = ("user__phone", "stripe_subscription_id", "stripe_customer_id")
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    # Stripe is the source of truth; the mirror is changed only by webhooks.
    readonly_fields = (
        "stripe_subscription_id",
        "stripe_customer_id",
        "status",
        "price_id",
        "current_period_end",
        "cancel_at_period_end",
        "created_at",
        "updated_at",
    )
