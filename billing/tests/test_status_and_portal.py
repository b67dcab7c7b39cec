"""GET /api/subscription/status and POST /api/subscription/portal."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from billing.services import pro_grant, pro_grant_revoke
from billing.tests.helpers import error_code, status_of, subscribe


def test_a_user_who_never_subscribed_is_basic_with_no_status(client, user, settings):
    status = status_of(client)

    assert status == {
        "tier": "basic",
        "status": None,
        "current_period_end": None,
        "cancel_at_period_end": False,
        "usage": {
            "limit": settings.BASIC_DAILY_LIMIT,
            "used": 0,
            "remaining": settings.BASIC_DAILY_LIMIT,
            "resets_at": status["usage"]["resets_at"],
            "tokens_today": 0,
        },
    }


def test_an_operator_grant_is_pro_until_it_ends_or_is_revoked(client, user, time_machine):
    pro_grant(user=user, until=timezone.now() + dt.timedelta(hours=1))
    assert status_of(client)["tier"] == "pro"
    assert status_of(client)["usage"]["limit"] is None

    time_machine.move_to(timezone.now() + dt.timedelta(hours=2))
    assert status_of(client)["tier"] == "basic"

    pro_grant(user=user, until=timezone.now() + dt.timedelta(hours=1))
    pro_grant_revoke(user=user)
    assert status_of(client)["tier"] == "basic"


def test_the_status_needs_a_token(db):
    assert APIClient().get("/api/subscription/status").status_code == 401


def test_the_portal_opens_for_the_users_customer(fake_stripe, client, user):
    subscribe(client)

    response = client.post("/api/subscription/portal")

    assert response.status_code == 200
    url = response.json()["url"]
    portal = fake_stripe.requests[-1]
    assert portal["path"] == "/v1/billing_portal/sessions"
    assert portal["params"]["customer"] == fake_stripe.customers[0]["id"]
    assert portal["params"]["return_url"].endswith("/billing-portal-return/stripe")
    assert url.startswith(fake_stripe.url)


def test_the_portal_needs_a_billing_account(fake_stripe, client):
    response = client.post("/api/subscription/portal")

    assert response.status_code == 409
    assert error_code(response) == "no_billing_account"
    assert fake_stripe.requests_to("/v1/billing_portal/sessions") == []


def test_the_portal_without_stripe_is_503(settings, client):
    settings.STRIPE_SECRET_KEY = ""

    response = client.post("/api/subscription/portal")

    assert response.status_code == 503
    assert error_code(response) == "billing_unavailable"


def test_the_portal_with_stripe_failing_is_502(fake_stripe, client, attempts):
    subscribe(client)
    fake_stripe.fail_next(path_prefix="/v1/billing_portal", status=503, count=attempts)

    response = client.post("/api/subscription/portal")

    assert response.status_code == 502
    assert error_code(response) == "payment_provider_error"


def test_another_users_subscription_never_shows(fake_stripe, client):
    other = APIClient()
    other.force_authenticate(UserFactory())
    fake_stripe.complete_checkout(subscribe(other)["session_id"])

    assert status_of(other)["tier"] == "pro"
    assert status_of(client)["tier"] == "basic"
    assert status_of(client)["status"] is None
    assert client.post("/api/subscription/portal").status_code == 409
