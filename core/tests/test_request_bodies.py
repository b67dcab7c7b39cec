"""Request bodies over real HTTP to uvicorn: chunked bodies are read, limited, parsed and
validated exactly like bodies with a Content-Length, and an incomplete body is never served."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import UserFactory
from billing.models import StripeEvent
from chatrooms.models import Chatroom
from testing.e2e import Stack, process_env
from testing.fake_stripe import sign_payload

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MIB = 1 << 20
WEBHOOK_SECRET = "whsec_request_bodies_test"


@pytest.fixture(scope="module")
def server(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One uvicorn for the module, on the test database; stopped before it is dropped."""
    stack = Stack(
        env=process_env(STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET),
        log_dir=tmp_path_factory.mktemp("web"),
    )
    try:
        stack.start_web()
        stack.wait_ready()
        yield stack.url
    finally:
        stack.close()


@pytest.fixture
def user() -> User:
    return UserFactory.create()


@pytest.fixture
def client(server: str, user: User) -> Iterator[httpx.Client]:
    token = str(AccessToken.for_user(user))
    with httpx.Client(
        base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=20
    ) as http:
        yield http


def chunked(*parts: bytes) -> Iterator[bytes]:
    """A body httpx sends with `Transfer-Encoding: chunked`, one chunk per part."""
    yield from parts


JSON = {"Content-Type": "application/json"}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- Chunked bodies are read like any other ---------------------------------------------------


def test_a_chunked_json_body_is_parsed(client: httpx.Client, user: User):
    response = client.post(
        "/api/chatroom",
        content=chunked(b'{"na', b'me": "n", "system_', b'prompt": "p"}'),
        headers=JSON,
    )
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["system_prompt"]) == ("n", "p")
    assert Chatroom.objects.get(user=user).name == "n"


def test_a_chunked_body_that_is_not_json_is_a_400(client: httpx.Client, user: User):
    response = client.post("/api/chatroom", content=chunked(b'{"name": ', b'"n"'), headers=JSON)
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"
    assert not Chatroom.objects.filter(user=user).exists()


def test_a_chunked_body_of_another_type_is_a_415(client: httpx.Client, user: User):
    response = client.post(
        "/api/chatroom", content=chunked(b"name=n"), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"
    assert not Chatroom.objects.filter(user=user).exists()


def test_a_chunked_body_is_validated(client: httpx.Client, user: User):
    response = client.post("/api/chatroom", content=chunked(b'{"name": 123}'), headers=JSON)
    assert response.status_code == 400
    assert error_code(response) == "validation_error"
    assert not Chatroom.objects.filter(user=user).exists()


def test_a_chunked_patch_of_the_profile_changes_it(client: httpx.Client, user: User):
    response = client.patch(
        "/api/user/me", content=chunked(b'{"name": "Chunked', b' Name"}'), headers=JSON
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Chunked Name"
    user.refresh_from_db()
    assert user.name == "Chunked Name"


def test_the_stripe_webhook_verifies_a_chunked_body_byte_for_byte(server: str):
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
    signature = sign_payload(payload, secret=WEBHOOK_SECRET)
    response = httpx.post(
        f"{server}/api/webhook/stripe",
        content=chunked(payload[:split], payload[split : split + 7], payload[split + 7 :]),
        headers={**JSON, "Stripe-Signature": signature},
    )
    assert response.status_code == 200, response.text
    stored = StripeEvent.objects.get(stripe_event_id="evt_chunked_1")
    assert stored.payload == event


# --- The 1 MiB limit -----------------------------------------------------------------------------


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


def _head(server: str, path: str, token: str, *lines: str) -> bytes:
    host = server.removeprefix("http://")
    return (
        "\r\n".join(
            [
                f"POST {path} HTTP/1.1",
                f"Host: {host}",
                f"Authorization: Bearer {token}",
                "Content-Type: application/json",
                *lines,
            ]
        )
        + "\r\n\r\n"
    ).encode()


def _connect(server: str) -> socket.socket:
    host, port = server.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _frame(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_10_mib_chunked_body_is_refused_as_soon_as_it_passes_1_mib(server: str, user: User):
    token = str(AccessToken.for_user(user))
    piece = _frame(b"x" * (64 * 1024))
    with _connect(server) as sock:
        sock.sendall(_head(server, "/api/chatroom", token, "Transfer-Encoding: chunked"))
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
    assert not Chatroom.objects.exists()


def test_the_limit_is_1_mib_exactly(client: httpx.Client, user: User):
    document = b'{"name": "edge"}'
    padding = b" " * (MIB - len(document))  # JSON allows trailing whitespace
    at_limit = client.post(
        "/api/chatroom",
        content=chunked(document, padding[: MIB // 2], padding[MIB // 2 :]),
        headers=JSON,
    )
    assert at_limit.status_code == 201, at_limit.text
    assert at_limit.json()["name"] == "edge"
    over = client.post("/api/chatroom", content=chunked(document, padding, b" "), headers=JSON)
    assert over.status_code == 413
    assert error_code(over) == "payload_too_large"
    assert Chatroom.objects.filter(user=user).count() == 1


# --- Content-Length bodies ---------------------------------------------------------------------


def test_a_body_with_a_content_length_is_served_as_before(client: httpx.Client, user: User):
    created = client.post("/api/chatroom", json={"name": "counted"})
    assert created.status_code == 201
    assert created.json()["name"] == "counted"
    too_big = client.post("/api/chatroom", content=b" " * (MIB + 1), headers=JSON)
    assert too_big.status_code == 413
    assert error_code(too_big) == "payload_too_large"
    assert list(Chatroom.objects.values_list("name", flat=True)) == ["counted"]


def test_a_body_shorter_than_its_content_length_is_never_served(server: str, user: User):
    token = str(AccessToken.for_user(user))
    body = b'{"name": "truncated"}'
    with _connect(server) as sock:
        sock.sendall(_head(server, "/api/chatroom", token, f"Content-Length: {len(body) + 100}"))
        sock.sendall(body)
        time.sleep(0.3)  # the server has read what came so far and waits for the rest
        sock.shutdown(socket.SHUT_WR)  # the client gives up before the body is complete
        while sock.recv(65536):
            pass
    time.sleep(0.5)  # an incomplete request that was served anyway would be stored by now
    assert not Chatroom.objects.exists()


def test_a_body_with_both_a_content_length_and_chunks_is_refused(server: str, user: User):
    # A request smuggling pattern: uvicorn's parser answers 400 before the application runs.
    token = str(AccessToken.for_user(user))
    with _connect(server) as sock:
        sock.sendall(
            _head(server, "/api/chatroom", token, "Content-Length: 4", "Transfer-Encoding: chunked")
        )
        sock.sendall(_frame(b'{"name": "both"}') + b"0\r\n\r\n")
        status, _headers, _body = _read_response(sock)
    assert status == 400
    assert not Chatroom.objects.exists()
