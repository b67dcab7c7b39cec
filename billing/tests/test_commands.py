"""stripe_setup and stripe_sync, against the local Stripe."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import StripeEvent, Subscription
from billing.tests.helpers import status_of, subscribe


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_stripe_setup_creates_the_pro_price_once(fake_stripe, settings):
    first = _run("stripe_setup", "--amount", "1500", "--interval", "year")
    second = _run("stripe_setup", "--amount", "1500", "--interval", "year")

    price_id = first.strip().splitlines()[-1].removeprefix("STRIPE_PRO_PRICE_ID=")
    assert first.startswith(f"Created the Pro price {price_id}: 1500 usd a year.")
    assert second.startswith(f"Found the Pro price {price_id}")
    assert second.strip().endswith(f"STRIPE_PRO_PRICE_ID={price_id}")
    price = next(p for p in fake_stripe.prices if p["id"] == price_id)
    assert price["recurring"]["interval"] == "year"
    assert price["product"] == "gemini_clone_pro"
    # The fixture's monthly price and this yearly one: one product.
    assert [p["id"] for p in fake_stripe.products] == ["gemini_clone_pro"]


def test_stripe_setup_without_a_key_says_so(settings, db):
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY"):
        _run("stripe_setup")


def test_stripe_sync_repairs_what_lost_webhooks_left_behind(fake_stripe, client, user):
    session_id = subscribe(client)["session_id"]
    events = fake_stripe.complete_checkout(session_id, deliver=False)  # webhooks lost
    assert status_of(client)["tier"] == "basic"

    output = _run("stripe_sync")

    assert "1 subscription(s) created" in output
    assert status_of(client)["tier"] == "pro"
    subscription_id = next(
        e["data"]["object"]["id"] for e in events if e["type"] == "customer.subscription.created"
    )
    fake_stripe.subscription_cancel(subscription_id, deliver=False)
    assert "1 updated" in _run("stripe_sync")
    assert Subscription.objects.get().status == "canceled"
    assert "1 unchanged" in _run("stripe_sync")


def test_stripe_sync_with_stripe_down_fails_loudly(fake_stripe, client):
    subscribe(client)
    fake_stripe.stop()

    with pytest.raises(CommandError, match="Stripe did not answer"):
        _run("stripe_sync")


def test_stripe_setup_with_a_new_amount_makes_a_price_that_replaces_the_old(fake_stripe, settings):
    old = settings.STRIPE_PRO_PRICE_ID  # the fixture's, 999 usd a month

    same = _run("stripe_setup")
    changed = _run("stripe_setup", "--amount", "1299")
    again = _run("stripe_setup")

    assert same.startswith(f"Found the Pro price {old}: 999 usd a month.")
    new = changed.strip().splitlines()[-1].removeprefix("STRIPE_PRO_PRICE_ID=")
    assert new != old
    assert changed.startswith(f"Created the Pro price {new} (replacing {old}): 1299 usd")
    assert again.startswith(f"Found the Pro price {new}: 1299 usd a month.")


def test_stripe_events_prune_forgets_old_processed_events_only(fake_stripe, client, settings):
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    kept_failed = StripeEvent.objects.first()
    assert kept_failed is not None
    StripeEvent.objects.filter(pk=kept_failed.pk).update(processed_at=None)
    old = timezone.now() - dt.timedelta(days=settings.STRIPE_EVENT_RETENTION_DAYS + 1)
    StripeEvent.objects.update(received_at=old)
    total = StripeEvent.objects.count()

    output = _run("stripe_events_prune")

    assert output.startswith(f"Deleted {total - 1} Stripe events")
    assert list(StripeEvent.objects.all()) == [kept_failed]
