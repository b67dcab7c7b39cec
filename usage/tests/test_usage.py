import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from accounts.models import User
from billing.models import BillingAccount, Subscription
from testing.concurrency import at_once
from usage.errors import DailyLimitExceeded
from usage.models import DailyUsage
from usage.selectors import usage_summary, usage_today
from usage.services import usage_consume, usage_refund


@pytest.fixture
def user(db):
    return User.objects.create_user(phone="+919876543210")


def test_basic_user_is_refused_at_the_limit(user, settings):
    settings.BASIC_DAILY_LIMIT = 3
    used = [usage_consume(user=user).used for _ in range(3)]
    assert used == [1, 2, 3]
    with pytest.raises(DailyLimitExceeded) as refused:
        usage_consume(user=user)
    assert refused.value.status_code == 429
    assert refused.value.details["limit"] == 3
    assert refused.value.details["used"] == 3
    assert int(refused.value.headers["Retry-After"]) > 0
    assert refused.value.headers["X-RateLimit-Remaining"] == "0"
    assert DailyUsage.objects.get(user=user).count == 3


def test_refund_gives_one_prompt_back_and_never_goes_negative(user, settings):
    settings.BASIC_DAILY_LIMIT = 1
    usage_consume(user=user)
    day = usage_today()
    assert usage_refund(user_id=user.pk, day=day) is True
    assert usage_refund(user_id=user.pk, day=day) is False
    assert DailyUsage.objects.get(user=user).count == 0
    assert usage_consume(user=user).remaining == 0


def test_pro_subscriber_has_no_limit(user, settings):
    settings.BASIC_DAILY_LIMIT = 1
    Subscription.objects.create(user=user, stripe_subscription_id="sub_1", status="active")
    for _ in range(5):
        summary = usage_consume(user=user)
    assert summary.limit is None and summary.remaining is None
    assert summary.used == 5


def test_canceled_subscription_is_basic_again(user, settings):
    settings.BASIC_DAILY_LIMIT = 1
    Subscription.objects.create(user=user, stripe_subscription_id="sub_1", status="canceled")
    usage_consume(user=user)
    with pytest.raises(DailyLimitExceeded):
        usage_consume(user=user)


def test_operator_grant_makes_pro_until_its_date(user, settings, time_machine):
    settings.BASIC_DAILY_LIMIT = 1
    time_machine.move_to(dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC), tick=False)
    BillingAccount.objects.create(
        user=user, pro_granted_until=dt.datetime(2026, 5, 2, tzinfo=dt.UTC)
    )
    assert usage_summary(user=user).limit is None
    time_machine.move_to(dt.datetime(2026, 5, 3, 12, tzinfo=dt.UTC), tick=False)
    assert usage_summary(user=user).limit == 1


def test_the_day_turns_in_usage_timezone(user, settings, time_machine):
    settings.BASIC_DAILY_LIMIT = 1
    settings.USAGE_TIMEZONE = "Asia/Kolkata"
    # 18:00 UTC is 23:30 in India; 18:45 UTC is already tomorrow there.
    time_machine.move_to(dt.datetime(2026, 5, 1, 18, 0, tzinfo=dt.UTC), tick=False)
    summary = usage_consume(user=user)
    assert summary.resets_at == dt.datetime(2026, 5, 2, tzinfo=ZoneInfo("Asia/Kolkata"))
    with pytest.raises(DailyLimitExceeded):
        usage_consume(user=user)
    time_machine.move_to(dt.datetime(2026, 5, 1, 18, 45, tzinfo=dt.UTC), tick=False)
    assert usage_consume(user=user).used == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_consumes_never_pass_the_limit(settings):
    settings.BASIC_DAILY_LIMIT = 20
    user = User.objects.create_user(phone="+919876543211")
    DailyUsage.objects.create(user=user, day=usage_today(), count=15)

    def send() -> int | None:
        try:
            return usage_consume(user=user).used
        except DailyLimitExceeded:
            return None

    results = at_once([send] * 30)
    assert sorted(used for used in results if used is not None) == [16, 17, 18, 19, 20]
    assert results.count(None) == 25
    assert DailyUsage.objects.get(user=user).count == 20


def test_a_limit_of_zero_refuses_every_basic_prompt_and_stores_no_count(user, settings):
    settings.BASIC_DAILY_LIMIT = 0
    with pytest.raises(DailyLimitExceeded) as refused:
        usage_consume(user=user)
    assert (refused.value.details["limit"], refused.value.details["used"]) == (0, 0)
    assert not DailyUsage.objects.filter(user=user).exists()


def test_a_limit_of_zero_leaves_pro_users_unlimited(user, settings):
    settings.BASIC_DAILY_LIMIT = 0
    Subscription.objects.create(user=user, stripe_subscription_id="sub_0", status="active")
    assert [usage_consume(user=user).used for _ in range(2)] == [1, 2]
