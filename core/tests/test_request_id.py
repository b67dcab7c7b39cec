"""`X-Request-ID` on every response, and one log line per request that carries it
(`core.request_log`), whichever layer answered: the body reader, Django, an async view."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator

from gemini_clone.asgi import application

pytestmark = pytest.mark.django_db

NEW_ID_LENGTH = 32  # a uuid4 in hex


def _serve(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    sent: list[MutableMapping[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(application(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = [(n.decode(), v.decode()) for n, v in start["headers"]]
    ids = [value for name, value in response_headers if name == "x-request-id"]
    assert len(ids) == 1, response_headers
    return {"status": start["status"], "request_id": ids[0]}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/api/chatroom", [(b"content-length", str(2 << 20).encode())], 413),
        ("GET", "/api/no-such-route", [], 404),
        ("GET", "/api/chatroom", [], 401),
        ("GET", "/api/chatroom/1/message/1/stream", [], 401),  # the async view
        ("GET", "/admin/login/", [], 200),
        ("GET", "/healthz", [], 200),
    ],
)
def test_every_response_carries_the_clients_usable_id(method, path, headers, status):
    answer = _serve(method, path, [*headers, (b"x-request-id", b"client-chosen_id.7")])
    assert answer == {"status": status, "request_id": "client-chosen_id.7"}


@pytest.mark.parametrize(
    "unusable", [b"", b"has space", b"semi;colon", "café".encode(), b"a" * 201]
)
def test_an_unusable_client_id_is_replaced_by_a_new_one(unusable):
    answer = _serve("GET", "/healthz", [(b"x-request-id", unusable)])
    assert len(answer["request_id"]) == NEW_ID_LENGTH
    assert answer["request_id"].encode() != unusable


def test_the_longest_usable_id_is_kept_and_requests_without_one_get_distinct_ids():
    assert _serve("GET", "/healthz", [(b"x-request-id", b"a" * 200)])["request_id"] == "a" * 200
    first, second = (_serve("GET", "/healthz", [])["request_id"] for _ in range(2))
    assert first != second


def test_each_request_writes_one_line_with_its_route_status_and_id(caplog):
    caplog.set_level(logging.INFO, logger="gemini_clone.request")
    _serve("GET", "/api/chatroom/12", [(b"x-request-id", b"line-1")])
    _serve("POST", "/api/chatroom", [(b"content-length", str(2 << 20).encode())])
    lines = [r.msg for r in caplog.records if r.name == "gemini_clone.request"]
    assert len(lines) == 2
    first, refused = lines
    assert first["event"] == "request"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/chatroom/12", 401)
    assert first["route"] == "api/chatroom/<int:chatroom_id>"
    assert first["request_id"] == "line-1"
    assert first["user_id"] is None
    # Refused before Django ran: no route, but a line and an id all the same.
    assert (refused["status"], refused["route"]) == (413, None)
    assert len(refused["request_id"]) == NEW_ID_LENGTH


def test_the_schema_documents_the_header_on_every_response():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    responses = [
        response
        for operations in schema["paths"].values()
        for operation in operations.values()
        for response in operation["responses"].values()
    ]
    assert len(responses) > 50
    assert all("X-Request-ID" in response["headers"] for response in responses)


def test_a_number_in_a_path_no_route_knows_is_masked_in_the_line(caplog):
    caplog.set_level(logging.INFO, logger="gemini_clone.request")
    _serve("GET", "/api/user/+919812345678/history", [])
    _serve("GET", "/api/chatroom/12345678", [])

    unknown, routed = (r.msg for r in caplog.records if r.name == "gemini_clone.request")
    assert unknown["path"] == "/api/user/+**********78/history"
    # A known route, but refused (401) before any id was looked up: the client's text too.
    assert routed["path"] == "/api/chatroom/******78"


def test_a_catch_all_route_masks_the_number_and_control_characters_are_escaped(caplog):
    caplog.set_level(logging.INFO, logger="gemini_clone.request")
    # The admin's catch-all matches any path under /admin/: the client's text, not our ids.
    _serve("GET", "/admin/+919812345678/", [])
    _serve("GET", "/api/x\n2026-12-04 [info] forged\u2028line\x9b\\u000a", [])

    admin, forged = (r.msg for r in caplog.records if r.name == "gemini_clone.request")
    assert admin["route"] is not None
    assert admin["path"] == "/admin/+**********78/"
    assert forged["path"] == (
        "/api/x\\u000a2026-12-04 [info] forged\\u2028line\\u009b\\\\u000a"
    )  # the client's own backslash doubled: it cannot pass for an escape


def test_a_foreign_lines_extra_fields_other_than_the_status_stay_out(capsys, settings):
    from django.test import RequestFactory

    from core.logging_config import logging_settings

    config = logging_settings(log_format="json", level="INFO")
    formatter_spec = dict(config["formatters"]["structured"])
    formatter = formatter_spec.pop("()")(**formatter_spec)
    record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Boom", (), None)
    record.request = RequestFactory().get("/api/chatroom?phone=%2B919812345678")
    record.status_code = 500
    record.data = {"args": ["+919812345678"]}  # as Celery's own lines carry a task's arguments

    line = formatter.format(record)
    assert '"status_code": 500' in line
    assert "9812345678" not in line


@pytest.mark.django_db(transaction=True)  # the bridge's thread reads the user committed
def test_an_id_that_is_not_found_on_a_known_route_is_masked_like_the_clients_text(caplog):
    from accounts.tests.factories import UserFactory
    from accounts.tokens import token_pair_issue

    caplog.set_level(logging.INFO, logger="gemini_clone.request")
    token = token_pair_issue(user=UserFactory()).access
    _serve("GET", "/api/chatroom/919812345678", [(b"authorization", f"Bearer {token}".encode())])

    (line,) = (r.msg for r in caplog.records if r.name == "gemini_clone.request")
    assert (line["status"], line["path"]) == (404, "/api/chatroom/**********78")
