"""Authentication reads the user through a Redis copy; every write must be seen at once."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.errors import RevocationUnavailable
from accounts.tests.factories import UserFactory
from chatrooms.payloads import iso


@pytest.fixture
def user(db):
    return UserFactory()


def _get_me(api_client, token):
    return api_client.get("/api/user/me", HTTP_AUTHORIZATION=f"Bearer {token}")


def _assert_served_without_the_database(api_client, token, django_assert_max_num_queries):
    """The first list request stores the page; the next needs neither the page nor the user
    from PostgreSQL (both come from Redis)."""
    assert api_client.get("/api/chatroom", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    with django_assert_max_num_queries(0):
        response = api_client.get("/api/chatroom", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["X-Cache"] == "HIT"


def test_a_repeated_request_does_not_read_the_user_row(
    api_client, user, django_assert_max_num_queries
):
    cache.clear()  # the few seconds after the user's creation, when no copy is kept, are over
    token = AccessToken.for_user(user)
    assert api_client.get("/api/chatroom", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    # The chatroom list is cached too, so a repeat needs no database at all.
    with django_assert_max_num_queries(0):
        response = api_client.get("/api/chatroom", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["X-Cache"] == "HIT"


def test_deactivating_a_user_locks_them_out_on_the_next_request(api_client, user):
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200
    user.is_active = False
    user.save()  # as the admin does
    response = _get_me(api_client, token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


def test_a_new_password_revokes_access_tokens_held_in_the_cache(api_client, user):
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200
    user.set_password("another-Orbit-8-lantern")
    user.save(update_fields=["password"])
    assert _get_me(api_client, token).status_code == 401


def test_a_profile_edit_shows_on_the_next_request(api_client, user):
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).json()["name"] == user.name
    user.name = "Renamed"
    user.save(update_fields=["name"])
    assert _get_me(api_client, token).json()["name"] == "Renamed"


def test_a_deleted_user_is_refused(api_client, user):
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200
    user.delete()
    assert _get_me(api_client, token).status_code == 401


def test_users_deleted_in_bulk_by_the_admin_are_refused(admin_client, api_client, user):
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200
    response = admin_client.post(
        "/admin/accounts/user/",
        {"action": "delete_selected", "_selected_action": [user.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert _get_me(api_client, token).status_code == 401


def test_a_copy_read_before_a_change_cannot_be_stored_after_it(api_client, user):
    from django_redis import get_redis_connection

    from accounts.auth_cache import (
        auth_user_forget,
        auth_user_from_redis,
        auth_user_redis_key,
        auth_user_remember,
    )
    from accounts.models import User

    stale = User.objects.get(pk=user.pk)  # a request reads the row...
    user.is_active = False
    user.save()  # ...the admin deactivates the user and the copy is forgotten...
    auth_user_remember(user=stale)  # ...then the slow request tries to store what it read.
    raw = get_redis_connection("default").get(auth_user_redis_key(user_id=user.pk))
    assert auth_user_from_redis(raw) is None
    token = AccessToken.for_user(stale)
    assert _get_me(api_client, token).status_code == 401
    auth_user_forget(user_id=user.pk)


def test_right_after_a_login_requests_are_served_from_the_copy(
    api_client, user, django_assert_max_num_queries
):
    """A login writes the user's last login; that alone does not keep the copy out."""
    user.set_password("a-long-password-1")
    user.save()
    cache.clear()  # the few seconds after that change, when no copy is kept, are over
    logged_in = api_client.post(
        "/api/auth/login",
        {"phone": str(user.phone), "password": "a-long-password-1"},
        format="json",
    )
    assert logged_in.status_code == 200
    user.refresh_from_db()
    assert user.last_login is not None
    token = logged_in.json()["access"]
    _assert_served_without_the_database(api_client, token, django_assert_max_num_queries)


def test_the_export_shows_the_latest_login(api_client, user):
    cache.clear()
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200  # the copy is kept now
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])  # a login's, which leaves the copy as it was
    exported = api_client.get("/api/user/me/export", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert exported.status_code == 200
    assert exported.json()["user"]["last_login"] == iso(user.last_login)


def test_a_new_account_is_served_from_the_copy_from_its_first_requests(
    db, api_client, django_assert_max_num_queries
):
    """Its creation and its first login (the time, the phone's verification) forget nothing."""
    phone = "+14155550177"
    sent = api_client.post("/api/auth/send-otp", {"phone": phone}, format="json").json()
    verified = api_client.post(
        "/api/auth/verify-otp", {"phone": phone, "otp": sent["otp"]}, format="json"
    ).json()
    assert verified["created"] is True
    token = verified["access"]
    _assert_served_without_the_database(api_client, token, django_assert_max_num_queries)


def test_saving_an_existing_row_under_a_new_object_forgets_the_copy(api_client, user):
    """Only a row the database numbers is new: an object given an existing id is an update."""
    cache.clear()
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200  # the copy is kept now
    stand_in = UserFactory._meta.model(pk=user.pk, phone=user.phone, is_active=False)
    stand_in.password = user.password
    stand_in.date_joined = user.date_joined
    stand_in.save()
    assert _get_me(api_client, token).status_code == 401


def test_a_password_set_before_a_login_time_save_still_revokes_on_the_next_save(
    api_client, user, cache_redis
):
    """A save of the login time alone writes nothing else: the password set in memory before
    it is still a change for the save that writes it, which must revoke (or refuse)."""
    token = AccessToken.for_user(user)
    assert _get_me(api_client, token).status_code == 200
    user.set_password("a-brand-new-password-9")
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    cache_redis.refuse_writes()
    with pytest.raises(RevocationUnavailable):
        user.save()
    cache_redis.accept_writes()
    user.save()
    assert _get_me(api_client, token).status_code == 401


def test_a_new_row_removes_a_copy_left_under_its_id(db, api_client):
    """A database restored from a backup hands out ids again that Redis still has copies of:
    the new account is served as itself, not as the copy of the lost one."""
    lost = UserFactory()
    cache.clear()
    assert _get_me(api_client, AccessToken.for_user(lost)).status_code == 200  # copy kept
    User = UserFactory._meta.model
    User.objects.filter(pk=lost.pk).delete()  # the restore: the row gone, not its copy
    with connection.cursor() as cursor:  # and the id sequence rewound
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)",
            [User._meta.db_table, lost.pk],
        )
    new = User.objects.create_user(phone="+14155550188")
    assert new.pk == lost.pk

    response = _get_me(api_client, AccessToken.for_user(new))

    assert response.status_code == 200
    assert response.json()["phone"] == "+14155550188"
