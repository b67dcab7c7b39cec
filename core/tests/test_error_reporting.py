"""Sentry is on only with SENTRY_DSN, and what it sends carries no personal data or secret.

A project's process (`manage.py shell`, which loads the settings as the web and the worker
do) reports to a local HTTP server that speaks Sentry's envelope endpoint; the test reads
what arrived.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHONE = "+919876543210"
PASSWORD = "plum-Orbit-8-lantern"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"

# Fails the way a view or a task would, with personal data in its locals and its message
# (from the environment: a literal would be in the frames' source lines, which real code's
# data never is).
PROGRAM = """
import logging
import os
import sentry_sdk

def reply_for(phone, password, access):
    raise RuntimeError("no reply for " + phone + " holding " + access)

try:
    reply_for(os.environ["T_PHONE"], os.environ["T_PASSWORD"], os.environ["T_JWT"])
except RuntimeError:
    logging.getLogger("chatrooms.replies").exception("Reply crashed for %s", os.environ["T_PHONE"])
print("active", sentry_sdk.get_client().is_active())
sentry_sdk.flush(10)
"""


class _Envelopes(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sentry_server() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    handler = type("Handler", (_Envelopes,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_port}/42", received
    server.shutdown()
    server.server_close()


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    environment.update(env, T_PHONE=PHONE, T_PASSWORD=PASSWORD, T_JWT=JWT)
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PROGRAM],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _events(envelopes: list[bytes]) -> list[dict]:
    events = []
    for envelope in envelopes:
        lines = envelope.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                events.append(json.loads(payload))
    return events


def test_an_error_is_reported_without_personal_data(sentry_server):
    dsn, received = sentry_server

    result = _run(SENTRY_DSN=dsn, SENTRY_ENVIRONMENT="test")

    assert "active True" in result.stdout, result.stderr
    events = _events(received)
    assert len(events) == 1, received
    event = events[0]
    assert event["environment"] == "test"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    assert event["logentry"]["message"] == "Reply crashed for %s"
    frame = event["exception"]["values"][-1]["stacktrace"]["frames"][-1]
    assert frame["function"] == "reply_for"
    sent = json.dumps(event)
    assert "+91******3210" in sent  # masked, still telling numbers apart
    for secret in (PHONE, PASSWORD, JWT, "9876543210"):
        assert secret not in sent


def test_without_a_dsn_nothing_is_reported(sentry_server):
    _, received = sentry_server

    result = _run()

    assert "active False" in result.stdout, result.stderr
    assert received == []
