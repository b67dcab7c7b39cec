"""context_fit(): the recent history that fits in the token budget."""

from __future__ import annotations

from chatrooms.ai.base import Turn
from chatrooms.ai.context import context_fit, estimate_tokens


def words(text: str) -> int:
    """A token counter that is easy to reason about in tests: one token per word."""
    return len(text.split())


def user(text: str) -> Turn:
    return Turn(role="user", text=text)


def model(text: str) -> Turn:
    return Turn(role="model", text=text)


CONVERSATION = [
    user("one two three"),  # 3
    model("four five six"),  # 3
    user("seven eight"),  # 2
    model("nine ten"),  # 2
    user("eleven"),  # 1
]


def fit(turns: list[Turn], budget: int, system_prompt: str = "") -> list[Turn]:
    return context_fit(
        turns=turns, budget_tokens=budget, count_tokens=words, system_prompt=system_prompt
    )


def test_everything_is_kept_when_it_fits():
    assert fit(CONVERSATION, budget=11) == CONVERSATION


def test_the_oldest_turns_are_dropped_first():
    assert fit(CONVERSATION, budget=5) == CONVERSATION[2:]


def test_the_kept_history_never_starts_with_a_model_turn():
    # 8 tokens would fit model("four five six") as the oldest turn; it is dropped instead.
    kept = fit(CONVERSATION, budget=8)

    assert kept == CONVERSATION[2:]
    assert kept[0].role == "user"


def test_the_system_prompt_is_counted_first():
    assert fit(CONVERSATION, budget=5, system_prompt="be kind") == [CONVERSATION[-1]]


def test_the_newest_user_turn_is_kept_even_when_it_alone_is_over_budget():
    huge = user("a " * 50)

    assert fit([*CONVERSATION, huge], budget=5) == [huge]
    assert fit([huge], budget=0, system_prompt="a long system prompt") == [huge]


def test_a_turn_that_does_not_fit_ends_the_history_even_if_older_ones_would():
    turns = [user("a"), model("b"), user("c d e f g h"), model("i"), user("j")]

    assert fit(turns, budget=4) == [user("j")]


def test_no_turns_or_no_user_turn_gives_an_empty_history():
    assert fit([], budget=100) == []
    assert fit([model("hello")], budget=100) == []


def test_the_default_estimate_is_about_four_characters_per_token():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_with_the_estimate_a_long_conversation_is_cut_to_the_budget():
    turns = [
        Turn(role="user" if n % 2 == 0 else "model", text=f"{n:03d}" + "x" * 396) for n in range(41)
    ]  # 100 tokens each, from user turn 0 to user turn 40

    kept = context_fit(
        turns=turns, budget_tokens=1000, count_tokens=estimate_tokens, system_prompt=""
    )

    assert sum(estimate_tokens(turn.text) for turn in kept) <= 1000
    assert kept[-1] == turns[-1]
    assert kept[0].role == "user"
    assert [turn.text[:3] for turn in kept] == [f"{n:03d}" for n in range(32, 41)]
