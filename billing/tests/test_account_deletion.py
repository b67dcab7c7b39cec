"""DELETE /api/user/me: proof of ownership, the Stripe subscription canceled through the
billing app, and then no row and no Redis key of the user left; the number signs up again."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.apps import apps
from django.db import transaction
from django_redis import get_redis_connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.errors import AccountGone
from accounts.models import KnownNetwork, LoginFailureCount, OneTimeCode, User
from accounts.services import account_delete, account_lock_for_deletion
from accounts.tests.helpers import bearer, login_with_code, post, send_code, wrong_code
from billing import events, stripe_client
from billing.models import BillingAccount, RetiredCustomer, StripeEvent
from billing.services import billing_account_of, retired_customer_events_reduce
from billing.tests.helpers import error_code, subscribe
from chatrooms import streaming
from chatrooms.models import Chatroom, Message
from chatrooms.services import chatrooms_of_user_delete
from core.db import constraints_check_now
from testing.concurrency import at_once, until_another_waits_for_this_transaction
from usage.models import DailyUsage, pro_slot
from usage.selectors import usage_today

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+919812345001"
PASSWORD = "a long and unusual passphrase 42"


def _auth(access: str) -> Any:
    return bearer(access)


def _delete(client: APIClient, access: str, body: dict[str, Any]) -> Any:
    return client.delete("/api/user/me", body, format="json", **_auth(access))


def _account_with_history(client: APIClient, *, password: str | None) -> dict[str, Any]:
    """A user who logged in, (optionally) set a password, chatted, and was served from the
    caches: rows in every table and keys in Redis."""
    login = login_with_code(client, PHONE)
    access = login["access"]
    if password is not None:
        changed = post(
            client, "/api/auth/change-password", {"new_password": password}, **_auth(access)
        )
        assert changed.status_code == 200, changed.json()
        access = changed.json()["access"]
    user = User.objects.get(phone=PHONE)
    room = client.post("/api/chatroom", {"name": "Travel"}, format="json", **_auth(access))
    room_id = room.json()["id"]
    sent = client.post(
        f"/api/chatroom/{room_id}/message", {"content": "Hello"}, format="json", **_auth(access)
    )
    assert sent.status_code == 202, sent.json()
    reply_id = sent.json()["reply"]["id"]
    # The reply ends as a worker would leave it: its text in PostgreSQL and its stream.
    Message.objects.filter(pk=reply_id).update(status=Message.Status.COMPLETED, content="Hi!")
    streaming.stream_attempt_start_publish(reply_id=reply_id, attempt=1)
    streaming.stream_done_publish(reply_id=reply_id, message={"id": reply_id})
    assert client.get("/api/chatroom", **_auth(access)).status_code == 200  # list cached
    assert client.get("/api/user/me", **_auth(access)).status_code == 200  # user row cached
    return {
        "access": access,
        "refresh": login["refresh"] if password is None else changed.json()["refresh"],
        "user_id": user.pk,
        "reply_id": reply_id,
        "room_id": room_id,
    }


def _pro_account_with_history(client: APIClient, fake_stripe: Any) -> dict[str, Any]:
    """`_account_with_history`, with a password, and Pro bought through the local Stripe."""
    account = _account_with_history(client, password=PASSWORD)
    client.force_authenticate(User.objects.get(pk=account["user_id"]))
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    client.force_authenticate(None)
    return account


def _customer_with_stored_events(fake_stripe: Any) -> str:
    """The Stripe customer of an account that bought Pro: its webhook events are stored."""
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    client.force_authenticate(User.objects.get(pk=account["user_id"]))
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    customer_id = BillingAccount.objects.get(user_id=account["user_id"]).stripe_customer_id
    assert customer_id
    return customer_id


def _rows_of(user_id: int, message_ids: list[int], jtis: list[str]) -> dict[str, int]:
    """Rows that name the user, in every table with a foreign key or a one-to-one key to it,
    and those keyed by the chatrooms, the messages or the tokens instead. The number's codes
    and failure counters are left out: they stay until their purge (`_codes_unusable`)."""
    found: dict[str, int] = {}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if (
                (getattr(field, "many_to_one", False) or getattr(field, "one_to_one", False))
                and field.concrete
                and field.related_model is User
            ):
                count = model._default_manager.filter(**{field.name: user_id}).count()
                if count:
                    found[f"{model._meta.label}.{field.name}"] = count
    found["user"] = User.objects.filter(pk=user_id).count()
    found["messages"] = Message.objects.filter(pk__in=message_ids).count()
    found["chatrooms"] = Chatroom.objects.filter(user_id=user_id).count()
    found["tokens"] = OutstandingToken.objects.filter(jti__in=jtis).count()
    return {name: count for name, count in found.items() if count}


def _codes_unusable() -> bool:
    """The number's send log stays (the limits on texts count it), without a usable code."""
    codes = OneTimeCode.objects.filter(phone=PHONE)
    return codes.exists() and not codes.exclude(code_hash="", used_at__isnull=False).exists()


