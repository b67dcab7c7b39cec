"""No Stripe secret key, webhook secret or card detail in any answer or log line of a full
billing flow, failures included."""

from __future__ import annotations

import logging

from rest_framework.test import APIClient

from billing.tests.helpers import webhook_post
from testing.fake_stripe import sign_payload

CARD_NUMBERS = ("4242424242424242", "4242 4242 4242 4242")


def test_a_full_billing_flow_never_reveals_a_secret(fake_stripe, settings, client, caplog):
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []

    def call(method: str, path: str, api: APIClient = client) -> None:
        response = getattr(api, method)(path)
        answers.append(response.content.decode(errors="replace"))
        answers.extend(f"{name}: {value}" for name, value in response.items())

    call("post", "/api/subscribe/pro")
    session_id = client.post("/api/subscribe/pro").json()["session_id"]
    events = fake_stripe.complete_checkout(session_id)
    call("get", "/api/subscription/status")
    call("post", "/api/subscription/portal")
    subscription_id = events[0]["data"]["object"]["id"]
    fake_stripe.invoice_payment_fail(subscription_id)
    fake_stripe.subscription_cancel(subscription_id)
    # Failures: a wrong signature, Stripe erroring, then a wrong API key.
    bad = webhook_post(b'{"id": "evt_x"}', sign_payload(b"{}", secret="whsec_wrong"))
    answers.append(bad.content.decode())
    fake_stripe.fail_next(status=500, count=5)
    call("post", "/api/subscribe/pro")
    real_key = settings.STRIPE_SECRET_KEY
    settings.STRIPE_SECRET_KEY = real_key + "-rotated-wrong"
    call("post", "/api/subscription/portal")
    settings.STRIPE_SECRET_KEY = real_key

    logs = "\n".join([record.getMessage() for record in caplog.records] + [caplog.text])
    secrets = [
        real_key,
        real_key + "-rotated-wrong",
        settings.STRIPE_WEBHOOK_SECRET,
        fake_stripe.api_key,
        *CARD_NUMBERS,
    ]
    everything = "\n".join(answers) + "\n" + logs
    assert "payment_provider_error" in everything  # the failures did happen
    for secret in secrets:
        assert secret not in everything, secret
