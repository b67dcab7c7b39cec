"""GeminiModel with the real google-genai client against the local fake Gemini server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatrooms.ai.base import (
    AiBlocked,
    AiEmptyReply,
    AiError,
    AiModel,
    Finish,
    StreamItem,
    TextDelta,
    Turn,
)
from chatrooms.ai.gemini import GeminiModel
from chatrooms.ai.registry import get_model
from testing.fake_gemini import FakeGemini, Reply

HISTORY = [
    Turn(role="user", text="What is the capital of France?"),
    Turn(role="model", text="Paris."),
    Turn(role="user", text="And of Italy?"),
]


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeGemini, settings) -> FakeGemini:
    fake_server.reset()
    settings.GEMINI_API_KEY = fake_server.api_key
    settings.GEMINI_BASE_URL = fake_server.url
    settings.GEMINI_MODEL = "gemini-2.5-flash"
    settings.GEMINI_TIMEOUT_SECONDS = 10
    return fake_server


@pytest.fixture
def model(fake: FakeGemini) -> AiModel:
    chosen = get_model()
    assert isinstance(chosen, GeminiModel)
    return chosen


def run(
    model: AiModel, *, system_prompt: str = "", turns: list[Turn] = HISTORY
) -> list[StreamItem]:
    return list(model.stream(system_prompt=system_prompt, turns=turns))


def collect_until_error(
    model: AiModel, *, turns: list[Turn] = HISTORY
) -> tuple[list[StreamItem], Exception]:
    items: list[StreamItem] = []
    with pytest.raises((AiError, AiBlocked)) as caught:
        for item in model.stream(system_prompt="", turns=turns):
            items.append(item)
    return items, caught.value


def text_of(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


# --- a normal reply ------------------------------------------------------------


def test_streamed_chunks_join_into_the_reply_and_end_with_one_finish(model, fake):
    fake.script(Reply(text="Rome is the capital of Italy.", chunks=3))

    items = run(model)

    deltas = [item for item in items if isinstance(item, TextDelta)]
    assert len(deltas) == 3
    assert text_of(items) == "Rome is the capital of Italy."
    assert isinstance(items[-1], Finish)
    assert [type(item) for item in items].count(Finish) == 1
    assert items[-1].finish_reason == "STOP"


def test_deltas_arrive_as_the_server_sends_them_not_all_at_the_end(model, fake):
    fake.script(Reply(text="one two three", chunks=3, chunk_delay=0.3))

    started = time.monotonic()
    stream = model.stream(system_prompt="", turns=HISTORY)
    first = next(stream)
    first_at = time.monotonic() - started
    rest = list(stream)

    assert isinstance(first, TextDelta)
    assert first_at < 0.6  # the whole reply takes about 0.9 s
    assert text_of([first, *rest]) == "one two three"


def test_token_counts_come_from_usage_metadata(model, fake):
    fake.script(Reply(text="Rome.", prompt_tokens=123, output_tokens=45))

    finish = run(model)[-1]

    assert finish == Finish(finish_reason="STOP", prompt_tokens=123, output_tokens=45)


def test_a_reply_cut_at_max_tokens_still_completes_with_that_reason(model, fake):
    fake.script(Reply(text="Rome is the capital and", finish_reason="MAX_TOKENS"))

    items = run(model)

    assert text_of(items) == "Rome is the capital and"
    assert isinstance(items[-1], Finish)
    assert items[-1].finish_reason == "MAX_TOKENS"


# --- what reaches Gemini -----------------------------------------------------------


def test_the_system_prompt_is_sent_as_system_instruction(model, fake):
    fake.script(Reply(text="Arr."))

    run(model, system_prompt="You are a pirate.")

    body = fake.requests[-1]["body"]
    assert body["systemInstruction"]["parts"] == [{"text": "You are a pirate."}]


@pytest.mark.parametrize("empty", ["", "   \n"])
def test_an_empty_system_prompt_is_not_sent_at_all(model, fake, empty):
    fake.script(Reply(text="Rome."))

    items = run(model, system_prompt=empty)

    assert text_of(items) == "Rome."  # the fake, like Gemini, rejects empty text parts
    assert "systemInstruction" not in fake.requests[-1]["body"]


def test_one_call_s_system_prompt_never_reaches_the_next(model, fake):
    """The request's config is built once per model and shared: a prompt goes into a copy."""
    fake.script(Reply(text="a"), Reply(text="b"))

    run(model, system_prompt="The secret instructions of user A.")
    run(model, system_prompt="")

    assert "systemInstruction" not in fake.requests[-1]["body"]