def _keys_of(user_id: int, reply_id: int) -> dict[str, str]:
    """Every Redis key of the test database that belongs to the user, with its type."""
    redis = get_redis_connection("default")
    marks = (
        f"{{{user_id}}}",  # the chatroom list cache
        f"throttle:{user_id}:",
        f"streams:open:{user_id}",
        f"reply:{reply_id}:",
        "auth-user:",  # filtered below: the user's own id ends the key
        PHONE,
    )
    found = {}
    for raw in redis.scan_iter(count=1000):
        key = raw.decode()
        if any(mark in key for mark in marks):
            if "auth-user:" in key and not key.endswith(f":{user_id}"):
                continue
            found[key] = redis.type(raw).decode()
    return found


def _auth_tombstone_only(keys: dict[str, str], user_id: int) -> None:
    """What may stay for a few seconds: the marker that keeps a racing request from caching
    the deleted row again (no data, `accounts.auth_cache`); and for its minute, the number's
    count of password checks, a limit that deleting the account must not reset."""
    redis = get_redis_connection("default")
    for key in keys:
        if f"password-checks:account:{PHONE}:" in key:
            assert 0 < redis.ttl(key) <= 120
            continue
        assert key.endswith(f"auth-user:{key.split(':')[-2]}:{user_id}"), keys
        assert 0 < redis.ttl(key) <= 10
        assert b"forgotten" in redis.get(key)


