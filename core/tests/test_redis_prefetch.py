"""Reads that ride on authentication's round trip (`core.redis_prefetch`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import TooManyFieldsSent

from core.redis_prefetch import RedisRead, prefetch_reads_of_view


def test_a_view_whose_prefetch_cannot_read_the_request_gets_no_reads() -> None:
    class Unreadable:
        def redis_reads_with_auth(self, request: Any, user_id: int) -> list[RedisRead]:
            raise TooManyFieldsSent("too many")

    assert prefetch_reads_of_view(Unreadable(), object(), 1) == []


def test_a_view_without_the_hook_gets_no_reads() -> None:
    assert prefetch_reads_of_view(object(), object(), 1) == []
