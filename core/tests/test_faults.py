"""The fault suite: the product's own services fail under it while people use it.

One product for the module (testing/faults.py): uvicorn and a Celery worker on a PostgreSQL
and a Redis of the module's own, never the machine's shared ones, calling the fake Gemini,
whose replies take long enough to be in flight when a fault hits. Each case injects one fault
under traffic and asserts what users see over HTTP: status and error codes during the fault,
recovery after it. Then `assert_invariants` checks what must hold whatever happened: every
reply the case created ended in a final state exactly once, each user's count of prompts is
the prompts not given back, and no 500 was ever answered.

Beat (the reply sweep) runs in two cases only: the worker kill, where the sweep is how the
product hands a dead worker's reply on, and the idle Redis restart, which beat must outlive
(that case checks no sweep rescued any of its replies). Anywhere else the sweep could rescue
replies the product had lost, and hide it.

    ./test.sh -m faults
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from billing.models import StripeEvent
from chatrooms.models import Chatroom, Message
from chatrooms.streaming import events_key
from testing.e2e import ManagedProcess, wait_until
from testing.fake_gemini import Reply
from testing.fake_stripe import sign_payload
from testing.faults import Product
from testing.users import AnswerLog, ApiUser, Traffic, reads_and_writes

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

CONNECT_TIMEOUT = 2  # DB_CONNECT_TIMEOUT_SECONDS of the product (libpq's minimum)
MARGIN = 1.0  # seconds of slack on a shared, busy machine
LEASE = 4  # REPLY_LEASE_SECONDS: short, so a dead worker's reply is handed on within seconds
HEARTBEAT_MAX_AGE = 4  # WORKER_HEARTBEAT_MAX_AGE_SECONDS
WEB_THREADS = 8  # few, so that requests waiting on a dead database could fill them
LOGIN_LIMIT = 3  # wrong passwords per phone and hour
CACHE_PREFIX = "faults"
WEBHOOK_SECRET = "whsec_fault_suite"
MIB = 1 << 20

SETTINGS: dict[str, object] = {
    "DB_CONNECT_TIMEOUT_SECONDS": CONNECT_TIMEOUT,
    "GEMINI_TIMEOUT_SECONDS": 10,
    "REPLY_LEASE_SECONDS": LEASE,
    "AI_PENDING_SWEEP_INTERVAL_SECONDS": 1,
    "AI_PENDING_SWEEP_AGE_SECONDS": 1,
    "AI_RETRY_BACKOFF_SECONDS": 1,
    "WORKER_HEARTBEAT_INTERVAL_SECONDS": 1,
    "WORKER_HEARTBEAT_MAX_AGE_SECONDS": HEARTBEAT_MAX_AGE,
    "WEB_THREADS": WEB_THREADS,
    "CACHE_KEY_PREFIX": CACHE_PREFIX,
    "BASIC_DAILY_LIMIT": 100_000,
    "OTP_MAX_SENDS_PER_IP_PER_HOUR": 100_000,
    "LOGIN_MAX_FAILURES_PER_PHONE_PER_HOUR": LOGIN_LIMIT,
    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
}
MODEL_LATENCY = 0.6  # seconds for an unscripted reply: sends are in flight for a while

FINAL = {"completed", "failed", "canceled", "blocked"}
MESSAGES = Message._meta.db_table
CHATROOMS = Chatroom._meta.db_table


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    product = Product(
        log_dir=tmp_path_factory.mktemp("faults"), settings=SETTINGS, model_latency=MODEL_LATENCY
    )
    try:
        product.start()
        yield product
    finally:
        product.close()


@dataclass
class Case:
    """One test's view of the product: its users, and every answer they got."""

    product: Product
    log: AnswerLog = field(default_factory=AnswerLog)
    users: list[ApiUser] = field(default_factory=list)
    clients: list[httpx.Client] = field(default_factory=list)

    def user(self) -> ApiUser:
        """A new account, signed in."""
        user = ApiUser(url=self.product.url, log=self.log)
        self.users.append(user)
        self.clients.append(user.http)
        return user

    def client(self) -> httpx.Client:
        """A client with no account (logged like the users')."""
        client = httpx.Client(base_url=self.product.url, timeout=30, event_hooks=self.log.hooks())
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def case(product: Product) -> Iterator[Case]:
    """Each case starts on a healthy product, whatever the last one left behind."""
    product.heal()
    case = Case(product)
    yield case
    case.close()


