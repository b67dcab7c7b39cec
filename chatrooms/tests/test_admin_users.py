"""The admin's users page (`gemini_clone.admin`): tier, today's usage, chatrooms and last login
per user, and the actions that call the billing and usage services. What a user sees over the
API changes with them at once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from accounts.admin import UserAdmin
from accounts.models import User
from billing.models import BillingAccount, Subscription
from billing.services import pro_grant
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for
from usage.models import DailyUsage
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db

URL = "/admin/accounts/user/"


@pytest.fixture
def operator() -> Client:
    browser = Client()
    browser.force_login(UserFactory(is_staff=True, is_superuser=True, phone="+919600000001"))
    return browser


def _action(browser: Client, action: str, *users: User) -> str:
    page = browser.post(
        URL, {"action": action, "_selected_action": [user.pk for user in users]}, follow=True
    )
    assert page.status_code == 200
    return " ".join(str(message) for message in page.context["messages"])


def _me(user: User) -> dict:
    response = client_for(user).get("/api/user/me")
    assert response.status_code == 200
    return response.json()


def test_the_list_shows_tier_usage_chatrooms_and_last_login(operator):
    pro = UserFactory(last_login=timezone.now())
    pro_grant(user=pro, until=timezone.now() + dt.timedelta(days=1))
    DailyUsage.objects.create(user=pro, day=usage_today(), count=7)
    DailyUsage.objects.create(user=pro, day=usage_today() - dt.timedelta(days=1), count=3)
    ChatroomFactory.create_batch(2, user=pro)
    basic = UserFactory()
    lapsed = UserFactory()  # a grant that ended: Basic again
    pro_grant(user=lapsed, until=timezone.now() - dt.timedelta(seconds=1))
    subscribed = UserFactory()
    Subscription.objects.create(user=subscribed, stripe_subscription_id="sub_1", status="active")

    page = operator.get(URL)

    assert page.status_code == 200
    rows = {
        u.pk: (u.is_pro, u.used_today, u.chatroom_count) for u in page.context["cl"].result_list
    }
    assert rows[pro.pk] == (True, 7, 2)
    assert rows[basic.pk] == (False, 0, 0)
    assert rows[lapsed.pk] == (False, 0, 0)
    assert rows[subscribed.pk] == (True, 0, 0)
    html = page.content.decode()
    for header in ("tier", "prompts today", "chatrooms", "last login"):
        assert header in html.lower()
    assert '<td class="field-tier">Pro</td>' in html
    assert '<td class="field-tier">Basic</td>' in html
    # Sortable by the new columns (the annotation orders the query).
    assert operator.get(URL, {"o": "3"}).status_code == 200


def test_the_registered_page_keeps_the_accounts_page_whole():
    """Its refusals included (`_refused_unless_revocable` around every view)."""
    assert isinstance(admin.site._registry[User], UserAdmin)


def test_grant_then_revoke_pro(operator):
    user = UserFactory()
    assert _me(user)["tier"] == "basic"

    said = _action(operator, "grant_pro", user)

    assert "Pro granted to 1 user(s)" in said
    assert _me(user)["tier"] == "pro"
    until = BillingAccount.objects.get(user=user).pro_granted_until
    assert until is not None and until > timezone.now() + dt.timedelta(days=29)

    said = _action(operator, "revoke_pro", user)

    assert "revoked for 1 user(s)" in said
    assert _me(user)["tier"] == "basic"
    assert BillingAccount.objects.get(user=user).pro_granted_until is None


def test_revoking_says_who_stays_pro_through_stripe(operator):
    user = UserFactory()
    pro_grant(user=user, until=timezone.now() + dt.timedelta(days=1))
    Subscription.objects.create(user=user, stripe_subscription_id="sub_2", status="trialing")

    said = _action(operator, "revoke_pro", user)

    assert "1 of them stay Pro through a Stripe subscription" in said
    assert BillingAccount.objects.get(user=user).pro_granted_until is None
    assert _me(user)["tier"] == "pro"  # the subscription is Stripe's to end


def test_reset_todays_usage(operator, settings):
    settings.BASIC_DAILY_LIMIT = 5
    user = UserFactory()
    other = UserFactory()
    DailyUsage.objects.create(user=user, day=usage_today(), count=5)
    yesterday = DailyUsage.objects.create(
        user=user, day=usage_today() - dt.timedelta(days=1), count=4
    )
    DailyUsage.objects.create(user=other, day=usage_today(), count=2)
    assert _me(user)["usage"]["remaining"] == 0

    said = _action(operator, "reset_usage_today", user, UserFactory())  # one has no row

    assert "reset for 1 user(s)" in said
    assert _me(user)["usage"] == {**_me(user)["usage"], "used": 0, "remaining": 5}
    assert DailyUsage.objects.get(user=user, day=usage_today()).count == 0  # the row stays
    yesterday.refresh_from_db()
    assert yesterday.count == 4
    assert DailyUsage.objects.get(user=other).count == 2


def test_the_actions_need_the_billing_and_usage_rights():
    """An operator who may edit users but not billing nor usage sees neither action, and
    posting them changes nothing."""
    staff = UserFactory(is_staff=True, phone="+919600000002")
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    browser = Client()
    browser.force_login(staff)
    user = UserFactory()
    DailyUsage.objects.create(user=user, day=usage_today(), count=3)

    html = browser.get(URL).content.decode()
    assert "grant_pro" not in html and "reset_usage_today" not in html
    for action in ("grant_pro", "reset_usage_today"):
        browser.post(URL, {"action": action, "_selected_action": [user.pk]})

    assert _me(user)["tier"] == "basic"
    assert DailyUsage.objects.get(user=user).count == 3
