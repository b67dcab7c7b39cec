"""The run command with no Stripe keys: a newcomer goes Basic → Checkout → Pro → cancel in
the portal → Basic, over real HTTP, through the local Stripe stand-in it starts."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from testing.e2e import PYTHON, ManagedProcess, process_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _form_action(page: str, button: str) -> str:
    """The action of the form whose submit button says `button`."""
    for form in re.findall(r"<form\b.*?</form>", page, flags=re.S | re.I):
        if button in form:
            match = re.search(r'action="([^"]+)"', form)
            assert match, form
            return match.group(1).replace("&amp;", "&")
    raise AssertionError(f"no form with {button!r} in:\n{page}")


@pytest.fixture
def run_command(tmp_path: Path):
    port = _free_port()
    env = process_env(DEBUG="true", HOST="127.0.0.1", PORT=port, STACK_DATA_DIR=tmp_path)
    for name in list(env):
        if name.startswith("STRIPE_"):
            del env[name]
    stack = ManagedProcess(
        name="run",
        args=[PYTHON, "scripts/stack.py", "run"],
        env=env,
        log_path=tmp_path / "run.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: _answers(f"{base}/healthz"), timeout=90, what="the run command", watch=[stack]
        )
        yield base, stack
    finally:
        stack.stop(signum=signal.SIGINT, grace=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_newcomer_buys_pro_and_cancels_it_with_no_keys(run_command):
    base, stack = run_command
    assert "LOCAL STAND-IN" in stack.log()
    api = httpx.Client(base_url=base, timeout=20)
    phone = "+919812345678"
    code = api.post("/api/auth/send-otp", json={"phone": phone}).json()["otp"]
    access = api.post("/api/auth/verify-otp", json={"phone": phone, "otp": code}).json()["access"]
    api.headers["Authorization"] = f"Bearer {access}"
    assert api.get("/api/subscription/status").json()["tier"] == "basic"

    started = api.post("/api/subscribe/pro")
    assert started.status_code == 201, started.text
    browser = httpx.Client(timeout=20, follow_redirects=True)
    checkout = browser.get(started.json()["checkout_url"])
    assert "stand-in" in checkout.text.lower()
    paid = browser.post(httpx.URL(str(checkout.url)).join(_form_action(checkout.text, "Pay")))
    assert paid.status_code == 200
    assert str(paid.url).startswith(f"http://localhost:{base.rsplit(':', 1)[1]}/payment-success")
    assert "being confirmed" in paid.text

    status = wait_until(
        lambda: (body := api.get("/api/subscription/status").json())["tier"] == "pro" and body,
        timeout=15,
        what="the webhook to make the user Pro",
    )
    assert status["status"] == "active"

    portal_url = api.post("/api/subscription/portal").json()["url"]
    portal = browser.get(portal_url)
    assert "stand-in" in portal.text.lower()
    browser.post(httpx.URL(str(portal.url)).join(_form_action(portal.text, "Cancel now")))
    wait_until(
        lambda: api.get("/api/subscription/status").json()["tier"] == "basic",
        timeout=15,
        what="the cancellation to reach us",
    )

    standin = re.search(r"LOCAL STAND-IN at (\S+)", stack.log())
    assert standin is not None
    stack.popen.send_signal(signal.SIGINT)
    stack.popen.wait(timeout=40)
    assert "Stopping web, worker and beat" in stack.log()
    assert not _answers(f"{base}/healthz")
    assert not _answers(f"{standin.group(1)}/_fake/health")
