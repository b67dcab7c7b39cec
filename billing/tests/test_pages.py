"""The pages a buyer's browser lands on after Stripe: plain HTML that grants nothing."""

from __future__ import annotations

import pytest
from django.test import Client

from billing.models import Subscription
from billing.tests.helpers import status_of, subscribe


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/payment-success/stripe?session_id=cs_test_123", "being confirmed"),
        ("/payment-cancel/stripe", "nothing was charged"),
        ("/billing-portal-return/stripe", "billing portal"),
    ],
)
def test_each_page_is_a_small_html_page(db, path, words):
    response = Client().get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert words in response.content.decode()


def test_the_success_page_grants_nothing(fake_stripe, client):
    session_id = subscribe(client)["session_id"]

    Client().get(f"/payment-success/stripe?session_id={session_id}")

    assert not Subscription.objects.exists()
    assert status_of(client)["tier"] == "basic"


def test_the_success_page_does_not_echo_its_query(db):
    response = Client().get("/payment-success/stripe?session_id=<script>alert(1)</script>")

    assert b"<script>" not in response.content
