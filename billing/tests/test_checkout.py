"""POST /api/subscribe/pro: one Stripe customer per user, a Checkout Session naming our user,
and the contract's refusals."""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from billing.models import BillingAccount, Subscription
from billing.services import pro_grant
from billing.tests.helpers import error_code, subscribe
from testing.concurrency import at_once


def test_subscribe_answers_a_checkout_session_for_the_pro_price(
    fake_stripe, settings, client, user
):
    body = subscribe(client)

    assert set(body) == {"checkout_url", "session_id"}
    session = fake_stripe.checkout_session(body["session_id"])
    assert body["checkout_url"] == session["url"]
    assert session["mode"] == "subscription"
    assert session["client_reference_id"] == str(user.pk)
    assert session["metadata"] == {"user_id": str(user.pk)}
    created = [r for r in fake_stripe.requests if r["path"] == "/v1/checkout/sessions"]
    params = created[-1]["params"]
    assert params["line_items"] == [{"price": settings.STRIPE_PRO_PRICE_ID, "quantity": "1"}]
    assert params["subscription_data"] == {"metadata": {"user_id": str(user.pk)}}
    assert params["success_url"].endswith(
        "/payment-success/stripe?session_id={CHECKOUT_SESSION_ID}"
    )
    assert params["cancel_url"].endswith("/payment-cancel/stripe")
    assert created[-1]["stripe_version"] == "2025-06-30.basil"
    # Nothing is granted until Stripe's webhook says so.
    assert not Subscription.objects.exists()
    assert client.get("/api/user/me").json()["tier"] == "basic"


def test_the_stripe_customer_is_created_once_and_reused(fake_stripe, client, user):
    first = subscribe(client)
    second = subscribe(client)

    customers = fake_stripe.customers
    assert len(customers) == 1
    customer = customers[0]
    assert customer["metadata"] == {"user_id": str(user.pk)}
    assert customer["phone"] == str(user.phone)
    assert BillingAccount.objects.get(user=user).stripe_customer_id == customer["id"]
    sessions = [fake_stripe.checkout_session(b["session_id"]) for b in (first, second)]
    assert {s["customer"] for s in sessions} == {customer["id"]}
    assert first["session_id"] != second["session_id"]


@pytest.mark.django_db(transaction=True)
def test_racing_subscribes_make_one_customer(fake_stripe):
    user = UserFactory()
    clients = [APIClient() for _ in range(6)]
    for api in clients:
        api.force_authenticate(user)
    responses = at_once([partial(api.post, "/api/subscribe/pro") for api in clients])
    statuses = [response.status_code for response in responses]

    assert statuses == [201] * len(clients)
    assert len(fake_stripe.customers) == 1
    creates = [r for r in fake_stripe.requests if r["path"] == "/v1/customers"]
    assert len(creates) == 1
    assert creates[0]["idempotency_key"].startswith(f"customer-{user.pk}-")


def test_without_stripe_keys_subscribe_is_503(settings, client):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PRO_PRICE_ID = "price_x"

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 503
    assert error_code(response) == "billing_unavailable"


def test_without_a_pro_price_subscribe_is_503(fake_stripe, settings, client):
    settings.STRIPE_PRO_PRICE_ID = ""

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 503
    assert error_code(response) == "billing_unavailable"
    assert fake_stripe.customers == []


def test_a_pro_user_cannot_subscribe_again(fake_stripe, client, user):
    pro_grant(user=user, until=timezone.now() + dt.timedelta(days=3))

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 409
    assert error_code(response) == "already_subscribed"
    assert fake_stripe.requests_to("/v1/checkout/sessions") == []


def test_a_subscriber_cannot_subscribe_again(fake_stripe, client):
    fake_stripe.complete_checkout(subscribe(client)["session_id"])

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 409
    assert error_code(response) == "already_subscribed"


def test_a_subscription_waiting_for_payment_sends_the_user_to_the_portal(fake_stripe, client):
    session = fake_stripe.complete_checkout(subscribe(client)["session_id"])
    subscription_id = _subscription_id(session)
    fake_stripe.invoice_payment_fail(subscription_id)

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 409
    assert error_code(response) == "subscription_payment_due"


def _subscription_id(events: list[dict]) -> str:
    return next(
        e["data"]["object"]["id"] for e in events if e["type"] == "customer.subscription.created"
    )


def test_stripe_down_is_502_within_the_timeout_and_a_later_subscribe_works(
    fake_stripe, client, user
):
    url = fake_stripe.url
    fake_stripe.stop()
    started = time.monotonic()

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 502
    assert error_code(response) == "payment_provider_error"
    assert time.monotonic() - started < 2  # refused connections fail at once, retry included
    assert BillingAccount.objects.get(user=user).stripe_customer_id is None

    fake_stripe.start(port=int(urlsplit(url).port or 0))
    subscribe(client)
    assert len(fake_stripe.customers) == 1


def test_stripe_failing_after_the_customer_exists_keeps_that_customer(
    fake_stripe, client, attempts
):
    fake_stripe.fail_next(path_prefix="/v1/checkout/sessions", status=500, count=attempts)

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 502
    assert len(fake_stripe.customers) == 1
    subscribe(client)
    assert len(fake_stripe.customers) == 1


def test_a_hanging_stripe_is_502_once_every_attempt_timed_out(
    fake_stripe, settings, client, attempts
):
    settings.STRIPE_TIMEOUT_SECONDS = 1
    fake_stripe.fail_next(path_prefix="/v1/customers", hang=5, count=attempts)
    started = time.monotonic()

    response = client.post("/api/subscribe/pro")

    assert response.status_code == 502
    # Each attempt waits the timeout; stripe-python backs off about half a second between.
    assert time.monotonic() - started < attempts * settings.STRIPE_TIMEOUT_SECONDS + 1.5


def test_a_customer_deleted_at_stripe_is_replaced(fake_stripe, client, user):
    subscribe(client)
    old = BillingAccount.objects.get(user=user).stripe_customer_id
    fake_stripe.customer_delete(old)

    body = subscribe(client)

    new = BillingAccount.objects.get(user=user).stripe_customer_id
    assert new != old
    assert fake_stripe.checkout_session(body["session_id"])["customer"] == new


def test_subscribe_needs_a_token(fake_stripe):
    response = APIClient().post("/api/subscribe/pro")

    assert response.status_code == 401


def test_the_success_url_carries_the_session_id_placeholder(fake_stripe, client):
    body = subscribe(client)
    success_url = fake_stripe.checkout_session(body["session_id"])["success_url"]

    query = parse_qs(urlsplit(success_url).query)

    assert query == {"session_id": ["{CHECKOUT_SESSION_ID}"]}


def test_a_new_subscribe_closes_the_checkout_started_before(fake_stripe, client):
    """Two tabs, two checkouts: only the newest can be paid, so no one is billed twice."""
    first = subscribe(client)["session_id"]
    second = subscribe(client)["session_id"]

    assert fake_stripe.checkout_session(first)["status"] == "expired"
    assert fake_stripe.checkout_session(second)["status"] == "open"
    with pytest.raises(ValueError, match="expired"):
        fake_stripe.complete_checkout(first)
