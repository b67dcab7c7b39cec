from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.maintenance import login_failures_purge


class Command(BaseCommand):
    help = (
        "Delete the login failure counters of hours before the previous one "
        "(what the hourly beat task does)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = login_failures_purge()
        self.stdout.write(f"Deleted {deleted} login failure counters.")
