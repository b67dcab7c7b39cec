"""Reading Stripe objects (webhook payloads or API answers, as plain dicts).

Tolerant of Stripe's API versions: since 2025-03-31.basil a subscription's period lives on
its items and an invoice names its subscription under `parent.subscription_details`; older
versions have `current_period_end` and `subscription` at the top. Both shapes are read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


def from_timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def _id_of(value: Any) -> str:
    """An id whether the field holds the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else ""


def _items(subscription: dict[str, Any]) -> list[dict[str, Any]]:
    items = subscription.get("items")
    data = items.get("data") if isinstance(items, dict) else None
    return [item for item in data or [] if isinstance(item, dict)]


def _metadata_user_id(stripe_object: dict[str, Any]) -> int | None:
    """Our user id from the object's metadata (we set it on checkouts and subscriptions)."""
    metadata = stripe_object.get("metadata")
    raw = metadata.get("user_id") if isinstance(metadata, dict) else None
    return _positive_int(raw)


def _positive_int(raw: Any) -> int | None:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        value = int(raw)
        return value if 0 < value < 2**63 else None
    return None


@dataclass(frozen=True)
class SubscriptionSnapshot:
    id: str
    customer_id: str
    status: str
    price_id: str
    current_period_end: dt.datetime | None
    cancel_at_period_end: bool


def subscription_snapshot(subscription: dict[str, Any]) -> SubscriptionSnapshot:
    items = _items(subscription)
    period_ends = [end for item in items if (end := from_timestamp(item.get("current_period_end")))]
    legacy_end = from_timestamp(subscription.get("current_period_end"))
    price = items[0].get("price") if items else None
    return SubscriptionSnapshot(
        id=_id_of(subscription.get("id")),
        customer_id=_id_of(subscription.get("customer")),
        status=str(subscription.get("status") or ""),
        price_id=_id_of(price),
        current_period_end=max(period_ends) if period_ends else legacy_end,
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
    )


@dataclass(frozen=True)
class InvoiceSnapshot:
    subscription_id: str
    billing_reason: str
    period_end: dt.datetime | None


def invoice_snapshot(invoice: dict[str, Any]) -> InvoiceSnapshot:
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    subscription = details.get("subscription") if isinstance(details, dict) else None
    lines = invoice.get("lines")
    line_data = lines.get("data") if isinstance(lines, dict) else None
    line_ends = [
        end
        for line in line_data or []
        if isinstance(line, dict)
        and isinstance(line.get("period"), dict)
        and (end := from_timestamp(line["period"].get("end")))
    ]
    return InvoiceSnapshot(
        subscription_id=_id_of(subscription) or _id_of(invoice.get("subscription")),
        billing_reason=str(invoice.get("billing_reason") or ""),
        period_end=max(line_ends) if line_ends else None,
    )


@dataclass(frozen=True)
class CheckoutSnapshot:
    mode: str
    customer_id: str
    subscription_id: str
    user_id: int | None


def checkout_snapshot(session: dict[str, Any]) -> CheckoutSnapshot:
    return CheckoutSnapshot(
        mode=str(session.get("mode") or ""),
        customer_id=_id_of(session.get("customer")),
        subscription_id=_id_of(session.get("subscription")),
        user_id=_positive_int(session.get("client_reference_id")) or _metadata_user_id(session),
    )


# What is kept of an event about a deleted account's customer: enough for the handlers
# (a subscription's id, customer, status), nothing about the person (an invoice's phone,
# e-mail and name, a customer update's previous phone are not).
_RETIRED_OBJECT_FIELDS = ("id", "object", "customer", "status")


def event_customer_id(event: dict[str, Any]) -> str:
    """The Stripe customer an event is about: its object's `customer`, or the object itself
    when it is a customer; "" when none."""
    data = event.get("data")
    stripe_object = data.get("object") if isinstance(data, dict) else None
    if not isinstance(stripe_object, dict):
        return ""
    if stripe_object.get("object") == "customer":
        return _id_of(stripe_object.get("id"))
    return _id_of(stripe_object.get("customer"))


def retired_payload(event: dict[str, Any]) -> dict[str, Any]:
    """The event reduced to its envelope and its object's ids and state."""
    data = event.get("data")
    stripe_object = data.get("object") if isinstance(data, dict) else None
    kept = (
        {name: stripe_object[name] for name in _RETIRED_OBJECT_FIELDS if name in stripe_object}
        if isinstance(stripe_object, dict)
        else {}
    )
    return {**{k: v for k, v in event.items() if k != "data"}, "data": {"object": kept}}
