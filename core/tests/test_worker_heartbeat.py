"""The worker heartbeat: `/readyz/worker` and `manage.py worker_heartbeat_check` tell whether a
worker consumes the queue; `/readyz` (the web server's own probe) does not depend on it."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command
from django.db.models.functions import Now

from core.models import WorkerHeartbeat
from core.workers import worker_heartbeat_record
from testing.e2e import Stack, process_env, wait_until


def _age(hostname: str, seconds: float) -> None:
    WorkerHeartbeat.objects.filter(hostname=hostname).update(
        seen_at=Now() - dt.timedelta(seconds=seconds)
    )


@pytest.mark.django_db
def test_readyz_worker_answers_503_until_a_worker_beats_and_again_once_it_is_silent(
    client, settings
):
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 30

    none_yet = client.get("/readyz/worker")
    assert none_yet.status_code == 503
    assert none_yet.json() == {
        "status": "unavailable",
        "workers": 0,
        "last_heartbeat": None,
        "max_age_seconds": 30,
        "down": ["worker"],
    }

    worker_heartbeat_record(hostname="w1@host")
    alive = client.get("/readyz/worker")
    assert alive.status_code == 200
    assert (alive.json()["status"], alive.json()["workers"]) == ("ok", 1)

    _age("w1@host", 31)
    silent = client.get("/readyz/worker")
    assert silent.status_code == 503
    assert silent.json()["workers"] == 0
    last = dt.datetime.fromisoformat(silent.json()["last_heartbeat"])
    assert last == WorkerHeartbeat.objects.get().seen_at
    # The web server itself is still ready: a stalled queue must not take it out of rotation.
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_the_healthcheck_command_fails_for_a_worker_that_went_silent(settings):
    settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS = 30
    worker_heartbeat_record(hostname="w1@host")
    call_command("worker_heartbeat_check", hostname="w1@host")

    _age("w1@host", 31)
    with pytest.raises(CommandError, match="No heartbeat from w1@host in the last 30 s"):
        call_command("worker_heartbeat_check", hostname="w1@host")
    with pytest.raises(CommandError, match="No heartbeat from w2@host"):
        call_command("worker_heartbeat_check", hostname="w2@host")


@pytest.fixture
def stack(transactional_db: None, tmp_path: Path) -> Iterator[Stack]:
    env = process_env(WORKER_HEARTBEAT_INTERVAL_SECONDS=1, WORKER_HEARTBEAT_MAX_AGE_SECONDS=2)
    stack = Stack(env=env, log_dir=tmp_path)
    try:
        yield stack
    finally:
        stack.close()


@pytest.mark.e2e
def test_a_running_worker_is_reported_and_a_dead_one_is_not(stack: Stack):
    stack.start_web()
    killed = stack.start_worker(name="killed", concurrency=2)
    stopped = stack.start_worker(name="stopped", concurrency=2)
    stack.wait_ready()

    def readiness(path: str) -> tuple[int, dict]:
        response = httpx.get(f"{stack.url}{path}", timeout=5)
        return response.status_code, response.json()

    def both_reported() -> bool:
        status, body = readiness("/readyz/worker")
        return status == 200 and body["workers"] == 2

    wait_until(
        both_reported,
        timeout=10,
        what="both workers' heartbeats",
        watch=[killed, stopped],
    )
    stopped.stop(signum=signal.SIGTERM)  # a clean stop takes its heartbeat with it
    assert readiness("/readyz/worker")[1]["workers"] == 1
    killed.kill()  # no goodbye: its heartbeat goes stale
    wait_until(
        lambda: readiness("/readyz/worker")[0] == 503,
        timeout=5,
        what="the killed worker to be reported gone",
    )
    assert readiness("/readyz/worker")[1]["down"] == ["worker"]
    assert readiness("/readyz")[0] == 200
