from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from billing.events import stripe_events_prune


class Command(BaseCommand):
    help = (
        "Delete processed Stripe events received more than STRIPE_EVENT_RETENTION_DAYS ago "
        "(what the daily beat task does). Unprocessed events are kept."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.STRIPE_EVENT_RETENTION_DAYS
        deleted = stripe_events_prune(older_than=dt.timedelta(days=days))
        self.stdout.write(f"Deleted {deleted} Stripe events older than {days} days.")
