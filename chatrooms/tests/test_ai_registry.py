"""get_model(): Gemini with a key, the offline model without, one instance per configuration."""

from __future__ import annotations

from chatrooms.ai.base import TextDelta, Turn
from chatrooms.ai.gemini import GeminiModel
from chatrooms.ai.offline import LABEL, OfflineModel
from chatrooms.ai.registry import get_model
from testing.fake_gemini import FakeGemini, Reply


def test_without_a_key_the_offline_model_answers(settings):
    settings.GEMINI_API_KEY = ""
    settings.OFFLINE_MODEL_CHUNK_DELAY_MS = 0

    model = get_model()

    assert isinstance(model, OfflineModel)
    reply = "".join(
        item.text
        for item in model.stream(system_prompt="", turns=[Turn(role="user", text="Hi")])
        if isinstance(item, TextDelta)
    )
    assert reply.startswith(LABEL)


def test_with_a_key_only_gemini_answers(settings):
    with FakeGemini() as fake:
        settings.GEMINI_API_KEY = fake.api_key
        settings.GEMINI_BASE_URL = fake.url
        fake.script(Reply(text="From Gemini."))

        model = get_model()
        reply = "".join(
            item.text
            for item in model.stream(system_prompt="", turns=[Turn(role="user", text="Hi")])
            if isinstance(item, TextDelta)
        )

    assert isinstance(model, GeminiModel)
    assert model.name == settings.GEMINI_MODEL
    assert reply == "From Gemini."
    assert len(fake.requests) == 1


def test_the_model_is_built_once_per_configuration(settings):
    settings.GEMINI_API_KEY = "key-one"

    first = get_model()

    assert get_model() is first


def test_a_changed_setting_builds_a_new_model(settings):
    settings.GEMINI_API_KEY = "key-one"
    settings.GEMINI_BASE_URL = "http://127.0.0.1:1"
    first = get_model()

    settings.GEMINI_BASE_URL = "http://127.0.0.1:2"
    second = get_model()
    settings.GEMINI_API_KEY = ""
    third = get_model()

    assert second is not first
    assert isinstance(second, GeminiModel)
    assert isinstance(third, OfflineModel)
