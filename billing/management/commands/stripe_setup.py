from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from billing.errors import BillingUnavailable, PaymentProviderError
from billing.services import pro_price_ensure


class Command(BaseCommand):
    help = (
        "Create the Pro product and its recurring price in the Stripe account of "
        "STRIPE_SECRET_KEY when missing (found again by lookup key), and print the price id "
        "to put in STRIPE_PRO_PRICE_ID. Safe to run again."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--amount",
            type=int,
            help="Price in the currency's smallest unit (999 for a new price). A different "
            "amount than the current Pro price's creates a new price that replaces it.",
        )
        parser.add_argument("--currency", help="Three-letter code (usd for a new price).")
        parser.add_argument("--interval", choices=["month", "year"], default="month")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["amount"] is not None and options["amount"] < 0:
            raise CommandError("--amount cannot be negative.")
        try:
            price = pro_price_ensure(
                unit_amount=options["amount"],
                currency=options["currency"],
                interval=options["interval"],
            )
        except BillingUnavailable:
            raise CommandError("STRIPE_SECRET_KEY is not set.") from None
        except PaymentProviderError:
            raise CommandError("Stripe did not answer as expected; see the log above.") from None
        verb = "Created" if price.created else "Found"
        replacing = f" (replacing {price.replaced})" if price.replaced else ""
        self.stdout.write(
            f"{verb} the Pro price {price.id}{replacing}: {price.unit_amount} {price.currency} "
            f"a {price.interval}."
        )
        self.stdout.write(f"STRIPE_PRO_PRICE_ID={price.id}")
