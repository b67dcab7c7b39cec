"""Prompts refused at BASIC_DAILY_LIMIT are counted; those let through are not."""

import pytest

from accounts.models import User
from testing.metrics import metric_value
from usage.errors import DailyLimitExceeded
from usage.services import usage_consume

pytestmark = pytest.mark.django_db


def test_a_refusal_at_the_daily_limit_is_counted(settings):
    settings.BASIC_DAILY_LIMIT = 1
    user = User.objects.create_user(phone="+919876543210")
    before = metric_value("gemini_daily_limit_refusals_total")

    usage_consume(user=user)
    assert metric_value("gemini_daily_limit_refusals_total") == before
    with pytest.raises(DailyLimitExceeded):
        usage_consume(user=user)

    assert metric_value("gemini_daily_limit_refusals_total") == before + 1
