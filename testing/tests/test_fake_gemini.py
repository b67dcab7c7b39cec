"""The fake Gemini server: its wire format, its control API and its capacity."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from chatrooms.ai.base import TextDelta, Turn
from chatrooms.ai.registry import get_model
from testing.fake_gemini import FakeGemini, Reply, reply_json, split_text

ROOT = Path(__file__).resolve().parents[2]
QUESTION = {"contents": [{"role": "user", "parts": [{"text": "Ping?"}]}]}


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


def post(fake_url: str, path: str, body: object, key: str | None) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key else {}
    return httpx.post(f"{fake_url}{path}", json=body, headers=headers, timeout=10)


def ask(question: str) -> str:
    stream = get_model().stream(system_prompt="", turns=[Turn(role="user", text=question)])
    return "".join(item.text for item in stream if isinstance(item, TextDelta))


def test_split_text_keeps_every_character():
    text = "  Hello, brave   new\nworld!  "
    for parts in range(1, 8):
        pieces = split_text(text, parts)
        assert "".join(pieces) == text
        assert len(pieces) <= parts


def test_the_stream_is_sse_frames_of_camel_case_json(fake):
    fake.script(Reply(text="Pong pong", chunks=2, prompt_tokens=7, output_tokens=3))

    response = post(
        fake.url,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        QUESTION,
        fake.api_key,
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    frames = response.text.split("\r\n\r\n")
    assert frames[-1] == ""
    assert all(frame.startswith("data: {") for frame in frames[:-1])
    assert '"candidates": [{"content": {"parts": [{"text": "Pong "}]' in frames[0]
    assert '"finishReason": "STOP"' in frames[1]
    assert '"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3' in frames[1]


def test_generate_content_answers_one_response(fake):
    fake.script(Reply(text="Pong pong pong", chunks=3))

    response = post(
        fake.url, "/v1beta/models/gemini-2.5-flash:generateContent", QUESTION, fake.api_key
    )

    body = response.json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Pong pong pong"}]
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"]["candidatesTokenCount"] == 4


def test_without_a_script_it_echoes_the_last_user_turn(fake):
    response = post(fake.url, "/v1/models/gemini-2.5-flash:generateContent", QUESTION, fake.api_key)

    assert response.json()["candidates"][0]["content"]["parts"][0]["text"] == "Echo: Ping?"


def test_keys_are_checked_like_google_does(fake):
    path = "/v1beta/models/gemini-2.5-flash:generateContent"

    missing = post(fake.url, path, QUESTION, None)
    wrong = post(fake.url, path, QUESTION, "not-the-key")

    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert wrong.status_code == 400
    assert wrong.json()["error"] == {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
    }


def test_what_gemini_rejects_the_fake_rejects(fake):
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    empty_system = {**QUESTION, "systemInstruction": {"parts": [{"text": ""}]}}
    bad_role = {"contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]}

    bodies: list[object] = [empty_system, bad_role, {"contents": []}, ["not", "an", "object"]]
    for body in bodies:
        response = post(fake.url, path, body, fake.api_key)
        assert response.status_code == 400
        assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert post(fake.url, "/v1beta/models/x:dance", QUESTION, fake.api_key).status_code == 404


def test_scripted_errors_have_googles_body(fake):
    fake.script(Reply(status=429))

    response = post(
        fake.url, "/v1beta/models/gemini-2.5-flash:generateContent", QUESTION, fake.api_key
    )

    assert response.status_code == 429
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_requests_are_recorded_without_the_key(fake):
    post(fake.url, "/v1beta/models/gemini-2.5-pro:generateContent", QUESTION, fake.api_key)

    [request] = fake.requests
    assert request["model"] == "gemini-2.5-pro"
    assert request["action"] == "generateContent"
    assert request["body"] == QUESTION
    assert "x-goog-api-key" not in request["headers"]
    assert fake.api_key not in str(request)


def test_replies_are_served_in_script_order_then_the_default(fake, settings):
    settings.GEMINI_API_KEY = fake.api_key
    settings.GEMINI_BASE_URL = fake.url
    fake.script(Reply(text="first"), {"text": "second"})

    assert [ask("a"), ask("b"), ask("c")] == ["first", "second", "Echo: c"]


def test_hundreds_of_concurrent_streams_run_side_by_side(settings):
    with FakeGemini(latency=1.0, chunks=4) as fake:
        settings.GEMINI_API_KEY = fake.api_key
        settings.GEMINI_BASE_URL = fake.url
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=200) as pool:
            replies = list(pool.map(lambda n: ask(f"question {n}"), range(200)))
        elapsed = time.monotonic() - started

    assert replies == [f"Echo: question {n}" for n in range(200)]
    assert 1.0 <= elapsed < 6  # each reply takes the 1 s latency; one after the other: 200 s


def test_as_a_process_it_is_driven_over_http(settings):
    process = subprocess.Popen(
        [sys.executable, "-m", "testing.fake_gemini", "--port", "0", "--print-url"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        settings.GEMINI_API_KEY = "fake-gemini-key"
        settings.GEMINI_BASE_URL = url

        queued = httpx.post(
            f"{url}/_fake/script",
            json=[reply_json(Reply(text="Scripted over HTTP.")), {"status": 503}],
            timeout=5,
        )
        assert queued.json() == {"queued": 2}
        assert ask("hello") == "Scripted over HTTP."
        recorded = httpx.get(f"{url}/_fake/requests", timeout=5).json()["requests"]
        assert recorded[0]["body"]["contents"][0]["parts"][0]["text"] == "hello"

        httpx.post(f"{url}/_fake/reset", json={"latency": 0}, timeout=5)
        assert httpx.get(f"{url}/_fake/requests", timeout=5).json() == {"requests": []}
        assert ask("after reset") == "Echo: after reset"  # the queued 503 was cleared
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode == 0


def test_it_runs_as_one_file_of_the_standard_library(tmp_path: Path):
    """The side-by-side benchmark copies fake_gemini.py alone and runs it with python3
    (`-S`: without site-packages, so a third-party import would fail here)."""
    alone = tmp_path / "fake_gemini.py"
    alone.write_text(Path(__file__).parents[1].joinpath("fake_gemini.py").read_text())
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", str(alone), "--port", "0", "--print-url"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert httpx.get(f"{url}/_fake/health", timeout=5).json() == {"ok": True}
    finally:
        process.kill()
        process.wait()
