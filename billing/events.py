"""Stripe webhook events: stored once by id, processed once, in any order of arrival.

Each event is stored under a unique id before anything else, then processed under a lock
on its row, so a redelivery, or two deliveries at the same instant, process it once. A
handler that fails leaves the event stored with its error and unprocessed; the caller
answers 5xx, Stripe delivers it again, and the next delivery (or an operator in the admin)
processes it. Handlers mirror the state the event carries (`billing.mirror`). Two cases
need Stripe's API, called before any lock is taken or transaction opened: a completed
checkout whose subscription we have not mirrored yet (read), and a live subscription of a
deleted account's customer (canceled).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import mirror, stripe_client
from billing.errors import StripeObjectMissing, WebhookProcessingFailed
from billing.models import RetiredCustomer, StripeEvent, Subscription
from billing.snapshots import (
    checkout_snapshot,
    event_customer_id,
    from_timestamp,
    invoice_snapshot,
    retired_payload,
    subscription_snapshot,
)

logger = logging.getLogger(__name__)

# A handler gets the event's object, Stripe's time of the event, and what was read from
# Stripe's API for it beforehand (see `_read_ahead`).
Handler = Callable[[dict[str, Any], dt.datetime, dict[str, Any] | None], str]


def stripe_event_receive(*, event: dict[str, Any]) -> StripeEvent:
    """Store a verified event (once) and process it unless it already was."""
    StripeEvent.objects.bulk_create([_event_row(event)], ignore_conflicts=True)
    _reduce_if_retired(event)
    return stripe_event_process(stripe_event_id=str(event["id"]))


def _event_row(event: dict[str, Any]) -> StripeEvent:
    return StripeEvent(
        stripe_event_id=str(event["id"]),
        type=str(event.get("type") or ""),
        stripe_created_at=from_timestamp(event.get("created")) or timezone.now(),
        api_version=str(event.get("api_version") or ""),
        livemode=bool(event.get("livemode")),
        payload=_storable_payload(event),
    )


def _storable_payload(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Stripe sent it; reduced to ids and states when it is about the customer
    of a deleted account (the deletion itself makes Stripe send some: the cancellations)."""
    customer_id = event_customer_id(event)
    if customer_id and RetiredCustomer.objects.filter(stripe_customer_id=customer_id).exists():
        return retired_payload(event)
    return event


def _reduce_if_retired(event: dict[str, Any]) -> None:
    """Checked again once the row is stored: an account deletion that retired the customer
    between the check in `_storable_payload` and the insert reduced the customer's events
    before this one existed. (A deletion that commits later reduces it itself.)"""
    customer_id = event_customer_id(event)
    if customer_id and RetiredCustomer.objects.filter(stripe_customer_id=customer_id).exists():
        StripeEvent.objects.filter(stripe_event_id=str(event["id"])).update(
            payload=retired_payload(event)
        )


def stripe_event_process(*, stripe_event_id: str) -> StripeEvent:
    """Run the handler of a stored event that was not processed yet.

    Raises WebhookProcessingFailed when it fails; the failure is stored first."""
    row = StripeEvent.objects.get(stripe_event_id=stripe_event_id)
    if row.processed_at is not None:
        return row
    try:
        read_ahead = _read_ahead(row)
    except Exception as exc:
        _failure_record(row, exc)
        raise WebhookProcessingFailed() from exc
    failure: Exception | None = None
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().get(pk=row.pk)
        if row.processed_at is not None:
            return row  # a concurrent delivery processed it meanwhile
        try:
            with transaction.atomic():
                outcome = _dispatch(row, read_ahead)
        except Exception as exc:
            failure = exc
        else:
            StripeEvent.objects.filter(pk=row.pk).update(
                attempts=F("attempts") + 1,
                outcome=outcome,
                processed_at=timezone.now(),
                last_error="",
            )
            logger.info("Stripe event %s (%s): %s", row.stripe_event_id, row.type, outcome)
    if failure is not None:
        _failure_record(row, failure)
        raise WebhookProcessingFailed() from failure
    row.refresh_from_db()
    return row


def _failure_record(row: StripeEvent, exc: Exception) -> None:
    logger.exception("Stripe event %s (%s) failed", row.stripe_event_id, row.type, exc_info=exc)
    StripeEvent.objects.filter(pk=row.pk).update(
        attempts=F("attempts") + 1, last_error=f"{type(exc).__name__}: {exc}"[:2000]
    )


def _event_object(row: StripeEvent) -> dict[str, Any] | None:
    data = row.payload.get("data") if isinstance(row.payload, dict) else None
    stripe_object = data.get("object") if isinstance(data, dict) else None
    return stripe_object if isinstance(stripe_object, dict) else None


def _read_ahead(row: StripeEvent) -> dict[str, Any] | None:
    """What a handler will need from Stripe's API, done outside any transaction."""
    stripe_object = _event_object(row)
    if stripe_object is None:
        return None
    if row.type in _SUBSCRIPTION_CHANGES:
        return _retired_customers_subscription_cancel(stripe_object)
    if row.type == "checkout.session.completed":
        return _checkout_subscription_read(stripe_object)
    return None