def test_deleting_cancels_pro_at_stripe_and_leaves_no_row_and_no_key(fake_stripe, settings):
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    user_id, reply_id, access = account["user_id"], account["reply_id"], account["access"]
    client.force_authenticate(User.objects.get(pk=user_id))
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    client.force_authenticate(None)
    assert client.get("/api/user/me", **_auth(access)).json()["tier"] == "pro"
    subscription_id = fake_stripe.subscriptions[-1]["id"]
    jtis = list(OutstandingToken.objects.filter(user_id=user_id).values_list("jti", flat=True))
    message_ids = list(
        Message.objects.filter(chatroom__user_id=user_id).values_list("pk", flat=True)
    )
    assert len(message_ids) == 2  # the prompt and the reply
    before_rows = _rows_of(user_id, message_ids, jtis)
    before_keys = _keys_of(user_id, reply_id)
    assert {"billing.Subscription.user", "billing.BillingAccount.user", "usage.DailyUsage.user",
            "chatrooms", "messages", "tokens", "user"} <= set(before_rows)  # fmt: skip
    assert len(before_keys) >= 4, before_keys  # list pages and epoch, throttle, stream...

    wrong = _delete(client, access, {"password": "not it"})
    assert (wrong.status_code, error_code(wrong)) == (400, "password_incorrect")
    missing = _delete(client, access, {})
    assert (missing.status_code, error_code(missing)) == (400, "validation_error")
    assert _rows_of(user_id, message_ids, jtis) == before_rows
    # The wrong password counted like a login's.
    assert LoginFailureCount.objects.filter(key=f"phone:{PHONE}").count() == 1
    assert fake_stripe.subscription(subscription_id)["status"] == "active"

    deleted = _delete(client, access, {"password": PASSWORD})

    assert deleted.status_code == 204, deleted.content
    assert fake_stripe.subscription(subscription_id)["status"] == "canceled"
    customer = fake_stripe.customer(fake_stripe.subscription(subscription_id)["customer"])
    assert customer["phone"] is None and customer["metadata"] == {}
    assert _rows_of(user_id, message_ids, jtis) == {}
    assert _codes_unusable()
    # Deleting must not reset the limits on texts and guesses: the counters stay.
    assert LoginFailureCount.objects.filter(key=f"phone:{PHONE}").count() == 1
    _auth_tombstone_only(_keys_of(user_id, reply_id), user_id)
    # The cancellation's own webhook events arrive after the deletion: stored without details.
    assert fake_stripe.deliver_pending()
    late = StripeEvent.objects.get(type="customer.subscription.deleted")
    assert set(late.payload["data"]["object"]) <= {"id", "object", "customer", "status"}
    assert client.get("/api/user/me", **_auth(access)).status_code == 401
    # The number is free: a new account, a new id, no history; once the resend cooldown of
    # the last code is over (the send log stays, so deleting cannot reset the text limits).
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    again = login_with_code(client, PHONE)
    assert again["user"]["id"] != user_id
    assert client.get("/api/chatroom", **_auth(again["access"])).json()["results"] == []


def test_an_account_without_a_password_proves_it_with_a_login_code():
    client = APIClient()
    account = _account_with_history(client, password=None)
    access = account["access"]
    missing = _delete(client, access, {"password": "irrelevant"})
    assert (missing.status_code, error_code(missing)) == (400, "validation_error")
    code = send_code(client, PHONE).json()["otp"]
    wrong = _delete(client, access, {"otp": wrong_code(code)})
    assert wrong.status_code == 400
    assert User.objects.filter(pk=account["user_id"]).exists()

    deleted = _delete(client, access, {"otp": code})

    assert deleted.status_code == 204, deleted.content
    assert not User.objects.filter(pk=account["user_id"]).exists()
    assert client.get("/api/chatroom", **_auth(access)).status_code == 401
    refreshed = post(client, "/api/auth/token/refresh", {"refresh": account["refresh"]})
    assert refreshed.status_code == 401, refreshed.json()


def test_stripe_down_deletes_nothing(fake_stripe, attempts):
    client = APIClient()
    account = _pro_account_with_history(client, fake_stripe)
    fake_stripe.fail_next(path_prefix="/v1/subscriptions", status=500, count=attempts)

    refused = _delete(client, account["access"], {"password": PASSWORD})

    assert (refused.status_code, error_code(refused)) == (502, "payment_provider_error")
    assert User.objects.filter(pk=account["user_id"]).exists()
    assert Message.objects.filter(pk=account["reply_id"]).exists()
    assert client.get("/api/user/me", **_auth(account["access"])).status_code == 200


def test_a_reply_being_generated_refuses_the_deletion():
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    Message.objects.filter(pk=account["reply_id"]).update(status=Message.Status.STREAMING)

    refused = _delete(client, account["access"], {"password": PASSWORD})

    assert (refused.status_code, error_code(refused)) == (409, "reply_in_progress")
    assert User.objects.filter(pk=account["user_id"]).exists()
    assert Chatroom.objects.filter(pk=account["room_id"]).exists()


