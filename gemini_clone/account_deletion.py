"""Deleting an account (DELETE /api/user/me), composed above the apps whose data it removes,
so no app imports one above it (`accounts` is at the bottom of chatrooms → usage → billing →
accounts).

Nothing is half done whatever refuses:
1. a reply being generated refuses first (409 `reply_in_progress`), before the proof counts;
   the client cancels the reply or waits, and tries again;
2. the proof of ownership (a wrong password counts like a login's; nothing changed yet);
3. one transaction: the user's row locked first, as token rotation and chatroom creation
   do; the chatrooms locked and checked for a reply again (a send may have come in), then
   every row deleted (chatrooms and messages, the stored webhook events of the customer,
   usage, billing rows, tokens, the account, whose cached copy is revoked in Redis or the
   whole is refused); Stripe last, still inside it: the Checkout closed, the customer's
   details removed, the subscriptions canceled. Stripe not answering rolls everything back
   (502). While Stripe is asked, the user's rows stay locked: their other requests wait.
4. Redis data once it commits.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.errors import AccountChangedDuringDeletion
from accounts.models import User
from accounts.services import account_delete, account_deletion_verify, account_lock_for_deletion
from billing.services import billing_customer_close_at_stripe, billing_customer_retire
from chatrooms.services import chatrooms_of_user_delete, user_replies_in_flight_refuse
from core.db import constraints_check_now
from core.throttling import request_counts_forget


def account_delete_everything(
    *, user: User, password: str | None, otp: str | None, client_ip: str | None
) -> None:
    user_id = user.pk
    user_replies_in_flight_refuse(user_id=user_id)
    account_deletion_verify(user=user, password=password, otp=otp, client_ip=client_ip)
    with transaction.atomic():
        if not account_lock_for_deletion(user=user):
            return  # a concurrent deletion of the same account finished first
        chatrooms_of_user_delete(user_id=user_id)
        stripe_customer = billing_customer_retire(user=user)
        account_delete(user=user)  # usage and billing rows go with it (foreign keys)
        # Foreign keys are checked at commit: a row that references the user and came in
        # meanwhile must refuse the deletion now, before Stripe, not after it.
        try:
            constraints_check_now()
        except IntegrityError as exc:
            raise AccountChangedDuringDeletion() from exc
        if stripe_customer is not None:
            billing_customer_close_at_stripe(customer=stripe_customer)
        transaction.on_commit(lambda: request_counts_forget(user_id=user_id))
