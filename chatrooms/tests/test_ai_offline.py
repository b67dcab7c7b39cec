"""The offline development model: deterministic, labelled, streamed word by word."""

from __future__ import annotations

import logging
import time

import pytest

from chatrooms.ai import offline
from chatrooms.ai.base import Finish, StreamItem, TextDelta, Turn
from chatrooms.ai.offline import LABEL, OfflineModel

TURNS = [
    Turn(role="user", text="Hello"),
    Turn(role="model", text="Hi!"),
    Turn(role="user", text="Tell me about   the sea"),
]


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.OFFLINE_MODEL_CHUNK_DELAY_MS = 0


def run(model: OfflineModel, *, system_prompt: str = "", turns: list[Turn] = TURNS):
    return list(model.stream(system_prompt=system_prompt, turns=turns))


def text_of(items: list[StreamItem]) -> str:
    return "".join(item.text for item in items if isinstance(item, TextDelta))


def test_the_reply_is_labelled_and_never_passes_for_gemini():
    model = OfflineModel()

    text = text_of(run(model))

    assert text.startswith("[Offline model — set GEMINI_API_KEY to use Gemini]")
    assert text.startswith(LABEL)
    assert "offline" in model.name
    assert "not Gemini" in model.name


def test_the_reply_answers_the_last_user_turn_and_describes_the_context():
    text = text_of(run(OfflineModel(), system_prompt="Be brief."))

    assert 'You said: "Tell me about the sea"' in text
    assert "3 turns" in text
    assert "system prompt." in text
    assert "no system prompt" not in text


def test_without_a_system_prompt_it_says_so():
    text = text_of(run(OfflineModel(), turns=[Turn(role="user", text="Hi")]))

    assert "1 turn " in text
    assert "no system prompt" in text


def test_the_same_conversation_always_gets_the_same_reply():
    first = run(OfflineModel())
    second = run(OfflineModel())

    assert first == second


def test_different_questions_get_different_replies():
    other = [Turn(role="user", text="What about mountains?")]

    assert text_of(run(OfflineModel())) != text_of(run(OfflineModel(), turns=other))


def test_it_streams_word_by_word_and_ends_with_one_finish():
    items = run(OfflineModel())

    deltas = [item for item in items if isinstance(item, TextDelta)]
    assert len(deltas) == len(text_of(items).split())
    assert isinstance(items[-1], Finish)
    assert [type(item) for item in items].count(Finish) == 1
    assert items[-1].finish_reason == "STOP"
    assert items[-1].output_tokens and items[-1].output_tokens > 0
    assert items[-1].prompt_tokens and items[-1].prompt_tokens > 0


def test_a_long_message_is_echoed_only_in_part():
    long_text = "word " * 2000

    text = text_of(run(OfflineModel(), turns=[Turn(role="user", text=long_text)]))

    assert len(text) < 500
    assert "…" in text


def test_words_are_paced_by_the_configured_delay(settings):
    settings.OFFLINE_MODEL_CHUNK_DELAY_MS = 20
    model = OfflineModel()

    started = time.monotonic()
    items = run(model)
    elapsed = time.monotonic() - started

    words = len([item for item in items if isinstance(item, TextDelta)])
    assert elapsed >= words * 0.02 * 0.9


def test_a_warning_is_logged_once_per_process(monkeypatch, caplog):
    monkeypatch.setattr(offline, "_warned", False)
    caplog.set_level(logging.WARNING, logger="chatrooms.ai.offline")

    run(OfflineModel())
    run(OfflineModel())

    warnings = [r for r in caplog.records if r.name == "chatrooms.ai.offline"]
    assert len(warnings) == 1
    assert "offline model" in warnings[0].getMessage()


def test_token_estimates_need_no_network():
    assert OfflineModel().count_tokens("12345678") == 2
    assert OfflineModel().count_tokens("123456789") == 3
