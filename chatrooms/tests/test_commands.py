"""`manage.py stats` (today's state of the product, from the rows as they are) and `demo_data`."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.tests.factories import UserFactory
from billing.models import BillingAccount, Subscription
from chatrooms.models import Chatroom, Message
from usage.models import DailyUsage
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db

Status = Message.Status


def _reply(room: Chatroom, status: str, *, seconds: float | None = None, **fields) -> Message:
    created = timezone.now() - dt.timedelta(seconds=5)
    completed = created + dt.timedelta(seconds=seconds) if seconds is not None else None
    return Message.objects.create(
        chatroom=room, role=Message.Role.MODEL, status=status, created_at=created,
        completed_at=completed, **fields,
    )  # fmt: skip


def test_stats_counts_users_pro_prompts_replies_latency_and_tokens(capsys):
    basic, granted, subscribed = UserFactory(), UserFactory(), UserFactory()
    BillingAccount.objects.create(
        user=granted, pro_granted_until=timezone.now() + dt.timedelta(days=1)
    )
    BillingAccount.objects.create(  # a grant that ended counts for nothing
        user=basic, pro_granted_until=timezone.now() - dt.timedelta(days=1)
    )
    for n, status in enumerate(["active", "canceled"]):  # granted and subscribed: once
        Subscription.objects.create(
            user=subscribed, stripe_subscription_id=f"sub_{n}", status=status
        )
    Subscription.objects.create(user=granted, stripe_subscription_id="sub_2", status="active")
    DailyUsage.objects.create(user=basic, day=usage_today(), count=3)
    DailyUsage.objects.create(user=granted, day=usage_today(), count=4)
    DailyUsage.objects.create(user=basic, day=usage_today() - dt.timedelta(days=1), count=9)
    room = Chatroom.objects.create(user=basic, name="Room")
    for seconds in (1, 2, 3, 4, 10):
        _reply(room, Status.COMPLETED, seconds=seconds, prompt_tokens=10, output_tokens=5)
    _reply(room, Status.FAILED, seconds=1)
    _reply(room, Status.PENDING)
    yesterday = _reply(room, Status.COMPLETED, seconds=100, prompt_tokens=1000)
    Message.objects.filter(pk=yesterday.pk).update(created_at=timezone.now() - dt.timedelta(days=2))

    call_command("stats")

    out = capsys.readouterr().out
    assert "users               3\n" in out
    assert "pro users           2\n" in out
    assert "prompts today       7 " in out
    assert "replies today       completed 5, failed 1, pending 1\n" in out
    assert "median 3.00 s, p95 8.80 s" in out  # percentile_cont over 1, 2, 3, 4, 10
    assert "tokens today        50 in, 25 out" in out


def test_stats_on_an_empty_day(capsys):
    call_command("stats")
    out = capsys.readouterr().out
    assert "replies today       none" in out
    assert "median -, p95 -" in out


def test_demo_data_makes_a_user_who_can_log_in_and_read_the_conversation(api_client, capsys):
    call_command("demo_data", "--phone", "+919800000042")
    out = capsys.readouterr().out
    password = out.split("(password ", 1)[1].split(")", 1)[0]
    login = api_client.post(
        "/api/auth/login", {"phone": "+919800000042", "password": password}, format="json"
    )
    assert login.status_code == 200
    auth = {"HTTP_AUTHORIZATION": f"Bearer {login.json()['access']}"}
    rooms = api_client.get("/api/chatroom", **auth).json()["results"]
    assert sorted(room["name"] for room in rooms) == ["Learning Rust", "Trip to Kyoto"]
    kyoto = next(room for room in rooms if room["name"] == "Trip to Kyoto")
    messages = api_client.get(f"/api/chatroom/{kyoto['id']}", **auth).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "model", "user", "model"]
    assert all(m["status"] == "completed" for m in messages)
    with pytest.raises(CommandError, match="already has an account"):
        call_command("demo_data", "--phone", "+919800000042")
