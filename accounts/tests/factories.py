"""Factories for accounts, importable by every app's tests.

user = UserFactory()                      # verified, password DEFAULT_PASSWORD
user = UserFactory(no_password=True)      # logs in by OTP only
user = UserFactory(unverified=True)       # signed up, code not verified yet
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import factory
from django.contrib.auth.hashers import make_password
from django.utils import timezone

from accounts.models import User

DEFAULT_PASSWORD = "plum-Orbit-7-lantern"


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("phone",)

    class Params:
        unverified = factory.Trait(phone_verified_at=None)
        no_password = factory.Trait(password=factory.LazyFunction(lambda: make_password(None)))

    # +91 98 followed by 8 digits: valid Indian mobile numbers, distinct per user.
    phone = factory.Sequence(lambda n: f"+9198{n % 10**8:08d}")
    name = factory.Sequence(lambda n: f"User {n}")
    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = factory.django.Password(DEFAULT_PASSWORD)
    phone_verified_at = factory.LazyFunction(timezone.now)

    if TYPE_CHECKING:
        # Calling the factory builds a User; say so to the type checker.
        def __new__(cls, *args: Any, **kwargs: Any) -> User:  # type: ignore[misc]
            ...
