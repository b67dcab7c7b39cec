"""Queueing a task through core.task_publish: Celery's message, a bounded set of producers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from django.conf import settings

from chatrooms.tasks import reply_generate
from core import task_publish as publishing
from core.request_context import request_id_var
from core.task_context import REQUEST_ID_MESSAGE_HEADER
from gemini_clone.broker import RedisTransport
from gemini_clone.celery import app


def _queued() -> list[dict[str, Any]]:
    """The messages waiting in the default queue, oldest first."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(raw) for raw in reversed(broker.lrange(app.conf.task_default_queue, 0, -1))]


def _without_ids(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in {"id", "root_id"}}
    # reply_to names where a result would go: these tasks ignore theirs.
    unique = {"correlation_id", "delivery_tag", "reply_to"}
    properties = {k: v for k, v in message["properties"].items() if k not in unique}
    return {**message, "headers": headers, "properties": properties}


def test_the_message_is_the_one_delay_sends():
    token = request_id_var.set("req-41")  # the headers' request id: a publish signal's
    try:
        reply_generate.delay(41)
        publishing.task_publish(reply_generate, 41)
    finally:
        request_id_var.reset(token)
    by_delay, ours = _queued()
    assert ours["headers"][REQUEST_ID_MESSAGE_HEADER] == "req-41"
    assert _without_ids(ours) == _without_ids(by_delay)
    task_id = ours["headers"]["id"]
    assert task_id == ours["properties"]["correlation_id"] != by_delay["headers"]["id"]
    args, kwargs, _embed = json.loads(base64.b64decode(ours["body"]))
    assert (args, kwargs) == ([41], {})
    limits = [reply_generate.time_limit, reply_generate.soft_time_limit]
    assert ours["headers"]["timelimit"] == limits


def test_producers_are_reused_and_at_most_the_pool_limit_are_kept(monkeypatch):
    monkeypatch.setattr(publishing, "_idle_producers", [])
    publishing.task_publish(reply_generate, 1)
    (producer,) = publishing._idle_producers
    # On the transport that keeps one Redis client per channel (gemini_clone/broker.py).
    assert isinstance(producer.connection.transport, RedisTransport)
    publishing.task_publish(reply_generate, 2)
    assert publishing._idle_producers == [producer]
    # Publishes that ran at once each took one; no more than broker_pool_limit stay.
    monkeypatch.setitem(app.conf, "broker_pool_limit", 2)
    busy = [app.amqp.Producer(app.connection_for_write()) for _ in range(3)]
    publishing._idle_producers[:] = busy
    publishing.task_publish(reply_generate, 3)
    assert publishing._idle_producers == busy[:2]
    assert len(_queued()) == 3


def test_a_producer_whose_publish_failed_is_dropped(monkeypatch):
    monkeypatch.setattr(publishing, "_idle_producers", [])
    publishing.task_publish(reply_generate, 1)
    (producer,) = publishing._idle_producers
    monkeypatch.setattr(producer.connection, "hostname", "127.0.0.1")
    monkeypatch.setattr(producer.connection, "port", 1)  # nobody listens there
    producer.connection.close()
    with pytest.raises(Exception):  # noqa: B017 (kombu's or redis-py's, after the retries)
        publishing.task_publish(reply_generate, 2)
    assert publishing._idle_producers == []
    publishing.task_publish(reply_generate, 3)  # a new producer
    assert [json.loads(base64.b64decode(m["body"]))[0] for m in _queued()] == [[1], [3]]
