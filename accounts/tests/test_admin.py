"""The Django admin for operators: find, create and edit users by phone."""

import pytest
from django.test import Client

from accounts.models import User
from accounts.tests.factories import UserFactory
from accounts.tests.helpers import send_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client():
    operator = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)
    return client


def test_search_finds_a_user_by_a_number_in_any_format(operator_client):
    target = UserFactory(phone="+919876543210", name="Target")
    UserFactory(phone="+919876500000", name="Other")
    for term in ("98765 43210", "+91 98765-43210", "43210", "Target"):
        page = operator_client.get("/admin/accounts/user/", {"q": term})
        assert page.status_code == 200
        assert page.context["cl"].result_count == 1, term
        assert list(page.context["cl"].result_list) == [target]


def test_list_filters_by_verified(operator_client):
    UserFactory(unverified=True, name="Pending")
    page = operator_client.get("/admin/accounts/user/", {"verified": "no"})
    assert [user.name for user in page.context["cl"].result_list] == ["Pending"]


def test_the_add_form_creates_a_user_keyed_by_phone(operator_client):
    response = operator_client.post(
        "/admin/accounts/user/add/",
        {
            "phone": "098765 43210",
            "usable_password": "true",
            "password1": "violet-Canyon-42-drift",
            "password2": "violet-Canyon-42-drift",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user = User.objects.get(phone="+919876543210")
    assert user.check_password("violet-Canyon-42-drift")


def test_the_add_form_can_make_a_password_less_user(operator_client):
    response = operator_client.post(
        "/admin/accounts/user/add/", {"phone": "+919876543211", "usable_password": "false"}
    )
    assert response.status_code == 302
    assert not User.objects.get(phone="+919876543211").has_usable_password()


def test_the_change_form_edits_a_user_without_showing_the_hash(operator_client):
    user = UserFactory(phone="+919876543210")
    page = operator_client.get(f"/admin/accounts/user/{user.pk}/change/")
    assert page.status_code == 200
    assert user.password.encode() not in page.content
    assert user.password.split("$")[-1].encode() not in page.content
    form = page.context["adminform"].form
    assert "password" in form.fields and form.fields["password"].disabled

    response = operator_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {
            "phone": "+919876543210",
            "name": "Renamed",
            "email": "",
            "is_active": "on",
            "date_joined_0": "2030-01-01",
            "date_joined_1": "10:00:00",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    assert user.name == "Renamed"
    assert user.has_usable_password()


def test_codes_are_visible_to_operators_but_never_their_hash(operator_client, api_client):
    send_code(api_client, "+919876543210")
    listing = operator_client.get("/admin/accounts/onetimecode/")
    assert listing.status_code == 200
    [code] = listing.context["cl"].result_list
    detail = operator_client.get(f"/admin/accounts/onetimecode/{code.pk}/change/")
    assert detail.status_code == 200
    assert code.code_hash.encode() not in detail.content
    assert operator_client.get("/admin/accounts/onetimecode/add/").status_code == 403
