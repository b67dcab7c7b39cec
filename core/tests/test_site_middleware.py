"""Sessions, login and messages run for the admin and not for the API
(`core.middleware.SiteOnlyMiddleware`); CSRF and frame options for every path."""

import pytest
from django.test import Client

from accounts.models import User
from core.checks import ADMIN_NEEDS, site_middleware_check

pytestmark = pytest.mark.django_db

PASSWORD = "x-Long-pass-123"


@pytest.fixture
def operator():
    return User.objects.create_superuser(phone="+919811111111", password=PASSWORD)


def test_the_admin_sign_in_refuses_a_post_without_its_csrf_token(operator):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/admin/login/", {"username": operator.phone, "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_an_operator_signs_in_to_the_admin_with_session_and_csrf(operator):
    client = Client(enforce_csrf_checks=True)
    form = client.get("/admin/login/")
    assert form.status_code == 200
    token = form.cookies["csrftoken"].value
    signed_in = client.post(
        "/admin/login/",
        {
            "username": operator.phone,
            "password": PASSWORD,
            "next": "/admin/",
            "csrfmiddlewaretoken": token,
        },
    )
    assert signed_in.status_code == 302
    assert signed_in["X-Frame-Options"] == "DENY"
    index = client.get("/admin/")
    assert index.status_code == 200
    assert index.context["user"] == operator


def test_the_api_sets_no_session_or_csrf_cookie_and_keeps_the_security_headers():
    response = Client().post(
        "/api/auth/send-otp", {"phone": "+919876543210"}, content_type="application/json"
    )
    assert response.status_code == 200
    assert not response.cookies
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert not hasattr(response.wsgi_request, "session")  # SiteOnlyMiddleware skipped it


def test_the_admin_gets_the_session_and_user_of_the_site_middleware():
    response = Client().get("/admin/login/")
    assert hasattr(response.wsgi_request, "session")
    assert hasattr(response.wsgi_request, "user")


def test_a_site_middleware_list_without_what_the_admin_needs_fails_the_checks(settings):
    settings.SITE_MIDDLEWARE = ["django.contrib.sessions.middleware.SessionMiddleware"]
    assert [error.id for error in site_middleware_check()] == ["core.E002"]
    settings.SITE_MIDDLEWARE = list(reversed(ADMIN_NEEDS))
    assert [error.id for error in site_middleware_check()] == ["core.E003"]
    settings.SITE_MIDDLEWARE = list(ADMIN_NEEDS)
    assert site_middleware_check() == []
