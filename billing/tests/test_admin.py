"""Billing in the admin: subscriptions and events to look at, actions that call services."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from accounts.tests.factories import UserFactory
from billing.models import BillingAccount, StripeEvent, Subscription
from billing.selectors import user_is_pro
from billing.services import billing_account_of
from billing.tests.helpers import subscribe


@pytest.fixture
def operator(db) -> Client:
    browser = Client()
    browser.force_login(UserFactory(is_staff=True, is_superuser=True))
    return browser


def _action(operator: Client, url: str, action: str, ids: list[int]) -> None:
    response = operator.post(url, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200


def test_the_billing_pages_list_what_stripe_sent(fake_stripe, client, operator):
    fake_stripe.complete_checkout(subscribe(client)["session_id"])

    for path in (
        "/admin/billing/subscription/",
        "/admin/billing/stripeevent/",
        "/admin/billing/billingaccount/",
        "/admin/billing/stripeevent/?processed=no",
    ):
        assert operator.get(path).status_code == 200, path
    subscription = Subscription.objects.get()
    page = operator.get(f"/admin/billing/subscription/{subscription.pk}/change/")
    assert subscription.stripe_subscription_id in page.content.decode()
    event = StripeEvent.objects.get(type="checkout.session.completed")
    page = operator.get(f"/admin/billing/stripeevent/{event.pk}/change/")
    assert "checkout.session.completed" in page.content.decode()
    assert "client_reference_id" in page.content.decode()  # the payload is shown


def test_grant_and_revoke_pro_from_the_admin(operator):
    user = UserFactory()
    account = billing_account_of(user=user)
    url = "/admin/billing/billingaccount/"

    _action(operator, url, "grant_pro", [account.pk])
    account.refresh_from_db()
    assert user_is_pro(user=user)
    assert account.pro_granted_until is not None
    assert account.pro_granted_until > timezone.now() + dt.timedelta(days=29)

    _action(operator, url, "revoke_pro_grant", [account.pk])
    assert not user_is_pro(user=user)
    assert BillingAccount.objects.get(pk=account.pk).pro_granted_until is None


def test_an_operator_can_grant_pro_until_a_date_in_the_form(operator):
    user = UserFactory()
    until = timezone.now() + dt.timedelta(days=7)

    response = operator.post(
        "/admin/billing/billingaccount/add/",
        {
            "user": user.pk,
            "pro_granted_until_0": until.strftime("%Y-%m-%d"),
            "pro_granted_until_1": until.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert user_is_pro(user=user)


def test_a_failed_event_can_be_processed_again(fake_stripe, post_event, client, operator, attempts):
    events = fake_stripe.complete_checkout(subscribe(client)["session_id"], deliver=False)
    completed = next(e for e in events if e["type"] == "checkout.session.completed")
    fake_stripe.fail_next(path_prefix="/v1/subscriptions/", status=500, count=attempts)
    assert post_event(completed).status_code == 500
    row = StripeEvent.objects.get(stripe_event_id=completed["id"])

    _action(operator, "/admin/billing/stripeevent/", "process_again", [row.pk])

    row.refresh_from_db()
    assert row.processed_at is not None
    assert Subscription.objects.get().status == "active"


def test_re_read_a_subscription_from_stripe_repairs_even_a_canceled_row(
    fake_stripe, client, operator
):
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    Subscription.objects.update(status="canceled")  # a bug or a hand edit: Stripe says active

    _action(
        operator,
        "/admin/billing/subscription/",
        "sync_from_stripe",
        [Subscription.objects.get().pk],
    )

    assert Subscription.objects.get().status == "active"


def test_staff_who_may_only_look_cannot_run_billing_actions(fake_stripe, client):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_billingaccount", "view_subscription", "view_stripeevent"]
        )
    )
    browser = Client()
    browser.force_login(viewer)
    target = UserFactory()
    account = billing_account_of(user=target)
    fake_stripe.complete_checkout(subscribe(client)["session_id"])

    for path in ("/admin/billing/billingaccount/", "/admin/billing/subscription/"):
        page = browser.get(path)
        assert page.status_code == 200
        assert "grant_pro" not in page.content.decode()
        assert "sync_from_stripe" not in page.content.decode()
    browser.post(
        "/admin/billing/billingaccount/",
        {"action": "grant_pro", "_selected_action": [account.pk]},
    )

    assert not user_is_pro(user=target)
