"""The cached chatroom list: hits, misses, invalidation on commit, and Redis being down."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction
from django_redis import get_redis_connection
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient, APIRequestFactory

from accounts.authentication import CachedUserJWTAuthentication
from accounts.models import User
from accounts.tokens import token_pair_issue
from chatrooms import cache
from chatrooms.api.views import ChatroomListCreateView
from chatrooms.models import Chatroom
from chatrooms.tests.factories import ChatroomFactory, UserFactory, client_for
from core.redis_prefetch import prefetched_values

# Invalidation runs on commit: these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def user() -> User:
    return UserFactory.create()


@pytest.fixture
def client(user: User) -> APIClient:
    return client_for(user)


def _list(client: APIClient, path: str = "/api/chatroom") -> tuple[str, bytes]:
    response = client.get(path)
    assert response.status_code == 200
    return response["X-Cache"], response.content


def _names(body: bytes) -> list[str | None]:
    return [room["name"] for room in json.loads(body)["results"]]


def test_second_read_is_a_hit_with_the_same_body(client: APIClient, user: User) -> None:
    ChatroomFactory.create(user=user, name="Alpha")
    ChatroomFactory.create(user=user, name="Beta")
    miss = _list(client)
    hit = _list(client)
    assert miss[0] == "MISS"
    assert hit == ("HIT", miss[1])
    assert _names(hit[1]) == ["Beta", "Alpha"]


def test_a_hit_does_not_touch_the_database(
    client: APIClient, user: User, django_assert_num_queries
) -> None:
    ChatroomFactory.create(user=user)
    _list(client)
    with django_assert_num_queries(0):
        assert _list(client)[0] == "HIT"


def test_each_page_and_limit_is_cached_separately(client: APIClient, user: User) -> None:
    for index in range(3):
        ChatroomFactory.create(user=user, name=f"Room {index}")
    assert _list(client, "/api/chatroom?limit=2")[0] == "MISS"
    assert _list(client, "/api/chatroom?limit=1")[0] == "MISS"
    state, _ = _list(client, "/api/chatroom?limit=2")
    assert state == "HIT"
    next_url = client.get("/api/chatroom?limit=2").json()["next"]
    second = client.get(next_url)
    assert second["X-Cache"] == "MISS"
    assert _names(second.content) == ["Room 0"]
    assert client.get(next_url)["X-Cache"] == "HIT"
    # Out-of-range limits are normalised, so they share the capped page.
    _list(client, "/api/chatroom?limit=100")
    assert _list(client, "/api/chatroom?limit=5000")[0] == "HIT"


def test_users_never_see_each_others_cached_list(client: APIClient, user: User) -> None:
    ChatroomFactory.create(user=user, name="Mine")
    _list(client)
    stranger = UserFactory.create()
    ChatroomFactory.create(user=stranger, name="Theirs")
    state, body = _list(client_for(stranger))
    assert state == "MISS"
    assert _names(body) == ["Theirs"]
    assert _names(_list(client)[1]) == ["Mine"]


def test_create_invalidates(client: APIClient) -> None:
    _list(client)
    assert _list(client)[0] == "HIT"
    client.post("/api/chatroom", {"name": "Fresh"}, format="json")
    state, body = _list(client)
    assert state == "MISS"
    assert _names(body) == ["Fresh"]


def test_rename_and_prompt_change_invalidate(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user, name="Before")
    _list(client)
    client.patch(f"/api/chatroom/{chatroom.pk}", {"name": "After"}, format="json")
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", ["After"])
    assert _list(client)[0] == "HIT"
    client.patch(f"/api/chatroom/{chatroom.pk}", {"system_prompt": "Be kind."}, format="json")
    state, body = _list(client)
    assert state == "MISS"
    assert b"Be kind." in body


def test_delete_invalidates(client: APIClient, user: User) -> None:
    keep = ChatroomFactory.create(user=user, name="Keep")
    gone = ChatroomFactory.create(user=user, name="Gone")
    _list(client)
    assert client.delete(f"/api/chatroom/{gone.pk}").status_code == 204
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", [keep.name])


def test_generated_title_invalidates(client: APIClient) -> None:
    chatroom_id = client.post("/api/chatroom", {}, format="json").json()["id"]
    _list(client)
    assert _names(_list(client)[1]) == [None]
    response = client.post(
        f"/api/chatroom/{chatroom_id}/message", {"content": "Best pizza in Naples?"}, format="json"
    )
    assert response.status_code == 202
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", ["Best pizza in Naples?"])


def test_a_failed_request_does_not_invalidate(client: APIClient, user: User) -> None:
    chatroom = ChatroomFactory.create(user=user, name="Same")
    _list(client)
    bad = client.patch(f"/api/chatroom/{chatroom.pk}", {"name": "x" * 500}, format="json")
    assert bad.status_code == 400
    assert _list(client)[0] == "HIT"


def test_invalidation_waits_for_the_commit(client: APIClient, user: User) -> None:
    """Until the transaction commits, readers keep getting the committed list."""
    from chatrooms.services import chatroom_create

    _list(client)
    with transaction.atomic():
        chatroom_create(user=user, name="Not yet", system_prompt="")
        assert _list(client)[0] == "HIT"
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", ["Not yet"])


def test_a_page_read_before_an_invalidation_is_not_stored(user: User) -> None:
    """A slow miss racing with a change cannot leave the old list in the cache."""
    started = cache.list_cache_read(user_id=user.pk, field="page")
    assert started.body is None and started.epoch is not None
    cache.list_cache_invalidate(user_id=user.pk)
    assert not cache.list_cache_store(
        user_id=user.pk, field="page", body=b"stale", epoch=started.epoch
    )
    assert cache.list_cache_read(user_id=user.pk, field="page").body is None
    fresh = cache.list_cache_read(user_id=user.pk, field="page")
    assert fresh.epoch is not None
    assert cache.list_cache_store(user_id=user.pk, field="page", body=b"new", epoch=fresh.epoch)
    assert cache.list_cache_read(user_id=user.pk, field="page").body == b"new"


def test_pages_expire_after_the_ttl(client: APIClient, user: User, settings) -> None:
    settings.CHATROOM_LIST_CACHE_TTL = 1
    ChatroomFactory.create(user=user)
    _list(client)
    _list(client, "/api/chatroom?limit=3")  # a later page does not extend the first one
    assert _list(client)[0] == "HIT"
    time.sleep(1.2)
    assert _list(client)[0] == "MISS"


# --- Bounds: one user's pages, whatever the query strings -------------------------------------


def _pages_key(user: User) -> str:
    return f"{django_settings.CACHES['default']['KEY_PREFIX']}:chatrooms:list:{{{user.pk}}}"


def _cached(user: User) -> tuple[int, int]:
    """How many pages the user has in Redis, and their bytes (fields and bodies)."""
    pages = get_redis_connection("default").hgetall(_pages_key(user))
    return len(pages), sum(len(field) + len(body) for field, body in pages.items())


def test_varying_limits_cursors_and_hosts_cannot_grow_the_cache(
    client: APIClient, user: User, settings
) -> None:
    settings.CHATROOM_LIST_CACHE_MAX_PAGES = 4
    settings.ALLOWED_HOSTS = ["testserver", "a.example", "b.example"]
    for index in range(6):
        ChatroomFactory.create(user=user, name=f"Room {index}")
    expected_names = [f"Room {index}" for index in reversed(range(6))]
    for host in settings.ALLOWED_HOSTS:
        for limit in range(1, 7):
            path: str | None = f"/api/chatroom?limit={limit}"
            names: list[str | None] = []
            while path is not None:
                response = client.get(path, HTTP_HOST=host)
                assert response.status_code == 200
                body = response.json()
                names += [room["name"] for room in body["results"]]
                path = body["next"] and body["next"].removeprefix(f"http://{host}")
            assert names == expected_names  # served right, stored or not
    assert _cached(user)[0] == 4
    # The first pages stored stay hits; the rest are served from the database.
    assert _list(client, "/api/chatroom?limit=1")[0] == "HIT"
    assert _list(client, "/api/chatroom?limit=6")[0] == "MISS"
    # Another user is not affected by this one's full cache.
    stranger = UserFactory.create()
    ChatroomFactory.create(user=stranger, name="Theirs")
    other = client_for(stranger)
    assert _list(other)[0] == "MISS"
    assert _list(other)[0] == "HIT"
    # An invalidation empties the hash: new pages are stored again.
    client.post("/api/chatroom", {"name": "Fresh"}, format="json")
    assert _list(client, "/api/chatroom?limit=6")[0] == "MISS"
    assert _list(client, "/api/chatroom?limit=6")[0] == "HIT"


def test_one_users_cached_pages_are_capped_in_bytes(
    client: APIClient, user: User, settings
) -> None:
    for index in range(30):
        ChatroomFactory.create(user=user, system_prompt=f"Prompt {index} " + "x" * 200)
    one_room = len(_list(client, "/api/chatroom?limit=1")[1])
    settings.CHATROOM_LIST_CACHE_MAX_BYTES = 10 * one_room
    cache.list_cache_invalidate(user_id=user.pk)
    # A page larger than the whole budget is never stored, but always served.
    for _ in range(2):
        state, body = _list(client, "/api/chatroom?limit=30")
        assert state == "MISS"
        assert len(json.loads(body)["results"]) == 30
    for limit in range(1, 10):
        _list(client, f"/api/chatroom?limit={limit}")
    pages, stored_bytes = _cached(user)
    assert 0 < pages < 9
    assert stored_bytes <= settings.CHATROOM_LIST_CACHE_MAX_BYTES
    assert _list(client, "/api/chatroom?limit=1")[0] == "HIT"
    stranger = UserFactory.create()
    ChatroomFactory.create(user=stranger, system_prompt="y" * 200)
    other = client_for(stranger)
    _list(other)
    assert _list(other)[0] == "HIT"


def test_a_later_page_does_not_extend_the_ttl(client: APIClient, user: User, settings) -> None:
    settings.CHATROOM_LIST_CACHE_TTL = 60
    ChatroomFactory.create(user=user)
    _list(client)
    pages_key = _pages_key(user)
    redis = get_redis_connection("default")
    first_ttl = redis.ttl(pages_key)
    assert 0 < first_ttl <= 60
    redis.expire(pages_key, 5)  # as if the first page were stored 55 s ago
    _list(client, "/api/chatroom?limit=2")
    assert _cached(user)[0] == 2
    assert redis.ttl(pages_key) <= 5  # a later page does not extend the first one's life


def test_keys_use_the_cache_prefix(client: APIClient, user: User, settings) -> None:
    _list(client)
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    keys = {key.decode() for key in get_redis_connection("default").keys(f"{prefix}:chatrooms:*")}
    assert f"{prefix}:chatrooms:list:{{{user.pk}}}" in keys


# --- Redis down -----------------------------------------------------------------------------


@pytest.mark.usefixtures("dead_redis")
def test_everything_works_from_the_database_when_redis_is_down(client: APIClient) -> None:
    started = time.monotonic()
    created = client.post("/api/chatroom", {"name": "Offline"}, format="json")
    assert created.status_code == 201
    chatroom_id = created.json()["id"]
    for _ in range(2):
        state, body = _list(client)
        assert (state, _names(body)) == ("MISS", ["Offline"])
    renamed = client.patch(f"/api/chatroom/{chatroom_id}", {"name": "Renamed"}, format="json")
    assert renamed.status_code == 200
    assert _names(_list(client)[1]) == ["Renamed"]
    assert client.delete(f"/api/chatroom/{chatroom_id}").status_code == 204
    assert _names(_list(client)[1]) == []
    assert time.monotonic() - started < 5


def test_a_broken_connection_falls_back_to_the_database(
    client: APIClient, user: User, cache_redis
) -> None:
    ChatroomFactory.create(user=user, name="Solid")
    _list(client)
    assert _list(client)[0] == "HIT"
    # Every connection dropped, and new ones refused (a password they do not know).
    cache_redis.refuse_connections()
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", ["Solid"])
    client.post("/api/chatroom", {"name": "During the outage"}, format="json")
    assert _names(_list(client)[1]) == ["During the outage", "Solid"]
    # Back online: the invalidation missed during the outage is not lost.
    cache_redis.accept_connections()
    state, body = _list(client)
    assert (state, _names(body)) == ("MISS", ["During the outage", "Solid"])
    assert _list(client)[0] == "HIT"
    assert Chatroom.objects.count() == 2


def _bearer_client(user: User) -> APIClient:
    """A client that authenticates as real clients do (`client_for` bypasses it)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_issue(user=user).access}")
    return client


