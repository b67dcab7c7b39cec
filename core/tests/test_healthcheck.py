"""The container health check passes against the production posture, whatever
ALLOWED_HOSTS is (docker-compose.yml and the Dockerfile run `scripts/healthcheck.py`)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from testing.e2e import ROOT, Stack, process_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("allowed_hosts", ["api.example.com", ".example.com,other.example", "*"])
def test_the_health_check_passes_with_any_allowed_hosts(tmp_path: Path, allowed_hosts: str):
    stack = Stack(env=process_env(ALLOWED_HOSTS=allowed_hosts), log_dir=tmp_path)
    stack.start_web()
    stack.wait_ready()
    port = stack.url.rsplit(":", 1)[1]
    try:
        check = subprocess.run(
            [sys.executable, "scripts/healthcheck.py", "/healthz"],
            cwd=ROOT,
            env={**process_env(ALLOWED_HOSTS=allowed_hosts), "PORT": port},
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert check.returncode == 0, check.stderr
        if allowed_hosts != "*":
            # What compose ran before: refused by ALLOWED_HOSTS, so never healthy.
            with pytest.raises(urllib.error.HTTPError, match="400"):
                urllib.request.urlopen(f"{stack.url}/readyz", timeout=5)  # noqa: S310
    finally:
        stack.close()


def test_the_health_check_fails_when_nothing_listens(tmp_path: Path):
    check = subprocess.run(
        [sys.executable, "scripts/healthcheck.py"],
        cwd=ROOT,
        env={**process_env(), "PORT": "9"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert check.returncode == 1
    assert "unhealthy" in check.stderr
