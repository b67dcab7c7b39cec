"""Reading Stripe objects of both API shapes: basil (periods on items, invoice parent) and
the versions before it."""

from __future__ import annotations

import datetime as dt

from billing.snapshots import checkout_snapshot, invoice_snapshot, subscription_snapshot

T = 1_800_000_000


def test_a_basil_subscription_takes_its_period_end_from_the_items():
    snapshot = subscription_snapshot(
        {
            "id": "sub_1",
            "customer": "cus_1",
            "status": "active",
            "cancel_at_period_end": True,
            "metadata": {"user_id": "42"},
            "items": {
                "data": [
                    {"price": {"id": "price_1"}, "current_period_end": T},
                    {"price": {"id": "price_2"}, "current_period_end": T + 60},
                ]
            },
        }
    )

    assert snapshot.id == "sub_1"
    assert snapshot.customer_id == "cus_1"
    assert snapshot.price_id == "price_1"
    assert snapshot.current_period_end == dt.datetime.fromtimestamp(T + 60, tz=dt.UTC)
    assert snapshot.cancel_at_period_end is True


def test_an_older_subscription_has_its_period_end_at_the_top_and_may_be_expanded():
    snapshot = subscription_snapshot(
        {
            "id": "sub_1",
            "customer": {"id": "cus_1", "object": "customer"},
            "status": "past_due",
            "current_period_end": T,
            "items": {"data": [{"price": "price_1"}]},
        }
    )

    assert snapshot.customer_id == "cus_1"
    assert snapshot.price_id == "price_1"
    assert snapshot.current_period_end == dt.datetime.fromtimestamp(T, tz=dt.UTC)


def test_user_ids_in_a_checkout_must_be_positive_integers():
    for raw in ("0", "-1", "1.5", "abc", "", "١٢", "9" * 30, 7):
        assert checkout_snapshot({"client_reference_id": raw}).user_id is None, raw
        assert checkout_snapshot({"metadata": {"user_id": raw}}).user_id is None, raw


def test_invoices_name_their_subscription_in_both_shapes():
    basil = invoice_snapshot(
        {
            "billing_reason": "subscription_cycle",
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": "sub_1"},
            },
            "lines": {"data": [{"period": {"start": T - 10, "end": T}}]},
        }
    )
    older = invoice_snapshot({"subscription": "sub_2", "lines": {"data": []}})

    assert basil.subscription_id == "sub_1"
    assert basil.billing_reason == "subscription_cycle"
    assert basil.period_end == dt.datetime.fromtimestamp(T, tz=dt.UTC)
    assert older.subscription_id == "sub_2"
    assert older.period_end is None
    assert invoice_snapshot({}).subscription_id == ""


def test_a_checkout_session_names_our_user_by_client_reference_id():
    session = checkout_snapshot(
        {
            "mode": "subscription",
            "customer": "cus_1",
            "subscription": "sub_1",
            "client_reference_id": "7",
            "metadata": {"user_id": "8"},
        }
    )

    assert (session.mode, session.customer_id, session.subscription_id) == (
        "subscription",
        "cus_1",
        "sub_1",
    )
    assert session.user_id == 7
    assert checkout_snapshot({"metadata": {"user_id": "8"}}).user_id == 8
    assert checkout_snapshot({"client_reference_id": "x"}).user_id is None
