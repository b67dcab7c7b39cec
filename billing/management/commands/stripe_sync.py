from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.errors import BillingUnavailable, PaymentProviderError
from billing.mirror import subscriptions_sync


class Command(BaseCommand):
    help = (
        "Re-read every subscription of every known Stripe customer and repair the mirrored "
        "rows (after an outage, or webhooks lost to a wrong secret). Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = subscriptions_sync()
        except BillingUnavailable:
            raise CommandError("STRIPE_SECRET_KEY is not set.") from None
        except PaymentProviderError:
            raise CommandError("Stripe did not answer as expected; see the log above.") from None
        self.stdout.write(
            f"Read {report.customers} customer(s): {report.created} subscription(s) created, "
            f"{report.updated} updated, {report.unchanged} unchanged, {report.skipped} "
            f"skipped, {report.errors} customer(s) unknown to Stripe."
        )
