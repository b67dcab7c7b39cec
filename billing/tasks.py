"""Billing's periodic work, run by Celery beat."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings

from billing.events import stripe_events_prune as events_prune


@shared_task(name="billing.stripe_events_prune", time_limit=300, soft_time_limit=270)
def stripe_events_prune() -> int:
    """Beat, daily: forget processed Stripe events past STRIPE_EVENT_RETENTION_DAYS."""
    return events_prune(older_than=dt.timedelta(days=settings.STRIPE_EVENT_RETENTION_DAYS))
