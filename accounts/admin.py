from __future__ import annotations

from collections.abc import Callable
from typing import Any

import phonenumbers
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.admin_login import ThrottledAdminLoginForm
from accounts.errors import RevocationUnavailable
from accounts.models import OneTimeCode, OtpFailureStreak, User

admin.site.login_form = ThrottledAdminLoginForm


class UserAddForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("phone",)


class UserEditForm(UserChangeForm):
    # The password appears as Django's read-only summary, changed only through its own form.
    class Meta:
        model = User
        fields = "__all__"


class PhoneVerifiedFilter(admin.SimpleListFilter):
    title = "verified"
    parameter_name = "verified"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(phone_verified_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(phone_verified_at__isnull=True)
        return queryset


def _as_e164(term: str) -> str | None:
    try:
        number = phonenumbers.parse(term, settings.PHONENUMBER_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Users deleted in bulk still go through `User.delete()`, which ends their sessions."""

    form = UserEditForm
    add_form = UserAddForm
    fieldsets = (
        (None, {"fields": ("phone", "password")}),
        ("Profile", {"fields": ("name", "email")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("phone_verified_at", "last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("phone", "usable_password", "password1", "password2"),
            },
        ),
    )
    list_display = ("phone", "name", "email", "is_verified", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active", PhoneVerifiedFilter, "date_joined")
    search_fields = ("phone", "name", "email")
    ordering = ("-date_joined",)
    readonly_fields = ("last_login", "date_joined")

    @admin.display(boolean=True, description="verified", ordering="phone_verified_at")
    def is_verified(self, obj: User) -> bool:
        return obj.phone_verified_at is not None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """A number typed in any format (`98765 43210`) also finds its E.164 account."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        e164 = _as_e164(search_term)
        if e164 is not None:
            results |= queryset.filter(phone=e164)
        return results, may_have_duplicates

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        with transaction.atomic():  # all or none, should one revocation be refused
            for user in queryset:
                user.delete()

    # A deactivation, a new password or a deletion that cannot end the user's sessions is
    # refused (`accounts.auth_cache`); each view's transaction has rolled back by then.
    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _refused_unless_revocable(super().changeform_view, request, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _refused_unless_revocable(super().changelist_view, request, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _refused_unless_revocable(super().delete_view, request, *args, **kwargs)

    def user_change_password(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _refused_unless_revocable(super().user_change_password, request, *args, **kwargs)


def _refused_unless_revocable(
    view: Callable[..., HttpResponse], request: HttpRequest, *args: Any, **kwargs: Any
) -> HttpResponse:
    try:
        response = view(request, *args, **kwargs)
    except RevocationUnavailable:
        messages.error(
            request,
            "Nothing was saved: the cache that ends the user's sessions is not answering. "
            "Try again in a few seconds.",
        )
        return HttpResponseRedirect(request.get_full_path())
    return response


@admin.register(OneTimeCode)
class OneTimeCodeAdmin(admin.ModelAdmin):
    """Read-only: operators can see that codes were sent and tried, never the codes."""

    list_display = (
        "phone", "purpose", "scope", "created_at", "expires_at", "attempts", "used_at",
    )  # fmt: skip
    list_filter = ("purpose", "created_at")
    search_fields = ("phone",)
    exclude = ("code_hash",)
    readonly_fields = (
        "phone",
        "purpose",
        "scope",
        "client_ip",
        "created_at",
        "expires_at",
        "attempts",
        "used_at",
        "from_signup",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OtpFailureStreak)
class OtpFailureStreakAdmin(admin.ModelAdmin):
    """Streaks of wrong codes (`accounts.otp_scopes`). Deleting one lifts its lock, for an
    owner who proved who they are some other way."""

    list_display = ("phone", "purpose", "scope", "failures", "last_failure_at")
    list_filter = ("purpose",)
    search_fields = ("phone",)
    readonly_fields = list_display

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
