"""Correctly signed tokens with a user id that names no user: a 401 like any other bad token."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.factories import UserFactory
from accounts.tests.helpers import bearer, post

pytestmark = pytest.mark.django_db

MALFORMED_IDS = [
    pytest.param("abc", id="a string"),
    pytest.param("", id="an empty string"),
    pytest.param("{id}.0", id="a decimal string"),
    pytest.param("0{id}", id="a leading zero"),
    pytest.param(" {id}", id="a leading space"),
    pytest.param("+{id}", id="a plus sign"),
    pytest.param("\uff11", id="a digit outside ascii"),
    pytest.param("9" * 5000, id="five thousand digits"),
    pytest.param(str(2**63), id="past bigint as a string"),
    pytest.param(1.5, id="a fraction"),
    pytest.param("float", id="the id as a float"),
    pytest.param(True, id="true"),
    pytest.param(None, id="null"),
    pytest.param(0, id="zero"),
    pytest.param(-1, id="negative"),
    pytest.param(2**63, id="past bigint"),
    pytest.param(10**40, id="huge"),
    pytest.param({"id": "{id}"}, id="an object"),
    pytest.param(["{id}"], id="a list"),
]


def _claim(value: Any, user_id: int) -> Any:
    """`value` with "{id}" standing for a real user's id, and "float" for it as a float."""
    if value == "float":
        return float(user_id)
    if isinstance(value, str):
        return value.replace("{id}", str(user_id))
    if isinstance(value, dict):
        return {key: _claim(item, user_id) for key, item in value.items()}
    if isinstance(value, list):
        return [_claim(item, user_id) for item in value]
    return value


def _assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] in {"token_invalid", "authentication_failed"}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("value", MALFORMED_IDS)
def test_an_access_token_with_a_malformed_user_id_is_a_401(api_client, value):
    user = UserFactory(no_password=True)  # no hash to compute: nobody logs in here
    token = AccessToken.for_user(user)  # signed with our key, the password claim current
    token["user_id"] = _claim(value, user.pk)
    _assert_refused(api_client.get("/api/user/me", **bearer(str(token))))
    _assert_refused(api_client.get("/api/chatroom", **bearer(str(token))))


@pytest.mark.parametrize("spelling", [str, int], ids=["a string, as issued", "an integer"])
def test_the_id_as_simplejwt_writes_it_and_as_older_releases_did_is_accepted(api_client, spelling):
    user = UserFactory(no_password=True)  # no hash to compute: nobody logs in here
    token = AccessToken.for_user(user)
    token["user_id"] = spelling(user.pk)
    response = api_client.get("/api/user/me", **bearer(str(token)))
    assert response.status_code == 200
    assert response.json()["id"] == user.pk


def test_an_access_token_of_a_deleted_user_is_a_401(api_client):
    user = UserFactory(no_password=True)  # no hash to compute: nobody logs in here
    token = str(AccessToken.for_user(user))
    assert api_client.get("/api/user/me", **bearer(token)).status_code == 200  # now cached
    user.delete()
    _assert_refused(api_client.get("/api/user/me", **bearer(token)))


@pytest.mark.parametrize("value", MALFORMED_IDS)
def test_a_refresh_token_with_a_malformed_user_id_is_a_401(api_client, value):
    user = UserFactory(no_password=True)  # no hash to compute: nobody logs in here
    token = RefreshToken.for_user(user)  # recorded as outstanding, like a real login's
    token["user_id"] = _claim(value, user.pk)
    response = post(api_client, "/api/auth/token/refresh", {"refresh": str(token)})
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "token_invalid"
