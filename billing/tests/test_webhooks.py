"""POST /api/webhook/stripe: signed events from the local Stripe, in any order, once each."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory
from billing import stripe_client
from billing.models import BillingAccount, StripeEvent, Subscription
from billing.tests.helpers import error_code, status_of, subscribe, webhook_post
from testing.concurrency import at_once
from testing.fake_stripe import FakeStripe, sign_payload
from usage.models import DailyUsage
from usage.selectors import usage_today


def _of_type(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(event for event in events if event["type"] == event_type)


def _checkout_paid(fake: FakeStripe, client: APIClient, **options: Any) -> list[dict[str, Any]]:
    return list(fake.complete_checkout(subscribe(client)["session_id"], **options))


def _subscription_id(events: list[dict[str, Any]]) -> str:
    return str(_of_type(events, "customer.subscription.created")["data"]["object"]["id"])


def _send_prompt(client: APIClient, chatroom_id: int) -> int:
    response = client.post(
        f"/api/chatroom/{chatroom_id}/message", {"content": "Hello"}, format="json"
    )
    return int(response.status_code)


def _new_chatroom(client: APIClient) -> int:
    return int(client.post("/api/chatroom", {"name": "Pro test"}, format="json").json()["id"])


def _limit_reached(user: User, settings: Any) -> None:
    DailyUsage.objects.update_or_create(
        user=user, day=usage_today(), slot=0, defaults={"count": settings.BASIC_DAILY_LIMIT}
    )


# --- The journeys ---------------------------------------------------------------------------


def test_checkout_makes_the_user_pro_and_the_21st_prompt_is_accepted(
    fake_stripe, settings, client, user
):
    _limit_reached(user, settings)
    assert _send_prompt(client, _new_chatroom(client)) == 429

    events = _checkout_paid(fake_stripe, client)

    assert [e["type"] for e in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "invoice.payment_succeeded",
        "checkout.session.completed",
    ]
    assert all(d["status"] == 200 for d in fake_stripe.deliveries)
    status = status_of(client)
    assert status["tier"] == "pro"
    assert status["status"] == "active"
    assert status["cancel_at_period_end"] is False
    assert status["current_period_end"].endswith("Z")
    assert status["usage"]["limit"] is None
    assert client.get("/api/user/me").json()["tier"] == "pro"
    assert _send_prompt(client, _new_chatroom(client)) == 202  # the 21st prompt of the day


def test_checkout_completed_alone_makes_the_user_pro(fake_stripe, post_event, client):
    """The session event carries no state: the subscription is read from Stripe."""
    events = _checkout_paid(fake_stripe, client, deliver=False)

    response = post_event(_of_type(events, "checkout.session.completed"))

    assert response.status_code == 200
    assert response.json() == {"received": True}
    assert status_of(client)["tier"] == "pro"
    assert Subscription.objects.get().stripe_subscription_id == _subscription_id(events)


def test_deleted_subscription_makes_the_user_basic_and_limited_again(
    fake_stripe, settings, client, user
):
    _limit_reached(user, settings)
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    assert _send_prompt(client, _new_chatroom(client)) == 202

    fake_stripe.subscription_cancel(subscription_id)

    status = status_of(client)
    assert status["tier"] == "basic"
    assert status["status"] == "canceled"
    assert client.get("/api/user/me").json()["tier"] == "basic"
    assert _send_prompt(client, _new_chatroom(client)) == 429


def test_a_failed_payment_then_past_due_is_not_pro(fake_stripe, client):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))

    events = fake_stripe.invoice_payment_fail(subscription_id)

    assert [e["type"] for e in events] == [
        "invoice.payment_failed",
        "customer.subscription.updated",
    ]
    status = status_of(client)
    assert status["tier"] == "basic"
    assert status["status"] == "past_due"


def test_a_failed_renewal_alone_makes_the_subscription_past_due(fake_stripe, post_event, client):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    events = fake_stripe.invoice_payment_fail(subscription_id, deliver=False)

    post_event(_of_type(events, "invoice.payment_failed"))

    assert status_of(client)["status"] == "past_due"


def test_a_paid_invoice_brings_a_past_due_subscription_back(fake_stripe, post_event, client):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    fake_stripe.invoice_payment_fail(subscription_id)
    fake_stripe.advance_clock(60)
    renewal = fake_stripe.renew(subscription_id, deliver=False)

    post_event(_of_type(renewal, "invoice.paid"))

    status = status_of(client)
    assert status["tier"] == "pro"
    assert status["status"] == "active"


def test_a_trial_is_pro(fake_stripe, client):
    response = client.post("/api/subscribe/pro")
    session_id = response.json()["session_id"]
    fake_stripe.set_trial_days(session_id, 14)

    fake_stripe.complete_checkout(session_id)

    status = status_of(client)
    assert status["status"] == "trialing"
    assert status["tier"] == "pro"


def test_cancel_at_period_end_stays_pro_until_the_end(fake_stripe, client):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    period_end = status_of(client)["current_period_end"]

    fake_stripe.subscription_update(subscription_id, cancel_at_period_end=True)

    status = status_of(client)
    assert status["tier"] == "pro"
    assert status["status"] == "active"
    assert status["cancel_at_period_end"] is True
    assert status["current_period_end"] == period_end

    fake_stripe.subscription_cancel(subscription_id)  # Stripe ends it at the period end
    assert status_of(client)["tier"] == "basic"


def test_a_renewal_moves_the_period_end(fake_stripe, client):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    before = status_of(client)["current_period_end"]

    fake_stripe.renew(subscription_id)

    assert status_of(client)["current_period_end"] > before


# --- Once, and in any order -----------------------------------------------------------------


def test_the_same_event_twice_is_processed_once(fake_stripe, post_event, client):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    created = _of_type(events, "customer.subscription.created")

    first = post_event(created)
    Subscription.objects.update(status="past_due")  # would be undone by a second processing
    second = post_event(created)

    assert first.status_code == second.status_code == 200
    assert second.json() == {"received": True}
    assert Subscription.objects.get().status == "past_due"
    row = StripeEvent.objects.get(stripe_event_id=created["id"])
    assert row.attempts == 1
    assert row.processed_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_same_event_posted_by_threads_at_once_is_processed_once(fake_stripe):
    user = UserFactory()
    client = APIClient()
    client.force_authenticate(user)
    events = _checkout_paid(fake_stripe, client, deliver=False)
    payload = json.dumps(_of_type(events, "customer.subscription.created")).encode()
    signature = sign_payload(payload, secret=fake_stripe.webhook_secret)
    statuses = at_once([lambda: webhook_post(payload, signature).status_code] * 8)

    assert statuses == [200] * 8
    assert StripeEvent.objects.count() == 1
    assert StripeEvent.objects.get().attempts == 1
    assert Subscription.objects.count() == 1


def test_events_in_reverse_order_leave_the_newest_state(fake_stripe, post_event, client):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    subscription_id = _subscription_id(events)
    fake_stripe.advance_clock(10)
    events += fake_stripe.invoice_payment_fail(subscription_id, deliver=False)
    fake_stripe.advance_clock(10)
    events += fake_stripe.renew(subscription_id, deliver=False)  # paid again: active
    fake_stripe.advance_clock(10)
    events += fake_stripe.subscription_update(
        subscription_id, cancel_at_period_end=True, deliver=False
    )

    for event in reversed(events):
        assert post_event(event).status_code == 200

    status = status_of(client)
    assert status["status"] == "active"
    assert status["tier"] == "pro"
    assert status["cancel_at_period_end"] is True
    stripe_item = fake_stripe.subscription(subscription_id)["items"]["data"][0]
    assert status["current_period_end"] == _iso(stripe_item["current_period_end"])


def _iso(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def test_a_late_update_never_revives_a_deleted_subscription(fake_stripe, post_event, client):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    subscription_id = _subscription_id(events)
    fake_stripe.advance_clock(10)
    update = fake_stripe.subscription_update(
        subscription_id, cancel_at_period_end=True, deliver=False
    )
    deleted = fake_stripe.subscription_cancel(subscription_id, deliver=False)
    stale = copy.deepcopy(update[0])
    stale["created"] += 3600  # even with a later clock, canceled is final

    for event in [*deleted, *events, stale]:
        post_event(event)

    assert status_of(client)["status"] == "canceled"
    assert status_of(client)["tier"] == "basic"


def test_a_subscription_event_before_the_checkout_event_finds_the_user(
    fake_stripe, post_event, client, user
):
    events = _checkout_paid(fake_stripe, client, deliver=False)

    post_event(_of_type(events, "customer.subscription.created"))

    assert Subscription.objects.get().user == user
    assert status_of(client)["tier"] == "pro"


# --- Refusals and failures ------------------------------------------------------------------


def _a_signed_event(fake: FakeStripe, client: APIClient) -> bytes:
    events = _checkout_paid(fake, client, deliver=False)
    return json.dumps(_of_type(events, "customer.subscription.created")).encode()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "t=1,v1=deadbeef",
        "garbage",
    ],
)
def test_a_missing_or_malformed_signature_is_400(fake_stripe, client, signature):
    payload = _a_signed_event(fake_stripe, client)

    response = webhook_post(payload, signature)

    assert response.status_code == 400
    assert error_code(response) == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert not Subscription.objects.exists()


def test_a_wrong_secret_is_400(fake_stripe, client):
    payload = _a_signed_event(fake_stripe, client)

    response = webhook_post(payload, sign_payload(payload, secret="whsec_someone_else"))

    assert response.status_code == 400
    assert error_code(response) == "invalid_signature"
    assert not StripeEvent.objects.exists()


def test_a_stale_signature_is_400(fake_stripe, client):
    payload = _a_signed_event(fake_stripe, client)
    six_minutes_ago = int(time.time()) - 360

    signature = sign_payload(payload, secret=fake_stripe.webhook_secret, timestamp=six_minutes_ago)
    response = webhook_post(payload, signature)

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_a_tampered_body_is_400(fake_stripe, client):
    payload = _a_signed_event(fake_stripe, client)
    signature = sign_payload(payload, secret=fake_stripe.webhook_secret)

    response = webhook_post(payload.replace(b'"active"', b'"trialing"'), signature)

    assert response.status_code == 400
    assert not Subscription.objects.exists()


def test_a_body_that_is_not_utf8_is_400(fake_stripe):
    payload = b"\xff\xfe{}"

    response = webhook_post(payload, sign_payload(payload, secret=fake_stripe.webhook_secret))

    assert response.status_code == 400
    assert error_code(response) == "invalid_signature"


def test_without_a_webhook_secret_events_are_refused_with_503(settings, db):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = b'{"id": "evt_1", "type": "invoice.paid"}'

    response = webhook_post(payload, sign_payload(payload, secret="whsec_x"))

    assert response.status_code == 503
    assert error_code(response) == "billing_unavailable"


def test_unknown_event_types_are_stored_and_answered_200(fake_stripe, post_event):
    event = {
        "id": "evt_unknown_1",
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "api_version": "2025-06-30.basil",
        "livemode": False,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }

    response = post_event(event)

    assert response.status_code == 200
    row = StripeEvent.objects.get()
    assert row.type == "customer.updated"
    assert row.processed_at is not None
    assert row.outcome.startswith("ignored")


def test_a_handler_that_fails_answers_5xx_and_the_redelivery_succeeds(
    fake_stripe, post_event, client, attempts
):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    completed = _of_type(events, "checkout.session.completed")
    fake_stripe.fail_next(path_prefix="/v1/subscriptions/", status=500, count=attempts)

    failed = post_event(completed)

    assert failed.status_code == 500
    assert error_code(failed) == "webhook_processing_failed"
    row = StripeEvent.objects.get(stripe_event_id=completed["id"])
    assert row.processed_at is None
    assert row.attempts == 1
    assert "PaymentProviderError" in row.last_error
    assert status_of(client)["tier"] == "basic"

    retried = post_event(completed)

    assert retried.status_code == 200
    row.refresh_from_db()
    assert row.processed_at is not None
    assert row.attempts == 2
    assert row.last_error == ""
    assert status_of(client)["tier"] == "pro"


def test_stripe_retries_a_failed_delivery_until_it_succeeds(fake_stripe, client, attempts):
    """The stand-in redelivers like Stripe; our second answer is 200."""
    fake_stripe.fail_next(path_prefix="/v1/subscriptions/", status=500, count=attempts)
    events = _checkout_paid(fake_stripe, client, deliver=False)
    completed = _of_type(events, "checkout.session.completed")

    first = fake_stripe.deliver_event(completed)
    second = fake_stripe.redeliver(completed["id"])

    assert [first, second] == [500, 200]
    assert status_of(client)["tier"] == "pro"


def test_legacy_shapes_before_basil_are_read_too(fake_stripe, post_event, client, user):
    """Webhook endpoints pinned to an older API version send `current_period_end` at the top."""
    events = _checkout_paid(fake_stripe, client, deliver=False)
    created = copy.deepcopy(_of_type(events, "customer.subscription.created"))
    subscription = created["data"]["object"]
    period_end = subscription["items"]["data"][0].pop("current_period_end")
    subscription["current_period_end"] = period_end
    created["api_version"] = "2024-06-20"

    post_event(created)

    assert status_of(client)["current_period_end"] == _iso(period_end)


# --- Whose subscription it is -----------------------------------------------------------------


def test_metadata_never_links_a_strangers_customer_to_a_user(
    fake_stripe, post_event, settings, user
):
    """A customer we did not create (another app on the same Stripe account, a database
    reset) may carry metadata naming one of our user ids: it means nothing to us."""
    stranger = stripe_client.customer_create(
        user_id=user.pk, phone="+14155550100", idempotency_key="another-app-1"
    )
    session = stripe_client.checkout_session_create(
        customer_id=stranger,
        price_id=settings.STRIPE_PRO_PRICE_ID,
        user_id=user.pk,
        success_url="https://another.example/ok",
        cancel_url="https://another.example/no",
    )
    events = fake_stripe.complete_checkout(session.id, deliver=False)

    for event in events:
        assert post_event(event).status_code == 200

    assert not Subscription.objects.exists()
    assert not BillingAccount.objects.filter(stripe_customer_id=stranger).exists()
    assert StripeEvent.objects.filter(outcome__contains="not one of ours").exists()


def test_a_checkout_naming_another_user_than_its_customers_is_ignored(
    fake_stripe, post_event, client, user
):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    completed = copy.deepcopy(_of_type(events, "checkout.session.completed"))
    other = UserFactory()
    completed["data"]["object"]["client_reference_id"] = str(other.pk)

    assert post_event(completed).status_code == 200

    assert not Subscription.objects.exists()
    assert status_of(client)["tier"] == "basic"


def test_an_update_in_the_same_second_as_the_checkout_read_still_applies(
    fake_stripe, post_event, client
):
    events = _checkout_paid(fake_stripe, client, deliver=False)
    completed = _of_type(events, "checkout.session.completed")
    post_event(completed)  # reads the subscription from Stripe: not canceling yet
    update = fake_stripe.subscription_update(
        _subscription_id(events), cancel_at_period_end=True, deliver=False
    )[0]
    update["created"] = completed["created"]  # Stripe's clock: the same second

    post_event(update)

    assert status_of(client)["cancel_at_period_end"] is True


def test_an_older_failed_invoice_after_a_newer_paid_one_changes_nothing(
    fake_stripe, post_event, client
):
    subscription_id = _subscription_id(_checkout_paid(fake_stripe, client))
    fake_stripe.advance_clock(10)
    failed = fake_stripe.invoice_payment_fail(subscription_id, deliver=False)
    fake_stripe.advance_clock(10)
    paid = fake_stripe.renew(subscription_id, deliver=False)

    post_event(_of_type(paid, "invoice.paid"))
    post_event(_of_type(failed, "invoice.payment_failed"))

    status = status_of(client)
    assert status["status"] == "active"
    assert status["tier"] == "pro"
