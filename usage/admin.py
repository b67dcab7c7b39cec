from django.contrib import admin

from usage.models import DailyUsage


@admin.register(DailyUsage)
class DailyUsageAdmin(admin.ModelAdmin):
    list_display = ("user", "day", "count")
    list_filter = ("day",)
    search_fields = ("user__phone",)
    raw_id_fields = ("user",)
    list_select_related = ("user",)
    date_hierarchy = "day"
    ordering = ("-day", "-count")
