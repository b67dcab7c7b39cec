"""The one module that talks to Stripe (stripe-python), and the only one importing `stripe`.

Every call goes through one configured client: the secret key, the pinned API version
(`STRIPE_API_VERSION`), a timeout, a few network retries with Stripe's idempotency keys,
and `STRIPE_API_BASE` to point it at another server (the local stand-in). Objects come
back as plain dicts, the same shape the webhook payloads have, so the rest of the app reads
one format. Stripe's exceptions become the errors of `billing.errors` here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from billing.errors import (
    BillingUnavailable,
    InvalidSignature,
    PaymentProviderError,
    StripeObjectMissing,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def stripe_is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def _client() -> stripe.StripeClient:
    if not stripe_is_configured():
        raise BillingUnavailable()
    return _configured_client(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_API_VERSION,
        settings.STRIPE_TIMEOUT_SECONDS,
        settings.STRIPE_MAX_NETWORK_RETRIES,
    )


@functools.lru_cache(maxsize=4)
def _configured_client(
    secret_key: str, api_base: str, api_version: str, timeout: float, retries: int
) -> stripe.StripeClient:
    # Keyed on the settings, so a changed setting (a test, a key rotation) gets a new client.
    return stripe.StripeClient(
        secret_key,
        stripe_version=api_version or None,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@contextlib.contextmanager
def _stripe_errors(action: str) -> Iterator[None]:
    """Stripe's exceptions → ours. Messages are logged without keys (Stripe masks them)."""
    try:
        yield
    except stripe.InvalidRequestError as exc:
        if exc.code == "resource_missing":
            logger.warning("Stripe %s: %s", action, exc.user_message or exc.code)
            raise StripeObjectMissing(param=exc.param) from exc
        logger.error("Stripe refused %s: %s (%s)", action, exc.user_message, exc.code)
        raise PaymentProviderError() from exc
    except stripe.AuthenticationError as exc:
        logger.error("Stripe refused our API key during %s; check STRIPE_SECRET_KEY", action)
        raise PaymentProviderError() from exc
    except stripe.APIConnectionError as exc:
        logger.warning("Stripe unreachable during %s: %s", action, type(exc).__name__)
        raise PaymentProviderError() from exc
    except stripe.StripeError as exc:
        logger.warning("Stripe error during %s: %s %s", action, exc.http_status, type(exc).__name__)
        raise PaymentProviderError() from exc


def _plain(stripe_object: Any) -> dict[str, Any]:
    return dict(stripe_object.to_dict(recursive=True, for_json=True))


def customer_create(*, user_id: int, phone: str, idempotency_key: str) -> str:
    """A new customer for our user; the same key within 24 h gives back the same one."""
    with _stripe_errors("customer creation"):
        customer = _client().v1.customers.create(
            params={"phone": phone, "metadata": {"user_id": str(user_id)}},
            options={"idempotency_key": idempotency_key},
        )
    return str(customer.id)


def customer_details_forget(*, customer_id: str) -> None:
    """Remove the phone number and our user id from a customer whose account is deleted."""
    with _stripe_errors("customer update"):
        _client().v1.customers.update(
            customer_id, params={"phone": "", "metadata": {"user_id": ""}}
        )


def checkout_session_create(
    *, customer_id: str, price_id: str, user_id: int, success_url: str, cancel_url: str
) -> CheckoutSession:
    """A Checkout Session that subscribes `customer_id` to `price_id`. Our user id travels
    as `client_reference_id` and in the metadata of the session and of the subscription."""
    metadata = {"user_id": str(user_id)}
    with _stripe_errors("checkout session creation"):
        session = _client().v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "line_items": [{"price": price_id, "quantity": 1}],
                "client_reference_id": str(user_id),
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
                "success_url": success_url,
                "cancel_url": cancel_url,
            }
        )
    if not session.url:
        logger.error("Stripe returned checkout session %s without a URL", session.id)
        raise PaymentProviderError()
    return CheckoutSession(id=str(session.id), url=str(session.url))


def checkout_session_expire(*, session_id: str) -> bool:
    """Close an open Checkout Session so it can no longer be paid. False when it was not open
    any more (paid, expired) or Stripe does not know it."""
    with _stripe_errors("checkout session expiry"):
        try:
            _client().v1.checkout.sessions.expire(session_id)
        except stripe.InvalidRequestError:
            return False
    return True


def open_checkout_sessions_of_customer(*, customer_id: str) -> list[str]:
    """The ids of the customer's Checkout Sessions that can still be paid."""
    with _stripe_errors("checkout session list"):
        page = _client().v1.checkout.sessions.list(
            params={"customer": customer_id, "status": "open", "limit": 100}
        )
        return [str(session.id) for session in page.auto_paging_iter()]


def portal_session_create(*, customer_id: str, return_url: str) -> str:
    """The URL of a Billing Portal session for `customer_id`."""
    with _stripe_errors("billing portal session creation"):
        session = _client().v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": return_url}
        )
    return str(session.url)


def subscription_retrieve(*, subscription_id: str) -> dict[str, Any]:
    with _stripe_errors("subscription read"):
        return _plain(_client().v1.subscriptions.retrieve(subscription_id))


def subscriptions_of_customer(*, customer_id: str) -> list[dict[str, Any]]:
    """Every subscription of a customer, canceled ones included."""
    with _stripe_errors("subscription list"):
        page = _client().v1.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        )
        return [_plain(subscription) for subscription in page.auto_paging_iter()]


def subscription_cancel(*, subscription_id: str) -> None:
    """Cancel now (not at the period's end); one Stripe no longer has counts as canceled."""
    try:
        with _stripe_errors("subscription cancel"):
            _client().v1.subscriptions.cancel(subscription_id)
    except StripeObjectMissing:
        return


def price_find(*, lookup_key: str) -> dict[str, Any] | None:
    """The active price with this lookup key, its product expanded; None when there is none."""
    with _stripe_errors("price lookup"):
        page = _client().v1.prices.list(
            params={"lookup_keys": [lookup_key], "active": True, "expand": ["data.product"]}
        )
    return _plain(page.data[0]) if page.data else None


def product_ensure(*, product_id: str, name: str) -> dict[str, Any]:
    """The product with our own id, created when Stripe does not have it."""
    with _stripe_errors("product lookup"):
        try:
            return _plain(_client().v1.products.retrieve(product_id))
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing":
                raise
    with _stripe_errors("product creation"):
        return _plain(_client().v1.products.create(params={"id": product_id, "name": name}))


def price_create(
    *, product_id: str, lookup_key: str, unit_amount: int, currency: str, interval: str
) -> dict[str, Any]:
    with _stripe_errors("price creation"):
        price = _client().v1.prices.create(
            params={
                "product": product_id,
                "unit_amount": unit_amount,
                "currency": currency,
                "recurring": {"interval": interval},
                "lookup_key": lookup_key,
                "transfer_lookup_key": True,
            }
        )
    return _plain(price)


def webhook_event_verified(*, payload: bytes, signature_header: str | None) -> dict[str, Any]:
    """The event in `payload`, once its Stripe-Signature proves Stripe sent it recently.

    Raises InvalidSignature for a missing, wrong or stale signature, BillingUnavailable when
    no webhook secret is configured."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise BillingUnavailable()
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(
            text, signature_header, secret, settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
        )
        event = json.loads(text)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidSignature() from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise InvalidSignature("The signed body is not a Stripe event.")
    return event
