"""Fitting a chatroom's history into the model's context budget (AI_CONTEXT_TOKENS)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from chatrooms.ai.base import Turn

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About four characters per token, rounded up: cheap, offline, and on the safe side
    for English prose (Gemini's tokenizer averages a little over four)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def context_fit(
    *,
    turns: Sequence[Turn],
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    system_prompt: str,
) -> list[Turn]:
    """The most recent turns, oldest first, whose tokens fit in `budget_tokens`.

    The system prompt is counted first. Turns are taken from the newest backwards and the
    first one that does not fit ends the history, so what is kept is always a contiguous,
    recent stretch of the conversation.

    The newest user turn (and anything after it) is always kept, even when it alone
    exceeds the budget: it is the question being answered, and the message length limit
    keeps it bounded. The kept history never starts with a "model" turn; Gemini expects
    a conversation to open with the user. With no user turn at all the result is empty.
    """
    newest_user = next(
        (index for index in range(len(turns) - 1, -1, -1) if turns[index].role == "user"),
        None,
    )
    if newest_user is None:
        return []

    kept = list(turns[newest_user:])
    used = (count_tokens(system_prompt) if system_prompt else 0) + sum(
        count_tokens(turn.text) for turn in kept
    )
    for turn in reversed(turns[:newest_user]):
        cost = count_tokens(turn.text)
        if used + cost > budget_tokens:
            break
        kept.insert(0, turn)
        used += cost

    while kept and kept[0].role == "model":
        kept.pop(0)
    return kept