def _readers(case: Case, count: int) -> tuple[Traffic, list[tuple[ApiUser, int]]]:
    """Users reading their chatroom list, their one chatroom and their account in a loop."""
    readers = [(user, user.chatroom()) for user in (case.user() for _ in range(count))]

    def reads(room: int) -> Callable[[ApiUser], None]:
        def calls(user: ApiUser) -> None:
            user.http.get("/api/chatroom")  # the cached list
            user.http.get(f"/api/chatroom/{room}")
            user.http.get("/api/user/me")

        return calls

    return Traffic([(user, reads(room)) for user, room in readers], case.log), readers


# --- What holds after every fault ----------------------------------------------------------------


def assert_invariants(case: Case, *, attempts: dict[int, int] | None = None) -> None:
    """- No answer was a 500, nor any 5xx but a 503 service_unavailable with Retry-After (or a
      readiness probe's 503), and every /api error was JSON.
    - The replies stored for the case's users are the ones their sends were answered 202 for;
      each is final, was generated by one attempt and one model request (`attempts[reply]`
      of each when the case restarted it), and its stream ends with one `done` that says what
      the reply says.
    - Each user's prompts counted today are their replies that were not given back (failed).
    """
    answers = case.log.answers
    probes = {"GET /readyz", "GET /readyz/worker"}  # a 503 is how they say something is down
    assert [
        a
        for a in answers
        if a.status >= 500
        if not (a.unavailable or (a.status == 503 and a.what in probes))
    ] == []
    assert [
        a
        for a in answers
        if a.status >= 400 and a.what.split()[1].startswith("/api/")
        if a.content_type != "application/json"
    ] == []
    for user in case.users:
        account = user.me()
        stored = dict(
            case.product.sql(
                f"SELECT m.id, m.attempts FROM {MESSAGES} m JOIN {CHATROOMS} c"  # noqa: S608
                " ON c.id = m.chatroom_id WHERE c.user_id = %(user)s AND m.role = 'model'",
                {"user": account["id"]},
            )
        )
        assert sorted(stored) == sorted(user.replies)
        statuses = []
        for reply_id, sent in user.replies.items():
            reply = user.message(sent.room, reply_id)
            assert reply["status"] in FINAL, reply
            statuses.append(reply["status"])
            expected = (attempts or {}).get(reply_id, 1)
            assert stored[reply_id] == expected, reply
            if reply["status"] == "completed":
                assert _model_requests(case.product, sent.prompt) == expected, reply
            dones = [
                entry["message"]
                for entry in case.product.stream_entries(events_key(reply_id))
                if entry["type"] == "done"
            ]
            assert [(d["status"], d["content"]) for d in dones] == [
                (reply["status"], reply["content"])
            ]
        assert account["usage"]["used"] == sum(status != "failed" for status in statuses)


def _model_requests(product: Product, prompt: str) -> int:
    """How many times the model was asked to answer `prompt` (its last user turn)."""
    count = 0
    for request in product.model.requests:
        if request["action"] != "streamGenerateContent":
            continue
        users = [c for c in request["body"]["contents"] if c.get("role", "user") == "user"]
        if "".join(part.get("text", "") for part in users[-1]["parts"]) == prompt:
            count += 1
    return count


# --- Helpers --------------------------------------------------------------------------------------


def _worker_readiness(product: Product, status: int) -> dict[str, Any] | None:
    """/readyz/worker's body when it answers `status`."""
    response = httpx.get(f"{product.url}/readyz/worker", timeout=5)
    return response.json() if response.status_code == status else None


def _sweeps_run(worker: ManagedProcess) -> int:
    return len(re.findall(r"chatrooms\.replies_sweep\[[^\]]+\] succeeded", worker.log()))


def _swept(worker: ManagedProcess) -> set[int]:
    """The replies a sweep had to enqueue again."""
    found = re.findall(r"Sweep: enqueued replies \[([\d, ]+)\]", worker.log())
    return {int(reply) for replies in found for reply in replies.split(",")}


def _text(events: list[tuple[str, Any]]) -> str:
    return "".join(data["text"] for name, data in events if name == "delta")