def test_the_export_holds_the_users_data_and_no_secret(fake_stripe):
    client = APIClient()
    account = _pro_account_with_history(client, fake_stripe)
    stranger = APIClient()
    stranger.force_authenticate(User.objects.create_user(phone="+919812345999"))
    stranger.post("/api/chatroom", {"name": "Not yours"}, format="json")

    # A day's rows (slot 0's Basic prompt, a Pro slot's) are one day in the export.
    DailyUsage.objects.create(
        user_id=account["user_id"], day=usage_today(), slot=pro_slot(7), count=2, tokens=30
    )

    response = client.get("/api/user/me/export", **_auth(account["access"]))

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="gemini-clone-account-{account["user_id"]}-'
    )
    body = json.loads(response.content)
    assert body["user"]["phone"] == PHONE and body["user"]["tier"] == "pro"
    assert [c["chatroom"]["name"] for c in body["chatrooms"]] == ["Travel"]
    assert [m["content"] for m in body["chatrooms"][0]["messages"]] == ["Hello", "Hi!"]
    assert (body["user"]["usage"]["used"], body["user"]["usage"]["tokens_today"]) == (3, 30)
    assert body["daily_usage"] == [{"day": usage_today().isoformat(), "prompts": 3, "tokens": 30}]
    assert body["billing"]["subscriptions"][0]["status"] == "active"
    assert body["known_networks"]
    text = response.content.decode()
    user = User.objects.get(pk=account["user_id"])
    for secret in (user.password, account["access"], account["refresh"], "Not yours"):
        assert secret not in text
    code_hashes = OneTimeCode.objects.filter(phone=PHONE).values_list("code_hash", flat=True)
    assert all(code_hash not in text for code_hash in code_hashes)
    assert "sk_" not in text and "whsec_" not in text


def test_an_open_checkout_is_closed_and_the_customers_events_go(fake_stripe):
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    client.force_authenticate(User.objects.get(pk=account["user_id"]))
    first = subscribe(client)["session_id"]
    fake_stripe.complete_checkout(first)  # Pro, with webhook events stored
    customer_id = fake_stripe.checkout_session(first)["customer"]
    events_before = set(StripeEvent.objects.values_list("stripe_event_id", flat=True))
    assert events_before
    fake_stripe.subscription_cancel(fake_stripe.subscriptions[-1]["id"])
    open_session = subscribe(client)["session_id"]  # a second purchase, left unpaid
    client.force_authenticate(None)

    deleted = _delete(client, account["access"], {"password": PASSWORD})

    assert deleted.status_code == 204, deleted.content
    assert fake_stripe.checkout_session(open_session)["status"] == "expired"
    assert not StripeEvent.objects.filter(stripe_event_id__in=events_before).exists()
    assert list(RetiredCustomer.objects.values_list("stripe_customer_id", flat=True)) == [
        customer_id
    ]


def test_a_checkout_paid_after_the_deletion_is_canceled_by_the_webhook(fake_stripe, settings):
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    user = User.objects.get(pk=account["user_id"])
    client.force_authenticate(user)
    subscribe(client)
    client.force_authenticate(None)
    customer_id = BillingAccount.objects.get(user=user).stripe_customer_id
    assert customer_id
    assert _delete(client, account["access"], {"password": PASSWORD}).status_code == 204
    # A Checkout that a purchase racing the deletion opened after the deletion closed the
    # customer's open ones (it read the customer's id before the deletion took its row).
    raced = stripe_client.checkout_session_create(
        customer_id=customer_id,
        price_id=settings.STRIPE_PRO_PRICE_ID,
        user_id=user.pk,
        success_url=settings.STRIPE_SUCCESS_URL,
        cancel_url=settings.STRIPE_CANCEL_URL,
    )

    fake_stripe.complete_checkout(raced.id)

    subscription = fake_stripe.subscriptions[-1]
    assert subscription["customer"] == customer_id
    assert fake_stripe.subscription(subscription["id"])["status"] == "canceled"
    created = StripeEvent.objects.get(
        type="customer.subscription.created", payload__data__object__id=subscription["id"]
    )
    assert created.outcome == "canceled at Stripe: the customer's account was deleted"


