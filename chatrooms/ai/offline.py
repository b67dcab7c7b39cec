"""The offline model: a labelled development stand-in used when no GEMINI_API_KEY is set.

Like Django's console e-mail backend, it lets the whole product run on a laptop with no
keys. Its replies are deterministic, say plainly that they are not Gemini, and stream word
by word at OFFLINE_MODEL_CHUNK_DELAY_MS so the streaming path behaves as it would live.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator

from django.conf import settings

from chatrooms.ai.base import Finish, StreamItem, TextDelta, Turn
from chatrooms.ai.context import estimate_tokens

logger = logging.getLogger(__name__)

LABEL = "[Offline model — set GEMINI_API_KEY to use Gemini]"
ECHO_MAX_CHARS = 200

_warned = False
_warned_lock = threading.Lock()


def _warn_once() -> None:
    global _warned
    with _warned_lock:
        if _warned:
            return
        _warned = True
    logger.warning(
        "GEMINI_API_KEY is not set: replies come from the offline model, not from Gemini."
    )


def offline_reply(*, system_prompt: str, turns: list[Turn]) -> str:
    """The full reply text for a conversation; the same input always gives the same text."""
    last_user = next((turn.text for turn in reversed(turns) if turn.role == "user"), "")
    said = " ".join(last_user.split())
    if len(said) > ECHO_MAX_CHARS:
        said = said[:ECHO_MAX_CHARS].rstrip() + "…"
    count = len(turns)
    context = f"I can see {count} turn{'' if count == 1 else 's'} of this conversation"
    context += (
        " and the chatroom's system prompt." if system_prompt.strip() else " and no system prompt."
    )
    return f'{LABEL} You said: "{said}". {context}'


class OfflineModel:
    name = "offline (not Gemini)"

    def __init__(self, *, chunk_delay_ms: int | None = None) -> None:
        self.chunk_delay_ms = (
            settings.OFFLINE_MODEL_CHUNK_DELAY_MS if chunk_delay_ms is None else chunk_delay_ms
        )

    def stream(self, *, system_prompt: str, turns: list[Turn]) -> Iterator[StreamItem]:
        _warn_once()
        text = offline_reply(system_prompt=system_prompt, turns=turns)
        for word in re.findall(r"\S+\s*", text):
            if self.chunk_delay_ms > 0:
                time.sleep(self.chunk_delay_ms / 1000)
            yield TextDelta(word)
        prompt = system_prompt + "".join(turn.text for turn in turns)
        yield Finish(
            finish_reason="STOP",
            prompt_tokens=estimate_tokens(prompt),
            output_tokens=estimate_tokens(text),
            tokens_estimated=True,
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)
