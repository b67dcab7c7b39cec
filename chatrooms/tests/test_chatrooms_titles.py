"""Titles generated for unnamed chatrooms from their first message."""

from __future__ import annotations

import pytest

from chatrooms.titles import TITLE_MAX_CHARS, title_from_message


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("What is a monad?", "What is a monad?"),
        ("  Plan a trip\n\nto Kyoto in April", "Plan a trip"),
        ("\n\n   \nSecond line first", "Second line first"),
        ("tabs\tand   runs   of spaces", "tabs and runs of spaces"),
        (
            "Explain how black holes evaporate through Hawking radiation, in simple words",
            "Explain how black holes evaporate through Hawking…",
        ),
        ("a" * 80, "a" * 59 + "…"),
        ("Short start " + "b" * 70, "Short start " + "b" * 47 + "…"),
        ("x" * TITLE_MAX_CHARS, "x" * TITLE_MAX_CHARS),
        (
            "Ends with a comma, then a very long continuation of words here",
            "Ends with a comma, then a very long continuation of words…",
        ),
    ],
)
def test_title_from_message(content: str, title: str) -> None:
    assert title_from_message(content) == title
    assert len(title_from_message(content)) <= TITLE_MAX_CHARS


def test_unicode_is_kept_whole() -> None:
    title = title_from_message("नमस्ते दुनिया " * 10)
    assert title.startswith("नमस्ते दुनिया")
    assert title.endswith("…")
    assert len(title) <= TITLE_MAX_CHARS