def test_a_chatroom_created_while_the_account_is_deleted_is_a_401_not_a_500():
    client = APIClient()
    account = _account_with_history(client, password=None)
    user = User.objects.get(pk=account["user_id"])
    locked, create_started = threading.Event(), threading.Event()

    def delete_slowly() -> None:
        with transaction.atomic():
            assert account_lock_for_deletion(user=user)
            locked.set()
            create_started.wait(10)
            until_another_waits_for_this_transaction()  # the create, on the user's row
            chatrooms_of_user_delete(user_id=user.pk)
            account_delete(user=user)

    def create() -> Any:
        locked.wait(10)
        create_started.set()
        return client.post(
            "/api/chatroom", {"name": "Late"}, format="json", **_auth(account["access"])
        )

    _, created = at_once([delete_slowly, create])

    assert (created.status_code, error_code(created)) == (401, "authentication_failed")
    # AccountGone's words: the create waited for the deletion's lock and found the user gone
    # (authenticating after the deletion would have failed with other words).
    assert created.json()["error"]["message"] == "This account no longer exists."
    assert not User.objects.filter(pk=user.pk).exists()


def test_a_reply_in_flight_refuses_before_the_password_counts_or_stripe_is_called(fake_stripe):
    client = APIClient()
    account = _pro_account_with_history(client, fake_stripe)
    subscription_id = fake_stripe.subscriptions[-1]["id"]
    Message.objects.filter(pk=account["reply_id"]).update(status=Message.Status.STREAMING)

    refused = _delete(client, account["access"], {"password": "not even the right one"})

    assert (refused.status_code, error_code(refused)) == (409, "reply_in_progress")
    assert fake_stripe.subscription(subscription_id)["status"] == "active"
    assert not LoginFailureCount.objects.filter(key=f"phone:{PHONE}").exists()


def test_a_refusal_inside_the_deletion_leaves_the_subscription_alone(fake_stripe, cache_redis):
    client = APIClient()
    account = _pro_account_with_history(client, fake_stripe)
    subscription_id = fake_stripe.subscriptions[-1]["id"]
    requests_before = len(fake_stripe.requests)
    cache_redis.refuse_writes()  # the revocation of the cached user row cannot be written

    try:
        refused = _delete(client, account["access"], {"password": PASSWORD})
    finally:
        cache_redis.accept_writes()

    assert (refused.status_code, error_code(refused)) == (503, "service_unavailable")
    assert User.objects.filter(pk=account["user_id"]).exists()
    assert Message.objects.filter(pk=account["reply_id"]).exists()
    assert fake_stripe.subscription(subscription_id)["status"] == "active"
    assert len(fake_stripe.requests) == requests_before  # Stripe was never asked


def test_a_late_event_with_a_stale_state_does_not_cancel_twice(fake_stripe, settings, post_event):
    client = APIClient()
    account = _account_with_history(client, password=PASSWORD)
    user = User.objects.get(pk=account["user_id"])
    client.force_authenticate(user)
    fake_stripe.complete_checkout(subscribe(client)["session_id"])
    client.force_authenticate(None)
    subscription = fake_stripe.subscriptions[-1]
    assert _delete(client, account["access"], {"password": PASSWORD}).status_code == 204
    cancels = _cancel_requests(fake_stripe)
    assert len(cancels) == 1

    # An update Stripe sent before the cancel, delivered late: it still says active.
    stale = {
        "id": "evt_stale_update",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": int(time.time()) - 60,
        "data": {"object": {**subscription, "status": "active"}},
    }
    assert post_event(stale).status_code == 200

    row = StripeEvent.objects.get(stripe_event_id="evt_stale_update")
    assert row.outcome == "canceled at Stripe: the customer's account was deleted"
    assert _cancel_requests(fake_stripe) == cancels  # Stripe said canceled: not asked again
    assert set(row.payload["data"]["object"]) <= {"id", "object", "customer", "status"}


