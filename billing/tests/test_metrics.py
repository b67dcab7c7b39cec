"""Stripe webhook deliveries, counted by event type (bounded) and outcome."""

from __future__ import annotations

import copy
import json

from billing.tests.helpers import subscribe, webhook_post
from testing.metrics import metric_value

CREATED = "customer.subscription.created"


def _count(event_type: str, outcome: str) -> float:
    return metric_value("gemini_stripe_webhook_events_total", type=event_type, outcome=outcome)


def test_deliveries_are_counted_by_type_and_outcome(fake_stripe, post_event, client):
    events = list(fake_stripe.complete_checkout(subscribe(client)["session_id"], deliver=False))
    created = next(event for event in events if event["type"] == CREATED)
    unhandled = copy.deepcopy(created) | {"id": "evt_not_ours", "type": "customer.updated"}
    cases = [(CREATED, "processed"), ("other", "processed"), ("unknown", "invalid_signature")]
    before = [_count(*case) for case in cases]

    assert post_event(created).status_code == 200
    assert post_event(created).status_code == 200  # a redelivery: processed before
    assert post_event(unhandled).status_code == 200
    assert webhook_post(json.dumps(created).encode(), "t=1,v1=deadbeef").status_code == 400

    moved = [_count(*case) - was for case, was in zip(cases, before, strict=True)]
    assert moved == [2, 1, 1]
