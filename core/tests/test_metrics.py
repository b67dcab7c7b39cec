"""GET /metrics: Prometheus' text format, only with the METRICS_TOKEN bearer token; a 404
like any unknown path otherwise. Served through the ASGI application, as in production."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatrooms.models import Message
from chatrooms.tests.factories import ChatroomFactory, MessageFactory
from gemini_clone.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scrape-token-for-tests"


def _get(path: str, **headers: str) -> httpx.Response:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(get())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("token", "authorization"),
    [("", f"Bearer {TOKEN}"), (TOKEN, ""), (TOKEN, "Bearer wrong"), (TOKEN, TOKEN)],
    ids=["no token set", "no header", "wrong token", "not a bearer"],
)
def test_without_the_token_it_is_a_404_like_an_unknown_path(settings, token, authorization):
    settings.METRICS_TOKEN = token
    headers = {"Authorization": authorization} if authorization else {}

    refused = _get("/metrics", **headers)
    unknown = _get("/no-such-page", **headers)

    assert refused.status_code == unknown.status_code == 404
    assert refused.content == unknown.content
    assert refused.headers["content-type"] == unknown.headers["content-type"]


def test_with_the_token_it_counts_requests_by_route_and_status(settings):
    settings.METRICS_TOKEN = TOKEN
    _get("/api/chatroom")  # 401
    before = samples(_get("/metrics", Authorization=f"Bearer {TOKEN}").text)
    _get("/api/chatroom")
    _get("/api/no/such/route")

    scraped = _get("/metrics", Authorization=f"Bearer {TOKEN}")

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    after = samples(scraped.text)
    listed = ("gemini_http_requests_total", frozenset(
        {("method", "GET"), ("route", "api/chatroom"), ("status", "401")}
    ))  # fmt: skip
    assert after[listed] == before[listed] + 1
    unmatched = ("gemini_http_requests_total", frozenset(
        {("method", "GET"), ("route", "unmatched"), ("status", "404")}
    ))  # fmt: skip
    assert after[unmatched] >= 1
    duration = ("gemini_http_request_duration_seconds_count", frozenset(
        {("method", "GET"), ("route", "api/chatroom")}
    ))  # fmt: skip
    assert after[duration] == before[duration] + 1


def test_the_reply_queue_is_read_at_each_scrape(settings):
    settings.METRICS_TOKEN = TOKEN
    chatroom = ChatroomFactory.create()
    MessageFactory.create(chatroom=chatroom, role="model", status=Message.Status.PENDING)
    MessageFactory.create(chatroom=chatroom, role="model", status=Message.Status.PENDING)
    MessageFactory.create(chatroom=chatroom, role="model", status=Message.Status.STREAMING)

    scraped = samples(_get("/metrics", Authorization=f"Bearer {TOKEN}").text)

    assert scraped[("gemini_reply_queue_depth", frozenset())] == 2
    assert scraped[("gemini_replies_streaming", frozenset())] == 1
    assert scraped[("gemini_reply_queue_oldest_age_seconds", frozenset())] >= 0


def test_a_starting_web_server_forgets_only_its_hosts_live_gauges(tmp_path, monkeypatch):
    from core import metrics

    monkeypatch.setattr(metrics, "MULTIPROC_DIR", str(tmp_path))
    host = metrics.process_identifier(4242).rsplit("-", 1)[0]
    stale = tmp_path / f"gauge_livesum_{host}-4242.db"  # a killed process's open streams
    kept = [
        tmp_path / "gauge_livesum_other-host-4242.db",  # another container's, alive
        tmp_path / f"gauge_livesum_{host}-2-4242.db",  # a host whose name extends ours
        tmp_path / f"counter_{host}-4242.db",  # counters outlive their process by design
    ]
    for path in (stale, *kept):
        path.write_bytes(b"")

    metrics.live_gauges_of_host_forget()

    assert not stale.exists()
    assert all(path.exists() for path in kept)
