from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from usage.models import DailyUsage


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    """Read-only: counts change through the usage services (the users' page resets today's).
    A day may have several rows, one per slot (usage.models.PRO_SLOTS): its count is their sum."""

    list_display = ("user", "day", "slot", "count", "tokens")
    list_filter = ("day",)
    search_fields = ("user__phone",)
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    date_hierarchy = "day"
    ordering = ("-day", "-count")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
