"""Writes of the billing state: Stripe customers, Checkout and portal sessions, the mirror of
Stripe's subscriptions, and the operator's Pro grant."""

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
from billing.errors import (
    AlreadySubscribed,
    BillingUnavailable,
    NoBillingAccount,
    StripeObjectMissing,
    SubscriptionPaymentDue,
)
from billing.models import BillingAccount, Subscription
from billing.selectors import user_is_pro
from billing.snapshots import InvoiceSnapshot, SubscriptionSnapshot, subscription_snapshot

logger = logging.getLogger(__name__)

PRO_PRODUCT_ID = "gemini_clone_pro"
PRO_PRODUCT_NAME = "Gemini Clone Pro"


# --- Customers, Checkout and the portal ----------------------------------------------------


def billing_account_of(*, user: User) -> BillingAccount:
    account, _ = BillingAccount.objects.get_or_create(user=user)
    return account


def billing_customer_ensure(*, user: User, replacing: str | None = None) -> str:
    """The user's Stripe customer id, created at Stripe the first time.

    Two requests racing here make one customer: the account row is locked around the call,
    and Stripe gets an idempotency key naming the user. `replacing` is a customer Stripe no
    longer knows (deleted in its dashboard): a new one takes its place.
    """
    account = billing_account_of(user=user)
    if account.stripe_customer_id and account.stripe_customer_id != replacing:
        return account.stripe_customer_id
    with transaction.atomic():
        account = BillingAccount.objects.select_for_update().get(pk=account.pk)
        current = account.stripe_customer_id
        if current and current != replacing:
            return current
        # The join date tells apart two users who got the same id (a database restored
        # from scratch against the same Stripe account).
        key = f"customer-{user.pk}-{int(user.date_joined.timestamp())}-{replacing or 'first'}"
        customer_id = stripe_client.customer_create(
            user_id=user.pk, phone=str(user.phone), idempotency_key=key
        )
        account.stripe_customer_id = customer_id
        account.save(update_fields=["stripe_customer_id", "updated_at"])
    logger.info("Stripe customer %s created for user %s", customer_id, user.pk)
    return customer_id


def _require_stripe() -> None:
    if not stripe_client.stripe_is_configured() or not settings.STRIPE_PRO_PRICE_ID:
        raise BillingUnavailable()


def pro_checkout_start(*, user: User) -> stripe_client.CheckoutSession:
    """A Stripe Checkout Session selling Pro to `user`. Nothing changes here until Stripe's
    webhook says the subscription exists."""
    _require_stripe()
    if user_is_pro(user=user):
        raise AlreadySubscribed()
    if Subscription.objects.filter(
        user=user, status__in=Subscription.PAYMENT_DUE_STATUSES
    ).exists():
        raise SubscriptionPaymentDue()
    customer_id = billing_customer_ensure(user=user)
    try:
        return _checkout_session_create(user=user, customer_id=customer_id)
    except StripeObjectMissing as missing:
        if missing.param != "customer":
            raise
        logger.warning("Stripe no longer knows customer %s; replacing it", customer_id)
        customer_id = billing_customer_ensure(user=user, replacing=customer_id)
        return _checkout_session_create(user=user, customer_id=customer_id)


def _checkout_session_create(*, user: User, customer_id: str) -> stripe_client.CheckoutSession:
    return stripe_client.checkout_session_create(
        customer_id=customer_id,
        price_id=settings.STRIPE_PRO_PRICE_ID,
        user_id=user.pk,
        success_url=settings.STRIPE_SUCCESS_URL,
        cancel_url=settings.STRIPE_CANCEL_URL,
    )


