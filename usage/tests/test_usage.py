import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from accounts.models import User
from billing.models import BillingAccount, Subscription
from testing.concurrency import at_once
from usage.errors import DailyLimitExceeded
from usage.models import PRO_SLOTS, DailyUsage, pro_slot
from usage.selectors import usage_summary, usage_today
from usage.services import (
    usage_consume,
    usage_count_unlimited,
    usage_refund,
    usage_reset_today,
)


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
    assert usage_refund(user_id=user.pk, day=day, chatroom_id=7) is True
    assert usage_refund(user_id=user.pk, day=day, chatroom_id=7) is False
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


def _rows_today(user: User) -> dict[int, int]:
    rows = DailyUsage.objects.filter(user=user, day=usage_today())
    return dict(rows.values_list("slot", "count"))


def test_pro_prompts_are_counted_on_their_chatrooms_slots_and_read_as_one_day(user):
    Subscription.objects.create(user=user, stripe_subscription_id="sub_s", status="active")
    chatrooms = [3, 3 + PRO_SLOTS, 4]  # two chatrooms of one slot, one of another
    used = [usage_count_unlimited(user=user, chatroom_id=room).used for room in chatrooms]
    assert used == [1, 2, 3]
    assert _rows_today(user) == {pro_slot(3): 2, pro_slot(4): 1}
    assert pro_slot(3) != pro_slot(4)
    summary = usage_summary(user=user)
    assert (summary.used, summary.limit) == (3, None)
    assert usage_summary(user=user, is_pro=True).used == 3


def test_a_basic_limit_counts_the_prompts_sent_as_pro_earlier_that_day(user, settings):
    """Pro until this morning: the prompts sent as Pro (other slots) count against the
    limit, so a downgrade does not hand out a fresh day."""
    settings.BASIC_DAILY_LIMIT = 3
    for room in (1, 2):
        usage_count_unlimited(user=user, chatroom_id=room)
    assert usage_consume(user=user).used == 3
    with pytest.raises(DailyLimitExceeded) as refused:
        usage_consume(user=user)
    assert refused.value.details["used"] == 3
    assert _rows_today(user) == {0: 1, pro_slot(1): 1, pro_slot(2): 1}


def test_a_basic_user_at_the_limit_in_pro_prompts_alone_stores_no_count(user, settings):
    settings.BASIC_DAILY_LIMIT = 2
    for room in (1, 2):
        usage_count_unlimited(user=user, chatroom_id=room)
    with pytest.raises(DailyLimitExceeded):
        usage_consume(user=user)
    assert 0 not in _rows_today(user)


def test_a_refund_takes_from_the_chatrooms_slot_first_then_slot_zero(user, settings):
    settings.BASIC_DAILY_LIMIT = 5
    usage_consume(user=user)  # slot 0
    usage_count_unlimited(user=user, chatroom_id=9)
    day = usage_today()
    assert usage_refund(user_id=user.pk, day=day, chatroom_id=9) is True
    assert _rows_today(user) == {0: 1, pro_slot(9): 0}
    assert usage_refund(user_id=user.pk, day=day, chatroom_id=9) is True  # from slot 0
    assert usage_refund(user_id=user.pk, day=day, chatroom_id=9) is False
    assert _rows_today(user) == {0: 0, pro_slot(9): 0}


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_of_one_row_give_back_what_it_holds_and_no_more():
    user = User.objects.create_user(phone="+919876543212")
    DailyUsage.objects.create(user=user, day=usage_today(), count=3)
    refunded = at_once(
        [lambda: usage_refund(user_id=user.pk, day=usage_today(), chatroom_id=1)] * 6
    )
    assert sorted(refunded) == [False] * 3 + [True] * 3
    assert _rows_today(user) == {0: 0}


def test_an_operator_reset_empties_every_slot_and_keeps_the_tokens(user):
    usage_count_unlimited(user=user, chatroom_id=1)
    usage_count_unlimited(user=user, chatroom_id=2)
    DailyUsage.objects.filter(user=user, slot=pro_slot(1)).update(tokens=40)
    assert usage_reset_today(user=user) is True
    assert set(_rows_today(user).values()) == {0}
    assert usage_summary(user=user).tokens_today == 40
    assert usage_reset_today(user=user) is False


@pytest.mark.django_db(transaction=True)
def test_concurrent_refunds_go_on_to_slot_zero_once_the_chatrooms_slot_is_empty():
    user = User.objects.create_user(phone="+919876543213")
    DailyUsage.objects.create(user=user, day=usage_today(), slot=0, count=1)
    DailyUsage.objects.create(user=user, day=usage_today(), slot=pro_slot(5), count=1)
    refunded = at_once(
        [lambda: usage_refund(user_id=user.pk, day=usage_today(), chatroom_id=5)] * 4,
        connect_first=True,
    )
    assert sorted(refunded) == [False, False, True, True]
    assert _rows_today(user) == {0: 0, pro_slot(5): 0}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("slot_zero", [0, 5], ids=["no slot 0 row yet", "slot 0 row"])
def test_concurrent_basic_consumes_never_pass_the_limit_with_prompts_on_pro_slots(
    settings, slot_zero: int
):
    settings.BASIC_DAILY_LIMIT = 20
    user = User.objects.create_user(phone="+919876543214")
    if slot_zero:
        DailyUsage.objects.create(user=user, day=usage_today(), slot=0, count=slot_zero)
    DailyUsage.objects.create(user=user, day=usage_today(), slot=pro_slot(1), count=15 - slot_zero)

    def send() -> int | None:
        try:
            return usage_consume(user=user).used
        except DailyLimitExceeded:
            return None

    results = at_once([send] * 12, connect_first=True)
    assert sorted(used for used in results if used is not None) == [16, 17, 18, 19, 20]
    assert usage_summary(user=user).used == 20