def test_threads_at_once_each_send_their_own_system_prompt(model, fake):
    calls = 16
    fake.script(*[Reply(text=f"r{index}") for index in range(calls)])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda index: run(model, system_prompt=f"prompt-{index}"), range(calls)))

    sent = [request["body"]["systemInstruction"]["parts"][0]["text"] for request in fake.requests]
    assert sorted(sent[-calls:]) == sorted(f"prompt-{index}" for index in range(calls))


def test_history_reaches_gemini_in_order_with_its_roles(model, fake):
    fake.script(Reply(text="Rome."))

    run(model)

    request = fake.requests[-1]
    assert request["path"].endswith("/models/gemini-2.5-flash:streamGenerateContent")
    assert request["query"] == {"alt": "sse"}
    assert request["body"]["contents"] == [
        {"role": "user", "parts": [{"text": "What is the capital of France?"}]},
        {"role": "model", "parts": [{"text": "Paris."}]},
        {"role": "user", "parts": [{"text": "And of Italy?"}]},
    ]


def test_the_reply_length_is_bounded_by_the_setting(fake, settings):
    settings.AI_MAX_OUTPUT_TOKENS = 321
    fake.script(Reply(text="Rome."))

    run(get_model())

    assert fake.requests[-1]["body"]["generationConfig"]["maxOutputTokens"] == 321


def test_the_configured_model_name_is_used(fake, settings):
    settings.GEMINI_MODEL = "gemini-2.5-pro"
    fake.script(Reply(text="Rome."))

    model = get_model()
    run(model)

    assert model.name == "gemini-2.5-pro"
    assert fake.requests[-1]["model"] == "gemini-2.5-pro"


def test_empty_turns_are_left_out_instead_of_failing_the_request(model, fake):
    fake.script(Reply(text="Rome."))

    run(model, turns=[Turn(role="user", text="Hi"), Turn(role="model", text=""), *HISTORY])

    roles = [content["role"] for content in fake.requests[-1]["body"]["contents"]]
    assert roles == ["user", "user", "model", "user"]


def test_the_api_key_goes_in_the_header_and_is_not_recorded(model, fake):
    fake.script(Reply(text="Rome."))

    run(model)

    headers = fake.requests[-1]["headers"]
    assert "x-goog-api-key" not in headers
    assert fake.api_key not in str(fake.requests[-1])


# --- failures --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retryable(model, fake, status):
    fake.script(Reply(status=status), Reply(text="never asked for"))

    items, error = collect_until_error(model)

    assert items == []
    assert isinstance(error, AiError)
    assert error.retryable is True
    assert error.status == status
    # The SDK's own retries are off: one request, and the next scripted reply is untouched.
    assert len(fake.requests) == 1
    assert fake.pending_replies == 1


def test_a_bad_request_is_not_retryable_and_says_why(model, fake):
    fake.script(Reply(status=400, message="Invalid value at 'contents[0].role'."))

    _, error = collect_until_error(model)

    assert isinstance(error, AiError)
    assert error.retryable is False
    assert error.status == 400
    assert "Invalid value at 'contents[0].role'." in error.detail
    assert "400" in error.detail


def test_a_wrong_api_key_is_not_retryable_and_never_appears_in_the_error(fake, settings):
    secret = "AIzaSy-this-is-a-secret-key-0123456789"
    settings.GEMINI_API_KEY = secret

    _, error = collect_until_error(get_model())

    assert isinstance(error, AiError)
    assert error.retryable is False
    assert "API key not valid" in error.detail
    assert secret not in error.detail
    assert secret not in str(error)


def test_the_api_key_is_scrubbed_even_when_the_server_echoes_it(model, fake):
    fake.script(Reply(status=400, message=f"Key {fake.api_key} is not allowed here."))

    _, error = collect_until_error(model)

    assert isinstance(error, AiError)
    assert fake.api_key not in error.detail
    assert "[redacted]" in error.detail


