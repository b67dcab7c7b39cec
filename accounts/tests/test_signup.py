"""signup: unverified account + login code; verify-otp completes it."""

import pytest

from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import bearer, post, send_code

pytestmark = pytest.mark.django_db

PHONE = "+919876543210"
PASSWORD = "violet-Canyon-42-drift"


def signup(client, **body):
    return post(client, "/api/auth/signup", {"phone": PHONE, **body})


def verify(client, code):
    return post(client, "/api/auth/verify-otp", {"phone": PHONE, "otp": code})


def login(client, password=PASSWORD):
    return post(client, "/api/auth/login", {"phone": PHONE, "password": password})


def test_signup_creates_an_unverified_account_and_sends_a_code(api_client):
    response = signup(api_client, name="Asha", email="Asha@Example.COM", password=PASSWORD)
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user", "detail", "otp", "expires_in"}
    assert body["expires_in"] == 300
    assert body["user"]["phone"] == PHONE
    assert body["user"]["name"] == "Asha"
    assert body["user"]["email"] == "Asha@example.com"
    assert body["user"]["has_password"] is True
    assert body["user"]["tier"] == "basic"
    user = User.objects.get(phone=PHONE)
    assert user.phone_verified_at is None


def test_verifying_the_signup_code_logs_in_with_created_true_and_keeps_the_password(api_client):
    code = signup(api_client, password=PASSWORD).json()["otp"]
    verified = verify(api_client, code)
    assert verified.status_code == 200
    assert verified.json()["created"] is True
    assert verified.json()["user"]["has_password"] is True
    assert login(api_client).status_code == 200


def test_login_before_verifying_is_refused_only_after_the_right_password(api_client):
    signup(api_client, password=PASSWORD)
    unverified = login(api_client)
    assert unverified.status_code == 403
    assert unverified.json()["error"]["code"] == "phone_not_verified"
    wrong = login(api_client, password="not-the-password-1")
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_credentials"


def test_signup_for_a_verified_account_is_phone_taken(api_client):
    UserFactory(phone=PHONE)
    response = signup(api_client, name="Someone else")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "phone_taken"
    assert User.objects.get(phone=PHONE).name != "Someone else"


def test_signup_in_another_format_of_a_taken_number_is_phone_taken(api_client):
    UserFactory(phone=PHONE)
    response = post(api_client, "/api/auth/signup", {"phone": "098765 43210"})
    assert response.status_code == 409


def test_signup_again_for_an_unverified_account_updates_it_and_sends_a_new_code(api_client, clock):
    first = signup(api_client, name="Asha", email="asha@example.com").json()
    clock.shift(61)
    second = signup(api_client, name="Asha R")
    assert second.status_code == 201
    assert second.json()["user"]["id"] == first["user"]["id"]
    assert second.json()["user"]["name"] == "Asha R"
    assert second.json()["user"]["email"] == "asha@example.com"
    assert User.objects.filter(phone=PHONE).count() == 1
    assert verify(api_client, second.json()["otp"]).json()["created"] is True


def test_signup_again_within_the_cooldown_is_refused_and_changes_nothing(api_client):
    signup(api_client, name="Asha")
    refused = signup(api_client, name="Mallory", password=PASSWORD)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "otp_resend_too_soon"
    assert refused["Retry-After"] == "60"
    user = User.objects.get(phone=PHONE)
    assert user.name == "Asha"
    assert not user.has_usable_password()


def test_a_password_planted_by_an_unverified_signup_is_dropped_by_a_plain_code_login(
    api_client, clock
):
    # Someone signs up with a number they do not own and sets a password...
    signup(api_client, password=PASSWORD)
    clock.shift(61)
    # ...then the owner logs in with a code from send-otp.
    code = send_code(api_client, PHONE).json()["otp"]
    owner = verify(api_client, code)
    assert owner.json()["created"] is True
    assert owner.json()["user"]["has_password"] is False
    assert login(api_client).json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    ("password", "message_part"),
    [
        ("short1", "too short"),
        ("12345678901", "entirely numeric"),
        ("password123", "too common"),
    ],
)
def test_signup_checks_the_password_rules(api_client, password, message_part):
    response = signup(api_client, password=password)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(message_part in message for message in error["details"]["fields"]["password"])
    assert not User.objects.filter(phone=PHONE).exists()


def test_signup_refuses_a_password_like_the_email(api_client):
    response = signup(api_client, email="sunflowerfield@example.com", password="sunflowerfield")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["details"]["fields"]


def test_signup_refuses_a_bad_email(api_client):
    response = signup(api_client, email="not-an-email")
    assert response.status_code == 400
    assert "email" in response.json()["error"]["details"]["fields"]


def test_signup_without_profile_data_gives_null_name_and_email(api_client):
    body = signup(api_client).json()
    assert body["user"]["name"] is None
    assert body["user"]["email"] is None
    assert body["user"]["has_password"] is False


def test_the_tokens_from_a_signup_code_belong_to_the_new_account(api_client):
    code = signup(api_client, password=PASSWORD).json()["otp"]
    access = verify(api_client, code).json()["access"]
    me = api_client.get("/api/user/me", **bearer(access))
    assert me.json()["phone"] == PHONE