def test_a_hit_costs_one_redis_round_trip(user: User, cache_redis) -> None:
    """The page rides on authentication's round trip (core.redis_prefetch), also for a page
    after the first (a cursor) and another page size."""
    client = _bearer_client(user)
    for index in range(3):
        ChatroomFactory.create(user=user, name=f"Room {index}")
    first = json.loads(_list(client, "/api/chatroom?limit=2")[1])
    for path in ("/api/chatroom?limit=2", first["next"]):
        _list(client, path)
        cache_redis.client.config_resetstat()
        state, body = _list(client, path)
        stats = cache_redis.client.info("commandstats")
        assert state == "HIT"
        # The script's own commands are counted too; this test's INFO after its reply.
        calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items()}
        assert calls == {"config": 1, "evalsha": 1, "incrby": 1, "get": 2, "hget": 1}
    assert _names(body) == ["Room 0"]


def test_a_refused_token_leaves_no_page_on_the_request(user: User) -> None:
    """What authentication read for the view is kept only once the token and the user's
    row passed every check."""
    client = _bearer_client(user)
    ChatroomFactory.create(user=user, name="Mine")
    assert _list(client)[0] == "MISS"
    token = token_pair_issue(user=user).access
    user.is_active = False
    user.save()
    view = ChatroomListCreateView()
    request = view.initialize_request(
        APIRequestFactory().get("/api/chatroom", HTTP_AUTHORIZATION=f"Bearer {token}")
    )
    with pytest.raises(AuthenticationFailed):
        CachedUserJWTAuthentication().authenticate(request)
    assert prefetched_values(request._request) == {}