def billing_portal_open(*, user: User) -> str:
    """The URL of a Stripe Billing Portal session where the user manages their subscription."""
    if not stripe_client.stripe_is_configured():
        raise BillingUnavailable()
    customer_id = (
        BillingAccount.objects.filter(user=user)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    if not customer_id:
        raise NoBillingAccount()
    try:
        return stripe_client.portal_session_create(
            customer_id=customer_id, return_url=settings.STRIPE_PORTAL_RETURN_URL
        )
    except StripeObjectMissing as missing:
        raise NoBillingAccount() from missing


# --- The mirror of Stripe's subscriptions ----------------------------------------------------

# On a tie of Stripe's one-second timestamps, the state further along this order wins: it is
# the direction Stripe moves a subscription within a second (incomplete → active → past_due).
_STATUS_ORDER: dict[str, int] = {
    Subscription.Status.INCOMPLETE: 0,
    Subscription.Status.TRIALING: 1,
    Subscription.Status.ACTIVE: 2,
    Subscription.Status.PAST_DUE: 3,
    Subscription.Status.UNPAID: 4,
    Subscription.Status.PAUSED: 4,
    Subscription.Status.CANCELED: 5,
    Subscription.Status.INCOMPLETE_EXPIRED: 5,
}

Applied = Literal["created", "updated", "unchanged", "stale", "no_user", "unknown_subscription"]


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


def _owner_of(snapshot: SubscriptionSnapshot) -> User | None:
    """Our user behind a Stripe subscription: its customer's account, else its metadata."""
    if snapshot.customer_id:
        account = (
            BillingAccount.objects.select_related("user")
            .filter(stripe_customer_id=snapshot.customer_id)
            .first()
        )
        if account is not None:
            return account.user
    if snapshot.user_id is not None:
        return User.objects.filter(pk=snapshot.user_id).first()
    return None


def billing_customer_link(*, user: User, customer_id: str) -> None:
    """Record `customer_id` as the user's Stripe customer when they have none yet."""
    if not customer_id:
        return
    account = billing_account_of(user=user)
    if account.stripe_customer_id == customer_id:
        return
    if account.stripe_customer_id:
        logger.warning(
            "User %s pays as Stripe customer %s but is linked to %s; keeping the link",
            user.pk,
            customer_id,
            account.stripe_customer_id,
        )
        return
    try:
        with transaction.atomic():
            BillingAccount.objects.filter(pk=account.pk, stripe_customer_id__isnull=True).update(
                stripe_customer_id=customer_id, updated_at=timezone.now()
            )
    except IntegrityError:
        logger.warning("Stripe customer %s belongs to another user; not linking", customer_id)


def subscription_state_apply(
    *, snapshot: SubscriptionSnapshot, state_at: dt.datetime, user: User | None = None
) -> Applied:
    """Mirror Stripe's state of one subscription, unless what we hold is newer.

    `state_at` is Stripe's time of that state (the event's `created`, or now for an API read),
    so events arriving in any order leave the newest state. `user` is the owner when the
    caller already knows it (a checkout); otherwise the customer or the metadata tell.
    """
    owner = user or _owner_of(snapshot)
    with transaction.atomic():
        row = (
            Subscription.objects.select_for_update()
            .filter(stripe_subscription_id=snapshot.id)
            .first()
        )
        if row is None:
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
                billing_customer_link(user=owner, customer_id=snapshot.customer_id)
                return "created"
        if not _supersedes(row=row, status=snapshot.status, state_at=state_at):
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


def subscription_invoice_apply(
    *, invoice: InvoiceSnapshot, paid: bool, state_at: dt.datetime
) -> Applied:
    """What an invoice says about its subscription, as Stripe itself moves it: a paid invoice
    brings a past_due or unpaid subscription back to active and extends its period; a failed
    renewal makes an active one past_due. The subscription events say the same, maybe later."""
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
        status = _status_after_invoice(row=row, invoice=invoice, paid=paid)
        if status and _supersedes(row=row, status=status, state_at=state_at):
            row.status = status
            row.stripe_state_at = state_at
            changed += ["status", "stripe_state_at"]
        if not changed:
            return "unchanged"
        row.save(update_fields=[*changed, "updated_at"])
    return "updated"


def _status_after_invoice(
    *, row: Subscription, invoice: InvoiceSnapshot, paid: bool
) -> Subscription.Status | None:
    if paid and row.status in (Subscription.Status.PAST_DUE, Subscription.Status.UNPAID):
        return Subscription.Status.ACTIVE
    # The first invoice failing leaves the subscription `incomplete`, not past_due.
    failed_renewal = not paid and invoice.billing_reason != "subscription_create"
    if failed_renewal and row.status in Subscription.PRO_STATUSES:
        return Subscription.Status.PAST_DUE
    return None


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
    we know) and mirror it: what an operator runs after webhooks were lost (an outage, a
    wrong secret)."""
    report = SyncReport()
    if customer_ids is None:
        linked = BillingAccount.objects.values_list("stripe_customer_id", flat=True)
        mirrored = Subscription.objects.values_list("stripe_customer_id", flat=True)
        customer_ids = [customer_id or "" for customer_id in [*linked, *mirrored]]
    for customer_id in sorted({customer_id for customer_id in customer_ids if customer_id}):
        report.customers += 1
        try:
            subscriptions = stripe_client.subscriptions_of_customer(customer_id)
        except StripeObjectMissing:
            logger.warning("Stripe no longer knows customer %s", customer_id)
            report.errors += 1
            continue
        for subscription in subscriptions:
            applied = subscription_state_apply(
                snapshot=subscription_snapshot(subscription), state_at=timezone.now()
            )
            if applied == "created":
                report.created += 1
            elif applied == "updated":
                report.updated += 1
            elif applied == "unchanged":
                report.unchanged += 1
            else:
                report.skipped += 1
    return report


# --- The Pro price, for the stripe_setup command ----------------------------------------------


@dataclass(frozen=True)
class ProPrice:
    id: str
    unit_amount: int
    currency: str
    interval: str
    created: bool


def pro_price_ensure(*, unit_amount: int, currency: str, interval: str) -> ProPrice:
    """The recurring Pro price in the configured Stripe account, created when missing.

    Found again by its lookup key, so running this twice creates nothing the second time."""
    if not stripe_client.stripe_is_configured():
        raise BillingUnavailable()
    lookup_key = f"{PRO_PRODUCT_ID}_{interval}ly"
    price = stripe_client.price_find(lookup_key=lookup_key)
    created = price is None
    if price is None:
        product = stripe_client.product_ensure(product_id=PRO_PRODUCT_ID, name=PRO_PRODUCT_NAME)
        price = stripe_client.price_create(
            product_id=str(product["id"]),
            lookup_key=lookup_key,
            unit_amount=unit_amount,
            currency=currency,
            interval=interval,
        )
    recurring = price.get("recurring") or {}
    return ProPrice(
        id=str(price["id"]),
        unit_amount=int(price.get("unit_amount") or 0),
        currency=str(price.get("currency") or ""),
        interval=str(recurring.get("interval") or ""),
        created=created,
    )


# --- The operator's grant ---------------------------------------------------------------------


def pro_grant(*, user: User, until: dt.datetime) -> BillingAccount:
    """Pro until `until`, whatever Stripe says (support, partners, refunds in kind)."""
    account = billing_account_of(user=user)
    account.pro_granted_until = until
    account.save(update_fields=["pro_granted_until", "updated_at"])
    logger.info("Pro granted to user %s until %s", user.pk, until.isoformat())
    return account


def pro_grant_revoke(*, user: User) -> BillingAccount:
    account = billing_account_of(user=user)
    if account.pro_granted_until is not None:
        account.pro_granted_until = None
        account.save(update_fields=["pro_granted_until", "updated_at"])
        logger.info("Pro grant of user %s revoked", user.pk)
    return account
