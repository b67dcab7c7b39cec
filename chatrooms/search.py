"""Full-text search over a user's own messages and chatroom names (GET /api/search).

PostgreSQL does the work: messages carry a generated `search_vector` column with a GIN index
(migration 0006); chatroom names, a few hundred per user at most, are matched on the fly.
Queries are read with `websearch_to_tsquery`, which takes what people type (quoted phrases,
`or`, `-word`) and never fails on odd input. Results are ranked with `ts_rank`, best first,
and paged by a signed keyset cursor over (rank, chatroom, message), so pages neither skip
nor repeat a result while nothing is written.

Only completed messages with text are searched, and no reply regenerated since.
Snippets are HTML-escaped text with the matched words in `<mark>…</mark>`: safe to insert
into a page as HTML, and plain to read otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import OperationalError, connection, transaction
from psycopg.errors import QueryCanceled

from chatrooms.errors import SearchTimedOut
from chatrooms.models import Chatroom, Message

SEARCH_CONFIG = "simple"  # as in migration 0006
QUERY_MAX_CHARS = 200
_CURSOR_SALT = "chatrooms.search-cursor"
_HEADLINE = "StartSel=<mark>, StopSel=</mark>, MaxWords=24, MinWords=8, MaxFragments=1"


def _escaped(column: str) -> str:
    return f"replace(replace(replace({column}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"


# One statement: the ranked page (the GIN index finds the messages; the user's chatrooms
# bound them), then headlines for that page only.
_SEARCH_SQL = f"""
    WITH query AS (SELECT websearch_to_tsquery('{SEARCH_CONFIG}', %(q)s) AS q),
    hits AS (
        SELECT m.chatroom_id, m.id AS message_id, ts_rank(m.search_vector, query.q) AS rank
        FROM {Message._meta.db_table} m
        JOIN {Chatroom._meta.db_table} c ON c.id = m.chatroom_id, query
        WHERE m.search_vector @@ query.q AND c.user_id = %(user_id)s
          AND m.status = %(completed)s AND NOT m.superseded
        UNION ALL
        SELECT c.id, 0, ts_rank(to_tsvector('{SEARCH_CONFIG}', c.name), query.q)
        FROM {Chatroom._meta.db_table} c, query
        WHERE c.user_id = %(user_id)s AND c.name IS NOT NULL
          AND to_tsvector('{SEARCH_CONFIG}', c.name) @@ query.q
    ),
    page AS (
        SELECT * FROM hits
        WHERE %(after_rank)s::real IS NULL
           OR (rank, chatroom_id, message_id) < (%(after_rank)s::real, %(after_chatroom)s,
                                                 %(after_message)s)
        ORDER BY rank DESC, chatroom_id DESC, message_id DESC
        LIMIT %(limit)s
    )
    SELECT page.rank, page.chatroom_id, c.name, page.message_id,
           ts_headline('{SEARCH_CONFIG}',
                       {_escaped("CASE WHEN page.message_id = 0 THEN c.name ELSE m.content END")},
                       query.q, %(headline)s)
    FROM page
    JOIN {Chatroom._meta.db_table} c ON c.id = page.chatroom_id
    LEFT JOIN {Message._meta.db_table} m ON m.id = page.message_id
    CROSS JOIN query
    ORDER BY page.rank DESC, page.chatroom_id DESC, page.message_id DESC
"""  # noqa: S608 (names and configuration are ours, the values are parameters)


@dataclass(frozen=True)
class SearchHit:
    chatroom_id: int
    chatroom_name: str | None
    message_id: int | None  # None: the chatroom's name matched
    snippet: str
    rank: float


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    messages: dict[int, Message]
    next_cursor: str | None


def search_cursor_decode(*, user_id: int, q: str, cursor: str) -> tuple[float, int, int] | None:
    """The position a cursor this server handed to this user for this query names."""
    try:
        data: Any = signing.loads(cursor, salt=_CURSOR_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("u") != user_id or data.get("q") != q:
        return None
    after = data.get("a")
    if not (isinstance(after, list) and len(after) == 3):
        return None
    rank, chatroom_id, message_id = after
    if not isinstance(rank, float | int) or not all(
        isinstance(n, int) for n in (chatroom_id, message_id)
    ):
        return None
    return float(rank), chatroom_id, message_id


def _cursor_encode(*, user_id: int, q: str, hit: SearchHit) -> str:
    position = [hit.rank, hit.chatroom_id, hit.message_id or 0]
    return signing.dumps({"u": user_id, "q": q, "a": position}, salt=_CURSOR_SALT, compress=True)


def search(
    *, user_id: int, q: str, limit: int, after: tuple[float, int, int] | None = None
) -> SearchPage:
    """One page of the user's messages and chatroom names matching `q`, best first."""
    after_rank, after_chatroom, after_message = after if after is not None else (None, 0, 0)
    params: dict[str, Any] = {
        "q": q,
        "user_id": user_id,
        "completed": Message.Status.COMPLETED.value,
        "after_rank": after_rank,
        "after_chatroom": after_chatroom,
        "after_message": after_message,
        "limit": limit + 1,
        "headline": _HEADLINE,
    }
    # Bounded: a word found in most of a long history makes PostgreSQL rank every match.
    timeout_ms = int(settings.SEARCH_TIMEOUT_MS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        try:
            cursor.execute(_SEARCH_SQL, params)
        except OperationalError as exc:
            if isinstance(exc.__cause__, QueryCanceled):
                raise SearchTimedOut(timeout_ms=timeout_ms) from exc
            raise
        rows = cursor.fetchall()
    hits = [
        SearchHit(
            chatroom_id=chatroom_id,
            chatroom_name=name,
            message_id=message_id or None,
            snippet=snippet,
            rank=float(rank),
        )
        for rank, chatroom_id, name, message_id, snippet in rows[:limit]
    ]
    ids = [hit.message_id for hit in hits if hit.message_id is not None]
    messages = Message.objects.in_bulk(ids) if ids else {}
    more = len(rows) > limit
    next_cursor = _cursor_encode(user_id=user_id, q=q, hit=hits[-1]) if more else None
    return SearchPage(hits=hits, messages=messages, next_cursor=next_cursor)