def test_nothing_is_read_ahead_while_an_invalidation_waits(user: User, cache_redis) -> None:
    """A page read ahead before this process retried an invalidation it missed could be
    served after that retry (another thread's): while one waits, the view reads alone."""
    client = _bearer_client(user)
    ChatroomFactory.create(user=user, name="A")
    _list(client)
    assert _list(client)[0] == "HIT"
    cache_redis.refuse_connections()
    client.post("/api/chatroom", {"name": "B"}, format="json")  # its invalidation fails
    cache_redis.accept_connections()
    cache_redis.client.config_resetstat()

    state, body = _list(client)

    calls = {
        name.removeprefix("cmdstat_"): stat["calls"]
        for name, stat in cache_redis.client.info("commandstats").items()
    }
    assert calls["hget"] == 1  # the view's own read, after the retry; none ahead of it
    assert (state, _names(body)) == ("MISS", ["B", "A"])


def test_an_invalidation_being_retried_still_holds_back_reads(user: User, cache_redis) -> None:
    """Until the retry has succeeded, a read of the user's pages in this process must not
    trust Redis: the page there may still be the one from before the write."""
    cache_redis.refuse_connections()
    cache.list_cache_invalidate(user_id=user.pk)  # fails: remembered
    cache_redis.accept_connections()
    kwargs = cache_redis.client.get_connection_kwargs()
    stalled = threading.Thread(
        target=lambda: redis.Redis(host=kwargs["host"], port=kwargs["port"]).execute_command(
            "DEBUG", "SLEEP", "0.6"
        )
    )
    stalled.start()
    time.sleep(0.1)  # Redis now answers nobody for half a second
    retry = threading.Thread(target=cache._retry_pending_invalidations)
    retry.start()
    time.sleep(0.2)  # the retry waits on Redis

    assert cache.list_cache_reads_ahead(user_id=user.pk, field="f") == []

    retry.join()
    stalled.join()
    assert cache.list_cache_reads_ahead(user_id=user.pk, field="f") != []
