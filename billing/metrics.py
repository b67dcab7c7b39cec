"""Billing metrics (exposed by core.metrics at /metrics)."""

from __future__ import annotations

from billing.events import HANDLED_EVENT_TYPES
from core.metrics import Counter

webhook_events = Counter(
    "gemini_stripe_webhook_events",
    "Stripe webhook deliveries by event type (the types we handle, else `other`) and "
    "outcome: processed (now, or before: a redelivery), failed (the event is stored and "
    "Stripe delivers it again), invalid_signature (type unknown: not read).",
    ["type", "outcome"],
)


def webhook_event_observe(*, event_type: str | None, outcome: str) -> None:
    if event_type is None:
        label = "unknown"
    else:
        label = event_type if event_type in HANDLED_EVENT_TYPES else "other"
    webhook_events.labels(label, outcome).inc()