def _checkout_subscription_read(session: dict[str, Any]) -> dict[str, Any] | None:
    """The subscription of a completed checkout, when we have not mirrored it yet."""
    snapshot = checkout_snapshot(session)
    if snapshot.mode != "subscription" or not snapshot.subscription_id:
        return None
    if Subscription.objects.filter(stripe_subscription_id=snapshot.subscription_id).exists():
        return None
    if mirror.customer_owner(customer_id=snapshot.customer_id) is None:
        return None
    return stripe_client.subscription_retrieve(subscription_id=snapshot.subscription_id)


def _retired_customers_subscription_cancel(subscription: dict[str, Any]) -> dict[str, Any] | None:
    """A live subscription of a deleted account's customer (a Checkout paid during or after
    the deletion) is canceled at Stripe now; {"canceled": id} tells the handler."""
    snapshot = subscription_snapshot(subscription)
    if not snapshot.id or snapshot.status in Subscription.FINAL_STATUSES:
        return None
    if not RetiredCustomer.objects.filter(stripe_customer_id=snapshot.customer_id).exists():
        return None
    # The event's state may be old (a redelivery, an update after the cancel): Stripe's now.
    try:
        current = subscription_snapshot(
            stripe_client.subscription_retrieve(subscription_id=snapshot.id)
        )
    except StripeObjectMissing:
        return {"canceled": snapshot.id}  # gone at Stripe: nothing left to bill
    if current.status in Subscription.FINAL_STATUSES:
        return {"canceled": snapshot.id}
    stripe_client.subscription_cancel(subscription_id=snapshot.id)
    logger.warning(
        "Canceled Stripe subscription %s: its customer %s belonged to a deleted account",
        snapshot.id,
        snapshot.customer_id,
    )
    return {"canceled": snapshot.id}


def _dispatch(row: StripeEvent, read_ahead: dict[str, Any] | None) -> str:
    handler = _HANDLERS.get(row.type)
    if handler is None:
        return "ignored: not a type we handle"
    stripe_object = _event_object(row)
    if stripe_object is None:
        return "ignored: the event carries no object"
    return handler(stripe_object, row.stripe_created_at, read_ahead)


def _on_subscription_changed(
    subscription: dict[str, Any], state_at: dt.datetime, read_ahead: dict[str, Any] | None
) -> str:
    if read_ahead is not None and "canceled" in read_ahead:
        return "canceled at Stripe: the customer's account was deleted"
    snapshot = subscription_snapshot(subscription)
    if not snapshot.id:
        return "ignored: no subscription id"
    return _describe(mirror.subscription_state_apply(snapshot=snapshot, state_at=state_at))


def _on_checkout_completed(
    session: dict[str, Any], state_at: dt.datetime, read_ahead: dict[str, Any] | None
) -> str:
    snapshot = checkout_snapshot(session)
    if snapshot.mode != "subscription":
        return "ignored: not a subscription checkout"
    owner = mirror.customer_owner(customer_id=snapshot.customer_id)
    if owner is None:
        return "ignored: the customer is not one of ours"
    if snapshot.user_id != owner.pk:
        logger.warning(
            "Checkout %s: client_reference_id %s is not the customer's user %s",
            session.get("id"),
            snapshot.user_id,
            owner.pk,
        )
        return "ignored: client_reference_id names another user than the customer's"
    if not snapshot.subscription_id:
        return "no subscription yet"
    if Subscription.objects.filter(stripe_subscription_id=snapshot.subscription_id).exists():
        return "subscription already mirrored"
    if read_ahead is None:
        raise RuntimeError("The checkout's subscription was not read from Stripe")
    # The read happened after the checkout completed; stamped as of the checkout, so the
    # subscription's own events, all as new or newer, still apply.
    applied = mirror.subscription_state_apply(
        snapshot=subscription_snapshot(read_ahead), state_at=state_at
    )
    return f"subscription read from Stripe: {_describe(applied)}"


def _on_invoice(*, paid: bool) -> Handler:
    def handle(
        invoice: dict[str, Any], state_at: dt.datetime, read_ahead: dict[str, Any] | None
    ) -> str:
        snapshot = invoice_snapshot(invoice)
        if not snapshot.subscription_id:
            return "ignored: not a subscription invoice"
        return _describe(
            mirror.subscription_invoice_apply(invoice=snapshot, paid=paid, state_at=state_at)
        )

    return handle


def _describe(applied: mirror.Applied) -> str:
    return {
        "created": "subscription mirrored",
        "updated": "subscription updated",
        "unchanged": "subscription already up to date",
        "stale": "ignored: older than the state we hold",
        "no_user": "ignored: the customer is not one of ours",
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
HANDLED_EVENT_TYPES = frozenset(_HANDLERS)
_SUBSCRIPTION_CHANGES = frozenset(
    {"customer.subscription.created", "customer.subscription.updated"}
)


def stripe_events_prune(*, older_than: dt.timedelta) -> int:
    """Forget processed events received longer ago than `older_than`; returns how many.
    Unprocessed ones stay, for an operator to look at."""
    cutoff = timezone.now() - older_than
    deleted, _ = StripeEvent.objects.filter(
        processed_at__isnull=False, received_at__lt=cutoff
    ).delete()
    return deleted
