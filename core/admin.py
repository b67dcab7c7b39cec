from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from core.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """The Celery workers and when each was last heard of (written by the workers only)."""

    list_display = ("hostname", "seen_at")
    ordering = ("-seen_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
