"""The per-IP send limit counts the TCP peer, or the client behind a trusted proxy."""

import pytest

from accounts.models import OneTimeCode
from accounts.tests.helpers import send_code

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.5"


def sender_ip(client, phone, **meta):
    assert send_code(client, phone, **meta).status_code == 200
    return OneTimeCode.objects.get(phone=phone).client_ip


def test_without_trusted_proxies_the_peer_is_the_client(api_client):
    ip = sender_ip(
        api_client, "+919876500001", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="1.2.3.4"
    )
    assert ip == "198.51.100.7"


def test_a_trusted_proxy_passes_on_the_client_address(api_client, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    ip = sender_ip(
        api_client, "+919876500002", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.50"
    )
    assert ip == "203.0.113.50"


def test_addresses_written_by_the_client_are_ignored(api_client, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    ip = sender_ip(
        api_client,
        "+919876500003",
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.50, 10.1.2.3",
    )
    assert ip == "203.0.113.50"


def test_an_untrusted_peer_cannot_spoof_its_way_past_the_ip_limit(api_client, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    for n in range(20):
        forged = {"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": f"192.0.2.{n}"}
        assert send_code(api_client, f"+9198765{n:05d}", **forged).status_code == 200
    refused = send_code(
        api_client, "+919876599999", REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="192.0.2.99"
    )
    assert refused.json()["error"]["code"] == "otp_send_limit"


def test_clients_behind_a_trusted_proxy_have_separate_limits(api_client, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    for n in range(20):
        behind = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.1"}
        assert send_code(api_client, f"+9198765{n:05d}", **behind).status_code == 200
    other_client = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.2"}
    assert send_code(api_client, "+919876599999", **other_client).status_code == 200
    same_client = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    assert send_code(api_client, "+919876599998", **same_client).status_code == 429


def test_garbage_in_the_header_falls_back_to_the_proxy(api_client, settings):
    settings.TRUSTED_PROXIES = [PROXY]
    ip = sender_ip(api_client, "+919876500004", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="not-an-ip")
    assert ip == PROXY


def test_an_ipv4_client_seen_through_a_dual_stack_socket_is_its_ipv4_address(api_client):
    ip = sender_ip(api_client, "+919876500005", REMOTE_ADDR="::ffff:198.51.100.7")
    assert ip == "198.51.100.7"


def test_ipv6_addresses_of_one_64_share_the_send_limit(api_client, settings):
    settings.OTP_MAX_SENDS_PER_IP_PER_HOUR = 2
    for n, host in enumerate(("::1", "::ab:cd")):
        sent = send_code(api_client, f"+91987650001{n}", REMOTE_ADDR=f"2001:db8:1:2{host}")
        assert sent.status_code == 200
    refused = send_code(api_client, "+919876500019", REMOTE_ADDR="2001:db8:1:2:ffff::9")
    assert refused.json()["error"]["code"] == "otp_send_limit"
    assert send_code(api_client, "+919876500019", REMOTE_ADDR="2001:db8:1:3::1").status_code == 200
    # IPv4 clients are counted apart from any IPv6 network.
    assert send_code(api_client, "+919876500018", REMOTE_ADDR="198.51.100.7").status_code == 200


def test_clients_without_an_address_share_one_send_limit(api_client, settings):
    settings.OTP_MAX_SENDS_PER_IP_PER_HOUR = 2
    for n in range(2):
        assert send_code(api_client, f"+91987650002{n}", REMOTE_ADDR="").status_code == 200
    refused = send_code(api_client, "+919876500029", REMOTE_ADDR="")
    assert refused.json()["error"]["code"] == "otp_send_limit"
    assert send_code(api_client, "+919876500029", REMOTE_ADDR="203.0.113.9").status_code == 200
