"""Usage rows in the admin: listed, never written by hand (the users' page resets today's)."""

from __future__ import annotations

import pytest

from accounts.tests.factories import UserFactory
from usage.models import DailyUsage
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db


def test_usage_rows_are_listed_and_read_only(admin_client):
    row = DailyUsage.objects.create(user=UserFactory(), day=usage_today(), count=4)

    page = admin_client.get("/admin/usage/dailyusage/")
    assert list(page.context["cl"].result_list) == [row]
    assert admin_client.get("/admin/usage/dailyusage/add/").status_code == 403
    url = f"/admin/usage/dailyusage/{row.pk}/change/"
    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"count": 0}).status_code == 403
    assert admin_client.post(f"/admin/usage/dailyusage/{row.pk}/delete/").status_code == 403
    row.refresh_from_db()
    assert row.count == 4
