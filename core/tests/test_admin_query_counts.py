"""Every admin list page runs the same number of queries for 1 row as for 50: no query per row
(a column read from another table, a `__str__` following a foreign key)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import OneTimeCode, User
from accounts.tests.factories import UserFactory
from billing.models import StripeEvent, Subscription
from billing.services import billing_account_of, pro_grant
from chatrooms.models import IdempotencyRecord, Message
from chatrooms.tests.factories import ChatroomFactory, MessageFactory
from core.models import WorkerHeartbeat
from usage.models import DailyUsage
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db


def _user(n: int) -> User:
    return UserFactory(no_password=True, phone=f"+9197{n:08d}")


def _users(n: int) -> None:
    """A user with everything the users' page shows: a grant, today's count, chatrooms."""
    user = _user(n)
    if n % 2:
        pro_grant(user=user, until=timezone.now() + dt.timedelta(days=1))
    DailyUsage.objects.create(user=user, day=usage_today(), count=n)
    ChatroomFactory(user=user)


def _chatrooms(n: int) -> None:
    chatroom = ChatroomFactory(user=_user(n))
    MessageFactory(chatroom=chatroom)


def _messages(n: int) -> None:
    MessageFactory(
        chatroom=ChatroomFactory(user=_user(n)),
        role=Message.Role.MODEL,
        status=Message.Status.FAILED if n % 2 else Message.Status.COMPLETED,
        model_name=f"model-{n % 3}",
    )


def _usage(n: int) -> None:
    DailyUsage.objects.create(user=_user(n), day=usage_today(), count=n)


def _billing_accounts(n: int) -> None:
    billing_account_of(user=_user(n))


def _subscriptions(n: int) -> None:
    Subscription.objects.create(
        user=_user(n),
        stripe_subscription_id=f"sub_{n}",
        stripe_customer_id=f"cus_{n}",
        status=Subscription.Status.ACTIVE,
    )


def _stripe_events(n: int) -> None:
    StripeEvent.objects.create(
        stripe_event_id=f"evt_{n}",
        type="invoice.paid",
        stripe_created_at=timezone.now(),
        payload={},
    )


def _codes(n: int) -> None:
    OneTimeCode.objects.create(
        phone=f"+9197{n:08d}", purpose="login", code_hash="x", expires_at=timezone.now()
    )


def _idempotency(n: int) -> None:
    IdempotencyRecord.objects.create(
        user=_user(n), key=f"key-{n}", request_hash="h", response_status=201, response_body="{}"
    )


def _heartbeats(n: int) -> None:
    WorkerHeartbeat.objects.create(hostname=f"worker-{n}", seen_at=timezone.now())


# The users' page lists the operator too: one row more.
PAGES: list[tuple[str, Callable[[int], None], int]] = [
    ("/admin/accounts/user/", _users, 1),
    ("/admin/chatrooms/chatroom/", _chatrooms, 0),
    ("/admin/chatrooms/message/", _messages, 0),
    ("/admin/usage/dailyusage/", _usage, 0),
    ("/admin/billing/billingaccount/", _billing_accounts, 0),
    ("/admin/billing/subscription/", _subscriptions, 0),
    ("/admin/billing/stripeevent/", _stripe_events, 0),
    ("/admin/accounts/onetimecode/", _codes, 0),
    ("/admin/chatrooms/idempotencyrecord/", _idempotency, 0),
    ("/admin/core/workerheartbeat/", _heartbeats, 0),
]


# Far above what any page needs; the test's point is that 50 rows need no more than 1.
SOME_QUERIES = 25


def _get(operator: Client, url: str, rows: int | None = None) -> None:
    page = operator.get(url)
    assert page.status_code == 200
    if rows is not None:
        assert len(page.context["cl"].result_list) == rows


def _queries(assert_max: Any, operator: Client, url: str, limit: int, rows: int | None) -> int:
    with assert_max(limit) as captured:
        _get(operator, url, rows)
    return len(captured.captured_queries)


@pytest.fixture
def operator() -> Client:
    browser = Client()
    browser.force_login(UserFactory(is_staff=True, is_superuser=True, phone="+919600000000"))
    return browser


@pytest.mark.parametrize(("url", "make", "extra_rows"), PAGES, ids=[p[0] for p in PAGES])
def test_a_list_page_runs_as_many_queries_for_50_rows_as_for_1(
    django_assert_max_num_queries, operator, url, make, extra_rows
):
    _get(operator, url)  # warm up Django's own caches (content types, ...)
    make(1)
    at_one = _queries(django_assert_max_num_queries, operator, url, SOME_QUERIES, 1 + extra_rows)

    for n in range(2, 51):
        make(n)
    at_fifty = _queries(django_assert_max_num_queries, operator, url, at_one, 50 + extra_rows)

    assert at_fifty == at_one


def test_a_chatroom_with_50_messages_inline_runs_as_many_queries_as_with_1(
    django_assert_max_num_queries, operator
):
    chatroom = ChatroomFactory.create(user=_user(0))
    url = f"/admin/chatrooms/chatroom/{chatroom.pk}/change/"
    _get(operator, url)
    MessageFactory(chatroom=chatroom)
    at_one = _queries(django_assert_max_num_queries, operator, url, SOME_QUERIES, None)

    MessageFactory.create_batch(49, chatroom=chatroom, role=Message.Role.MODEL)
    at_fifty = _queries(django_assert_max_num_queries, operator, url, at_one, None)

    assert at_fifty == at_one
