"""Deleting an account (DELETE /api/user/me), composed above the apps whose data it removes,
so no app imports one above it (`accounts` is at the bottom of chatrooms → usage → billing →
accounts).

The order keeps a refusal harmless: the proof of ownership first (nothing changed yet), then
the Stripe subscriptions (Stripe unreachable: 502 and nothing deleted; an account with no
subscription left is what a retry needs), then one transaction for every row (chatrooms and
messages, usage, billing rows, tokens, codes, the account), with the Redis data after it
commits. A reply being generated refuses the deletion (409 `reply_in_progress`) before
anything is deleted, but after Stripe: the client cancels the reply and tries again.
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from accounts.services import account_delete, account_deletion_verify
from billing.services import billing_subscriptions_cancel
from chatrooms.services import chatrooms_of_user_delete
from core.throttling import request_counts_forget


def account_delete_everything(
    *, user: User, password: str | None, otp: str | None, client_ip: str | None
) -> None:
    account_deletion_verify(user=user, password=password, otp=otp, client_ip=client_ip)
    billing_subscriptions_cancel(user=user)
    user_id = user.pk
    with transaction.atomic():
        chatrooms_of_user_delete(user_id=user_id)
        # Usage rows, billing rows and known networks go with the user (foreign keys).
        account_delete(user=user)
        transaction.on_commit(lambda: request_counts_forget(user_id=user_id))