def _hold(until: float, *, processes: list[ManagedProcess]) -> None:
    """Let the fault last until `until` (time.monotonic()), failing early if one of our
    processes dies meanwhile."""
    wait_until(
        lambda: time.monotonic() >= until,
        timeout=until - time.monotonic() + 5,
        what="the fault's end",
        interval=0.1,
        watch=processes,
    )


def _never(predicate: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Fail as soon as `predicate` holds within `seconds`: how a test sees that something
    does not happen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not predicate(), what
        time.sleep(0.05)


# --- 1. A worker killed while it generates a reply ------------------------------------------------


def test_a_worker_killed_mid_reply_is_noticed_and_its_reply_completes_exactly_once(case: Case):
    product = case.product
    user = case.user()
    room = user.chatroom()
    full = " ".join(f"w{index}" for index in range(20))
    product.model.script(
        Reply(text=full, chunks=20, chunk_delay=0.2),  # 4 s: killed a few chunks in
        Reply(text=full, chunks=4),
    )
    doomed = product.worker
    assert doomed is not None
    events = product.redis_client()

    traffic, _ = _readers(case, 2)

    reply = user.send_ok(room, "Tell me a long story")
    with traffic:
        wait_until(
            lambda: events.xlen(events_key(reply)) >= 3,
            timeout=15,
            what="the first chunks",
            watch=[doomed],
        )
        doomed.kill()
        assert user.message(room, reply)["status"] == "streaming"
        # The product notices: no heartbeat, and the worker probe says so.
        gone = wait_until(
            lambda: _worker_readiness(product, 503),
            timeout=HEARTBEAT_MAX_AGE + 5,
            what="/readyz/worker to report no worker",
            interval=0.2,
        )
        assert gone["down"] == ["worker"]

        # What the run command (or compose) does: a new worker. The sweep, on beat, hands it
        # the reply once the dead worker's lease has run out.
        rescuer = product.start_worker()
        product.start_beat()
        polled = user.finished(room, reply, timeout=LEASE + 15)
    assert [a for a in case.log.answers if not 200 <= a.status < 300] == []
    assert (polled["status"], polled["content"]) == ("completed", full)
    messages = user.http.get(f"/api/chatroom/{room}").json()["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "completed"),
        ("model", "completed"),
    ]
    # Two more sweeps later, nothing has run again.
    sweeps = _sweeps_run(rescuer) + 2
    wait_until(
        lambda: _sweeps_run(rescuer) >= sweeps, timeout=10, what="two more sweeps", watch=[rescuer]
    )
    assert _model_requests(product, "Tell me a long story") == 2
    # A stream client sees the whole text once, then done ...
    assert user.stream(room, reply) == [("delta", {"text": full}), ("done", polled)]
    # ... and Redis tells the story: attempt 1's chunks, attempt 2's start, its text, done.
    entries = product.stream_entries(events_key(reply))
    kinds = [(entry["type"], entry.get("attempt")) for entry in entries]
    second = kinds.index(("start", "2"))
    assert set(kinds[:second]) == {("start", "1"), ("delta", "1")}
    assert set(kinds[second + 1 : -1]) == {("delta", "2")}
    assert "".join(entry["text"] for entry in entries[second + 1 : -1]) == full
    ready = wait_until(
        lambda: _worker_readiness(product, 200), timeout=5, what="/readyz/worker to be 200"
    )
    assert ready["workers"] == 1
    assert_invariants(case, attempts={reply: 2})


# --- 2. Redis restarted empty while nothing streams -----------------------------------------------


def test_redis_restarted_empty_under_traffic_answers_no_500_and_forgets_no_limit(case: Case):
    product = case.product
    worker = product.worker
    assert worker is not None
    # Beat too: it must go on queueing sweeps through the new Redis.
    product.start_beat()
    # An account with a password, and as many wrong guesses as its limit allows.
    owner = case.user()
    owner.set_password("a fault-tolerant passphrase")
    guesser = case.client()

    def guess() -> httpx.Response:
        return guesser.post(
            "/api/auth/login", json={"phone": owner.phone, "password": "not the passphrase"}
        )

    assert [guess().status_code for _ in range(LOGIN_LIMIT)] == [401] * LOGIN_LIMIT

    traffic, readers = _readers(case, 3)
    with traffic:
        traffic.wait_for(30)
        sweeps = _sweeps_run(worker)
        product.redis.restart()
        back = time.monotonic()
        traffic.wait_for(60, after=back)

    # Nothing failed, during the restart or after it (the wrong passwords aside).
    guesses = "POST /api/auth/login"
    assert [a for a in case.log.answers if a.status >= 300 and a.what != guesses] == []
    # The limit held: the next wrong guess is refused.
    refused = guess()
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "login_attempts_exceeded"
    assert int(refused.headers["retry-after"]) > 0
    # The list is cached in the new Redis: a create shows at once, then is served from cache.
    reader = readers[0][0]
    assert reader.http.post("/api/chatroom", json={"name": "after"}).status_code == 201
    missed = reader.http.get("/api/chatroom")
    hit = reader.http.get("/api/chatroom")
    assert (missed.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert missed.json() == hit.json()
    assert [room["name"] for room in hit.json()["results"]] == ["after", "faults"]
    # Replies sent after it are queued in the new Redis and answered.
    sent = {room: user.send_ok(room) for user, room in readers}
    for user, room in readers:
        assert user.finished(room, sent[room], timeout=15, watch=[worker])["status"] == "completed"
    # Two sweeps ran after the restart, and none had a reply of this case to rescue: the
    # replies were queued, not lost and found again.
    wait_until(
        lambda: _sweeps_run(worker) >= sweeps + 2, timeout=10, what="two sweeps", watch=[worker]
    )
    assert _swept(worker) & set(sent.values()) == set()
    assert worker is product.worker and worker.alive, worker.log_tail()
    assert_invariants(case)


# --- 3. Redis restarted empty while a reply streams -----------------------------------------------

STORY = " ".join(f"w{index}" for index in range(40))


def _send_a_long_story(case: Case, user: ApiUser, room: int, *, chunk_delay: float = 0.15) -> int:
    """A prompt whose reply streams in 40 chunks (6 s by default)."""
    case.product.model.script(Reply(text=STORY, chunks=40, chunk_delay=chunk_delay))
    return user.send_ok(room, "Tell me a long story")


def _restart_redis_three_chunks_into(case: Case, reply: int) -> dt.datetime:
    """Returns when Redis was back."""
    product = case.product
    assert product.worker is not None
    events = product.redis_client()
    wait_until(
        lambda: events.xlen(events_key(reply)) >= 3,
        timeout=15,
        what="the first chunks",
        watch=[product.worker],
    )
    product.redis.restart()
    return dt.datetime.now(dt.UTC)


def test_redis_restarted_mid_stream_keeps_the_worker_and_ends_the_reply_once(case: Case):
    product = case.product
    worker = product.worker
    assert worker is not None
    user = case.user()
    room = user.chatroom()

    def follow(reply: int) -> list[list[tuple[str, Any]]]:
        """The reply's stream as a client reads it: after an error, connected again (a fifth
        of a second later) until a stream ends in `done`."""
        streams = [user.stream(room, reply)]
        deadline = time.monotonic() + 20
        while streams[-1][-1][0] == "error" and time.monotonic() < deadline:
            time.sleep(0.2)
            streams.append(user.stream(room, reply))
        return streams

    traffic, _ = _readers(case, 2)
    reply = _send_a_long_story(case, user, room)
    with ThreadPoolExecutor(max_workers=1) as reader, traffic:
        following = reader.submit(follow, reply)
        restarted_at = _restart_redis_three_chunks_into(case, reply)
        polled = user.finished(room, reply, timeout=20, watch=[worker])
        streams = following.result(timeout=30)
        traffic.wait_for(30, after=time.monotonic())
    assert [a for a in case.log.answers if not 200 <= a.status < 300] == []

    assert (polled["status"], polled["content"]) == ("completed", STORY)
    # The client that followed it got everything, or errors to reconnect after, then the
    # reply's whole text, whose deltas join to the content, and `done`.
    for broken in streams[:-1]:
        assert broken[-1][0] == "error", broken
        assert broken[-1][1]["code"] == "stream_unavailable", broken
    assert streams[-1][-1] == ("done", polled)
    assert _text(streams[-1]) == STORY
    # The worker lived through it and takes the next message from the new Redis.
    product.model.script(Reply(text="Still here.", chunks=2))
    second = user.send_ok(room, "Are you still there?")
    assert user.finished(room, second, timeout=20, watch=[worker])["content"] == "Still here."
    assert worker is product.worker and worker.alive, worker.log_tail()
    assert "Unrecoverable error" not in worker.log()
    # Its heartbeat resumed: the worker probe is ready, with a beat from after the restart.
    ready = wait_until(
        lambda: _worker_readiness(product, 200),
        timeout=HEARTBEAT_MAX_AGE + 5,
        what="/readyz/worker to be 200",
        interval=0.2,
    )
    assert dt.datetime.fromisoformat(ready["last_heartbeat"]) > restarted_at
    assert_invariants(case)


def test_a_client_joining_after_redis_restarted_mid_stream_gets_the_whole_text(case: Case):
    """The new Redis holds only the chunks published after the restart: the client gets no
    delta it cannot join to the text before, and the rest of the text comes with `done`."""
    user = case.user()
    room = user.chatroom()
    reply = _send_a_long_story(case, user, room, chunk_delay=0.4)  # 16 s: it joins mid-reply
    _restart_redis_three_chunks_into(case, reply)
    events = case.product.redis_client()
    wait_until(
        lambda: events.xlen(events_key(reply)) >= 1,
        timeout=10,
        what="chunks in the new Redis",
    )
    assert user.message(room, reply)["status"] == "streaming"  # it joins mid-reply
    joined = user.stream(room, reply)
    polled = user.finished(room, reply, timeout=20)
    assert (polled["status"], polled["content"]) == ("completed", STORY)
    assert joined[-1] == ("done", polled)
    assert _text(joined) == STORY
    assert_invariants(case)


# --- 4. PostgreSQL restarted ---------------------------------------------------------------------


def test_a_postgres_restart_under_traffic_answers_no_500_and_then_only_successes(case: Case):
    users = [case.user() for _ in range(4)]
    traffic = Traffic([(user, reads_and_writes(user.chatroom())) for user in users], case.log)
    with traffic:
        traffic.wait_for(40)
        case.product.postgres.restart()
        back = time.monotonic()
        traffic.wait_for(60, after=back)

    during = [a for a in case.log.answers if a.started < back and a.status >= 400]
    assert all(a.unavailable for a in during), during
    assert [a for a in case.log.since(back) if not 200 <= a.status < 300] == []
    assert_invariants(case)


def test_the_first_requests_after_a_postgres_restart_succeed(case: Case):
    user = case.user()
    rooms = [user.chatroom() for _ in range(5)]
    # Fill the web process's pool with connections, as a busy moment leaves it.
    others = [case.user() for _ in range(8)]
    busy = Traffic([(other, reads_and_writes(other.chatroom())) for other in others], case.log)
    with busy:
        busy.wait_for(80)

    case.product.postgres.restart()  # with no request in flight: the idle connections go stale

    back = time.monotonic()
    for room in rooms:
        user.http.get(f"/api/chatroom/{room}")
        user.send(room)
        user.http.get("/api/user/me")
    first = case.log.since(back)
    assert len(first) == 3 * len(rooms)
    assert [(a.what, a.status, a.code) for a in first if not 200 <= a.status < 300] == []
    for reply, sent in user.replies.items():  # and the worker answers them
        assert user.finished(sent.room, reply, timeout=15)["status"] == "completed"
    assert_invariants(case)


# --- 5. PostgreSQL down for 10 seconds ------------------------------------------------------------

OUTAGE_SECONDS = 10
Call = tuple[httpx.Client, str, str, dict[str, Any]]  # client, method, path, arguments


def test_a_10_s_postgres_outage_answers_503_fast_and_the_reply_in_flight_completes(case: Case):
    product = case.product
    web, worker = product.web, product.worker
    assert web is not None and worker is not None
    user = case.user()
    room = user.chatroom()
    hello = user.send_ok(room, "Hello")
    user.finished(room, hello, timeout=15)
    probe = case.client()

    # A reply that streams through the whole outage, with a client following it.
    follower = case.user()
    follower_room = follower.chatroom()
    story = " ".join(f"w{index}" for index in range(60))
    product.model.script(Reply(text=story, chunks=60, chunk_delay=0.25))  # 15 s
    in_flight = follower.send_ok(follower_room, "Count to sixty")
    events = product.redis_client()
    others = [case.user() for _ in range(3)]
    traffic = Traffic([(o, reads_and_writes(o.chatroom())) for o in others], case.log, pause=0.1)

    calls: list[Call] = [
        (user.http, "GET", "/api/user/me", {}),
        (user.http, "GET", "/api/chatroom", {}),
        (user.http, "GET", f"/api/chatroom/{room}", {}),
        (user.http, "POST", "/api/chatroom", {"json": {"name": "down"}}),
        (user.http, "POST", f"/api/chatroom/{room}/message", {"json": {"content": "Again"}}),
        # The async stream view, served outside the WSGI path.
        (user.http, "GET", f"/api/chatroom/{room}/message/{hello}/stream", {}),
        # No authentication, straight to a view that writes.
        (probe, "POST", "/api/auth/send-otp", {"json": {"phone": "+919811111111"}}),
    ]
    # Then three times as many calls at once as the web process has threads: none may queue
    # behind the others for long.
    page: Call = (user.http, "GET", f"/api/chatroom/{room}/messages", {})
    crowd = [page] * 3 * WEB_THREADS

    def call(spec: Call) -> int:
        client, method, path, kwargs = spec
        return client.request(method, path, **kwargs).status_code

    with ThreadPoolExecutor(max_workers=1) as reader, traffic:
        following = reader.submit(follower.stream, follower_room, in_flight)
        wait_until(
            lambda: events.xlen(events_key(in_flight)) >= 3,
            timeout=15,
            what="the first chunks",
            watch=[worker],
        )
        traffic.wait_for(20)
        # No cached user or list: authentication itself needs the database.
        for key in events.scan_iter(f"{CACHE_PREFIX}:*"):
            events.delete(key)
        product.postgres.stop()
        stopped = time.monotonic()
        chunks_before = events.xlen(events_key(in_flight))
        with ThreadPoolExecutor(max_workers=len(crowd)) as threads:
            pending = [threads.submit(call, spec) for spec in calls]
            ready = probe.get("/readyz")
            ready_seconds = time.monotonic() - stopped
            assert [future.result() for future in pending] == [503] * len(calls)
            assert list(threads.map(call, crowd)) == [503] * len(crowd)
        _hold(stopped + OUTAGE_SECONDS - 1, processes=[web, worker])
        still = probe.get("/readyz")
        _hold(stopped + OUTAGE_SECONDS, processes=[web, worker])
        chunks_during = events.xlen(events_key(in_flight)) - chunks_before
        starting = time.monotonic()
        product.postgres.start()
        # Back by itself: no process was restarted.
        wait_until(
            lambda: user.http.get("/api/user/me").status_code == 200,
            timeout=CONNECT_TIMEOUT + 5,
            what="the API to answer again",
            interval=0.1,
        )
        recovered = time.monotonic()
        traffic.wait_for(30, after=recovered)
        seen = following.result(timeout=30)

    outage = [a for a in case.log.since(stopped) if a.started + a.seconds < starting]
    refused = [a for a in outage if a.what != "GET /readyz"]
    assert len(refused) > len(calls) + len(crowd)
    assert [a for a in refused if not a.unavailable] == []
    assert all(int(a.retry_after or 0) > 0 for a in refused)
    # Once the product knows the database is down (its first 503), a request is refused at
    # once, or waits one connect timeout when it is the one that probes for the database.
    known = min(a.started + a.seconds for a in refused)
    slowest = max((a for a in refused if a.started >= known), key=lambda a: a.seconds)
    assert slowest.seconds < CONNECT_TIMEOUT + MARGIN, slowest
    # Before it knows, every request in flight waits for a connection, holding a web thread;
    # with more requests than threads, one may first wait for a thread: twice as long at most.
    slowest = max(refused, key=lambda a: a.seconds)
    assert slowest.seconds < 2 * CONNECT_TIMEOUT + MARGIN, slowest
    for answer in (ready, still):
        assert answer.status_code == 503
        assert answer.json()["down"] == ["postgres"]
    assert ready_seconds < 2
    assert [a for a in case.log.since(recovered) if not 200 <= a.status < 300] == []
    assert (web.alive, worker.alive) == (True, True)
    assert (product.web, product.worker) == (web, worker)

    # The reply generated across the outage went on streaming through it (4 chunks a second),
    # completed once, and its follower saw all of it.
    assert chunks_during >= 2 * OUTAGE_SECONDS, chunks_during
    polled = follower.finished(follower_room, in_flight, timeout=20)
    assert (polled["status"], polled["content"]) == ("completed", story)
    assert seen[-1] == ("done", polled)
    assert _text(seen) == story
    # A reply sent after it is claimed on a fresh connection, and streams to its end.
    product.model.script(Reply(text="Still here.", chunks=2))
    after = follower.send_ok(follower_room, "Still there?")
    streamed = follower.stream(follower_room, after)
    assert (streamed[-1][1]["status"], _text(streamed)) == ("completed", "Still here.")
    # What was refused left nothing behind; what was stored before is all there.
    again = [
        user.http.get(f"/api/chatroom/{room}").status_code,
        user.http.post("/api/chatroom", json={"name": "up"}).status_code,
        probe.get("/readyz").status_code,
    ]
    assert again == [200, 201, 200]
    messages = user.http.get(f"/api/chatroom/{room}").json()["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        ("user", "Hello", "completed"),
        ("model", "Echo: Hello", "completed"),
    ]
    names = [chatroom["name"] for chatroom in user.http.get("/api/chatroom").json()["results"]]
    assert names == ["up", "faults"]
    assert_invariants(case)


# --- 6. Chunked request bodies --------------------------------------------------------------------
# HTTP/1.1 clients and proxies send bodies with `Transfer-Encoding: chunked` and no
# Content-Length: read, limited to 1 MiB, parsed and validated like any other.

JSON = {"Content-Type": "application/json"}


def _chunked(*parts: bytes) -> Iterator[bytes]:
    """A body httpx sends with `Transfer-Encoding: chunked`, one chunk per part."""
    yield from parts


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def _names(user: ApiUser) -> list[str | None]:
    """The user's chatrooms as they see them, newest first."""
    return [room["name"] for room in user.http.get("/api/chatroom").json()["results"]]


def test_a_chunked_json_body_is_parsed(case: Case):
    user = case.user()
    response = user.http.post(
        "/api/chatroom",
        content=_chunked(b'{"na', b'me": "n", "system_', b'prompt": "p"}'),
        headers=JSON,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["system_prompt"]) == ("n", "p")
    assert _names(user) == ["n"]
    assert_invariants(case)


def test_a_chunked_body_that_is_not_json_is_a_400(case: Case):
    user = case.user()
    response = user.http.post("/api/chatroom", content=_chunked(b'{"name": ', b'"n"'), headers=JSON)
    assert response.status_code == 400
    assert _code(response) == "malformed_json"
    assert _names(user) == []
    assert_invariants(case)


def test_a_chunked_body_of_another_type_is_a_415(case: Case):
    user = case.user()
    response = user.http.post(
        "/api/chatroom", content=_chunked(b"name=n"), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert _code(response) == "unsupported_media_type"
    assert _names(user) == []
    assert_invariants(case)


def test_a_chunked_body_is_validated(case: Case):
    user = case.user()
    response = user.http.post("/api/chatroom", content=_chunked(b'{"name": 123}'), headers=JSON)
    assert response.status_code == 400
    assert _code(response) == "validation_error"
    assert _names(user) == []
    assert_invariants(case)


def test_a_chunked_patch_of_the_profile_changes_it(case: Case):
    user = case.user()
    response = user.http.patch(
        "/api/user/me", content=_chunked(b'{"name": "Chunked', b' Name"}'), headers=JSON
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Chunked Name"
    assert user.me()["name"] == "Chunked Name"
    assert_invariants(case)


def test_the_stripe_webhook_verifies_a_chunked_body_byte_for_byte(case: Case):
    event = {
        "id": "evt_chunked_1",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_chunked", "object": "customer", "name": "Zoë \u2713"}},
    }
    # Stripe's own spacing, bytes outside ASCII, and chunk edges inside a multi-byte letter.
    payload = json.dumps(event, indent=2, ensure_ascii=False).encode() + b"\n"
    split = payload.index("ë".encode()) + 1
    stripe = case.client()
    response = stripe.post(
        "/api/webhook/stripe",
        content=_chunked(payload[:split], payload[split : split + 7], payload[split + 7 :]),
        headers={**JSON, "Stripe-Signature": sign_payload(payload, secret=WEBHOOK_SECRET)},
    )
    assert response.status_code == 200, response.text
    stored = case.product.sql(
        f"SELECT payload FROM {StripeEvent._meta.db_table} WHERE stripe_event_id = %(id)s",  # noqa: S608
        {"id": event["id"]},
    )
    assert stored == [(event,)]
    assert_invariants(case)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length, read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in header_lines)
    }
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the response body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _head(url: str, path: str, token: str, *lines: str) -> bytes:
    return (
        "\r\n".join(
            [
                f"POST {path} HTTP/1.1",
                f"Host: {url.removeprefix('http://')}",
                f"Authorization: Bearer {token}",
                "Content-Type: application/json",
                *lines,
            ]
        )
        + "\r\n\r\n"
    ).encode()


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _frame(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_10_mib_chunked_body_is_refused_as_soon_as_it_passes_1_mib(case: Case):
    user, url = case.user(), case.product.url
    piece = _frame(b"x" * (64 * 1024))
    with _connect(url) as sock:
        sock.sendall(_head(url, "/api/chatroom", user.access, "Transfer-Encoding: chunked"))
        sock.sendall(_frame(b'{"name": "big", "system_prompt": "'))
        sent = 0
        while sent <= MIB + 64 * 1024:
            sock.sendall(piece)
            sent += 64 * 1024
        # The server answers now, with 9 of the 10 MiB not even sent: it did not wait for them.
        status, headers, body = _read_response(sock)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert headers["content-type"] == "application/json"
        # The rest of the 10 MiB is drained and dropped, and the connection still works.
        while sent < 10 * MIB:
            sock.sendall(piece)
            sent += 64 * 1024
        sock.sendall(_frame(b'"}') + b"0\r\n\r\n")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_response(sock)[0] == 200
    assert _names(user) == []
    assert_invariants(case)


def test_the_limit_is_1_mib_exactly(case: Case):
    user = case.user()
    document = b'{"name": "edge"}'
    padding = b" " * (MIB - len(document))  # JSON allows trailing whitespace
    at_limit = user.http.post(
        "/api/chatroom",
        content=_chunked(document, padding[: MIB // 2], padding[MIB // 2 :]),
        headers=JSON,
    )
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["name"] == "edge"
    over = user.http.post("/api/chatroom", content=_chunked(document, padding, b" "), headers=JSON)
    assert over.status_code == 413
    assert _code(over) == "payload_too_large"
    assert _names(user) == ["edge"]
    assert_invariants(case)


def test_a_body_with_a_content_length_is_served_as_before(case: Case):
    user = case.user()
    created = user.http.post("/api/chatroom", json={"name": "counted"})
    assert created.status_code == 201
    assert created.json()["name"] == "counted"
    too_big = user.http.post("/api/chatroom", content=b" " * (MIB + 1), headers=JSON)
    assert too_big.status_code == 413
    assert _code(too_big) == "payload_too_large"
    assert _names(user) == ["counted"]
    assert_invariants(case)


def test_a_body_shorter_than_its_content_length_is_never_served(case: Case):
    user, url = case.user(), case.product.url
    body = b'{"name": "truncated"}'
    with _connect(url) as sock:
        sock.sendall(_head(url, "/api/chatroom", user.access, f"Content-Length: {len(body) + 100}"))
        sock.sendall(body)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):  # the server waits for the rest
            sock.recv(65536)
        sock.settimeout(10)
        sock.shutdown(socket.SHUT_WR)  # the client gives up before the body is complete
        while sock.recv(65536):
            pass
    # An incomplete request served anyway would show in the list soon after.
    _never(lambda: _names(user) != [], seconds=0.5, what="the truncated chatroom was stored")
    assert_invariants(case)


def test_a_body_with_both_a_content_length_and_chunks_is_refused(case: Case):
    # A request smuggling pattern: uvicorn's parser answers 400 before the application runs.
    user, url = case.user(), case.product.url
    with _connect(url) as sock:
        both = ("Content-Length: 4", "Transfer-Encoding: chunked")
        sock.sendall(_head(url, "/api/chatroom", user.access, *both))
        sock.sendall(_frame(b'{"name": "both"}') + b"0\r\n\r\n")
        status, _headers, _body = _read_response(sock)
    assert status == 400
    assert _names(user) == []
    assert_invariants(case)
