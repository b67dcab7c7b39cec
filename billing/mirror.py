"""Our copy of Stripe's subscriptions, kept equal to Stripe's newest state.

Stripe's events arrive late, twice, or out of order, so each state carries the Stripe time it
describes (`stripe_state_at`: an event's `created`) and an older state never overwrites a
newer one. Only subscriptions of customers linked to our users are mirrored: the link is made
when a user starts a checkout, never from what an event says.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from billing import stripe_client
from billing.errors import StripeObjectMissing
from billing.models import BillingAccount, Subscription
from billing.snapshots import InvoiceSnapshot, SubscriptionSnapshot, subscription_snapshot

logger = logging.getLogger(__name__)

Status = Subscription.Status

# On a tie of Stripe's one-second timestamps, the state further along this order wins: it is
# the direction Stripe moves a subscription within a second (incomplete → active → past_due).
_STATUS_ORDER: dict[str, int] = {
    Status.INCOMPLETE: 0,
    Status.TRIALING: 1,
    Status.ACTIVE: 2,
    Status.PAST_DUE: 3,
    Status.UNPAID: 4,
    Status.PAUSED: 4,
    Status.CANCELED: 5,
    Status.INCOMPLETE_EXPIRED: 5,
}

Applied = Literal["created", "updated", "unchanged", "stale", "no_user", "unknown_subscription"]


def customer_owner(*, customer_id: str) -> User | None:
    """The user whose Stripe customer this is, if it is one of ours."""
    if not customer_id:
        return None
    account = (
        BillingAccount.objects.select_related("user").filter(stripe_customer_id=customer_id).first()
    )
    return account.user if account else None


def _supersedes(*, row: Subscription, status: str, state_at: dt.datetime) -> bool:
    """Whether a state of `status` as of `state_at` is newer than what `row` mirrors."""
    if row.stripe_state_at is None:
        return True
    row_final = row.status in Subscription.FINAL_STATUSES
    new_final = status in Subscription.FINAL_STATUSES
    if row_final != new_final:
        return new_final  # an ended subscription never comes back, whatever the clocks say
    if state_at != row.stripe_state_at:
        return state_at > row.stripe_state_at
    return _STATUS_ORDER.get(status, 0) >= _STATUS_ORDER.get(row.status, 0)


def subscription_state_apply(
    *, snapshot: SubscriptionSnapshot, state_at: dt.datetime, authoritative: bool = False
) -> Applied:
    """Mirror Stripe's state of one subscription as of `state_at`, unless we hold a newer one.

    `authoritative` is for a state just read from Stripe's API by an operator's re-sync: it
    replaces whatever we hold (even a canceled row that a bug or a hand edit left behind)."""
    with transaction.atomic():
        row = (
            Subscription.objects.select_for_update()
            .filter(stripe_subscription_id=snapshot.id)
            .first()
        )
        if row is None:
            owner = customer_owner(customer_id=snapshot.customer_id)
            if owner is None:
                return "no_user"
            try:
                with transaction.atomic():
                    Subscription.objects.create(
                        user=owner,
                        stripe_subscription_id=snapshot.id,
                        **_mirrored_fields(snapshot, state_at),
                    )
            except IntegrityError:  # created meanwhile by a concurrent delivery
                row = Subscription.objects.select_for_update().get(
                    stripe_subscription_id=snapshot.id
                )
            else:
                _warn_if_billed_twice(user=owner)
                return "created"
        if not authoritative and not _supersedes(
            row=row, status=snapshot.status, state_at=state_at
        ):
            return "stale"
        fields = _mirrored_fields(snapshot, state_at)
        changed = any(
            getattr(row, name) != value
            for name, value in fields.items()
            if name != "stripe_state_at"
        )
        for name, value in fields.items():
            setattr(row, name, value)
        row.save(update_fields=[*fields, "updated_at"])
    if changed:
        _warn_if_billed_twice(user=row.user)
    return "updated" if changed else "unchanged"


def _mirrored_fields(snapshot: SubscriptionSnapshot, state_at: dt.datetime) -> dict[str, object]:
    return {
        "stripe_customer_id": snapshot.customer_id,
        "status": snapshot.status,
        "price_id": snapshot.price_id,
        "current_period_end": snapshot.current_period_end,
        "cancel_at_period_end": snapshot.cancel_at_period_end,
        "stripe_state_at": state_at,
    }


def _warn_if_billed_twice(*, user: User) -> None:
    """Two live subscriptions bill the user twice (two checkouts paid in two tabs): an
    operator must refund one, so say it loudly."""
    live = Subscription.objects.filter(user=user, status__in=Subscription.PRO_STATUSES)
    if live.count() > 1:
        logger.error(
            "User %s has %d live subscriptions (%s); cancel and refund the extra ones",
            user.pk,
            live.count(),
            ", ".join(live.values_list("stripe_subscription_id", flat=True)),
        )


def subscription_invoice_apply(
    *, invoice: InvoiceSnapshot, paid: bool, state_at: dt.datetime
) -> Applied:
    """What an invoice says about its subscription, as Stripe moves it: a paid renewal makes it
    active, a failed renewal past_due, and a paid period extends `current_period_end`. The
    subscription events say the same, maybe later; the newer of the two wins."""
    with transaction.atomic():
        row = (
            Subscription.objects.select_for_update()
            .filter(stripe_subscription_id=invoice.subscription_id)
            .first()
        )
        if row is None:
            return "unknown_subscription"
        changed: list[str] = []
        if (
            paid
            and invoice.period_end
            and (row.current_period_end is None or invoice.period_end > row.current_period_end)
        ):
            row.current_period_end = invoice.period_end
            changed.append("current_period_end")
        status = _status_implied(row=row, invoice=invoice, paid=paid)
        if status and _supersedes(row=row, status=status, state_at=state_at):
            if row.status != status:
                row.status = status
                changed.append("status")
            if row.stripe_state_at != state_at:
                # Also when the status stays: an older invoice arriving late must not undo it.
                row.stripe_state_at = state_at
                changed.append("stripe_state_at")
        if not changed:
            return "unchanged"
        row.save(update_fields=[*changed, "updated_at"])
    return "updated"


def _status_implied(*, row: Subscription, invoice: InvoiceSnapshot, paid: bool) -> str | None:
    # The first invoice says nothing new: the subscription's own events carry its first
    # state (a trial's $0 invoice is paid, yet the subscription is trialing).
    if invoice.billing_reason == "subscription_create":
        return None
    if paid and row.status in (Status.ACTIVE, Status.TRIALING, Status.PAST_DUE, Status.UNPAID):
        return Status.ACTIVE
    if not paid and row.status in (Status.ACTIVE, Status.TRIALING, Status.PAST_DUE):
        return Status.PAST_DUE
    return None


def api_read_state_at() -> dt.datetime:
    """The Stripe time to stamp on a state read from the API now.

    Stripe's `created` is in whole seconds on Stripe's clock. Stamping a read a little in
    the past means an event made just before or after the read, or during our clock's lead
    over Stripe's, is still applied; applying such an event can only move the row to a state
    Stripe reported, and the newest event wins in the end."""
    margin = dt.timedelta(seconds=settings.STRIPE_CLOCK_SKEW_SECONDS)
    return timezone.now().replace(microsecond=0) - margin


@dataclass
class SyncReport:
    customers: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0


def subscriptions_sync(*, customer_ids: Iterable[str] | None = None) -> SyncReport:
    """Re-read from Stripe every subscription of the given customers (default: every customer
    we know) and mirror it as Stripe says it is now: what an operator runs after webhooks
    were lost (an outage, a wrong secret)."""
    report = SyncReport()
    if customer_ids is None:
        linked = BillingAccount.objects.values_list("stripe_customer_id", flat=True)
        mirrored = Subscription.objects.values_list("stripe_customer_id", flat=True)
        customer_ids = [customer_id or "" for customer_id in [*linked, *mirrored]]
    for customer_id in sorted({customer_id for customer_id in customer_ids if customer_id}):
        report.customers += 1
        try:
            subscriptions = stripe_client.subscriptions_of_customer(customer_id=customer_id)
        except StripeObjectMissing:
            logger.warning("Stripe no longer knows customer %s", customer_id)
            report.errors += 1
            continue
        state_at = api_read_state_at()
        for subscription in subscriptions:
            applied = subscription_state_apply(
                snapshot=subscription_snapshot(subscription),
                state_at=state_at,
                authoritative=True,
            )
            if applied in ("created", "updated", "unchanged"):
                setattr(report, applied, getattr(report, applied) + 1)
            else:
                report.skipped += 1
    return report
