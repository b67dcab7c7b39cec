"""Billing fixtures: the real stripe-python client against the local Stripe stand-in, and
webhook events signed with Stripe's algorithm, posted to our endpoint in the test's thread."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import UserFactory
from billing.services import pro_price_ensure
from billing.tests.helpers import webhook_post
from testing.fake_stripe import FakeStripe, sign_payload


@pytest.fixture
def fake_stripe(settings: Any, db: None) -> Iterator[FakeStripe]:
    """The stand-in, our settings pointed at it, its Pro price created by our own service,
    and every event it emits delivered to our webhook like Stripe would."""

    def deliver(payload: bytes, signature: str) -> int:
        return int(webhook_post(payload, signature).status_code)

    with FakeStripe(deliver=deliver, retry_schedule=()) as fake:
        settings.STRIPE_SECRET_KEY = fake.api_key
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_WEBHOOK_SECRET = fake.webhook_secret
        settings.STRIPE_TIMEOUT_SECONDS = 1
        settings.STRIPE_PRO_PRICE_ID = pro_price_ensure(interval="month").id
        yield fake


@pytest.fixture
def attempts(settings: Any) -> int:
    """How many times our client tries one Stripe call (the production retry setting)."""
    return int(settings.STRIPE_MAX_NETWORK_RETRIES) + 1


@pytest.fixture
def user(db: None) -> User:
    return UserFactory()


@pytest.fixture
def client(user: User) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


SignedPoster = Callable[..., Any]


@pytest.fixture
def post_event(settings: Any) -> SignedPoster:
    """Post an event dict to the webhook, signed now with the configured secret (or as told)."""

    def post(
        event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> Any:
        payload = json.dumps(event).encode()
        signature = sign_payload(
            payload,
            secret=secret or settings.STRIPE_WEBHOOK_SECRET,
            timestamp=timestamp if timestamp is not None else int(time.time()),
        )
        return webhook_post(payload, signature)

    return post
