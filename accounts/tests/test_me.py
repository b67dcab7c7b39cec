"""GET and PATCH /api/user/me."""

import datetime as dt

import pytest

from accounts.tests.factories import DEFAULT_PASSWORD, UserFactory
from accounts.tests.helpers import bearer, login_with_password
from billing.models import BillingAccount
from usage.models import DailyUsage
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(api_client, user):
    tokens = login_with_password(api_client, str(user.phone), DEFAULT_PASSWORD)
    api_client.credentials(**bearer(tokens["access"]))
    return tokens


def patch(client, body):
    return client.patch("/api/user/me", body, format="json")


def test_me_shows_the_user_with_tier_and_usage(api_client, user, session, settings):
    settings.BASIC_DAILY_LIMIT = 20
    DailyUsage.objects.create(user=user, day=usage_today(), count=3)
    body = api_client.get("/api/user/me").json()
    assert set(body) == {
        "id",
        "phone",
        "name",
        "email",
        "tier",
        "has_password",
        "date_joined",
        "usage",
    }
    assert body["id"] == user.pk
    assert body["phone"] == str(user.phone)
    assert body["name"] == user.name
    assert body["email"] == user.email
    assert body["tier"] == "basic"
    assert body["has_password"] is True
    assert body["date_joined"].endswith("Z")
    assert body["usage"]["limit"] == 20
    assert body["usage"]["used"] == 3
    assert body["usage"]["remaining"] == 17
    assert body["usage"]["resets_at"].endswith("Z")


def test_a_pro_user_has_no_limit(api_client, user, session):
    BillingAccount.objects.create(
        user=user, pro_granted_until=dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    )
    body = api_client.get("/api/user/me").json()
    assert body["tier"] == "pro"
    assert body["usage"]["limit"] is None
    assert body["usage"]["remaining"] is None


def test_me_needs_a_token(api_client):
    response = api_client.get("/api/user/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_patch_changes_name_and_email(api_client, user, session):
    response = patch(api_client, {"name": "  Asha Rao ", "email": "Asha@Example.com"})
    assert response.status_code == 200
    assert response.json()["name"] == "Asha Rao"
    assert response.json()["email"] == "Asha@example.com"
    user.refresh_from_db()
    assert (user.name, user.email) == ("Asha Rao", "Asha@example.com")


def test_patch_with_one_field_leaves_the_other(api_client, user, session):
    email = user.email
    assert patch(api_client, {"name": "Only Name"}).json()["email"] == email


def test_null_or_empty_clears_and_is_rendered_null(api_client, user, session):
    body = patch(api_client, {"name": None, "email": ""}).json()
    assert body["name"] is None
    assert body["email"] is None
    user.refresh_from_db()
    assert (user.name, user.email) == ("", "")


def test_the_phone_cannot_be_changed_here_and_unknown_fields_are_ignored(api_client, user, session):
    phone = str(user.phone)
    response = patch(api_client, {"phone": "+919999999999", "tier": "pro", "is_staff": True})
    assert response.status_code == 200
    assert response.json()["phone"] == phone
    assert response.json()["tier"] == "basic"
    user.refresh_from_db()
    assert str(user.phone) == phone
    assert user.is_staff is False


@pytest.mark.parametrize(
    "body", [{"name": 5}, {"email": ["a@b.co"]}, {"name": {"x": 1}}, {"email": "nope"}]
)
def test_patch_with_wrong_types_is_a_validation_error(api_client, user, session, body):
    response = patch(api_client, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["details"]["fields"]) == set(body)
    user.refresh_from_db()
    assert user.name.startswith("User ")


def test_a_name_over_150_characters_is_refused(api_client, session):
    response = patch(api_client, {"name": "x" * 151})
    assert response.status_code == 400


def test_each_user_sees_only_themselves(api_client):
    first, second = UserFactory(), UserFactory()
    tokens = login_with_password(api_client, str(second.phone), DEFAULT_PASSWORD)
    body = api_client.get("/api/user/me", **bearer(tokens["access"])).json()
    assert body["id"] == second.pk != first.pk
