"""The run command (`./run.sh`, `scripts/stack.py run`) keeps the product up: a worker that
dies is started again, and everything still stops together."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from accounts.models import User
from testing.e2e import PYTHON, ManagedProcess, process_env, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except FileNotFoundError:
        return []


def _celery_worker(run: ManagedProcess) -> int | None:
    """The pid of the Celery worker the run command started, while it runs."""
    for pid in _children(run.popen.pid):
        with contextlib.suppress(FileNotFoundError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            names = {Path(arg.decode()).name for arg in args}  # `celery`, or its path
            if "celery" in names and "worker" in names:
                return pid
    return None


def test_the_run_command_starts_a_killed_worker_again(tmp_path: Path):
    env = process_env(
        HOST="127.0.0.1",
        PORT=_free_port(),
        DEBUG="true",  # no collectstatic
        STRIPE_SECRET_KEY="sk_test_unused",  # no Stripe stand-in
        STACK_DATA_DIR=tmp_path,
        WORKER_CONCURRENCY=2,
    )
    run = ManagedProcess(
        name="run", args=[PYTHON, "scripts/stack.py", "run"], env=env, log_path=tmp_path / "run.log"
    )
    children: set[int] = set()
    try:
        wait_until(lambda: "Serving on" in run.log(), timeout=60, what="Serving on", watch=[run])
        # Printed once the server listens, not before: a newcomer's first curl must work.
        socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=1).close()

        def worker_ready(times: int) -> int | None:
            children.update(_children(run.popen.pid))
            return _celery_worker(run) if run.log().count(" ready.") >= times else None

        first = wait_until(
            lambda: worker_ready(1), timeout=60, what="the first worker", watch=[run]
        )
        os.killpg(first, signal.SIGKILL)

        second = wait_until(
            lambda: worker_ready(2), timeout=30, what="a worker started again", watch=[run]
        )
        assert second != first
        assert "worker exited with code -9; starting it again in 1 s" in run.log()
        assert run.alive

        run.stop(signum=signal.SIGTERM, grace=30)
        assert "Stopping web, worker and beat..." in run.log()
        assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []
    finally:
        run.stop(grace=30)
        for pid in children:  # whatever the run command left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_the_image_compose_and_the_run_command_start_the_procfiles_commands():
    root = Path(__file__).resolve().parents[2]
    procfile = (root / "Procfile").read_text()
    assert [line.partition(":")[0] for line in procfile.splitlines()] == ["web", "worker", "beat"]
    assert 'CMD ["bash", "scripts/proc.sh", "web"]' in (root / "Dockerfile").read_text()
    compose = (root / "docker-compose.yml").read_text()
    assert "command: bash scripts/proc.sh worker" in compose
    assert "command: bash scripts/proc.sh beat" in compose
    assert '"scripts" / "proc.sh"' in (root / "scripts" / "stack.py").read_text()


def test_the_run_command_runs_any_manage_command_on_its_servers():
    env = process_env(DJANGO_SUPERUSER_PASSWORD="plum-Orbit-7-lantern")
    result = subprocess.run(
        [PYTHON, "scripts/stack.py", "manage", "createsuperuser", "--noinput",
         "--phone", "+919812340000"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    admin = User.objects.get(phone="+919812340000")
    assert admin.is_superuser and admin.check_password("plum-Orbit-7-lantern")


def test_the_image_builds_in_two_stages_and_runs_as_a_user_without_dev_dependencies():
    """No Docker engine runs here: what can be checked without one."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    stages = [line.split() for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert [stage[-1] for stage in stages] == ["wheels", "runtime"]
    assert "requirements-dev" not in dockerfile
    # The runtime stage installs only the first stage's wheels, with the README's commands.
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert "--no-index --find-links /wheels" in runtime
    assert "python -m venv .venv" in runtime and "-r requirements.txt" in runtime
    assert "collectstatic" in runtime
    user_line = next(line for line in runtime.splitlines() if line.startswith("USER "))
    assert user_line.split()[1] not in {"root", "0"}
    assert 'CMD ["python", "scripts/healthcheck.py", "/healthz"]' in runtime
