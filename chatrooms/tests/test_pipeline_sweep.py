"""The beat sweep: replies nobody is working on are enqueued again, and then complete."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db.models.functions import Now

from chatrooms.models import Message
from chatrooms.tasks import replies_sweep, replies_sweep_enqueue, reply_generate
from chatrooms.tests.conftest import broker_reply_ids

# The worker gives its database connection back after each step, as in production: the
# tests commit for real instead of running inside one transaction.
pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


def _set(reply: Message, *, age: float = 0, lease_in: float | None = None, **fields) -> None:
    """Give `reply` a state, last changed `age` seconds ago, with a lease ending in `lease_in`."""
    Message.objects.filter(pk=reply.pk).update(
        updated_at=Now() - dt.timedelta(seconds=age),
        lease_expires_at=None if lease_in is None else Now() + dt.timedelta(seconds=lease_in),
        **fields,
    )


@pytest.fixture
def sweep_age(settings) -> int:
    settings.AI_PENDING_SWEEP_AGE_SECONDS = 120
    return 120


def test_the_sweep_enqueues_exactly_the_replies_nobody_works_on(
    make_exchange, sweep_age, django_capture_on_commit_callbacks
):
    lost = make_exchange()  # its broker message was lost
    _set(lost, age=sweep_age + 5)
    orphaned = make_exchange()  # its worker was SIGKILLed: the lease ran out
    _set(orphaned, status=Status.STREAMING, attempts=1, age=30, lease_in=-1)
    fresh = make_exchange()  # just sent
    _set(fresh, age=5)
    busy = make_exchange()  # a live worker has it
    _set(busy, status=Status.STREAMING, attempts=1, age=sweep_age + 5, lease_in=30)
    backing_off = make_exchange()  # waiting for its retry
    _set(backing_off, attempts=1, age=sweep_age + 5, lease_in=30)
    finished = make_exchange()
    _set(finished, status=Status.COMPLETED, age=sweep_age + 5)
    canceled = make_exchange()
    _set(canceled, status=Status.CANCELED, age=sweep_age + 5, lease_in=-1)

    with django_capture_on_commit_callbacks(execute=True):
        swept = replies_sweep_enqueue()

    assert sorted(swept) == sorted([lost.pk, orphaned.pk])
    assert broker_reply_ids() == sorted([lost.pk, orphaned.pk])
    orphaned.refresh_from_db()
    assert (orphaned.status, orphaned.lease_expires_at) == (Status.PENDING, None)
    busy.refresh_from_db()
    assert busy.status == Status.STREAMING


def test_a_swept_reply_is_left_alone_until_it_is_stale_again(
    make_exchange, sweep_age, django_capture_on_commit_callbacks
):
    lost = make_exchange()
    _set(lost, age=sweep_age + 5)
    with django_capture_on_commit_callbacks(execute=True):
        assert replies_sweep_enqueue() == [lost.pk]
        assert replies_sweep_enqueue() == []
    assert broker_reply_ids() == [lost.pk]


def test_swept_replies_complete_when_their_task_runs(
    fake_gemini, make_exchange, sweep_age, django_capture_on_commit_callbacks
):
    lost = make_exchange("Anyone there?")
    _set(lost, age=sweep_age + 5)
    orphaned = make_exchange("Still there?")
    _set(orphaned, status=Status.STREAMING, attempts=1, lease_in=-1)
    with django_capture_on_commit_callbacks(execute=True):
        replies_sweep.apply()

    for reply_id in broker_reply_ids():
        reply_generate.apply(args=[reply_id])

    lost.refresh_from_db()
    orphaned.refresh_from_db()
    assert (lost.status, lost.attempts) == (Status.COMPLETED, 1)
    assert (orphaned.status, orphaned.attempts) == (Status.COMPLETED, 2)
    assert "Anyone there?" in lost.content
    assert "Still there?" in orphaned.content


def test_beat_runs_the_sweep_at_the_configured_interval():
    entry = django_settings.CELERY_BEAT_SCHEDULE["replies-sweep"]
    assert entry["task"] == replies_sweep.name == "chatrooms.replies_sweep"
    assert entry["schedule"] == django_settings.AI_PENDING_SWEEP_INTERVAL_SECONDS


def test_the_management_command_sweeps_too(make_exchange, sweep_age, capsys):
    lost = make_exchange()
    _set(lost, age=sweep_age + 5)
    call_command("replies_sweep")
    assert f"Enqueued 1 replies: [{lost.pk}]" in capsys.readouterr().out


def test_replies_requeue_dry_run_lists_the_stuck_replies_and_changes_nothing(
    make_exchange, sweep_age, capsys
):
    lost = make_exchange()
    _set(lost, age=600)
    orphaned = make_exchange()
    _set(orphaned, status=Status.STREAMING, attempts=1, age=30, lease_in=-1)
    fresh = make_exchange()
    _set(fresh, age=5)

    call_command("replies_requeue", "--dry-run", "--older-than", "300")

    out = capsys.readouterr().out
    assert f"reply {orphaned.pk} in chatroom {orphaned.chatroom_id}: streaming" in out
    assert f"reply {lost.pk} in chatroom {lost.chatroom_id}: pending, idle 6" in out
    assert f"reply {fresh.pk} " not in out
    assert "2 stuck replies (dry run: nothing enqueued)" in out
    assert broker_reply_ids() == []
    orphaned.refresh_from_db()
    assert orphaned.status == Status.STREAMING


def test_replies_requeue_enqueues_pending_replies_older_than_asked(make_exchange, capsys):
    waiting = make_exchange()
    _set(waiting, age=90)
    recent = make_exchange()
    _set(recent, age=5)

    call_command("replies_requeue", "--older-than", "60")

    assert f"Enqueued 1 replies: [{waiting.pk}]" in capsys.readouterr().out
    assert broker_reply_ids() == [waiting.pk]
