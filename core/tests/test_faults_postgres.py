"""Fault injection: PostgreSQL restarted and stopped under the running product.

The product runs as in production — uvicorn serving the ASGI app, and a Celery worker
(testing/e2e.py) — on a PostgreSQL server of this module's own (testing/postgres_server.py),
which the tests restart and stop. Redis is the test run's own (REDIS_URL). No beat runs, so
nothing here is rescued by the recovery sweep.

    pytest -m faults
"""

from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from django.core.cache import cache

from chatrooms import streaming
from testing.e2e import PYTHON, ROOT, Stack, process_env, sse_parse, wait_until
from testing.fake_gemini import FakeGemini, Reply
from testing.postgres_server import PostgresServer

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CONNECT_TIMEOUT = 2  # DB_CONNECT_TIMEOUT_SECONDS of the product under test (libpq's minimum)
MARGIN = 1.0  # seconds of slack on a shared, busy machine
_phones = itertools.count(1)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        url = server.create_database("faults")
        env = {**os.environ, "DATABASE_URL": url}
        subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        yield server


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture(scope="module")
def product(
    postgres: PostgresServer, fake_model: FakeGemini, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The web server and a worker (no beat), started once for the module."""
    env = process_env(
        DATABASE_URL=postgres.url("faults"),
        DB_CONNECT_TIMEOUT_SECONDS=CONNECT_TIMEOUT,
        GEMINI_API_KEY=fake_model.api_key,
        GEMINI_BASE_URL=fake_model.url,
        GEMINI_TIMEOUT_SECONDS=10,
        REPLY_LEASE_SECONDS=6,  # renewed every second: a reply meets the outage in flight
        WEB_THREADS=8,  # few, so that requests waiting on a dead database could fill them
        BASIC_DAILY_LIMIT=100_000,
        OTP_MAX_SENDS_PER_IP_PER_HOUR=100_000,
    )
    stack = Stack(env=env, log_dir=tmp_path_factory.mktemp("faults-postgres"))
    try:
        stack.start_web()
        stack.start_worker(name="worker")
        stack.wait_ready()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def healthy(postgres: PostgresServer, product: Stack) -> Stack:
    """Each test starts with PostgreSQL up and the product ready, whatever the last one did."""
    if not postgres.running:
        postgres.start()
    wait_until(
        lambda: httpx.get(f"{product.url}/readyz", timeout=5).status_code == 200,
        timeout=15,
        what="the product to be ready",
        interval=0.2,
    )
    return product


def _sign_in(stack: Stack) -> httpx.Client:
    """A new user, signed in over HTTP."""
    client = httpx.Client(base_url=stack.url, timeout=30)
    phone = f"+9198{next(_phones):08d}"
    sent = client.post("/api/auth/send-otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    verified = client.post("/api/auth/verify-otp", json={"phone": phone, "otp": sent.json()["otp"]})
    assert verified.status_code == 200, verified.text
    client.headers["Authorization"] = f"Bearer {verified.json()['access']}"
    return client


def _chatroom(client: httpx.Client) -> int:
    response = client.post("/api/chatroom", json={"name": "faults"})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@dataclass(frozen=True)
class Answer:
    started: float
    seconds: float
    what: str
    status: int
    code: str | None
    retry_after: str | None


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Answer:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)
    seconds = time.monotonic() - started
    code = None
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", (path, response.text)
        code = response.json()["error"]["code"]
    return Answer(
        started,
        seconds,
        f"{method} {path}",
        response.status_code,
        code,
        response.headers.get("retry-after"),
    )


Calls = Callable[[httpx.Client], list[Answer]]
Call = tuple[httpx.Client, str, str, dict[str, Any]]  # client, method, path, arguments


def _make(call: Call) -> Answer:
    client, method, path, kwargs = call
    return _call(client, method, path, **kwargs)


@dataclass
class Traffic:
    """Clients calling the API in a loop, each in its own thread, every answer recorded."""

    clients: list[tuple[httpx.Client, Calls]]
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for client, calls in self.clients:
            thread = threading.Thread(target=self._loop, args=(client, calls), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _loop(self, client: httpx.Client, calls: Calls) -> None:
        while not self._stop.is_set():
            self.answers.extend(calls(client))

    def wait_for(self, count: int, *, after: float = 0.0) -> None:
        wait_until(
            lambda: sum(a.started >= after for a in self.answers) >= count,
            timeout=20,
            what=f"{count} answers",
        )


def _reads_and_writes(room: int) -> Calls:
    def calls(client: httpx.Client) -> list[Answer]:
        return [
            _call(client, "GET", f"/api/chatroom/{room}"),
            _call(client, "PATCH", f"/api/chatroom/{room}", json={"name": f"n{time.time()}"}),
            _call(client, "GET", "/api/user/me"),
        ]

    return calls


def _server_errors(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a.status >= 500 and a.status != 503]


def _poll_reply(client: httpx.Client, room: int, reply: int, *, timeout: float) -> dict:
    def finished() -> dict | None:
        response = client.get(f"/api/chatroom/{room}/message/{reply}")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["status"] not in {"pending", "streaming"} else None

    return wait_until(finished, timeout=timeout, what=f"reply {reply} to finish", interval=0.1)


def test_a_restart_under_traffic_answers_no_500_and_then_only_successes(
    healthy: Stack, postgres: PostgresServer
):
    clients = [_sign_in(healthy) for _ in range(4)]
    traffic = Traffic([(client, _reads_and_writes(_chatroom(client))) for client in clients])
    with traffic:
        traffic.wait_for(40)
        postgres.restart()
        back = time.monotonic()
        traffic.wait_for(60, after=back)

    assert _server_errors(traffic.answers) == []
    during = [a for a in traffic.answers if a.started < back and a.status == 503]
    assert all(a.code == "service_unavailable" and a.retry_after for a in during), during
    after = [a for a in traffic.answers if a.started >= back]
    assert [a for a in after if not 200 <= a.status < 300] == []


def test_the_first_requests_after_a_restart_succeed(healthy: Stack, postgres: PostgresServer):
    client = _sign_in(healthy)
    rooms = [_chatroom(client) for _ in range(5)]
    # Fill the web process's pool with connections, as a busy moment leaves it.
    others = [_sign_in(healthy) for _ in range(8)]
    busy = Traffic([(other, _reads_and_writes(_chatroom(other))) for other in others])
    with busy:
        busy.wait_for(80)
    assert _server_errors(busy.answers) == []

    postgres.restart()  # with no request in flight: the idle connections all go stale

    first = []
    for room in rooms:
        first.append(_call(client, "GET", f"/api/chatroom/{room}"))
        first.append(_call(client, "POST", f"/api/chatroom/{room}/message", json={"content": "Hi"}))
        first.append(_call(client, "GET", "/api/user/me"))
    assert [(a.what, a.status, a.code) for a in first if not 200 <= a.status < 300] == []
    for room in rooms:  # and the worker answers them
        reply = client.get(f"/api/chatroom/{room}").json()["messages"][-1]
        assert _poll_reply(client, room, reply["id"], timeout=15)["status"] == "completed"


def test_while_postgres_is_down_every_call_needing_it_answers_503_fast_then_recovers(
    healthy: Stack, postgres: PostgresServer
):
    client = _sign_in(healthy)
    room = _chatroom(client)
    sent = client.post(f"/api/chatroom/{room}/message", json={"content": "Hello"})
    assert sent.status_code == 202, sent.text
    reply = sent.json()["reply"]["id"]
    _poll_reply(client, room, reply, timeout=15)
    cache.clear()  # no cached user or list: authentication itself needs the database
    probe = httpx.Client(base_url=healthy.url, timeout=30)

    calls: list[Call] = [
        (client, "GET", "/api/user/me", {}),
        (client, "GET", "/api/chatroom", {}),
        (client, "GET", f"/api/chatroom/{room}", {}),
        (client, "POST", "/api/chatroom", {"json": {"name": "down"}}),
        (client, "POST", f"/api/chatroom/{room}/message", {"json": {"content": "Again"}}),
        # The async stream view, served outside the WSGI path.
        (client, "GET", f"/api/chatroom/{room}/message/{reply}/stream", {}),
        # No authentication, straight to a view that writes.
        (probe, "POST", "/api/auth/send-otp", {"json": {"phone": "+919811111111"}}),
    ]
    # Then three times as many calls at once as the web process has threads (WEB_THREADS):
    # none may queue behind the others for long.
    crowd: list[Call] = [(client, "GET", f"/api/chatroom/{room}/messages", {})] * 24
    postgres.stop()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(calls)) as threads:
            pending = [threads.submit(_make, call) for call in calls]
            ready = probe.get("/readyz")
            ready_seconds = time.monotonic() - started
            answers = [future.result() for future in pending]
        with ThreadPoolExecutor(max_workers=len(crowd)) as threads:
            answers += threads.map(_make, crowd)
    finally:
        postgres.start()

    assert [(a.what, a.status, a.code) for a in answers if a.status != 503] == []
    assert {a.code for a in answers} == {"service_unavailable"}
    assert all(a.retry_after and int(a.retry_after) > 0 for a in answers)
    slowest = max(answers, key=lambda a: a.seconds)
    assert slowest.seconds < CONNECT_TIMEOUT + MARGIN, slowest
    assert ready.status_code == 503
    assert ready.json()["down"] == ["postgres"]
    assert ready_seconds < 2

    # Back by itself: no process was restarted.
    wait_until(
        lambda: client.get("/api/user/me").status_code == 200,
        timeout=CONNECT_TIMEOUT + 5,
        what="the API to answer again",
        interval=0.1,
    )
    again = [
        _call(client, "GET", f"/api/chatroom/{room}"),
        _call(client, "POST", "/api/chatroom", json={"name": "up"}),
        _call(probe, "GET", "/readyz"),
    ]
    assert [(a.what, a.status) for a in again] == [
        (f"GET /api/chatroom/{room}", 200),
        ("POST /api/chatroom", 201),
        ("GET /readyz", 200),
    ]
    # What was refused left nothing behind; what was stored before is all there.
    messages = client.get(f"/api/chatroom/{room}").json()["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "Hello", "completed"),
        ("model", "Echo: Hello", "completed"),
    ]
    names = [chatroom["name"] for chatroom in client.get("/api/chatroom").json()["results"]]
    assert names == ["up", "faults"]
    assert client.get("/api/user/me").json()["usage"]["used"] == 1


def test_a_reply_being_generated_across_an_outage_completes_without_the_sweep(
    healthy: Stack, postgres: PostgresServer, fake_model: FakeGemini
):
    client = _sign_in(healthy)
    room = _chatroom(client)
    full = " ".join(f"w{index}" for index in range(24))
    fake_model.reset()
    fake_model.script(Reply(text=full, chunks=24, chunk_delay=0.15))  # 3.6 s of streaming

    sent = client.post(f"/api/chatroom/{room}/message", json={"content": "Count for me"})
    assert sent.status_code == 202, sent.text
    reply = int(sent.json()["reply"]["id"])
    key = streaming.events_key(reply)
    wait_until(lambda: streaming.redis_client().xlen(key) >= 3, timeout=15, what="the first chunks")
    postgres.stop()  # the worker renews its lease every second: renewals meet no database
    try:
        published = streaming.redis_client().xlen(key)
        wait_until(
            lambda: streaming.redis_client().xlen(key) >= published + 8,
            timeout=10,
            what="chunks published during the outage",
        )
    finally:
        postgres.start()

    polled = _poll_reply(client, room, reply, timeout=20)
    assert (polled["status"], polled["content"]) == ("completed", full)
    assert len(fake_model.requests) == 1  # generated once, never restarted

    # A reply sent after the restart is claimed on a fresh connection too.
    fake_model.script(Reply(text="Still here.", chunks=2))
    sent = client.post(f"/api/chatroom/{room}/message", json={"content": "Still there?"})
    assert sent.status_code == 202, sent.text
    second = int(sent.json()["reply"]["id"])
    path = f"/api/chatroom/{room}/message/{second}/stream"
    with client.stream("GET", path) as response:
        events = [e for e in sse_parse(response.iter_lines()) if e[0] != "comment"]
    assert events[-1][0] == "done"
    assert (events[-1][1]["status"], events[-1][1]["content"]) == ("completed", "Still here.")
    messages = client.get(f"/api/chatroom/{room}").json()["messages"]
    exchange = [("user", "completed"), ("model", "completed")]
    assert [(m["role"], m["status"]) for m in messages] == exchange * 2
    assert client.get("/api/user/me").json()["usage"]["used"] == 2  # each prompt counted once
