"""Stripe webhook events: stored once by id, processed once, in any order of arrival.

Each event is stored under a unique id before anything else, then processed under a lock
on its row, so a redelivery, or two deliveries at the same instant, process it once. A
handler that fails leaves the event stored with its error and unprocessed; the caller
answers 5xx, Stripe delivers it again, and the next delivery (or an operator in the admin)
processes it. Handlers mirror the state the event carries, ordered by Stripe's own clock
(see `services.subscription_state_apply`); only a completed checkout whose subscription we
have not seen yet asks Stripe for it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from billing import services, stripe_client
from billing.errors import WebhookProcessingFailed
from billing.models import StripeEvent, Subscription
from billing.snapshots import (
    checkout_snapshot,
    from_timestamp,
    invoice_snapshot,
    subscription_snapshot,
)

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], dt.datetime], str]


@dataclass(frozen=True)
class Handled:
    event: StripeEvent
    duplicate: bool


def stripe_event_receive(*, event: dict[str, Any]) -> Handled:
    """Store a verified event (once) and process it unless it already was."""
    StripeEvent.objects.bulk_create([_event_row(event)], ignore_conflicts=True)
    return stripe_event_process(stripe_event_id=str(event["id"]))


def _event_row(event: dict[str, Any]) -> StripeEvent:
    return StripeEvent(
        stripe_event_id=str(event["id"]),
        type=str(event.get("type") or ""),
        stripe_created_at=from_timestamp(event.get("created")) or timezone.now(),
        api_version=str(event.get("api_version") or ""),
        livemode=bool(event.get("livemode")),
        payload=event,
    )


def stripe_event_process(*, stripe_event_id: str) -> Handled:
    """Run the handler of a stored event that was not processed yet.

    Raises WebhookProcessingFailed when the handler fails; the failure is stored first."""
    failure: Exception | None = None
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().get(stripe_event_id=stripe_event_id)
        if row.processed_at is not None:
            return Handled(event=row, duplicate=True)
        row.attempts += 1
        try:
            with transaction.atomic():
                row.outcome = _dispatch(row)
        except Exception as exc:
            logger.exception("Stripe event %s (%s) failed", row.stripe_event_id, row.type)
            row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            failure = exc
        else:
            row.processed_at = timezone.now()
            row.last_error = ""
            logger.info("Stripe event %s (%s): %s", row.stripe_event_id, row.type, row.outcome)
        row.save(update_fields=["attempts", "outcome", "processed_at", "last_error"])
    if failure is not None:
        raise WebhookProcessingFailed() from failure
    return Handled(event=row, duplicate=False)


def _dispatch(row: StripeEvent) -> str:
    handler = _HANDLERS.get(row.type)
    if handler is None:
        return "ignored: not a type we handle"
    data = row.payload.get("data") if isinstance(row.payload, dict) else None
    stripe_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(stripe_object, dict):
        return "ignored: the event carries no object"
    return handler(stripe_object, row.stripe_created_at)


def _on_subscription_changed(subscription: dict[str, Any], state_at: dt.datetime) -> str:
    snapshot = subscription_snapshot(subscription)
    if not snapshot.id:
        return "ignored: no subscription id"
    return _describe(services.subscription_state_apply(snapshot=snapshot, state_at=state_at))


def _on_checkout_completed(session: dict[str, Any], state_at: dt.datetime) -> str:
    snapshot = checkout_snapshot(session)
    if snapshot.mode != "subscription":
        return "ignored: not a subscription checkout"
    user = User.objects.filter(pk=snapshot.user_id).first() if snapshot.user_id else None
    if user is None:
        return "ignored: client_reference_id names no user"
    services.billing_customer_link(user=user, customer_id=snapshot.customer_id)
    if not snapshot.subscription_id:
        return "customer linked; no subscription yet"
    if Subscription.objects.filter(stripe_subscription_id=snapshot.subscription_id).exists():
        return "customer linked; subscription already mirrored"
    # The session does not carry the subscription's state: read it, as of now.
    subscription = stripe_client.subscription_retrieve(snapshot.subscription_id)
    applied = services.subscription_state_apply(
        snapshot=subscription_snapshot(subscription), state_at=timezone.now(), user=user
    )
    return f"customer linked; subscription read from Stripe: {_describe(applied)}"


def _on_invoice(*, paid: bool) -> Handler:
    def handle(invoice: dict[str, Any], state_at: dt.datetime) -> str:
        snapshot = invoice_snapshot(invoice)
        if not snapshot.subscription_id:
            return "ignored: not a subscription invoice"
        return _describe(
            services.subscription_invoice_apply(invoice=snapshot, paid=paid, state_at=state_at)
        )

    return handle


def _describe(applied: services.Applied) -> str:
    return {
        "created": "subscription mirrored",
        "updated": "subscription updated",
        "unchanged": "subscription already up to date",
        "stale": "ignored: older than the state we hold",
        "no_user": "ignored: no user for this customer",
        "unknown_subscription": "ignored: subscription not mirrored yet",
    }[applied]


_HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": _on_checkout_completed,
    "customer.subscription.created": _on_subscription_changed,
    "customer.subscription.updated": _on_subscription_changed,
    "customer.subscription.deleted": _on_subscription_changed,
    "invoice.paid": _on_invoice(paid=True),
    "invoice.payment_failed": _on_invoice(paid=False),
}
