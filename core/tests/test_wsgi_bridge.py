"""The WSGI environ the bridge builds from an ASGI scope (core/wsgi_bridge.py)."""

import json

import pytest
from asgiref.sync import async_to_sync

from core.wsgi_bridge import WSGIBridge, wsgi_environ


def _scope(**overrides):
    scope = {
        "type": "http",
        "method": "POST",
        "http_version": "1.1",
        "scheme": "https",
        "path": "/api/chatroom/é",
        "root_path": "",
        "query_string": b"limit=5&cursor=a%20b",
        "server": ("api.example", 443),
        "client": ("203.0.113.7", 51000),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"x-forwarded-for", b"198.51.100.1"),
            (b"accept", b"application/json"),
            (b"accept", b"text/plain"),
        ],
    }
    scope.update(overrides)
    return scope


def test_the_environ_carries_the_request_as_pep_3333_says():
    environ = wsgi_environ(_scope(), b"{}")
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/api/chatroom/é".encode().decode("latin-1")
    assert environ["QUERY_STRING"] == "limit=5&cursor=a%20b"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("api.example", "443")
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "2")
    assert environ["HTTP_ACCEPT"] == "application/json,text/plain"
    assert environ["wsgi.input"].read() == b"{}"


def test_header_names_with_underscores_are_dropped_so_they_cannot_pose_as_others():
    headers = [(b"x-forwarded-for", b"198.51.100.1"), (b"x_forwarded_for", b"9.9.9.9")]
    environ = wsgi_environ(_scope(headers=headers), b"")
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.1"


def test_a_root_path_becomes_the_script_name():
    environ = wsgi_environ(_scope(root_path="/v1", path="/v1/api/user/me"), b"")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/v1", "/api/user/me")


@pytest.mark.django_db
def test_an_application_that_fails_outside_its_handler_answers_the_json_500():
    def broken(environ, start_response):
        raise RuntimeError("a request_started receiver failed")

    bridge = WSGIBridge(broken, threads=1)
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.disconnect"}

    async_to_sync(bridge)(_scope(), receive, send)
    assert sent[0]["status"] == 500
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "server_error"


def test_a_thread_keeps_djangos_caches_across_requests_and_gets_each_requests_own_id():
    from django.core.cache import caches

    from core.request_context import request_id_var

    seen = []

    def app(environ, start_response):
        seen.append((id(caches["default"]), request_id_var.get()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    bridge = WSGIBridge(app, threads=1)

    async def serve(request_id):
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            raise AssertionError("the bridge reads the body from the scope")

        token = request_id_var.set(request_id)
        try:
            await bridge(_scope(method="GET"), receive, send)
        finally:
            request_id_var.reset(token)
        return sent[0]["status"]

    assert [async_to_sync(serve)(rid) for rid in ("first", "second")] == [200, 200]
    (first_cache, first_id), (second_cache, second_id) = seen
    # Built once for the thread, not once per request (a new Redis client each time).
    assert first_cache == second_cache
    assert (first_id, second_id) == ("first", "second")
    left_behind = bridge.executor.submit(lambda: _thread_context_value(request_id_var)).result()
    assert left_behind is None


def _thread_context_value(var):
    from core.wsgi_bridge import _thread_context

    return _thread_context().run(var.get)
