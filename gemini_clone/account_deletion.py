"""Deleting an account (DELETE /api/user/me), composed above the apps whose data it removes,
so no app imports one above it (`accounts` is at the bottom of chatrooms → usage → billing →
accounts).

The order keeps a refusal harmless:
1. a reply being generated refuses (409 `reply_in_progress`) before anything counts or
   changes; the client cancels the reply or waits, and tries again;
2. the proof of ownership (a wrong password counts like a login's; nothing changed yet);
3. Stripe: the open Checkout closed, the subscriptions canceled (Stripe unreachable: 502 and
   nothing deleted; an account with nothing left at Stripe is what a retry needs);
4. one transaction for every row (chatrooms and messages, usage, billing rows and webhook
   events, tokens, codes, the account), the user's row locked first as token rotation does;
   the in-flight check again under the chatrooms' locks, for a send that came in meanwhile;
5. the Redis data once it commits.
"""

from __future__ import annotations

from django.db import transaction

from accounts.models import User
from accounts.services import account_delete, account_deletion_verify, account_lock_for_deletion
from billing.services import billing_records_forget, billing_subscriptions_cancel
from chatrooms.services import chatrooms_of_user_delete, user_replies_in_flight_refuse
from core.throttling import request_counts_forget


def account_delete_everything(
    *, user: User, password: str | None, otp: str | None, client_ip: str | None
) -> None:
    user_id = user.pk
    user_replies_in_flight_refuse(user_id=user_id)
    account_deletion_verify(user=user, password=password, otp=otp, client_ip=client_ip)
    billing_subscriptions_cancel(user=user)
    with transaction.atomic():
        if not account_lock_for_deletion(user_id=user_id):
            return  # a concurrent deletion of the same account finished first
        chatrooms_of_user_delete(user_id=user_id)
        billing_records_forget(user=user)
        # Usage rows, billing rows and known networks go with the user (foreign keys).
        account_delete(user=user)
        transaction.on_commit(lambda: request_counts_forget(user_id=user_id))
