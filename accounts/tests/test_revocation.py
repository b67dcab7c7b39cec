"""A change that ends a user's sessions never depends on a cache write that may fail.

Authentication reads the user row from a Redis copy (`accounts.auth_cache`). Here the cache
is a Redis of the test's own, made to refuse every write while it still answers reads (out
of memory with `noeviction`, as a full production Redis does): the old copy stays readable,
so a change that could not replace it must not happen at all.
"""

from __future__ import annotations

import pytest

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory

NEW_PASSWORD = "another-Orbit-8-lantern"


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _login(api_client, user: User) -> str:
    response = api_client.post(
        "/api/auth/login", {"phone": str(user.phone), "password": DEFAULT_PASSWORD}, format="json"
    )
    assert response.status_code == 200, response.content
    access: str = response.json()["access"]
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 200  # now cached
    return access


@pytest.mark.django_db
def test_a_password_change_that_cannot_clear_the_cache_is_refused(api_client, cache_redis):
    user = UserFactory()
    access = _login(api_client, user)

    cache_redis.refuse_writes()
    response = api_client.post(
        "/api/auth/change-password",
        {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
        **_bearer(access),
    )
    # Before: 200, and the old token went on authenticating from the stale copy.
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable"
    assert response["Retry-After"] == "5"
    user.refresh_from_db()
    assert user.check_password(DEFAULT_PASSWORD)  # nothing changed

    cache_redis.accept_writes()
    response = api_client.post(
        "/api/auth/change-password",
        {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        format="json",
        **_bearer(access),
    )
    assert response.status_code == 200
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 401


@pytest.mark.django_db
def test_a_password_reset_that_cannot_clear_the_cache_is_refused(api_client, cache_redis):
    user = UserFactory()
    access = _login(api_client, user)
    sent = api_client.post("/api/auth/forgot-password", {"phone": str(user.phone)}, format="json")
    code = sent.json()["otp"]

    cache_redis.refuse_writes()
    reset = {"phone": str(user.phone), "otp": code, "new_password": NEW_PASSWORD}
    response = api_client.post("/api/auth/reset-password", reset, format="json")
    assert response.status_code == 503, response.content
    user.refresh_from_db()
    assert user.check_password(DEFAULT_PASSWORD)
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 200

    cache_redis.accept_writes()
    # The refused reset used nothing up: the same code works once Redis takes writes again.
    assert api_client.post("/api/auth/reset-password", reset, format="json").status_code == 200
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 401


@pytest.mark.django_db
def test_a_deactivation_that_cannot_clear_the_cache_is_refused_in_the_admin(
    api_client, admin_client, cache_redis
):
    user = UserFactory()
    access = _login(api_client, user)

    cache_redis.refuse_writes()
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert User.objects.filter(pk=user.pk).exists()
    user.is_active = False
    with pytest.raises(Exception, match="nothing was changed"):
        user.save()
    user.refresh_from_db()
    assert user.is_active
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 200

    cache_redis.accept_writes()
    user.is_active = False
    user.save()
    assert api_client.get("/api/user/me", **_bearer(access)).status_code == 401


@pytest.mark.django_db
def test_logins_and_profile_edits_still_work_while_the_cache_refuses_writes(
    api_client, cache_redis
):
    user = UserFactory()
    cache_redis.refuse_writes()
    access = _login(api_client, user)  # saves last_login: a change that revokes nothing
    response = api_client.patch(
        "/api/user/me", {"name": "Renamed"}, format="json", **_bearer(access)
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed"