def test_a_server_that_hangs_is_a_retryable_timeout(fake, settings):
    settings.GEMINI_TIMEOUT_SECONDS = 0.5
    fake.script(Reply(hang=10))

    started = time.monotonic()
    _, error = collect_until_error(get_model())

    assert isinstance(error, AiError)
    assert error.retryable is True
    assert "did not answer within 0.5 s" in error.detail
    assert time.monotonic() - started < 5


def test_a_stream_that_stalls_midway_is_a_retryable_timeout(fake, settings):
    settings.GEMINI_TIMEOUT_SECONDS = 0.5
    fake.script(Reply(text="one two three four", chunks=4, hang=10, hang_after_chunks=1))

    items, error = collect_until_error(get_model())

    assert text_of(items) == "one "
    assert isinstance(error, AiError)
    assert error.retryable is True


def test_a_connection_dropped_mid_stream_is_retryable(model, fake):
    fake.script(Reply(text="one two three four", chunks=4, drop_after_chunks=2))

    items, error = collect_until_error(model)

    assert text_of(items) == "one two "
    assert isinstance(error, AiError)
    assert error.retryable is True


def test_an_error_event_inside_the_stream_is_mapped_like_a_status(model, fake):
    fake.script(Reply(text="one two three", chunks=3, status=503, error_after_chunks=1))

    items, error = collect_until_error(model)

    assert text_of(items) == "one "
    assert isinstance(error, AiError)
    assert error.retryable is True
    assert error.status == 503


def test_gemini_unreachable_is_retryable(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.GEMINI_API_KEY = "any-key"
    settings.GEMINI_BASE_URL = f"http://127.0.0.1:{port}"  # nothing listens there now

    _, error = collect_until_error(get_model())

    assert isinstance(error, AiError)
    assert error.retryable is True


def test_a_stream_that_ends_without_a_finish_reason_is_not_a_completion(model, fake):
    fake.script(Reply(text="one two three", chunks=3, finish_reason=""))

    items, error = collect_until_error(model)

    assert text_of(items) == "one two three"
    assert not any(isinstance(item, Finish) for item in items)
    assert isinstance(error, AiError)
    assert error.retryable is True


# --- safety and empty replies -------------------------------------------------------


def test_a_blocked_prompt_raises_ai_blocked_with_the_reason(model, fake):
    fake.script(Reply(block_reason="PROHIBITED_CONTENT"))

    items, error = collect_until_error(model)

    assert items == []
    assert isinstance(error, AiBlocked)
    assert error.reason == "PROHIBITED_CONTENT"


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "SPII"])
def test_a_reply_stopped_by_a_filter_raises_ai_blocked_after_the_text_before(model, fake, reason):
    fake.script(Reply(text="Here is how you", chunks=2, finish_reason=reason))

    items, error = collect_until_error(model)

    assert text_of(items) == "Here is how you"
    assert not any(isinstance(item, Finish) for item in items)
    assert isinstance(error, AiBlocked)
    assert error.reason == reason


@pytest.mark.parametrize("finish_reason", ["STOP", "MAX_TOKENS"])
def test_an_empty_reply_is_an_error_not_a_completion(model, fake, finish_reason):
    fake.script(Reply(text="", finish_reason=finish_reason))

    items, error = collect_until_error(model)

    assert items == []
    assert isinstance(error, AiError)
    assert error.retryable is False
    assert isinstance(error, AiEmptyReply)
    assert error.code == "empty_reply"


# --- the client is shared ------------------------------------------------------------


def test_one_model_serves_many_threads_at_once(model, fake):
    fake.script(*[Reply(text=f"reply {n}", chunks=2, chunk_delay=0.2) for n in range(20)])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: text_of(run(model)), range(20)))

    assert sorted(results) == sorted(f"reply {n}" for n in range(20))
    assert time.monotonic() - started < 3  # 20 x 0.4 s one after the other would be 8 s


def test_a_caller_can_stop_a_stream_early_without_waiting_for_the_rest(model, fake):
    fake.script(Reply(text="one two three four five six", chunks=6, chunk_delay=0.5))
    stream = model.stream(system_prompt="", turns=HISTORY)

    first = next(stream)
    started = time.monotonic()
    stream.close()  # what a cancel does

    assert first == TextDelta("one ")
    assert time.monotonic() - started < 0.4
    fake.script(Reply(text="Still fine."))
    assert text_of(run(model)) == "Still fine."
