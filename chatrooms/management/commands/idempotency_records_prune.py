from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from chatrooms.idempotency import idempotency_records_prune


class Command(BaseCommand):
    help = (
        "Delete Idempotency-Key records older than IDEMPOTENCY_KEY_RETENTION_SECONDS "
        "(what the hourly beat task does)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = idempotency_records_prune()
        self.stdout.write(f"Deleted {deleted} idempotency records.")
