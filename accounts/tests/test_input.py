"""Phone numbers in any format, and the error shape for bad bodies."""

import pytest

from accounts.models import User
from accounts.tests.helpers import login_with_code, post, send_code

pytestmark = pytest.mark.django_db

E164 = "+919876543210"


@pytest.mark.parametrize(
    "written", ["+919876543210", "9876543210", "098765 43210", "+91 98765-43210", "0091 9876543210"]
)
def test_every_common_format_reaches_the_same_account(api_client, written, clock):
    first = login_with_code(api_client, E164)
    clock.shift(61)
    sent = send_code(api_client, written)
    assert sent.status_code == 200
    verified = post(
        api_client, "/api/auth/verify-otp", {"phone": written, "otp": sent.json()["otp"]}
    )
    assert verified.status_code == 200
    assert verified.json()["user"]["id"] == first["user"]["id"]
    assert verified.json()["user"]["phone"] == E164
    assert User.objects.count() == 1


def test_the_default_region_applies_to_numbers_without_a_plus(api_client, settings):
    settings.PHONENUMBER_DEFAULT_REGION = "US"
    user = login_with_code(api_client, "(415) 555-2671")["user"]
    assert user["phone"] == "+14155552671"


@pytest.mark.parametrize("phone", ["12345", "+91 12", "not a phone", "+999 123456789", "9" * 40])
def test_invalid_numbers_are_a_field_error_on_phone(api_client, phone):
    for path in ("/api/auth/send-otp", "/api/auth/signup", "/api/auth/forgot-password"):
        response = post(api_client, path, {"phone": phone})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert list(error["details"]["fields"]) == ["phone"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/send-otp", {"phone": 919876543210}, "phone"),
        ("/api/auth/verify-otp", {"phone": E164, "otp": 123456}, "otp"),
        ("/api/auth/signup", {"phone": E164, "name": 7}, "name"),
        ("/api/auth/signup", {"phone": E164, "password": True}, "password"),
        ("/api/auth/login", {"phone": E164, "password": 12345678}, "password"),
        ("/api/auth/token/refresh", {"refresh": ["x"]}, "refresh"),
        (
            "/api/auth/reset-password",
            {"phone": E164, "otp": "123456", "new_password": 1.5},
            "new_password",
        ),
    ],
)
def test_string_fields_accept_only_json_strings(api_client, path, body, field):
    response = post(api_client, path, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]


def test_malformed_json_is_a_400_in_the_error_shape(api_client):
    response = api_client.post(
        "/api/auth/send-otp", data='{"phone": "+91', content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_json_array_body_is_a_400(api_client):
    response = api_client.post("/api/auth/login", data="[]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"],
)
def test_a_non_json_body_is_415(api_client, content_type):
    response = api_client.post(
        "/api/auth/send-otp", data="phone=%2B919876543210", content_type=content_type
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert not User.objects.exists()


def test_a_missing_body_is_a_field_error(api_client):
    response = api_client.post("/api/auth/verify-otp")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"phone", "otp"}


def test_wrong_method_is_405_json(api_client):
    response = api_client.get("/api/auth/login")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_a_trailing_slash_is_not_a_route(api_client):
    response = post(api_client, "/api/auth/send-otp/", {"phone": E164})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
