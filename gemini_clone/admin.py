"""The users' admin page, composed above the apps: the account (`accounts.admin.UserAdmin`,
kept whole, its refusals included) with the tier (`billing`), today's usage (`usage`) and the
chatroom count (`chatrooms`), and the operator's actions on a user through those apps'
services. `accounts` may not import the apps above it, so this module replaces its
registration; the project lists `gemini_clone` last in INSTALLED_APPS, so the admin's
autodiscovery loads it after `accounts.admin` (and its system checks see it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.admin import UserAdmin
from accounts.models import User
from billing import services as billing_services
from billing.admin import GRANT_DAYS
from billing.selectors import pro_now_condition, user_is_pro
from chatrooms.selectors import chatroom_count_subquery
from usage.selectors import used_today_subquery
from usage.services import usage_reset_today


class OperatorUserAdmin(UserAdmin):
    actions = ("grant_pro", "revoke_pro", "reset_usage_today")

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return (
            "phone",
            "name",
            "tier",
            "used_today",
            "chatroom_count",
            "last_login",
            "is_verified",
            "is_staff",
            "is_active",
            "date_joined",
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        # Subqueries in the list's one query: no query per row, whatever the page size.
        return (
            super()
            .get_queryset(request)
            .annotate(
                is_pro=pro_now_condition(),
                used_today=used_today_subquery(),
                chatroom_count=chatroom_count_subquery(),
            )
        )

    @admin.display(description="tier", ordering="is_pro")
    def tier(self, obj: Any) -> str:
        return "Pro" if obj.is_pro else "Basic"

    @admin.display(description="prompts today", ordering="used_today")
    def used_today(self, obj: Any) -> int:
        return int(obj.used_today)

    @admin.display(description="chatrooms", ordering="chatroom_count")
    def chatroom_count(self, obj: Any) -> int:
        return int(obj.chatroom_count)

    # The actions change billing and usage rows: they need those rights, not the user's.
    def has_grant_pro_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.change_billingaccount")

    def has_reset_usage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("usage.change_dailyusage")

    @admin.action(
        description=f"Grant Pro for {GRANT_DAYS} days from now", permissions=["grant_pro"]
    )
    def grant_pro(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        until = timezone.now() + dt.timedelta(days=GRANT_DAYS)
        users = list(queryset)
        for user in users:
            billing_services.pro_grant(user=user, until=until)
        self.message_user(request, f"Pro granted to {len(users)} user(s) until {until:%c}.")

    @admin.action(description="Revoke the operator's Pro grant", permissions=["grant_pro"])
    def revoke_pro(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        users = list(queryset)
        for user in users:
            billing_services.pro_grant_revoke(user=user)
        self.message_user(request, f"Pro grant revoked for {len(users)} user(s).")
        # A Stripe subscription is Stripe's: it is canceled there, not here.
        subscribed = sum(user_is_pro(user=user) for user in users)
        if subscribed:
            self.message_user(
                request,
                f"{subscribed} of them stay Pro through a Stripe subscription.",
                messages.WARNING,
            )

    @admin.action(description="Reset today's usage to 0", permissions=["reset_usage"])
    def reset_usage_today(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        reset = sum(usage_reset_today(user=user) for user in queryset)
        self.message_user(request, f"Today's usage reset for {reset} user(s).")


admin.site.unregister(User)
admin.site.register(User, OperatorUserAdmin)
