"""Writes of the billing state: Stripe customers, Checkout and portal sessions, the Pro price,
and the operator's Pro grant. The mirror of Stripe's subscriptions is `billing.mirror`."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from accounts.errors import AccountGone
from accounts.models import User
from billing import stripe_client
from billing.errors import (
    AlreadySubscribed,
    BillingUnavailable,
    NoBillingAccount,
    StripeObjectMissing,
    SubscriptionPaymentDue,
)
from billing.models import BillingAccount, RetiredCustomer, StripeEvent, Subscription
from billing.selectors import user_is_pro
from billing.snapshots import retired_payload

logger = logging.getLogger(__name__)

PRO_PRODUCT_ID = "gemini_clone_pro"
PRO_PRODUCT_NAME = "Gemini Clone Pro"


# --- Customers, Checkout and the portal ----------------------------------------------------


def billing_account_of(*, user: User) -> BillingAccount:
    """The user's billing row, made the first time. AccountGone when the account was deleted
    while this request, authenticated before, was served (the new row's key refused) — in
    autocommit, as the API's requests run. Inside a caller's transaction the key is checked
    at that transaction's commit, which raises the IntegrityError itself."""
    try:
        account, _ = BillingAccount.objects.get_or_create(user=user)
    except IntegrityError:
        if User.objects.filter(pk=user.pk).exists():
            raise
        raise AccountGone() from None
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
        locked = BillingAccount.objects.select_for_update().filter(pk=account.pk).first()
        if locked is None:
            raise AccountGone()  # deleted, with its billing row, while this waited
        account = locked
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
    _earlier_checkout_expire(user=user)
    try:
        session = _checkout_session_create(user=user, customer_id=customer_id)
    except StripeObjectMissing as missing:
        if missing.param != "customer":
            raise
        logger.warning("Stripe no longer knows customer %s; replacing it", customer_id)
        customer_id = billing_customer_ensure(user=user, replacing=customer_id)
        session = _checkout_session_create(user=user, customer_id=customer_id)
    if not BillingAccount.objects.filter(user=user).update(checkout_session_id=session.id):
        # The account was deleted meanwhile (its billing row with it): nobody may pay this.
        stripe_client.checkout_session_expire(session_id=session.id)
        raise AccountGone()
    return session


def _earlier_checkout_expire(*, user: User) -> None:
    """Close the checkout the user started before, so two tabs cannot both be paid."""
    earlier = (
        BillingAccount.objects.filter(user=user)
        .values_list("checkout_session_id", flat=True)
        .first()
    )
    if earlier:
        stripe_client.checkout_session_expire(session_id=earlier)


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


# --- The Pro price, for the stripe_setup command ----------------------------------------------


DEFAULT_PRO_AMOUNT = 999
DEFAULT_PRO_CURRENCY = "usd"


@dataclass(frozen=True)
class ProPrice:
    id: str
    unit_amount: int
    currency: str
    interval: str
    created: bool
    replaced: str | None  # the price that was the Pro price before, when this one replaces it


def pro_price_ensure(
    *, interval: str, unit_amount: int | None = None, currency: str | None = None
) -> ProPrice:
    """The recurring Pro price in the configured Stripe account, created when missing.

    Found again by its lookup key, so running this twice creates nothing the second time.
    Asking for another amount or currency creates a new price that takes the lookup key over
    (Stripe prices cannot change; existing subscribers keep theirs)."""
    if not stripe_client.stripe_is_configured():
        raise BillingUnavailable()
    lookup_key = f"{PRO_PRODUCT_ID}_{interval}ly"
    found = stripe_client.price_find(lookup_key=lookup_key)
    wanted_amount = unit_amount if unit_amount is not None else DEFAULT_PRO_AMOUNT
    wanted_currency = (currency or DEFAULT_PRO_CURRENCY).lower()
    if found is not None and (
        (unit_amount is None or found.get("unit_amount") == unit_amount)
        and (currency is None or found.get("currency") == wanted_currency)
    ):
        return _pro_price(found, created=False, replaced=None)
    product = stripe_client.product_ensure(product_id=PRO_PRODUCT_ID, name=PRO_PRODUCT_NAME)
    price = stripe_client.price_create(
        product_id=str(product["id"]),
        lookup_key=lookup_key,
        unit_amount=wanted_amount,
        currency=wanted_currency,
        interval=interval,
    )
    return _pro_price(price, created=True, replaced=str(found["id"]) if found else None)


def _pro_price(price: dict[str, Any], *, created: bool, replaced: str | None) -> ProPrice:
    recurring = price.get("recurring") or {}
    return ProPrice(
        id=str(price["id"]),
        unit_amount=int(price.get("unit_amount") or 0),
        currency=str(price.get("currency") or ""),
        interval=str(recurring.get("interval") or ""),
        created=created,
        replaced=replaced,
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


# --- Account deletion ----------------------------------------------------------------------

_ENDED_AT_STRIPE = frozenset(Subscription.FINAL_STATUSES)


@dataclass(frozen=True)
class RetiringCustomer:
    """The Stripe side of an account being deleted: what must be closed at Stripe."""

    stripe_customer_id: str


def billing_customer_retire(*, user: User) -> RetiringCustomer | None:
    """The first half of an account deletion's billing part, in its transaction, before the
    user's row goes (the billing rows go with it): the webhook events stored about the
    customer are deleted (their payloads hold its phone and details), and its id is kept
    alone as retired (`RetiredCustomer`: a subscription that still appears for it is canceled
    by the webhook). The billing row is locked first: a first purchase creating the customer
    at this moment is waited for, so its customer is retired too. None when the user never
    had a Stripe customer; BillingUnavailable when they had one but Stripe is not configured
    here to close it."""
    account = BillingAccount.objects.select_for_update().filter(user=user).first()
    if account is None or not account.stripe_customer_id:
        return None
    if not stripe_client.stripe_is_configured():
        raise BillingUnavailable()
    customer_id = account.stripe_customer_id
    _events_of_customer(customer_id).delete()
    RetiredCustomer.objects.get_or_create(stripe_customer_id=customer_id)
    # Events that arrive while the deletion's transaction is open do not see the retired
    # customer yet and are stored whole: reduced once it commits.
    transaction.on_commit(
        partial(retired_customer_events_reduce, customer_id=customer_id), robust=True
    )
    return RetiringCustomer(stripe_customer_id=customer_id)


def billing_customer_close_at_stripe(*, customer: RetiringCustomer) -> int:
    """The second half, the last step of the deletion's transaction, so that Stripe not
    answering rolls the deletion back (PaymentProviderError): every open Checkout of the
    customer is closed (none can be paid any more), the customer's phone and our user id
    removed, then every live subscription canceled now, from Stripe's own list (not our
    mirror, which a lost webhook could leave behind); returns how many were canceled. In that
    order, a Checkout paid before it was closed made a subscription the list shows. Stripe
    failing halfway leaves what was done done (a retry finishes it). The customer stays at
    Stripe with its invoices, as accounting needs."""
    customer_id = customer.stripe_customer_id
    try:
        for session_id in stripe_client.open_checkout_sessions_of_customer(customer_id=customer_id):
            stripe_client.checkout_session_expire(session_id=session_id)
        stripe_client.customer_details_forget(customer_id=customer_id)
        # Last: Stripe failing after a cancel leaves the account (rolled back) without Pro.
        subscriptions = stripe_client.subscriptions_of_customer(customer_id=customer_id)
        live = [s["id"] for s in subscriptions if s.get("status") not in _ENDED_AT_STRIPE]
        for subscription_id in live:
            stripe_client.subscription_cancel(subscription_id=subscription_id)
    except StripeObjectMissing:
        return 0  # the customer was deleted at Stripe, and its subscriptions with it
    if live:
        logger.info(
            "Canceled %s Stripe subscription(s) of customer %s, whose account is being deleted",
            len(live),
            customer_id,
        )
    return len(live)


def retired_customer_events_reduce(*, customer_id: str) -> int:
    """Reduce the stored webhook events about a retired customer to ids and states (as
    `billing.events` stores them from then on); returns how many changed."""
    changed = 0
    for row in _events_of_customer(customer_id):
        reduced = retired_payload(row.payload)
        if reduced != row.payload:
            StripeEvent.objects.filter(pk=row.pk).update(payload=reduced)
            changed += 1
    return changed


def _events_of_customer(customer_id: str) -> QuerySet[StripeEvent]:
    """The stored webhook events whose object is the customer or names it."""
    return StripeEvent.objects.filter(
        Q(payload__data__object__customer=customer_id) | Q(payload__data__object__id=customer_id)
    )
