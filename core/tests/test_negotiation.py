"""A browser's Accept header never changes what the API answers: JSON, errors included."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml", "image/png"])
def test_an_unauthenticated_browser_gets_the_json_401(accept):
    response = APIClient().get("/api/user/me", HTTP_ACCEPT=accept)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_signed_in_browser_gets_json():
    client = APIClient()
    client.force_authenticate(UserFactory())

    response = client.get("/api/chatroom", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_a_bad_body_from_a_browser_is_the_json_400():
    response = APIClient().post(
        "/api/auth/send-otp", {"phone": "nope"}, format="json", HTTP_ACCEPT="text/html"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_the_schema_still_answers_the_format_its_url_asks_for():
    as_json = APIClient().get("/api/schema/?format=json", HTTP_ACCEPT="text/html")
    default = APIClient().get("/api/schema/", HTTP_ACCEPT="text/html")

    assert as_json.status_code == default.status_code == 200
    assert as_json["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert default["Content-Type"].startswith("application/vnd.oai.openapi")
    assert as_json.json()["openapi"].startswith("3.")
