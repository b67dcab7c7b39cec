"""Refresh token reuse detection: a rotated refresh token presented again revokes every
token rotated from the same login (its family), whoever presents it."""

import logging

import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import bearer, login_with_code, login_with_password, post
from testing.concurrency import at_once

pytestmark = pytest.mark.django_db


def refresh(client, token):
    return post(client, "/api/auth/token/refresh", {"refresh": token})


def rotate(client, token):
    response = refresh(client, token)
    assert response.status_code == 200, response.json()
    return response.json()["refresh"]


def assert_refused(client, token):
    response = refresh(client, token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_invalid"


@pytest.mark.parametrize("replayed", [0, 1])
def test_a_rotated_refresh_token_presented_again_revokes_its_family(
    api_client, user, caplog, replayed
):
    a = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)["refresh"]
    other_device = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)["refresh"]
    b = rotate(api_client, a)  # say, by a thief who copied A
    c = rotate(api_client, b)

    with caplog.at_level(logging.WARNING, logger="accounts.tokens"):
        assert_refused(api_client, [a, b][replayed])  # the owner, late
    [record] = [r for r in caplog.records if "reuse" in r.getMessage()]

    # Every token descended from that login is refused now, the thief's newest too.
    for token in (a, b, c):
        assert_refused(api_client, token)
    # The same user's other login keeps working.
    assert refresh(api_client, other_device).status_code == 200

    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert f"user {user.pk}," in message
    assert "family " in message
    for token in (a, b, c):
        assert token not in message
        assert token.split(".")[2] not in message


def test_reuse_of_an_otp_login_revokes_the_token_the_thief_rotated_to(api_client):
    victim = login_with_code(api_client, "+919876500007")
    thiefs = rotate(APIClient(), victim["refresh"])
    assert_refused(api_client, victim["refresh"])
    assert_refused(APIClient(), thiefs)


def test_a_logged_out_refresh_token_is_refused_without_a_reuse_alarm(api_client, user, caplog):
    session = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    other_session = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    logout = post(
        api_client, "/api/auth/logout", {"refresh": session["refresh"]}, **bearer(session["access"])
    )
    assert logout.status_code == 204
    with caplog.at_level(logging.WARNING, logger="accounts.tokens"):
        assert_refused(api_client, session["refresh"])
    assert not [r for r in caplog.records if "reuse" in r.getMessage()]
    assert refresh(api_client, other_session["refresh"]).status_code == 200


def test_logging_out_with_a_token_someone_rotated_ends_their_token_too(api_client, user):
    session = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    thiefs = rotate(APIClient(), session["refresh"])
    logout = post(
        api_client, "/api/auth/logout", {"refresh": session["refresh"]}, **bearer(session["access"])
    )
    assert logout.status_code == 204
    assert_refused(APIClient(), thiefs)


def test_a_token_issued_before_families_were_recorded_starts_one_when_rotated(api_client, user):
    legacy = str(RefreshToken.for_user(user))  # as the code before families issued them
    rotated = rotate(api_client, legacy)
    assert_refused(api_client, legacy)
    assert_refused(api_client, rotated)


@pytest.mark.django_db(transaction=True)
def test_of_two_concurrent_refreshes_with_one_token_the_second_is_a_reuse():
    user = UserFactory()
    session = login_with_password(APIClient(), str(user.phone), DEFAULT_PASSWORD)
    responses = at_once([lambda: refresh(APIClient(), session["refresh"])] * 2, connect_first=True)
    assert sorted(r.status_code for r in responses) == [200, 401]
    [won] = [r.json() for r in responses if r.status_code == 200]
    assert_refused(APIClient(), won["refresh"])