def _cancel_requests(fake_stripe: Any) -> list[Any]:
    return [r for r in fake_stripe.requests if r["method"] == "DELETE"]


def test_events_stored_before_the_customer_was_retired_are_reduced_to_ids(fake_stripe):
    customer_id = _customer_with_stored_events(fake_stripe)
    stored = StripeEvent.objects.filter(payload__data__object__customer=customer_id)
    assert any(set(row.payload["data"]["object"]) - {"id", "object", "customer", "status"}
               for row in stored)  # fmt: skip
    RetiredCustomer.objects.create(stripe_customer_id=customer_id)

    # What the deletion runs once it commits, for events that came in while it was open.
    assert retired_customer_events_reduce(customer_id=customer_id) == stored.count()

    for row in stored.all():  # read again
        assert set(row.payload["data"]["object"]) <= {"id", "object", "customer", "status"}
        assert row.payload["id"] == row.stripe_event_id


def test_a_row_of_the_account_that_comes_in_meanwhile_is_a_409_not_a_500(fake_stripe):
    """A login records its network while the deletion runs: the deletion's foreign-key check
    refuses it whole (409), before Stripe, and the account is intact."""
    client = APIClient()
    account = _pro_account_with_history(client, fake_stripe)
    user = User.objects.get(pk=account["user_id"])
    subscription_id = fake_stripe.subscriptions[-1]["id"]
    inserted, deleting = threading.Event(), threading.Event()

    def login_records_its_network() -> None:
        with transaction.atomic():
            # Checked at once, the row's key locks the user now (Django's are checked at
            # commit, which may fall anywhere in the deletion: this makes it fall in the
            # middle, after the deletion collected the user's rows, before it checks them).
            constraints_check_now()
            KnownNetwork.objects.create(user=user, network="198.51.100.0/24")
            inserted.set()
            deleting.wait(10)
            until_another_waits_for_this_transaction()  # the deletion, on this row's lock

    def delete() -> Any:
        inserted.wait(10)
        deleting.set()
        return _delete(client, account["access"], {"password": PASSWORD})

    _, refused = at_once([login_records_its_network, delete])

    assert (refused.status_code, error_code(refused)) == (409, "account_busy")
    assert User.objects.filter(pk=user.pk).exists()
    assert Chatroom.objects.filter(user=user).exists()
    assert fake_stripe.subscription(subscription_id)["status"] == "active"
    again = _delete(client, account["access"], {"password": PASSWORD})
    assert again.status_code == 204


def test_a_first_purchase_whose_account_was_just_deleted_is_a_401_not_a_500():
    """The billing row is made on the first purchase; made for an account deleted meanwhile,
    its key is refused: AccountGone, not the IntegrityError."""
    client = APIClient()
    account = _account_with_history(client, password=None)
    user = User.objects.get(pk=account["user_id"])
    BillingAccount.objects.filter(user=user).delete()
    User.objects.filter(pk=user.pk).delete()  # the deletion committed; `user` is stale

    with pytest.raises(AccountGone):
        billing_account_of(user=user)


def test_an_event_stored_whole_after_the_customer_was_retired_is_reduced(fake_stripe):
    """The webhook's check and its insert can straddle the deletion's commit (and its
    reduction): the check made again once the row is stored reduces it."""
    customer_id = _customer_with_stored_events(fake_stripe)
    whole = StripeEvent.objects.filter(payload__data__object__customer=customer_id).first()
    assert whole is not None
    assert set(whole.payload["data"]["object"]) - {"id", "object", "customer", "status"}
    RetiredCustomer.objects.create(stripe_customer_id=customer_id)  # its reduction missed it

    events.stripe_event_receive(event=whole.payload)  # Stripe delivers it again

    whole.refresh_from_db()
    assert set(whole.payload["data"]["object"]) <= {"id", "object", "customer", "status"}
