"""No log line of a full account flow holds a phone number, a code, a token or a password:
with Redis up, and with Redis down (when the fallbacks log their warnings)."""

from __future__ import annotations

import logging
import socket

import pytest

from accounts.tests.account_flow import run_full_account_flow

pytestmark = pytest.mark.django_db(transaction=True)  # deliveries run after commit


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _assert_no_secret(text: str, secrets: dict[str, str]) -> None:
    for name, secret in secrets.items():
        assert secret not in text, f"the {name} is in the logs"


@pytest.mark.parametrize("debug", [False, True])
def test_the_logs_of_a_full_flow_hold_no_secret(api_client, clock, caplog, settings, debug):
    settings.DEBUG = debug  # development logged the codes once
    caplog.set_level(logging.DEBUG)
    flow = run_full_account_flow(api_client, clock)
    text = _log_text(caplog)
    assert "OTP sent to +91******3210" in text  # the deliveries, masked
    _assert_no_secret(text, flow.secrets)


def test_the_logs_of_a_full_flow_with_redis_down_hold_no_secret(
    api_client, clock, caplog, settings
):
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CACHES = caches
    caplog.set_level(logging.DEBUG)
    flow = run_full_account_flow(api_client, clock)
    text = _log_text(caplog)
    assert "Connection refused" in text or "Error" in text  # the fallbacks did log
    _assert_no_secret(text, flow.secrets)
