"""The per-user request throttle: API_RATE_PER_MINUTE, then 429 rate_limited with Retry-After."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import UserFactory
from chatrooms.models import Chatroom
from core.throttling import request_wait_seconds
from testing.concurrency import at_once

pytestmark = pytest.mark.django_db

# 45 s into a minute: 15 s left in this window.
INSIDE_A_MINUTE = dt.datetime(2026, 5, 1, 12, 0, 45, tzinfo=dt.UTC)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(INSIDE_A_MINUTE, tick=False)
    return time_machine


def _client(user: User) -> APIClient:
    """A client that sends a real access token, as a browser or app would."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_past_the_rate_a_user_gets_429_rate_limited_and_other_users_do_not(settings, clock) -> None:
    settings.API_RATE_PER_MINUTE = 3
    user = UserFactory.create(no_password=True)
    client = _client(user)
    # Every authenticated endpoint counts against the same budget.
    assert client.get("/api/user/me").status_code == 200
    assert client.get("/api/chatroom").status_code == 200
    assert client.post("/api/chatroom", {"name": "Third"}, format="json").status_code == 201

    refused = client.post("/api/chatroom", {"name": "Fourth"}, format="json")

    assert refused.status_code == 429
    assert _error(refused) == {
        "code": "rate_limited",
        "message": "Too many requests; send this one again after Retry-After seconds.",
        "details": {"retry_after": 15},
    }
    assert refused["Retry-After"] == "15"
    assert Chatroom.objects.filter(user=user).count() == 1  # a refused request changes nothing
    assert client.get("/api/user/me").status_code == 429
    other = _client(UserFactory.create(no_password=True))
    assert other.get("/api/user/me").status_code == 200
    # The next minute starts a new count.
    clock.move_to(INSIDE_A_MINUTE + dt.timedelta(seconds=15))
    assert client.get("/api/user/me").status_code == 200


def test_public_endpoints_and_the_stripe_webhook_are_not_counted(settings, clock) -> None:
    """They have limits of their own (per phone, per address, Stripe's signature); a stale
    token in their headers neither spends nor meets the user's budget."""
    settings.API_RATE_PER_MINUTE = 1
    settings.STRIPE_WEBHOOK_SECRET = "whsec_test_only"
    user = UserFactory.create(no_password=True)
    client = _client(user)
    assert client.get("/api/user/me").status_code == 200
    assert client.get("/api/user/me").status_code == 429
    for _ in range(3):
        login = client.post(
            "/api/auth/login", {"phone": "+919800000001", "password": "wrong"}, format="json"
        )
        assert (login.status_code, _error(login)["code"]) == (401, "invalid_credentials")
        webhook = client.post(
            "/api/webhook/stripe",
            {"id": "evt_1", "type": "invoice.paid"},
            format="json",
            HTTP_STRIPE_SIGNATURE="t=1,v1=00",
        )
        assert (webhook.status_code, _error(webhook)["code"]) == (400, "invalid_signature")


@pytest.mark.usefixtures("dead_redis")
def test_the_throttle_lets_requests_through_while_redis_is_down(settings, caplog) -> None:
    """On purpose: it guards fairness, not a secret, and the API should outlive its cache."""
    settings.API_RATE_PER_MINUTE = 1
    client = _client(UserFactory.create(no_password=True))
    started = time.monotonic()
    for _ in range(3):
        assert client.get("/api/chatroom").status_code == 200
    assert time.monotonic() - started < 5
    assert "Request throttle skipped, Redis unavailable" in caplog.text


def test_requests_at_the_same_instant_are_counted_exactly(settings, clock) -> None:
    settings.API_RATE_PER_MINUTE = 5
    waits = at_once([lambda: request_wait_seconds(user_id=42)] * 20)
    assert waits.count(None) == 5
    assert [wait for wait in waits if wait is not None] == [15.0] * 15
