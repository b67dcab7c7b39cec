"""Users of a running product over HTTP, every answer they get on record.

    log = AnswerLog()
    alice = ApiUser(url=stack.url, log=log)        # a new account, signed in by OTP
    room = alice.chatroom()
    reply = alice.send_ok(room)                    # 202; the reply is remembered
    alice.finished(room, reply, timeout=10)        # polled until it ends
    alice.stream(room, reply)                      # its SSE events, until done or error
    with Traffic([(alice, reads_and_writes(room))]):  # calls in a loop, on a thread each
        ...
    log.answers                                    # status, error code, Retry-After, timing

The log is what the suite judges the product by: what a user saw, not what the code did.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from testing.e2e import ManagedProcess, sse_parse, wait_until

_phones = itertools.count(1)
_prompts = itertools.count(1)

IN_FLIGHT = {"pending", "streaming"}


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request was sent
    seconds: float  # until its status line and headers arrived
    what: str
    status: int
    code: str | None  # the error code of a JSON error body
    content_type: str
    retry_after: str | None

    @property
    def unavailable(self) -> bool:
        """The product's answer to a dependency that is down: a 503 that says when to retry."""
        return self.status == 503 and self.code == "service_unavailable" and bool(self.retry_after)


class AnswerLog:
    """Every answer the clients built with `hooks()` received, in the order they came."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self._sent_at: dict[int, float] = {}

    @property
    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def since(self, moment: float) -> list[Answer]:
        return [answer for answer in self.answers if answer.started >= moment]

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self._sent], "response": [self._received]}

    def _sent(self, request: httpx.Request) -> None:
        with self._lock:
            self._sent_at[id(request)] = time.monotonic()

    def _received(self, response: httpx.Response) -> None:
        now = time.monotonic()
        code = None
        content_type = response.headers.get("content-type", "")
        if response.status_code >= 400:
            response.read()  # error bodies are small, streamed or not
            if content_type == "application/json":
                code = response.json().get("error", {}).get("code")
        request = response.request
        with self._lock:
            started = self._sent_at.pop(id(request), now)
            self._answers.append(
                Answer(
                    started=started,
                    seconds=now - started,
                    what=f"{request.method} {request.url.path}",
                    status=response.status_code,
                    code=code,
                    content_type=content_type,
                    retry_after=response.headers.get("retry-after"),
                )
            )


@dataclass(frozen=True)
class Sent:
    """A prompt a user sent, and where its reply lives."""

    room: int
    prompt: str


class ApiUser:
    """A new account, signed in over HTTP, that remembers every reply its sends created."""

    def __init__(self, *, url: str, log: AnswerLog, timeout: float = 30) -> None:
        self.http = httpx.Client(base_url=url, timeout=timeout, event_hooks=log.hooks())
        self.phone = f"+9198{next(_phones):08d}"
        self.replies: dict[int, Sent] = {}
        sent = self.http.post("/api/auth/send-otp", json={"phone": self.phone})
        assert sent.status_code == 200, sent.text
        verified = self.http.post(
            "/api/auth/verify-otp", json={"phone": self.phone, "otp": sent.json()["otp"]}
        )
        assert verified.status_code == 200, verified.text
        self.access = verified.json()["access"]
        self.http.headers["Authorization"] = f"Bearer {self.access}"

    def set_password(self, password: str) -> None:
        """Give the account a password (it has none); the tokens before are revoked."""
        response = self.http.post("/api/auth/change-password", json={"new_password": password})
        assert response.status_code == 200, response.text
        self.access = response.json()["access"]
        self.http.headers["Authorization"] = f"Bearer {self.access}"

    def chatroom(self, name: str = "faults") -> int:
        response = self.http.post("/api/chatroom", json={"name": name})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def send(self, room: int, content: str | None = None) -> httpx.Response:
        """POST a message (a prompt of its own unless `content` is given); a 202's reply is
        remembered, whatever the test does with the answer."""
        prompt = content if content is not None else f"Prompt number {next(_prompts)}"
        response = self.http.post(f"/api/chatroom/{room}/message", json={"content": prompt})
        if response.status_code == 202:
            self.replies[int(response.json()["reply"]["id"])] = Sent(room=room, prompt=prompt)
        return response

    def send_ok(self, room: int, content: str | None = None) -> int:
        response = self.send(room, content)
        assert response.status_code == 202, response.text
        return int(response.json()["reply"]["id"])

    def message(self, room: int, message: int) -> dict[str, Any]:
        response = self.http.get(f"/api/chatroom/{room}/message/{message}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def finished(
        self, room: int, reply: int, *, timeout: float, watch: list[ManagedProcess] | None = None
    ) -> dict[str, Any]:
        """The reply once it has ended, polled; answers other than 200 are polled through.
        Fails at once if a `watch` process (the worker) dies meanwhile."""

        def ended() -> dict[str, Any] | None:
            response = self.http.get(f"/api/chatroom/{room}/message/{reply}")
            if response.status_code != 200:
                return None
            body: dict[str, Any] = response.json()
            return body if body["status"] not in IN_FLIGHT else None

        return wait_until(
            ended, timeout=timeout, what=f"reply {reply} to end", interval=0.1, watch=watch
        )

    def stream(self, room: int, reply: int) -> list[tuple[str, Any]]:
        """The reply's SSE events, keep-alives left out, until `done` or `error`."""
        events = []
        with self.http.stream("GET", f"/api/chatroom/{room}/message/{reply}/stream") as response:
            assert response.status_code == 200, response.read()
            for name, data in sse_parse(response.iter_lines()):
                if name == "comment":
                    continue
                events.append((name, data))
                if name in {"done", "error"}:
                    break
        return events

    def me(self) -> dict[str, Any]:
        response = self.http.get("/api/user/me")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


Calls = Callable[[ApiUser], None]


def reads_and_writes(room: int) -> Calls:
    """What a user does between prompts: read the chatroom, rename it, read their account."""

    def calls(user: ApiUser) -> None:
        user.http.get(f"/api/chatroom/{room}")
        user.http.patch(f"/api/chatroom/{room}", json={"name": f"n{time.time()}"})
        user.http.get("/api/user/me")

    return calls


@dataclass
class Traffic:
    """Users calling the API in a loop, each on a thread of its own, a round every `pause`
    seconds at most (light traffic: the machine is shared). The answers go to the users' log."""

    users: list[tuple[ApiUser, Calls]]
    log: AnswerLog
    pause: float = 0.02
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _errors: list[BaseException] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        for user, calls in self.users:
            thread = threading.Thread(target=self._loop, args=(user, calls), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        if exc_type is None:
            assert not self._errors, f"requests left unanswered: {self._errors}"

    def _loop(self, user: ApiUser, calls: Calls) -> None:
        while not self._stop.is_set():
            try:
                calls(user)
            except httpx.HTTPError as exc:  # a request the server never answered
                self._errors.append(exc)
                return
            self._stop.wait(self.pause)

    def wait_for(self, count: int, *, after: float = 0.0, timeout: float = 20) -> None:
        """Until `count` answers to requests sent after `after` have come."""
        wait_until(
            lambda: len(self.log.since(after)) >= count,
            timeout=timeout,
            what=f"{count} answers",
        )
