"""How often one account and one client network may make us check a password.

Each password check costs a full PBKDF2 hash (tens of milliseconds of CPU), right or wrong.
The failure counters (`accounts.login_throttle`) stop guessing, but not a client that sends
right passwords, or wrong ones spread thin, as fast as it can. So login and change-password
are also limited per account (`PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE`) and per client
network (`PASSWORD_CHECKS_PER_IP_PER_MINUTE`), counted in fixed clock minutes in Redis
with one round trip.

Like the per-user request throttle (`core.throttling`) it fails open: while Redis does not
answer, checks go through. It guards CPU time, not a secret; the limits on wrong passwords
live in PostgreSQL and hold regardless.
"""

from __future__ import annotations

import logging
import math
import time

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from accounts.client_ip import client_network_key
from accounts.errors import PasswordChecksTooFrequent

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60

# KEYS: the account's and the network's counters of this minute. ARGV: their lifetime.
# Returns both counts after counting this check.
_COUNT_BOTH = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    if counts[i] == 1 then redis.call('EXPIRE', key, ARGV[1]) end
end
return counts
"""


def _key(name: str, window: int) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    key = f"password-checks:{name}:{window}"
    return f"{prefix}:{key}" if prefix else key


def password_check_allow(*, account: str, client_ip: str | None) -> None:
    """Count one password check for `account` (a phone number) and the network of
    `client_ip`; raise PasswordChecksTooFrequent (429, until the minute ends) past either
    limit."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    keys = [
        _key(f"account:{account}", window),
        _key(f"network:{client_network_key(client_ip)}", window),
    ]
    try:
        client = get_redis_connection("default")
        account_count, network_count = client.eval(_COUNT_BOTH, 2, *keys, WINDOW_SECONDS * 2)
    except RedisError as exc:
        logger.warning("Password check rate not counted, Redis unavailable: %r", exc)
        return
    if (
        int(account_count) > settings.PASSWORD_CHECKS_PER_ACCOUNT_PER_MINUTE
        or int(network_count) > settings.PASSWORD_CHECKS_PER_IP_PER_MINUTE
    ):
        raise PasswordChecksTooFrequent(max(1, math.ceil((window + 1) * WINDOW_SECONDS - now)))
